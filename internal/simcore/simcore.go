// Package simcore is the skeleton the API simulators (reevittest,
// reviotest) share: the clock, the seeded randomness, the fault injector and
// call counts every simulator holds, the httptest listener that serves one,
// and the JSON answers and injected faults in the {"error", "message"} shape
// both APIs use. Each simulator keeps its own API and state.
package simcore

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/keywarden/keywarden/internal/simfault"
)

// Clock tells a simulator the time; k8s.io/utils/clock fakes satisfy it.
type Clock interface{ Now() time.Time }

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now returns f().
func (f ClockFunc) Now() time.Time { return f() }

// Instruments are a simulator's fault injector and call counts. Embed them:
// the simulator then has Faults and Counts. The zero value is ready.
type Instruments struct {
	faults simfault.Injector
	counts simfault.Counter
}

// Faults returns the fault injector consulted at the top of every request.
func (i *Instruments) Faults() *simfault.Injector { return &i.faults }

// Counts returns the per-endpoint call counts; status 0 counts dropped
// connections.
func (i *Instruments) Counts() *simfault.Counter { return &i.counts }

// Base is a simulator's clock and randomness. Keep it in an unexported field
// and call Init before use. Rand and Uint32 are called under the
// simulator's own lock; the rest is safe for concurrent use once options
// are applied.
type Base struct {
	clock Clock
	rng   *rand.Rand
}

// Init sets the real clock and a random seed; options applied after it may
// change both.
func (b *Base) Init() {
	b.clock = ClockFunc(time.Now)
	b.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
}

// SetClock sets the clock (nil keeps the current one).
func (b *Base) SetClock(c Clock) {
	if c != nil {
		b.clock = c
	}
}

// Seed makes the generated values, and the failure-rate faults of in,
// reproducible.
func (b *Base) Seed(seed int64, in *Instruments) {
	b.rng = rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x5eed))
	in.faults.Seed(uint64(seed))
}

// Now is the clock's time.
func (b *Base) Now() time.Time { return b.clock.Now() }

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

// Rand returns n random lowercase letters and digits. The caller serialises
// calls (the generator is not safe for concurrent use).
func (b *Base) Rand(n int) string {
	out := make([]byte, n)
	for i := range out {
		out[i] = alnum[b.rng.IntN(len(alnum))]
	}
	return string(out)
}

// Uint32 returns a random number; the caller serialises calls, as for Rand.
func (b *Base) Uint32() uint32 { return b.rng.Uint32() }

// Listener serves a simulator on a local address, like httptest.Server.
type Listener struct {
	// URL is the base URL to give a client, e.g. "http://127.0.0.1:41234".
	URL string

	srv *httptest.Server
}

// Serve serves h on a local address, over HTTPS when tls is set (use Client
// for a client that trusts it), else over plain HTTP (clients need
// AllowHTTP).
func Serve(h http.Handler, tls bool) *Listener {
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	return &Listener{URL: srv.URL, srv: srv}
}

// Close shuts the server down and waits for outstanding requests.
func (l *Listener) Close() { l.srv.Close() }

// CloseClientConnections closes every open connection to the server.
func (l *Listener) CloseClientConnections() { l.srv.CloseClientConnections() }

// Client returns an HTTP client configured for the server (trusting its
// certificate when it uses TLS).
func (l *Listener) Client() *http.Client { return l.srv.Client() }

// ErrorBody is the error answer both APIs document:
// {"error": "rate_limited", "message": "Too many requests", "retry_after": 60}.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// RetryAfter is set on 429 answers only.
	RetryAfter int `json:"retry_after,omitempty"`
}

// EncodeJSON encodes an answer; the simulators only encode values that
// cannot fail, so a failure is a bug and panics.
func EncodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(errors.Join(errors.New("simcore: encode response"), err))
	}
	return b
}

// WriteRaw writes a JSON answer already encoded.
func WriteRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteJSON encodes v and writes it.
func WriteJSON(w http.ResponseWriter, status int, v any) { WriteRaw(w, status, EncodeJSON(v)) }

// WriteFault writes an injected failure: a 429 says "rate_limited" with
// retry_after (60 when retryAfter <= 0) in the body and the Retry-After
// header; a status in known answers its body; any other 404, 5xx or 4xx
// answers "not_found", "internal_error" or "bad_request".
func WriteFault(w http.ResponseWriter, status, retryAfter int, known map[int]ErrorBody) {
	body, ok := known[status]
	switch {
	case status == http.StatusTooManyRequests:
		if retryAfter <= 0 {
			retryAfter = 60
		}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		body = ErrorBody{Error: "rate_limited", Message: "Too many requests", RetryAfter: retryAfter}
	case ok:
	case status == http.StatusNotFound:
		body = ErrorBody{Error: "not_found", Message: "Not found"}
	case status >= 500:
		body = ErrorBody{Error: "internal_error", Message: "injected fault: " + http.StatusText(status)}
	default:
		body = ErrorBody{Error: "bad_request", Message: "injected fault: " + http.StatusText(status)}
	}
	WriteJSON(w, status, body)
}
