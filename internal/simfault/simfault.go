// Package simfault is the fault injection and call counting shared by the
// in-memory API simulators (reevittest, reviotest) and cmd/apisim.
//
// A simulator calls Injector.Before at the top of every request, and
// Injector.TakeDrop after it has committed a mutation; it records the outcome
// of every call in a Counter so tests can assert how many calls were made.
package simfault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// defaultFailStatus is used when a failure is requested with status 0.
const defaultFailStatus = http.StatusInternalServerError

// defaultRateWindow is used when a rate limit is set without a window.
const defaultRateWindow = time.Minute

// defaultSeed makes a zero-value Injector's failure rate reproducible.
const defaultSeed = 1

// Injector holds fault settings. It is safe for concurrent use and its zero
// value injects nothing.
type Injector struct {
	mu sync.Mutex

	failNext       int
	failNextStatus int

	failureRate   float64
	failureStatus int
	rng           *rand.Rand

	latency         time.Duration
	dropAfterCommit int
	outage          bool

	rateLimit   int
	rateWindow  time.Duration
	windowStart time.Time
	windowCount int
}

// FailNext makes the next n requests answer status (500 when status is 0).
func (i *Injector) FailNext(n, status int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failNext = max(n, 0)
	i.failNextStatus = status
}

// SetFailureRate makes each request fail with probability p, answering status
// (500 when status is 0). p <= 0 disables it.
func (i *Injector) SetFailureRate(p float64, status int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failureRate = p
	i.failureStatus = status
}

// Seed resets the random source used by the failure rate, so a run can be
// reproduced. A zero-value Injector behaves as if seeded with 1.
func (i *Injector) Seed(seed uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// SetLatency adds d (real time) before each request is handled.
func (i *Injector) SetLatency(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.latency = max(d, 0)
}

// DropAfterCommit makes the next n mutations commit their effect and then
// close the connection without a reply, as a crash between commit and answer
// would.
func (i *Injector) DropAfterCommit(n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.dropAfterCommit = max(n, 0)
}

// SetRateLimit allows limit requests per fixed window (one minute when window
// is 0); further requests answer 429 until the window ends. limit 0 disables it.
func (i *Injector) SetRateLimit(limit int, window time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.setRateLimitLocked(limit, window)
}

func (i *Injector) setRateLimitLocked(limit int, window time.Duration) {
	i.rateLimit = max(limit, 0)
	i.rateWindow = max(window, 0)
	i.windowStart = time.Time{}
	i.windowCount = 0
}

// SetOutage makes every request answer 503 while on.
func (i *Injector) SetOutage(on bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.outage = on
}

// Reset removes every fault. The random source keeps its state.
func (i *Injector) Reset() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failNext, i.failNextStatus = 0, 0
	i.failureRate, i.failureStatus = 0, 0
	i.latency = 0
	i.dropAfterCommit = 0
	i.outage = false
	i.setRateLimitLocked(0, 0)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("150ms", "1m"). When read, a JSON number is taken as nanoseconds,
// the way encoding/json writes a time.Duration.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string, a number of nanoseconds, or null.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("simfault: invalid duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("simfault: invalid duration %s: want a string like \"150ms\" or integer nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// Settings is a JSON-friendly snapshot of an Injector's configuration, used
// by cmd/apisim's control endpoint. Apply replaces every setting with it.
type Settings struct {
	// FailNext is how many of the next requests fail with FailStatus.
	FailNext int `json:"failNext"`
	// FailStatus is the status of FailNext failures, and of FailureRate
	// failures when FailureStatus is 0. 0 means 500.
	FailStatus int `json:"failStatus"`
	// FailureRate is the probability in [0,1] that a request fails.
	FailureRate float64 `json:"failureRate"`
	// FailureStatus is the status of FailureRate failures; 0 means FailStatus.
	FailureStatus int `json:"failureStatus,omitempty"`
	// Latency is added before each request.
	Latency Duration `json:"latency"`
	// DropAfterCommit is how many of the next mutations commit and then drop
	// the connection without a reply.
	DropAfterCommit int `json:"dropAfterCommit"`
	// RateLimit is the number of requests allowed per RateWindow; 0 disables.
	RateLimit int `json:"rateLimit"`
	// RateWindow is the fixed rate-limit window; 0 means one minute.
	RateWindow Duration `json:"rateWindow"`
	// Outage makes every request answer 503.
	Outage bool `json:"outage"`
}

// Apply replaces every setting with s. The rate-limit window restarts.
func (i *Injector) Apply(s Settings) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failNext = max(s.FailNext, 0)
	i.failNextStatus = s.FailStatus
	i.failureRate = s.FailureRate
	i.failureStatus = s.FailureStatus
	if i.failureStatus == 0 {
		i.failureStatus = s.FailStatus
	}
	i.latency = max(time.Duration(s.Latency), 0)
	i.dropAfterCommit = max(s.DropAfterCommit, 0)
	i.outage = s.Outage
	i.setRateLimitLocked(s.RateLimit, time.Duration(s.RateWindow))
}

// Settings returns a snapshot of the current configuration.
func (i *Injector) Settings() Settings {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := Settings{
		FailNext:        i.failNext,
		FailStatus:      i.failNextStatus,
		FailureRate:     i.failureRate,
		FailureStatus:   i.failureStatus,
		Latency:         Duration(i.latency),
		DropAfterCommit: i.dropAfterCommit,
		RateLimit:       i.rateLimit,
		RateWindow:      Duration(i.rateWindow),
		Outage:          i.outage,
	}
	if s.FailStatus == 0 {
		s.FailStatus = s.FailureStatus
	}
	if s.FailureStatus == s.FailStatus {
		s.FailureStatus = 0
	}
	return s
}

// Before is called by a simulator at the top of each request. It sleeps the
// latency (returning early if r's context ends; to notice a caller hanging
// up it first buffers the request body, up to 1 MiB, replacing r.Body with
// an equivalent reader), then, if a fault applies,
// writes the error with writeErr and returns true; the simulator must then
// stop handling the request. Faults are checked in this order: outage (503),
// FailNext, rate limit (429, retryAfter > 0 in whole seconds, rounded up),
// failure rate. Only requests that reach the rate limiter count against it.
// now is the simulator's clock, used for the rate-limit window.
func (i *Injector) Before(w http.ResponseWriter, r *http.Request, now time.Time, writeErr func(w http.ResponseWriter, status int, retryAfter int)) bool {
	i.mu.Lock()
	latency := i.latency
	i.mu.Unlock()
	if latency > 0 {
		bufferBody(r)
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			// The caller has gone; answer something so the handler ends.
			writeErr(w, http.StatusServiceUnavailable, 0)
			return true
		}
	}

	status, retryAfter := i.decide(now)
	if status == 0 {
		return false
	}
	writeErr(w, status, retryAfter)
	return true
}

// maxBufferedBody bounds how much of a request body Before buffers.
const maxBufferedBody = 1 << 20

// bufferBody reads r's body into memory and puts an equivalent reader back.
// net/http only notices that a client hung up (and cancels r.Context()) once
// the request body has been read to the end, so without this a request with
// a body would sleep out its whole latency after the caller gave up.
func bufferBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody))
	rest := io.Reader(r.Body)
	if err != nil {
		rest = errReader{err}
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), rest), r.Body}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// decide returns the status of the fault that applies now, or 0.
func (i *Injector) decide(now time.Time) (status, retryAfter int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.outage {
		return http.StatusServiceUnavailable, 0
	}
	if i.failNext > 0 {
		i.failNext--
		return orDefault(i.failNextStatus), 0
	}
	if i.rateLimit > 0 {
		window := i.rateWindow
		if window <= 0 {
			window = defaultRateWindow
		}
		end := i.windowStart.Add(window)
		if i.windowStart.IsZero() || !now.Before(end) {
			i.windowStart, i.windowCount = now, 0
			end = now.Add(window)
		}
		if i.windowCount >= i.rateLimit {
			secs := int(math.Ceil(end.Sub(now).Seconds()))
			return http.StatusTooManyRequests, max(secs, 1)
		}
		i.windowCount++
	}
	if i.failureRate > 0 {
		if i.rng == nil {
			i.rng = rand.New(rand.NewPCG(defaultSeed, defaultSeed^0x9e3779b97f4a7c15))
		}
		if i.rng.Float64() < i.failureRate {
			return orDefault(i.failureStatus), 0
		}
	}
	return 0, 0
}

func orDefault(status int) int {
	if status == 0 {
		return defaultFailStatus
	}
	return status
}

// TakeDrop reports whether a mutation that has just committed must be dropped
// (answered by closing the connection), consuming one pending drop.
func (i *Injector) TakeDrop() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.dropAfterCommit > 0 {
		i.dropAfterCommit--
		return true
	}
	return false
}

// Drop closes the connection under w without writing a response. It hijacks
// the connection when it can and otherwise aborts the handler with
// http.ErrAbortHandler (which the server recovers from silently), so callers
// must return right after it.
//
// Note that net/http's Transport transparently resends a request carrying an
// Idempotency-Key header when a reused keep-alive connection closes before
// the answer, so a client may never see the drop; a fresh connection does.
func Drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// Counter counts calls by endpoint name and HTTP status (status 0 means the
// connection was dropped). It is safe for concurrent use; its zero value is
// ready.
type Counter struct {
	mu     sync.Mutex
	counts map[string]map[int]int
}

// Inc records one call to endpoint answered with status.
func (c *Counter) Inc(endpoint string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[string]map[int]int)
	}
	m := c.counts[endpoint]
	if m == nil {
		m = make(map[int]int)
		c.counts[endpoint] = m
	}
	m[status]++
}

// Count returns the number of calls to endpoint, whatever their status.
func (c *Counter) Count(endpoint string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts[endpoint] {
		n += v
	}
	return n
}

// CountStatus returns the number of calls to endpoint answered with status.
func (c *Counter) CountStatus(endpoint string, status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[endpoint][status]
}

// Snapshot returns a copy of all counts: endpoint -> status -> calls.
func (c *Counter) Snapshot() map[string]map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[int]int, len(c.counts))
	for ep, m := range c.counts {
		cp := make(map[int]int, len(m))
		for s, n := range m {
			cp[s] = n
		}
		out[ep] = cp
	}
	return out
}

// Reset forgets all counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = nil
}
