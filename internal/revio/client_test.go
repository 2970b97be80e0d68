package revio_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/revio/reviotest"
)

const testHost = "acme.psarev.io"

func newFakeClock() *clocktesting.FakeClock {
	return clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// observation is one call of Config.Observe.
type observation struct {
	op   string
	code int
}

type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) observe(op string, code int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{op, code})
}

func (r *recorder) last() observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.obs) == 0 {
		return observation{}
	}
	return r.obs[len(r.obs)-1]
}

func newClient(t *testing.T, url string, mod func(*revio.Config)) *revio.Client {
	t.Helper()
	cfg := revio.Config{BaseURL: url, Host: testHost, AllowHTTP: true}
	if mod != nil {
		mod(&cfg)
	}
	c, err := revio.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// env is one simulator with one API key bound to testHost.
type env struct {
	srv   *reviotest.Server
	clock *clocktesting.FakeClock
	key   string
}

func newEnv(t *testing.T, opts ...reviotest.Option) *env {
	t.Helper()
	clock := newFakeClock()
	srv := reviotest.NewServer(append([]reviotest.Option{reviotest.WithClock(clock), reviotest.WithSeed(1)}, opts...)...)
	t.Cleanup(srv.Close)
	return &env{srv: srv, clock: clock, key: srv.GenerateAPIKey(testHost)}
}

func TestExchange(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *env) string // returns the key to exchange
		timeout time.Duration
		check   func(t *testing.T, e *env, tok *revio.Token, err error)
		wantObs observation
	}{
		{
			name:  "ok with iat and exp parsed",
			setup: func(e *env) string { return e.key },
			check: func(t *testing.T, e *env, tok *revio.Token, err error) {
				if err != nil {
					t.Fatalf("Exchange: %v", err)
				}
				now := e.clock.Now()
				if !tok.IssuedAt.Equal(now) || !tok.ExpiresAt.Equal(now.Add(time.Hour)) || !tok.HasExpiry() {
					t.Errorf("times = %v / %v, want %v / %v", tok.IssuedAt, tok.ExpiresAt, now, now.Add(time.Hour))
				}
				if !e.srv.ValidToken(tok.JWT, testHost) {
					t.Errorf("sim does not accept the token")
				}
			},
			wantObs: observation{"exchange", 200},
		},
		{
			name: "custom lifetime",
			setup: func(e *env) string {
				e.srv.SetTokenLifetime(30 * time.Second)
				return e.key
			},
			check: func(t *testing.T, e *env, tok *revio.Token, err error) {
				if err != nil {
					t.Fatalf("Exchange: %v", err)
				}
				if got := tok.ExpiresAt.Sub(tok.IssuedAt); got != 30*time.Second {
					t.Errorf("lifetime = %v, want 30s", got)
				}
			},
			wantObs: observation{"exchange", 200},
		},
		{
			name:    "unknown key is InvalidAPIKeyError",
			setup:   func(*env) string { return "rvk_unknown" },
			check:   wantInvalidKey(401),
			wantObs: observation{"exchange", 401},
		},
		{
			name: "revoked key is InvalidAPIKeyError",
			setup: func(e *env) string {
				e.srv.RevokeAPIKey(e.key)
				return e.key
			},
			check:   wantInvalidKey(401),
			wantObs: observation{"exchange", 401},
		},
		{
			name: "403 is InvalidAPIKeyError",
			setup: func(e *env) string {
				e.srv.Faults().FailNext(1, http.StatusForbidden)
				return e.key
			},
			check:   wantInvalidKey(403),
			wantObs: observation{"exchange", 403},
		},
		{
			name:    "empty key is refused without a call",
			setup:   func(*env) string { return "  " },
			check:   wantInvalidKey(0),
			wantObs: observation{},
		},
		{
			name: "429 with retry_after",
			setup: func(e *env) string {
				e.srv.Faults().SetRateLimit(1, time.Minute)
				if _, err := newClient(t, e.srv.URL, nil).Exchange(context.Background(), e.key); err != nil {
					t.Fatalf("first exchange: %v", err)
				}
				e.clock.Step(15 * time.Second)
				return e.key
			},
			check: func(t *testing.T, _ *env, _ *revio.Token, err error) {
				var rl *revio.RateLimitedError
				if !errors.As(err, &rl) {
					t.Fatalf("err = %v, want *RateLimitedError", err)
				}
				if rl.RetryAfter != 45*time.Second || rl.Code != "rate_limited" || rl.Operation != "exchange" {
					t.Errorf("got %+v, want RetryAfter 45s", rl)
				}
				if d, ok := revio.RetryAfter(err); !ok || d != 45*time.Second || !revio.IsRetryable(err) {
					t.Errorf("RetryAfter = %v %v, IsRetryable = %v", d, ok, revio.IsRetryable(err))
				}
			},
			wantObs: observation{"exchange", 429},
		},
		{
			name: "5xx is ServerError",
			setup: func(e *env) string {
				e.srv.Faults().FailNext(1, http.StatusBadGateway)
				return e.key
			},
			check: func(t *testing.T, _ *env, _ *revio.Token, err error) {
				var se *revio.ServerError
				if !errors.As(err, &se) || se.StatusCode != 502 || se.Code != "internal_error" || !revio.IsRetryable(err) {
					t.Fatalf("err = %v, want retryable *ServerError 502", err)
				}
			},
			wantObs: observation{"exchange", 502},
		},
		{
			name: "outage is ServerError 503",
			setup: func(e *env) string {
				e.srv.Faults().SetOutage(true)
				return e.key
			},
			check: func(t *testing.T, _ *env, _ *revio.Token, err error) {
				var se *revio.ServerError
				if !errors.As(err, &se) || se.StatusCode != 503 {
					t.Fatalf("err = %v, want *ServerError 503", err)
				}
			},
			wantObs: observation{"exchange", 503},
		},
		{
			name: "network error from a closed server",
			setup: func(e *env) string {
				e.srv.Close()
				return e.key
			},
			check:   wantNetwork(false),
			wantObs: observation{"exchange", 0},
		},
		{
			name: "timeout from latency",
			setup: func(e *env) string {
				e.srv.Faults().SetLatency(2 * time.Second)
				return e.key
			},
			timeout: 50 * time.Millisecond,
			check:   wantNetwork(true),
			wantObs: observation{"exchange", 0},
		},
		{
			name: "connection dropped after the token was issued",
			setup: func(e *env) string {
				e.srv.Faults().DropAfterCommit(1)
				return e.key
			},
			check: func(t *testing.T, e *env, tok *revio.Token, err error) {
				wantNetwork(false)(t, e, tok, err)
				if n := e.srv.Counts().CountStatus("exchange", 0); n != 1 {
					t.Errorf("dropped exchanges = %d, want 1", n)
				}
			},
			wantObs: observation{"exchange", 0},
		},
		{
			name: "token without exp is still returned",
			setup: func(e *env) string {
				e.srv.SetOmitExp(true)
				return e.key
			},
			check: func(t *testing.T, e *env, tok *revio.Token, err error) {
				if err != nil {
					t.Fatalf("Exchange: %v", err)
				}
				if tok.HasExpiry() || !tok.IssuedAt.Equal(e.clock.Now()) {
					t.Errorf("token = %v, want iat and no exp", tok)
				}
				e.clock.Step(48 * time.Hour)
				status, _, err := newClient(t, e.srv.URL, nil).Get(context.Background(), tok.JWT, "/billing/api/v1/contacts")
				if err != nil || status != 200 {
					t.Errorf("Get with a no-exp token = %d, %v; want 200", status, err)
				}
			},
			wantObs: observation{"exchange", 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			key := tt.setup(e)
			rec := &recorder{}
			c := newClient(t, e.srv.URL, func(c *revio.Config) {
				c.Observe = rec.observe
				c.Timeout = tt.timeout
			})
			tok, err := c.Exchange(context.Background(), key)
			if err != nil && tok != nil {
				t.Errorf("got a token with an error")
			}
			tt.check(t, e, tok, err)
			if got := rec.last(); got != tt.wantObs {
				t.Errorf("Observe got %+v, want %+v", got, tt.wantObs)
			}
		})
	}
}

func wantInvalidKey(status int) func(*testing.T, *env, *revio.Token, error) {
	return func(t *testing.T, _ *env, _ *revio.Token, err error) {
		t.Helper()
		var ik *revio.InvalidAPIKeyError
		if !errors.As(err, &ik) || ik.StatusCode != status {
			t.Fatalf("err = %v, want *InvalidAPIKeyError %d", err, status)
		}
		if revio.IsRetryable(err) {
			t.Errorf("an invalid key must not be retryable")
		}
	}
}

func wantNetwork(timeout bool) func(*testing.T, *env, *revio.Token, error) {
	return func(t *testing.T, _ *env, _ *revio.Token, err error) {
		t.Helper()
		var ne *revio.NetworkError
		if !errors.As(err, &ne) || ne.Timeout != timeout {
			t.Fatalf("err = %v, want *NetworkError with Timeout %v", err, timeout)
		}
		if !revio.IsRetryable(err) {
			t.Errorf("a network error must be retryable")
		}
	}
}

// TestExchangeOddAnswers covers answers the simulator never gives.
func TestExchangeOddAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		check  func(t *testing.T, tok *revio.Token, err error)
	}{
		{
			name:   "opaque non-JWT token is still returned",
			status: 200,
			body:   `{"data":{"token":"opaque-token-123"}}`,
			check: func(t *testing.T, tok *revio.Token, err error) {
				if err != nil || tok.JWT != "opaque-token-123" || tok.HasExpiry() || !tok.IssuedAt.IsZero() {
					t.Fatalf("got %v, %v; want the opaque token with zero times", tok, err)
				}
			},
		},
		{name: "2xx without data.token", status: 200, body: `{"data":{}}`, check: wantProtocol},
		{name: "2xx without data", status: 200, body: `{"token":"x"}`, check: wantProtocol},
		{name: "2xx with a non-string token", status: 200, body: `{"data":{"token":42}}`, check: wantProtocol},
		{name: "2xx with an empty token", status: 200, body: `{"data":{"token":""}}`, check: wantProtocol},
		{name: "2xx that is not JSON", status: 200, body: `<html>`, check: wantProtocol},
		{name: "2xx with a token that cannot be a header", status: 200, body: `{"data":{"token":"a b"}}`, check: wantProtocol},
		{name: "redirect is not followed", status: 307, header: map[string]string{"Location": "https://evil.example/"}, check: wantProtocol},
		{name: "oversized body", status: 200, body: `{"data":{"token":"` + strings.Repeat("a", 1<<20) + `"}}`, check: wantProtocol},
		{
			name:   "429 with Retry-After header only",
			status: 429,
			header: map[string]string{"Retry-After": "7"},
			check: func(t *testing.T, _ *revio.Token, err error) {
				if d, ok := revio.RetryAfter(err); !ok || d != 7*time.Second {
					t.Fatalf("RetryAfter = %v, %v; want 7s (err %v)", d, ok, err)
				}
			},
		},
		{
			name:   "429 without any delay defaults to 60s",
			status: 429,
			body:   `not json`,
			check: func(t *testing.T, _ *revio.Token, err error) {
				if d, ok := revio.RetryAfter(err); !ok || d != 60*time.Second {
					t.Fatalf("RetryAfter = %v, %v; want 60s (err %v)", d, ok, err)
				}
			},
		},
		{
			name:   "absurd retry_after is capped",
			status: 429,
			body:   `{"retry_after":1e30}`,
			check: func(t *testing.T, _ *revio.Token, err error) {
				if d, _ := revio.RetryAfter(err); d != time.Hour {
					t.Fatalf("RetryAfter = %v, want the 1h cap", d)
				}
			},
		},
		{
			name:   "400 is an invalid key",
			status: 400,
			body:   `{"error":"invalid_request","message":"bad"}`,
			check: func(t *testing.T, _ *revio.Token, err error) {
				var ik *revio.InvalidAPIKeyError
				if !errors.As(err, &ik) || ik.StatusCode != 400 || ik.Code != "invalid_request" || ik.Message != "bad" {
					t.Fatalf("err = %#v, want *InvalidAPIKeyError 400", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			tok, err := newClient(t, srv.URL, nil).Exchange(context.Background(), "rvk_key")
			tt.check(t, tok, err)
		})
	}
}

func wantProtocol(t *testing.T, _ *revio.Token, err error) {
	t.Helper()
	var pe *revio.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}
	if revio.IsRetryable(err) {
		t.Errorf("a protocol error must not be retryable")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     revio.Config
		wantErr bool
		insec   bool
	}{
		{name: "default base URL", cfg: revio.Config{Host: testHost}},
		{name: "https", cfg: revio.Config{BaseURL: "https://api.psarev.io/", Host: testHost}},
		{name: "http refused", cfg: revio.Config{BaseURL: "http://127.0.0.1:1"}, wantErr: true, insec: true},
		{name: "http allowed", cfg: revio.Config{BaseURL: "http://127.0.0.1:1", AllowHTTP: true}},
		{name: "not a URL", cfg: revio.Config{BaseURL: "api.psarev.io"}, wantErr: true},
		{name: "other scheme", cfg: revio.Config{BaseURL: "ftp://api.psarev.io", AllowHTTP: true}, wantErr: true},
		{name: "credentials in URL", cfg: revio.Config{BaseURL: "https://u:p@api.psarev.io"}, wantErr: true},
		{name: "query in URL", cfg: revio.Config{BaseURL: "https://api.psarev.io/?x=1"}, wantErr: true},
		{name: "host with scheme", cfg: revio.Config{Host: "https://acme.psarev.io"}, wantErr: true},
		{name: "host with path", cfg: revio.Config{Host: "acme.psarev.io/x"}, wantErr: true},
		{name: "host with port", cfg: revio.Config{Host: "acme.psarev.io:8443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := revio.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				var ie *revio.InsecureURLError
				if got := errors.As(err, &ie) && errors.Is(err, revio.ErrInsecureURL); got != tt.insec {
					t.Errorf("insecure error = %v, want %v (%v)", got, tt.insec, err)
				}
				return
			}
			if tt.cfg.BaseURL == "" && c.BaseURL() != revio.DefaultBaseURL {
				t.Errorf("BaseURL = %q, want the default", c.BaseURL())
			}
		})
	}
}

func TestTLS(t *testing.T) {
	srv := reviotest.NewTLSServer()
	defer srv.Close()
	key := srv.GenerateAPIKey(testHost)
	c := newClient(t, srv.URL, func(c *revio.Config) { c.AllowHTTP = false; c.HTTPClient = srv.Client() })
	tok, err := c.Exchange(context.Background(), key)
	if err != nil {
		t.Fatalf("Exchange over TLS: %v", err)
	}
	if status, _, err := c.Get(context.Background(), tok.JWT, "/billing/api/v1/customers"); err != nil || status != 200 {
		t.Fatalf("Get over TLS = %d, %v", status, err)
	}
}

func TestGet(t *testing.T) {
	other := reviotest.New(reviotest.WithSigningKey([]byte("other")))
	foreign := issue(t, other, other.GenerateAPIKey(testHost))
	tests := []struct {
		name       string
		host       string
		path       string
		setup      func(e *env, tok string) string // may change the sim; returns the token to send
		wantStatus int
		check      func(t *testing.T, body []byte, err error)
		wantObs    observation
	}{
		{
			name: "contacts with a valid token", path: "/billing/api/v1/contacts", wantStatus: 200,
			check: func(t *testing.T, body []byte, err error) {
				var out struct {
					Data []reviotest.Contact `json:"data"`
				}
				if err != nil || json.Unmarshal(body, &out) != nil || len(out.Data) != len(reviotest.Contacts()) {
					t.Fatalf("err %v, body %s", err, body)
				}
			},
			wantObs: observation{"call", 200},
		},
		{
			name: "customer by id", path: "/billing/api/v1/customers/1002", wantStatus: 200,
			check: func(t *testing.T, body []byte, err error) {
				var out struct {
					Data reviotest.Customer `json:"data"`
				}
				if err != nil || json.Unmarshal(body, &out) != nil || out.Data.Name != "Globex Inc" {
					t.Fatalf("err %v, body %s", err, body)
				}
			},
			wantObs: observation{"call", 200},
		},
		{
			name: "unknown id is a 404 without error", path: "/billing/api/v1/contacts/999", wantStatus: 404,
			check:   wantNoErr,
			wantObs: observation{"call", 404},
		},
		{
			name: "wrong host is unauthorized", host: "other.psarev.io", path: "/billing/api/v1/contacts", wantStatus: 401,
			check:   wantUnauthorized(401),
			wantObs: observation{"call", 401},
		},
		{
			name: "expired token is unauthorized", path: "/billing/api/v1/contacts", wantStatus: 401,
			setup: func(e *env, tok string) string {
				e.clock.Step(time.Hour)
				return tok
			},
			check:   wantUnauthorized(401),
			wantObs: observation{"call", 401},
		},
		{
			name: "token one second before expiry is valid", path: "/billing/api/v1/contacts", wantStatus: 200,
			setup: func(e *env, tok string) string {
				e.clock.Step(time.Hour - time.Second)
				return tok
			},
			check:   wantNoErr,
			wantObs: observation{"call", 200},
		},
		{
			name: "forged signature is unauthorized", path: "/billing/api/v1/contacts", wantStatus: 401,
			setup: func(_ *env, tok string) string {
				return tok[:strings.LastIndexByte(tok, '.')+1] + "AAAA"
			},
			check:   wantUnauthorized(401),
			wantObs: observation{"call", 401},
		},
		{
			name: "token of another simulator is unauthorized", path: "/billing/api/v1/contacts", wantStatus: 401,
			setup:   func(*env, string) string { return foreign },
			check:   wantUnauthorized(401),
			wantObs: observation{"call", 401},
		},
		{
			name: "empty token is refused without a call", path: "/billing/api/v1/contacts", wantStatus: 0,
			setup:   func(*env, string) string { return "" },
			check:   wantUnauthorized(0),
			wantObs: observation{},
		},
		{
			name: "429 on a call", path: "/billing/api/v1/contacts", wantStatus: 429,
			setup: func(e *env, tok string) string {
				e.srv.Faults().FailNext(1, http.StatusTooManyRequests)
				return tok
			},
			check: func(t *testing.T, _ []byte, err error) {
				var rl *revio.RateLimitedError
				if !errors.As(err, &rl) || rl.Operation != "call" || rl.RetryAfter != time.Minute {
					t.Fatalf("err = %v, want *RateLimitedError for call", err)
				}
			},
			wantObs: observation{"call", 429},
		},
		{
			name: "500 on a call", path: "/billing/api/v1/customers", wantStatus: 500,
			setup: func(e *env, tok string) string {
				e.srv.Faults().FailNext(1, 0)
				return tok
			},
			check: func(t *testing.T, _ []byte, err error) {
				var se *revio.ServerError
				if !errors.As(err, &se) || se.Operation != "call" || se.StatusCode != 500 {
					t.Fatalf("err = %v, want *ServerError 500", err)
				}
			},
			wantObs: observation{"call", 500},
		},
		{
			name: "network error on a call", path: "/billing/api/v1/customers", wantStatus: 0,
			setup: func(e *env, tok string) string {
				e.srv.Close()
				return tok
			},
			check: func(t *testing.T, _ []byte, err error) {
				var ne *revio.NetworkError
				if !errors.As(err, &ne) || ne.Operation != "call" {
					t.Fatalf("err = %v, want *NetworkError", err)
				}
			},
			wantObs: observation{"call", 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tok := issue(t, e.srv.Sim, e.key)
			if tt.setup != nil {
				tok = tt.setup(e, tok)
			}
			rec := &recorder{}
			c := newClient(t, e.srv.URL, func(c *revio.Config) {
				c.Observe = rec.observe
				if tt.host != "" {
					c.Host = tt.host
				}
			})
			status, body, err := c.Get(context.Background(), tok, tt.path)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d", status, tt.wantStatus)
			}
			tt.check(t, body, err)
			if got := rec.last(); got != tt.wantObs {
				t.Errorf("Observe got %+v, want %+v", got, tt.wantObs)
			}
		})
	}
}

func TestGetRefusesBadInput(t *testing.T) {
	noHost, err := revio.New(revio.Config{BaseURL: "http://127.0.0.1:1", AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := noHost.Get(context.Background(), "tok", "/billing/api/v1/contacts"); err == nil {
		t.Errorf("Get without Host succeeded")
	}
	c := newClient(t, "http://127.0.0.1:1", nil)
	for _, p := range []string{"", "billing", "//evil.example/x", "http://evil.example/", "/a b"} {
		if _, _, err := c.Get(context.Background(), "tok", p); err == nil {
			t.Errorf("Get(%q) succeeded", p)
		}
	}
}

// issue exchanges key on sim with a raw request and returns the JWT.
func issue(t *testing.T, sim http.Handler, key string) string {
	t.Helper()
	rr := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, reviotest.ExchangePath, strings.NewReader(`{"apiKey":"`+key+`"}`))
	req.Header.Set("Content-Type", "application/json")
	sim.ServeHTTP(rr, req)
	var out struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if rr.Code != 200 || json.Unmarshal(rr.Body.Bytes(), &out) != nil || out.Data.Token == "" {
		t.Fatalf("exchange = %d %s", rr.Code, rr.Body)
	}
	return out.Data.Token
}

func wantNoErr(t *testing.T, _ []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("err = %v", err)
	}
}

func wantUnauthorized(status int) func(*testing.T, []byte, error) {
	return func(t *testing.T, _ []byte, err error) {
		t.Helper()
		var ue *revio.UnauthorizedError
		if !errors.As(err, &ue) || ue.StatusCode != status {
			t.Fatalf("err = %v, want *UnauthorizedError %d", err, status)
		}
		if revio.IsRetryable(err) {
			t.Errorf("unauthorized must not be retryable as is")
		}
	}
}
