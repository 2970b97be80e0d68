package reevit_test

import (
	"net/http"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

const testOrg = "org_123"

var adminScopes = []string{"api_keys:read", "api_keys:write", "payments:read", "payments:write"}

func newFakeClock() *clocktesting.FakeClock {
	return clocktesting.NewFakeClock(time.Date(2025, 2, 10, 10, 0, 0, 0, time.UTC))
}

// env is a simulator with one org and an admin key.
type env struct {
	srv   *reevittest.Server
	clock *clocktesting.FakeClock
	admin string
}

func newEnv(t *testing.T, opts ...reevittest.Option) *env {
	t.Helper()
	clk := newFakeClock()
	srv := reevittest.NewServer(append([]reevittest.Option{reevittest.WithClock(clk), reevittest.WithSeed(42)}, opts...)...)
	t.Cleanup(srv.Close)
	_, admin := srv.SeedKey(testOrg, "live", "admin", adminScopes)
	return &env{srv: srv, clock: clk, admin: admin}
}

// client returns a client for the simulator; mutate adjusts its Config.
func (e *env) client(t *testing.T, mutate ...func(*reevit.Config)) *reevit.Client {
	t.Helper()
	cfg := reevit.Config{
		BaseURL:    e.srv.URL,
		OrgID:      testOrg,
		AdminKey:   e.admin,
		AllowHTTP:  true,
		Timeout:    5 * time.Second,
		HTTPClient: e.srv.Client(),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := reevit.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// freshConnections makes every request use a new connection, so a dropped
// connection is seen by the client instead of being retried transparently
// by net/http (which resends requests carrying an Idempotency-Key when a
// reused connection closes).
func freshConnections(cfg *reevit.Config) {
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}
