package simfault

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorded struct {
	status, retryAfter int
}

func before(t *testing.T, i *Injector, ctx context.Context, now time.Time) (bool, recorded) {
	t.Helper()
	var got recorded
	r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	hit := i.Before(w, r, now, func(_ http.ResponseWriter, status, retryAfter int) {
		got = recorded{status, retryAfter}
	})
	return hit, got
}

func TestZeroValueInjectsNothing(t *testing.T) {
	var i Injector
	for range 100 {
		if hit, _ := before(t, &i, context.Background(), time.Now()); hit {
			t.Fatal("zero Injector injected a fault")
		}
	}
	if i.TakeDrop() {
		t.Fatal("zero Injector dropped")
	}
}

func TestFailNext(t *testing.T) {
	var i Injector
	i.FailNext(2, http.StatusBadGateway)
	now := time.Now()
	for n, want := range []int{502, 502, 0} {
		hit, got := before(t, &i, context.Background(), now)
		if hit != (want != 0) || got.status != want {
			t.Fatalf("request %d: hit=%v status=%d, want %d", n, hit, got.status, want)
		}
	}
	i.FailNext(1, 0)
	if _, got := before(t, &i, context.Background(), now); got.status != 500 {
		t.Fatalf("status 0 should mean 500, got %d", got.status)
	}
}

func TestOutageAndReset(t *testing.T) {
	var i Injector
	i.SetOutage(true)
	if _, got := before(t, &i, context.Background(), time.Now()); got.status != 503 {
		t.Fatalf("outage status %d", got.status)
	}
	i.Reset()
	if hit, _ := before(t, &i, context.Background(), time.Now()); hit {
		t.Fatal("fault after Reset")
	}
}

func TestRateLimitFixedWindow(t *testing.T) {
	var i Injector
	i.SetRateLimit(2, 10*time.Second)
	t0 := time.Date(2025, 2, 10, 10, 0, 0, 0, time.UTC)
	for range 2 {
		if hit, _ := before(t, &i, context.Background(), t0); hit {
			t.Fatal("within budget but limited")
		}
	}
	hit, got := before(t, &i, context.Background(), t0.Add(2500*time.Millisecond))
	if !hit || got.status != 429 || got.retryAfter != 8 {
		t.Fatalf("got hit=%v %+v, want 429 retryAfter 8 (7.5s rounded up)", hit, got)
	}
	if hit, _ := before(t, &i, context.Background(), t0.Add(10*time.Second)); hit {
		t.Fatal("new window still limited")
	}
	i.SetRateLimit(0, 0)
	for range 10 {
		if hit, _ := before(t, &i, context.Background(), t0); hit {
			t.Fatal("disabled limit still limits")
		}
	}
}

func TestFailureRateIsSeedable(t *testing.T) {
	run := func(seed uint64) []bool {
		var i Injector
		i.Seed(seed)
		i.SetFailureRate(0.5, 503)
		out := make([]bool, 200)
		for n := range out {
			out[n], _ = before(t, &i, context.Background(), time.Now())
		}
		return out
	}
	a, b := run(7), run(7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different failures")
	}
	fails := 0
	for _, f := range a {
		if f {
			fails++
		}
	}
	if fails < 60 || fails > 140 {
		t.Fatalf("rate 0.5 gave %d/200 failures", fails)
	}
}

func TestLatencyRespectsContext(t *testing.T) {
	var i Injector
	i.SetLatency(30 * time.Millisecond)
	start := time.Now()
	if hit, _ := before(t, &i, context.Background(), time.Now()); hit {
		t.Fatal("latency alone should not fail")
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("latency not applied")
	}
	i.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	hit, _ := before(t, &i, ctx, time.Now())
	if !hit || time.Since(start) > 5*time.Second {
		t.Fatal("latency did not stop at context end")
	}
}

func TestTakeDrop(t *testing.T) {
	var i Injector
	i.DropAfterCommit(2)
	first, second, third := i.TakeDrop(), i.TakeDrop(), i.TakeDrop()
	if !first || !second || third {
		t.Fatal("DropAfterCommit(2) should drop exactly twice")
	}
}

func TestDropClosesConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Drop(w)
	}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		t.Fatalf("got a response %d, want a transport error", resp.StatusCode)
	}
}

func TestSettingsRoundTripJSON(t *testing.T) {
	in := `{"failNext":3,"failStatus":502,"failureRate":0.25,"latency":"150ms","dropAfterCommit":1,"rateLimit":5,"rateWindow":"1m","outage":true}`
	var s Settings
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	var i Injector
	i.Apply(s)
	got := i.Settings()
	want := Settings{FailNext: 3, FailStatus: 502, FailureRate: 0.25, Latency: Duration(150 * time.Millisecond),
		DropAfterCommit: 1, RateLimit: 5, RateWindow: Duration(time.Minute), Outage: true}
	if got != want {
		t.Fatalf("Settings() = %+v, want %+v", got, want)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back Settings
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != want {
		t.Fatalf("JSON round trip = %+v (%s)", back, b)
	}
	var d Duration
	if err := json.Unmarshal([]byte("2000000"), &d); err != nil || time.Duration(d) != 2*time.Millisecond {
		t.Fatalf("numeric duration: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Fatal("bad duration accepted")
	}
}

func TestCounter(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			c.Inc("create", 201)
			c.Inc("create", 0)
			c.Inc("list", 200)
		})
	}
	wg.Wait()
	if c.Count("create") != 20 || c.CountStatus("create", 0) != 10 || c.CountStatus("list", 200) != 10 || c.Count("revoke") != 0 {
		t.Fatalf("counts wrong: %v", c.Snapshot())
	}
	snap := c.Snapshot()
	snap["create"][201] = 999
	if c.CountStatus("create", 201) != 10 {
		t.Fatal("Snapshot is not a copy")
	}
	c.Reset()
	if c.Count("create") != 0 {
		t.Fatal("Reset kept counts")
	}
}

func TestLatencyKeepsBodyAndNoticesHangUp(t *testing.T) {
	var i Injector
	i.SetLatency(20 * time.Millisecond)
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i.Before(w, r, time.Now(), func(w http.ResponseWriter, status, _ int) { w.WriteHeader(status) }) {
			got <- "fault"
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if b := <-got; b != `{"name":"x"}` {
		t.Fatalf("handler read %q after the latency", b)
	}

	// A POST whose caller gives up must not hold the handler for the whole latency.
	i.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader(`{}`))
	if resp, err := srv.Client().Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("want a timeout")
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("handler still sleeping after the caller hung up")
	}
}
