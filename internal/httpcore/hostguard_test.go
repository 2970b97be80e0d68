package httpcore

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// fakeBase answers each request as told by its URL path: /200, /404,
// /503 answer with that status; /refused, /timeout and /canceled fail the
// way a dead host, a black hole and a caller giving up do; /block waits
// for release.
type fakeBase struct {
	mu      sync.Mutex
	sent    int
	release chan struct{}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (f *fakeBase) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.sent++
	f.mu.Unlock()
	switch p := strings.TrimPrefix(req.URL.Path, "/"); p {
	case "refused":
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	case "timeout":
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}
	case "canceled":
		return nil, context.Canceled
	case "block":
		<-f.release
		fallthrough
	default:
		code := http.StatusOK
		switch p {
		case "404":
			code = http.StatusNotFound
		case "401":
			code = http.StatusUnauthorized
		case "429":
			code = http.StatusTooManyRequests
		case "503":
			code = http.StatusServiceUnavailable
		}
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}, nil
	}
}

func (f *fakeBase) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// send makes one request through g to host and closes the answer.
func send(g *HostGuard, host, path string) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	resp, err := g.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.ReadAll(resp.Body)
	return resp.Body.Close()
}

func TestHostGuardBreaker(t *testing.T) {
	type step struct {
		advance time.Duration // before the request
		host    string        // "" means a.example
		path    string
		refused bool // the guard must refuse it (circuit open), not send it
	}
	fail := func(n int, path string) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{path: path}
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after 5 connection failures in a row", cat(fail(5, "/refused"), []step{{path: "/200", refused: true}})},
		{"opens after 5 timeouts in a row", cat(fail(5, "/timeout"), []step{{path: "/200", refused: true}})},
		{"4 failures leave it closed", cat(fail(4, "/refused"), []step{{path: "/200"}})},
		{"4xx answers never open it", cat(fail(5, "/404"), fail(5, "/401"), fail(5, "/429"), []step{{path: "/200"}})},
		{"5xx answers never open it: the host answers", cat(fail(10, "/503"), []step{{path: "/200"}})},
		{"an answer resets the count", cat(fail(4, "/refused"), fail(1, "/404"), fail(4, "/timeout"), []step{{path: "/200"}})},
		{"canceled calls do not count", cat(fail(10, "/canceled"), []step{{path: "/200"}})},
		{"still open just before the cooldown", cat(fail(5, "/refused"), []step{{advance: 9 * time.Second, path: "/200", refused: true}})},
		{"half-open probe after the cooldown closes it on success", cat(fail(5, "/refused"), []step{
			{advance: 10 * time.Second, path: "/200"}, {path: "/200"}, {path: "/refused"}, {path: "/200"},
		})},
		{"a 4xx probe closes it too", cat(fail(5, "/timeout"), []step{{advance: 10 * time.Second, path: "/404"}, {path: "/200"}})},
		{"a failed probe reopens it for another cooldown", cat(fail(5, "/refused"), []step{
			{advance: 10 * time.Second, path: "/timeout"}, {path: "/200", refused: true},
			{advance: 9 * time.Second, path: "/200", refused: true}, {advance: time.Second, path: "/200"}, {path: "/200"},
		})},
		{"a canceled probe lets the next request probe", cat(fail(5, "/refused"), []step{
			{advance: 10 * time.Second, path: "/canceled"}, {path: "/200"}, {path: "/200"},
		})},
		{"hosts are independent", cat(fail(5, "/refused"), []step{{host: "b.example", path: "/200"}, {path: "/200", refused: true}})},
		{"the port is part of the host", cat(fail(5, "/refused"), []step{{host: "a.example:8443", path: "/200"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(now)
			base := &fakeBase{}
			g := NewHostGuard(base, clk, HostLimits{})
			for i, s := range tt.steps {
				clk.Step(s.advance)
				host := s.host
				if host == "" {
					host = "a.example"
				}
				before := base.count()
				err := send(g, host, s.path)
				var open *CircuitOpenError
				gotRefused := errors.As(err, &open)
				if gotRefused != s.refused {
					t.Fatalf("step %d (%s %s): refused by the circuit %v, want %v (err %v)", i, host, s.path, gotRefused, s.refused, err)
				}
				if sent := base.count() > before; sent == s.refused {
					t.Fatalf("step %d (%s %s): sent %v, want %v", i, host, s.path, sent, !s.refused)
				}
				if gotRefused && (!errors.Is(err, ErrHostUnavailable) || open.Host != host) {
					t.Fatalf("step %d: %#v does not match ErrHostUnavailable for %s", i, err, host)
				}
			}
		})
	}
}

// TestHostGuardOneProbe: while the half-open probe is in flight, every
// other request is refused; once it answers, they pass.
func TestHostGuardOneProbe(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	base := &fakeBase{release: make(chan struct{})}
	g := NewHostGuard(base, clk, HostLimits{})
	for range 5 {
		_ = send(g, "a.example", "/refused")
	}
	clk.Step(DefaultCooldown)
	done := make(chan error)
	go func() { done <- send(g, "a.example", "/block") }()
	waitFor(t, func() bool { return base.count() == 6 })
	if err := send(g, "a.example", "/200"); !errors.Is(err, ErrHostUnavailable) {
		t.Fatalf("second request during the probe: %v, want refused", err)
	}
	close(base.release)
	if err := <-done; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := send(g, "a.example", "/200"); err != nil {
		t.Fatalf("after the probe answered: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHostGuardLimit(t *testing.T) {
	tests := []struct {
		name string
		// elapsed passes on the fake clock after the slots fill and before
		// the extra request; lastDone marks a request finishing just then.
		elapsed  time.Duration
		lastDone bool
		// free releases one blocked request while the extra one waits.
		free     bool
		wantBusy bool
		wantWait bool // the extra request waited (a timer was set)
	}{
		{name: "answering host at capacity: waits, gets a freed slot", free: true, wantWait: true},
		{name: "answering host at capacity: waits QueueWait, then busy", wantBusy: true, wantWait: true},
		{name: "host that stopped answering: busy at once, no wait", elapsed: 2 * time.Second, wantBusy: true},
		{name: "slow but still answering host: waits", elapsed: 2 * time.Second, lastDone: true, free: true, wantWait: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(now)
			base := &fakeBase{release: make(chan struct{})}
			g := NewHostGuard(base, clk, HostLimits{MaxInFlight: 2})
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() { defer wg.Done(); _ = send(g, "a.example", "/block") }()
			}
			waitFor(t, func() bool { return base.count() == 2 })
			clk.Step(tt.elapsed)
			if tt.lastDone {
				g.mu.Lock()
				g.hosts["a.example"].lastDone = clk.Now()
				g.mu.Unlock()
			}
			errc := make(chan error, 1)
			go func() { errc <- send(g, "a.example", "/200") }()
			if tt.wantWait {
				waitFor(t, clk.HasWaiters)
				if tt.free {
					base.release <- struct{}{}
				} else {
					clk.Step(DefaultQueueWait)
				}
			}
			var err error
			select {
			case err = <-errc:
			case <-time.After(5 * time.Second):
				t.Fatal("the request is still waiting for a slot of a host that stopped answering")
			}
			var busy *HostBusyError
			if got := errors.As(err, &busy); got != tt.wantBusy {
				t.Fatalf("busy %v, want %v (err %v)", got, tt.wantBusy, err)
			}
			if tt.wantBusy && (!errors.Is(err, ErrHostUnavailable) || busy.Limit != 2) {
				t.Fatalf("busy error %#v", err)
			}
			if !tt.wantWait && clk.HasWaiters() {
				t.Fatal("the request waited for a host that stopped answering")
			}
			close(base.release)
			wg.Wait()
			if n := len(g.hosts); n != 0 {
				t.Fatalf("%d idle healthy hosts still tracked", n)
			}
		})
	}
}

// TestHostGuardBodyHoldsSlot: the slot is freed when the answer's body is
// closed, not when the headers arrive.
func TestHostGuardBodyHoldsSlot(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	g := NewHostGuard(&fakeBase{}, clk, HostLimits{MaxInFlight: 1})
	req, _ := http.NewRequest(http.MethodGet, "http://a.example/200", nil)
	resp, err := g.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	clk.Step(5 * time.Second) // the host now looks stalled: no waiting
	if err := send(g, "a.example", "/200"); !errors.Is(err, ErrHostUnavailable) {
		t.Fatalf("second request with the body open: %v, want busy", err)
	}
	_ = resp.Body.Close()
	if err := send(g, "a.example", "/200"); err != nil {
		t.Fatalf("after close: %v", err)
	}
}

func TestHostGuardUnlimited(t *testing.T) {
	base := &fakeBase{release: make(chan struct{})}
	g := NewHostGuard(base, clocktesting.NewFakeClock(now), HostLimits{MaxInFlight: -1})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = send(g, "a.example", "/block") }()
	}
	waitFor(t, func() bool { return base.count() == 50 })
	close(base.release)
	wg.Wait()
}

// TestHostGuardThroughCaller: a black-holed host (accepts, never answers)
// through a Caller: each call is a *NetworkError whose cause is the typed
// guard error once the circuit opens, and a healthy host is unaffected.
func TestHostGuardThroughCaller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") }))
	defer healthy.Close()

	g := NewHostGuard(nil, clocktesting.NewFakeClock(now), HostLimits{FailureThreshold: 2})
	c := &Caller{Service: "revio", HTTP: Client(&http.Client{Transport: g}), Timeout: 100 * time.Millisecond}
	for i := range 2 {
		_, err := c.Do(context.Background(), Request{Operation: "exchange", Method: http.MethodPost, URL: "http://" + ln.Addr().String() + "/x", Body: []byte("{}")})
		var ne *NetworkError
		if !errors.As(err, &ne) || !ne.Timeout || errors.Is(err, ErrHostUnavailable) {
			t.Fatalf("call %d to the black hole: %v, want a timeout", i, err)
		}
	}
	_, err = c.Do(context.Background(), Request{Operation: "exchange", Method: http.MethodPost, URL: "http://" + ln.Addr().String() + "/x"})
	var ne *NetworkError
	var open *CircuitOpenError
	if !errors.As(err, &ne) || ne.Timeout || !errors.As(err, &open) {
		t.Fatalf("after 2 timeouts: %v, want a *NetworkError caused by *CircuitOpenError", err)
	}
	if resp, err := c.Do(context.Background(), Request{Operation: "exchange", Method: http.MethodGet, URL: healthy.URL}); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("healthy host: %v", err)
	}
}
