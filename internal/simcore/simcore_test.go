package simcore

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWriteFault(t *testing.T) {
	known := map[int]ErrorBody{http.StatusUnauthorized: {Error: "unauthorized", Message: "Invalid or missing API key"}}
	tests := []struct {
		status, retryAfter int
		want               string
		header             string
	}{
		{429, 0, `{"error":"rate_limited","message":"Too many requests","retry_after":60}`, "60"},
		{429, 7, `{"error":"rate_limited","message":"Too many requests","retry_after":7}`, "7"},
		{401, 0, `{"error":"unauthorized","message":"Invalid or missing API key"}`, ""},
		{404, 0, `{"error":"not_found","message":"Not found"}`, ""},
		{503, 0, `{"error":"internal_error","message":"injected fault: Service Unavailable"}`, ""},
		{409, 0, `{"error":"bad_request","message":"injected fault: Conflict"}`, ""},
	}
	for _, tt := range tests {
		rr := httptest.NewRecorder()
		WriteFault(rr, tt.status, tt.retryAfter, known)
		if rr.Code != tt.status || rr.Body.String() != tt.want || rr.Header().Get("Retry-After") != tt.header ||
			rr.Header().Get("Content-Type") != "application/json" {
			t.Errorf("WriteFault(%d, %d) = %d %s (Retry-After %q)", tt.status, tt.retryAfter, rr.Code, rr.Body, rr.Header().Get("Retry-After"))
		}
	}
}

func TestServe(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, map[string]bool{"tls": r.TLS != nil}) })
	for _, tls := range []bool{false, true} {
		l := Serve(h, tls)
		resp, err := l.Client().Get(l.URL)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]bool
		_ = json.NewDecoder(resp.Body).Decode(&got)
		_ = resp.Body.Close()
		if got["tls"] != tls {
			t.Errorf("Serve(tls=%v) served tls=%v", tls, got["tls"])
		}
		l.CloseClientConnections()
		l.Close()
	}
}

func TestBase(t *testing.T) {
	var a, b Base
	var ia, ib Instruments
	a.Init()
	b.Init()
	a.Seed(42, &ia)
	b.Seed(42, &ib)
	if x, y := a.Rand(16), b.Rand(16); x != y || len(x) != 16 {
		t.Fatalf("seeded Rand differs: %q %q", x, y)
	}
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.SetClock(ClockFunc(func() time.Time { return fixed }))
	a.SetClock(nil)
	if !a.Now().Equal(fixed) {
		t.Fatalf("Now = %v", a.Now())
	}
	if ia.Faults() == nil || ia.Counts() == nil {
		t.Fatal("instruments missing")
	}
}
