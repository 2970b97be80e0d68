package httpcore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of HostLimits.
const (
	// DefaultMaxInFlight is how many requests may be in flight to one host
	// at once: half of a controller's default 16 workers, so a host that
	// never answers holds at most half of them.
	DefaultMaxInFlight = 8
	// DefaultQueueWait bounds how long a request waits for a slot of a busy
	// host that is answering.
	DefaultQueueWait = time.Second
	// DefaultFailureThreshold is how many connection failures or timeouts
	// in a row open a host's circuit.
	DefaultFailureThreshold = 5
	// DefaultCooldown is how long an open circuit refuses requests before
	// one probe is let through.
	DefaultCooldown = 10 * time.Second
)

// ErrHostUnavailable is matched (errors.Is) by *CircuitOpenError and
// *HostBusyError: the request was not sent because of its host's state.
var ErrHostUnavailable = errors.New("httpcore: host unavailable")

// Clock is the time source of a HostGuard; k8s.io/utils/clock.Clock and its
// fake satisfy it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// HostLimits configure a HostGuard. Zero fields take the defaults.
type HostLimits struct {
	// MaxInFlight bounds the requests in flight to one host (host:port);
	// a negative value means no limit.
	MaxInFlight int
	// QueueWait bounds the wait for a slot of a host at MaxInFlight.
	QueueWait time.Duration
	// FailureThreshold connection failures or timeouts in a row open the
	// host's circuit.
	FailureThreshold int
	// Cooldown is how long an open circuit refuses before a probe.
	Cooldown time.Duration
}

func (l HostLimits) withDefaults() HostLimits {
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.QueueWait <= 0 {
		l.QueueWait = DefaultQueueWait
	}
	if l.FailureThreshold <= 0 {
		l.FailureThreshold = DefaultFailureThreshold
	}
	if l.Cooldown <= 0 {
		l.Cooldown = DefaultCooldown
	}
	return l
}

// CircuitOpenError says a host failed to answer FailureThreshold times in a
// row (connection refused or reset, dial, handshake or call timeouts), so
// requests to it are not sent until a probe after the cooldown gets an
// answer. Nothing was sent.
type CircuitOpenError struct {
	// Host is the URL's host[:port].
	Host string
	// Failures is the threshold that opened the circuit.
	Failures int
	// Cooldown is the pause between probes.
	Cooldown time.Duration
}

func (e *CircuitOpenError) Error() string {
	return fmt.Sprintf("httpcore: %s did not answer %d times in a row: requests to it are paused, one probe every %s", e.Host, e.Failures, e.Cooldown)
}

// Is makes errors.Is(err, ErrHostUnavailable) true.
func (e *CircuitOpenError) Is(target error) bool { return target == ErrHostUnavailable }

// HostBusyError says a host already had MaxInFlight requests in flight and
// none finished within QueueWait (or the host had stopped answering, so the
// request did not wait at all). Nothing was sent.
type HostBusyError struct {
	Host  string
	Limit int
}

func (e *HostBusyError) Error() string {
	return fmt.Sprintf("httpcore: %s already has %d requests in flight (the per-host limit) and is not keeping up", e.Host, e.Limit)
}

// Is makes errors.Is(err, ErrHostUnavailable) true.
func (e *HostBusyError) Is(target error) bool { return target == ErrHostUnavailable }

// HostGuard is an http.RoundTripper that keeps one slow or dead host from
// holding every caller: at most MaxInFlight requests per host, a bounded
// wait for a slot, and a circuit breaker per host that opens after
// FailureThreshold transport failures in a row and lets one probe through
// every Cooldown. Any HTTP answer, 4xx and 5xx included, is an answer: the
// host is reachable, and its errors are the caller's to back off from. One
// HostGuard per process; it is safe for concurrent use.
type HostGuard struct {
	base   http.RoundTripper
	clock  Clock
	limits HostLimits

	mu    sync.Mutex
	hosts map[string]*hostState
}

// NewHostGuard wraps base (nil: NewTransport()) with the limits.
func NewHostGuard(base http.RoundTripper, clk Clock, limits HostLimits) *HostGuard {
	if base == nil {
		base = NewTransport()
	}
	return &HostGuard{base: base, clock: clk, limits: limits.withDefaults(), hosts: map[string]*hostState{}}
}

// hostState is one host's slots and circuit. Fields other than slots are
// guarded by HostGuard.mu.
type hostState struct {
	slots     chan struct{} // nil: no limit
	inFlight  int
	waiting   int
	failures  int       // transport failures in a row
	openedAt  time.Time // zero: closed
	probing   bool      // the half-open probe is in flight
	busySince time.Time // when inFlight last went from 0 to 1
	lastDone  time.Time // when a request last got an answer or failed
}

// outcome of one request for the breaker.
type outcome int

const (
	answered outcome = iota // an HTTP answer was read
	failed                  // no answer: refused, reset, timed out
	neutral                 // the caller gave up (context canceled)
)

// ticket is one admitted request.
type ticket struct {
	g     *HostGuard
	host  string
	h     *hostState
	probe bool
	once  sync.Once
}

// RoundTrip admits req (or refuses it with a *CircuitOpenError or a
// *HostBusyError), sends it, and holds the host's slot until the answer's
// body is closed.
func (g *HostGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	tk, err := g.admit(req.Context(), strings.ToLower(req.URL.Host))
	if err != nil {
		return nil, err
	}
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		tk.done(classify(req.Context(), err))
		return nil, err
	}
	resp.Body = &guardedBody{ReadCloser: resp.Body, tk: tk, ctx: req.Context()}
	return resp, nil
}

// classify says what a transport error tells about the host.
func classify(ctx context.Context, err error) outcome {
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return neutral
	}
	return failed
}

// admit checks the circuit, then takes a slot.
func (g *HostGuard) admit(ctx context.Context, host string) (*ticket, error) {
	g.mu.Lock()
	h := g.hosts[host]
	if h == nil {
		h = &hostState{}
		if g.limits.MaxInFlight > 0 {
			h.slots = make(chan struct{}, g.limits.MaxInFlight)
		}
		g.hosts[host] = h
	}
	now := g.clock.Now()
	probe := false
	if !h.openedAt.IsZero() {
		if h.probing || now.Sub(h.openedAt) < g.limits.Cooldown {
			g.mu.Unlock()
			return nil, &CircuitOpenError{Host: host, Failures: g.limits.FailureThreshold, Cooldown: g.limits.Cooldown}
		}
		h.probing, probe = true, true
	}
	stalled := h.inFlight > 0 && now.Sub(h.busySince) >= g.limits.QueueWait && now.Sub(h.lastDone) >= g.limits.QueueWait
	h.waiting++
	g.mu.Unlock()

	if err := g.takeSlot(ctx, host, h, stalled); err != nil {
		g.mu.Lock()
		h.waiting--
		if probe {
			h.probing = false
		}
		g.forget(host, h)
		g.mu.Unlock()
		return nil, err
	}
	g.mu.Lock()
	h.waiting--
	if h.inFlight == 0 {
		h.busySince = g.clock.Now()
	}
	h.inFlight++
	g.mu.Unlock()
	return &ticket{g: g, host: host, h: h, probe: probe}, nil
}

// takeSlot takes one of h's slots: at once if one is free, else after a
// wait bounded by QueueWait, or not at all when the host has stopped
// finishing requests (stalled): a caller never queues behind a dead host.
func (g *HostGuard) takeSlot(ctx context.Context, host string, h *hostState, stalled bool) error {
	if h.slots == nil {
		return nil
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	busy := &HostBusyError{Host: host, Limit: g.limits.MaxInFlight}
	if stalled {
		return busy
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-g.clock.After(g.limits.QueueWait):
		return busy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// done releases the slot and records the outcome, once.
func (t *ticket) done(o outcome) {
	t.once.Do(func() {
		g, h := t.g, t.h
		if h.slots != nil {
			<-h.slots
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		h.inFlight--
		now := g.clock.Now()
		if o != neutral {
			h.lastDone = now
		}
		g.record(h, o, t.probe, now)
		g.forget(t.host, h)
	})
}

// record moves the circuit: any answer closes it; a failure counts, and
// opens it at the threshold or when the probe fails; a late failure of a
// request sent before the circuit opened changes nothing.
func (g *HostGuard) record(h *hostState, o outcome, probe bool, now time.Time) {
	if probe {
		h.probing = false
	}
	switch o {
	case answered:
		h.failures, h.openedAt = 0, time.Time{}
	case failed:
		h.failures++
		if probe || (h.openedAt.IsZero() && h.failures >= g.limits.FailureThreshold) {
			h.openedAt = now
		}
	}
}

// forget drops an idle, healthy host's state, so the map holds only hosts
// in use or failing. Call with g.mu held.
func (g *HostGuard) forget(host string, h *hostState) {
	if h.inFlight == 0 && h.waiting == 0 && h.failures == 0 && h.openedAt.IsZero() && g.hosts[host] == h {
		delete(g.hosts, host)
	}
}

// guardedBody holds its request's slot until closed, and reports a body
// that fails mid-read (a server that sends headers, then stalls) as a
// failure.
type guardedBody struct {
	io.ReadCloser
	tk     *ticket
	ctx    context.Context
	mu     sync.Mutex
	readOK bool
	err    error
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.mu.Lock()
		if errors.Is(err, io.EOF) {
			b.readOK = true
		} else if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *guardedBody) Close() error {
	err := b.ReadCloser.Close()
	b.mu.Lock()
	o := answered
	if b.err != nil && !b.readOK {
		o = classify(b.ctx, b.err)
	}
	b.mu.Unlock()
	b.tk.done(o)
	return err
}
