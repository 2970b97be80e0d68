package reevittest_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// serve runs one request straight through the handler.
func serve(sim *reevittest.Sim, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	sim.ServeHTTP(w, req)
	return w
}

func TestSimKeysAndOutOfBandRevoke(t *testing.T) {
	clk := clocktesting.NewFakeClock(docTime)
	sim := reevittest.New(reevittest.WithClock(clk))
	sim.AddOrg("org_empty")
	if got := sim.Keys("org_empty"); len(got) != 0 {
		t.Fatalf("new org has keys: %v", got)
	}
	if got := sim.Keys("org_unknown"); got != nil {
		t.Fatalf("unknown org: %v", got)
	}
	id, full := sim.SeedKey("org_1", "", "admin", []string{"api_keys:read"})
	if !strings.HasPrefix(full, "pfk_live_") {
		t.Fatalf("default env should be live")
	}
	if got, ok := sim.Authenticate("org_1", full); !ok || got != id {
		t.Fatal("seeded key does not authenticate")
	}
	if _, ok := sim.Authenticate("org_empty", full); ok {
		t.Fatal("a key authenticates for another org")
	}
	clk.Step(time.Minute)
	if !sim.Revoke("org_1", id) || sim.Revoke("org_1", id) || sim.Revoke("org_1", "key_nope") {
		t.Fatal("Revoke should succeed exactly once")
	}
	if _, ok := sim.Authenticate("org_1", full); ok {
		t.Fatal("revoked key authenticates")
	}
	all, active := sim.Keys("org_1"), sim.ActiveKeys("org_1")
	if len(all) != 1 || len(active) != 0 {
		t.Fatalf("Keys %v ActiveKeys %v", all, active)
	}
	k := all[0]
	if !k.Revoked || !k.RevokedAt.Equal(docTime.Add(time.Minute)) || k.Prefix != full[:13] || k.Env != "live" ||
		!k.CreatedAt.Equal(docTime) || k.Name != "admin" {
		t.Fatalf("KeyInfo %+v", k)
	}
	all[0].Scopes[0] = "mutated"
	if sim.Keys("org_1")[0].Scopes[0] != "api_keys:read" {
		t.Fatal("Keys exposes internal slices")
	}
}

func TestSimSeedKeyRejectsBadEnv(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("want a panic")
		}
	}()
	reevittest.New().SeedKey("org", "prod", "x", nil)
}

func TestSimWithSeedIsReproducible(t *testing.T) {
	gen := func() (string, string) {
		return reevittest.New(reevittest.WithSeed(9)).SeedKey("o", "test", "n", nil)
	}
	id1, k1 := gen()
	id2, k2 := gen()
	if id1 != id2 || k1 != k2 {
		t.Fatal("same seed, different keys")
	}
	if _, k3 := reevittest.New(reevittest.WithSeed(10)).SeedKey("o", "test", "n", nil); k3 == k1 {
		t.Fatal("different seeds, same key")
	}
}

func TestSimFaultsAreCountedAndNotStored(t *testing.T) {
	sim := reevittest.New(reevittest.WithClock(reevittest.ClockFunc(func() time.Time { return docTime })))
	_, admin := sim.SeedKey("org", "live", "admin", reevittest.Scopes)
	h := []string{"X-Reevit-Key", admin, "X-Org-Id", "org", "Idempotency-Key", "i1"}
	body := `{"name":"n","scopes":["payments:read"]}`

	sim.Faults().FailNext(1, http.StatusServiceUnavailable)
	w := serve(sim, http.MethodPost, "/v1/api-keys", body, h...)
	if w.Code != 503 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("fault: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if !bytes.Contains(w.Body.Bytes(), []byte(`"error":"internal_error"`)) {
		t.Fatalf("5xx body %s", w.Body)
	}
	// The injected fault was not stored: the same request now runs.
	if w := serve(sim, http.MethodPost, "/v1/api-keys", body, h...); w.Code != http.StatusCreated {
		t.Fatalf("after fault: %d %s", w.Code, w.Body)
	}
	serve(sim, http.MethodGet, "/v1/api-keys", "", h...)
	serve(sim, http.MethodDelete, "/v1/api-keys/key_none", "", "X-Reevit-Key", admin, "X-Org-Id", "org", "Idempotency-Key", "r")
	serve(sim, http.MethodGet, "/v1/other", "", h...)

	c := sim.Counts()
	if c.CountStatus("create", 503) != 1 || c.CountStatus("create", 201) != 1 || c.Count("list") != 1 ||
		c.CountStatus("revoke", 404) != 1 || c.CountStatus("other", 404) != 1 {
		t.Fatalf("counts %v", c.Snapshot())
	}
}

func TestSimRoutingAnswersJSON(t *testing.T) {
	sim := reevittest.New()
	_, admin := sim.SeedKey("org", "live", "admin", reevittest.Scopes)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/nothing", 404},
		{http.MethodPut, "/v1/api-keys", 405},
		{http.MethodGet, "/v1/api-keys/key_x", 405},
	} {
		w := serve(sim, tc.method, tc.path, "", "X-Reevit-Key", admin, "X-Org-Id", "org")
		if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, w.Code, w.Header().Get("Content-Type"))
		}
	}
}

func TestSimBareListShape(t *testing.T) {
	sim := reevittest.New()
	_, admin := sim.SeedKey("org", "live", "admin", reevittest.Scopes)
	sim.SetListShape(true)
	w := serve(sim, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin, "X-Org-Id", "org")
	if !bytes.HasPrefix(w.Body.Bytes(), []byte(`[{"id":"key_`)) {
		t.Fatalf("bare list %s", w.Body)
	}
	sim.SetListShape(false)
	w = serve(sim, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin, "X-Org-Id", "org")
	if !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"data":[`)) {
		t.Fatalf("object list %s", w.Body)
	}
}

func TestSimDropAfterCommitCountsZero(t *testing.T) {
	srv := reevittest.NewServer()
	defer srv.Close()
	_, admin := srv.SeedKey("org", "live", "admin", reevittest.Scopes)
	srv.Faults().DropAfterCommit(1)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/api-keys", strings.NewReader(`{"name":"n","scopes":["payments:read"]}`))
	req.Header.Set("X-Reevit-Key", admin)
	req.Header.Set("X-Org-Id", "org")
	req.Header.Set("Idempotency-Key", "d")
	if resp, err := client.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("want a dropped connection, got %d", resp.StatusCode)
	}
	if srv.Counts().CountStatus("create", 0) != 1 || len(srv.ActiveKeys("org")) != 2 {
		t.Fatalf("counts %v, keys %d", srv.Counts().Snapshot(), len(srv.ActiveKeys("org")))
	}
}
