package reevit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

func TestCreateListRevoke(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()

	k, err := c.CreateKey(ctx, "Backend Production", []string{"payments:read", "payments:write"}, "key-create-001")
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if !strings.HasPrefix(k.Key, "pfk_live_") || len(k.Key) != len("pfk_live_")+32 || !strings.HasPrefix(k.ID, "key_") {
		t.Fatalf("unexpected key shape: id %q, key length %d", k.ID, len(k.Key))
	}
	if k.Name != "Backend Production" || !slices.Equal(k.Scopes, []string{"payments:read", "payments:write"}) ||
		!k.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("unexpected key %+v", k)
	}
	if id, ok := e.srv.Authenticate(testOrg, k.Key); !ok || id != k.ID {
		t.Fatal("created key does not authenticate")
	}

	keys, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(keys) != 2 || keys[1].ID != k.ID || keys[1].Key != "" || keys[1].Prefix != k.Key[:13] {
		t.Fatalf("ListKeys = %+v", keys)
	}

	if err := c.RevokeKey(ctx, k.ID, "revoke-"+k.ID); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if _, ok := e.srv.Authenticate(testOrg, k.Key); ok {
		t.Fatal("revoked key still authenticates")
	}
	keys, err = c.ListKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("after revoke ListKeys = %+v, %v", keys, err)
	}
}

func TestTestEnvironmentKeys(t *testing.T) {
	e := newEnv(t)
	_, testAdmin := e.srv.SeedKey(testOrg, "test", "sandbox admin", adminScopes)
	c := e.client(t, func(cfg *reevit.Config) { cfg.AdminKey = testAdmin })
	k, err := c.CreateKey(context.Background(), "sandbox", []string{"payments:read"}, "idem-test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Key, "pfk_test_") {
		t.Fatalf("a test admin key should create pfk_test_ keys, got prefix %q", k.Key[:9])
	}
}

// call runs one client operation.
type call func(ctx context.Context, c *reevit.Client) error

func create(name string, scopes []string, idem string) call {
	return func(ctx context.Context, c *reevit.Client) error {
		_, err := c.CreateKey(ctx, name, scopes, idem)
		return err
	}
}

func list() call {
	return func(ctx context.Context, c *reevit.Client) error {
		_, err := c.ListKeys(ctx)
		return err
	}
}

func revoke(id, idem string) call {
	return func(ctx context.Context, c *reevit.Client) error { return c.RevokeKey(ctx, id, idem) }
}

func TestErrors(t *testing.T) {
	type check func(t *testing.T, err error)

	asA := func(target any, f func()) check {
		return func(t *testing.T, err error) {
			t.Helper()
			if !errors.As(err, target) {
				t.Fatalf("error %T (%v) is not %T", err, err, target)
			}
			if f != nil {
				f()
			}
		}
	}

	var (
		unauth    *reevit.UnauthorizedError
		forbidden *reevit.ForbiddenError
		limited   *reevit.RateLimitedError
		notFound  *reevit.NotFoundError
		server    *reevit.ServerError
		bad       *reevit.BadRequestError
		network   *reevit.NetworkError
	)

	tests := []struct {
		name      string
		setup     func(t *testing.T, e *env) // may change e.admin before the client is built
		config    func(*reevit.Config)
		call      call
		check     check
		retryable bool
		status    int // the error's StatusCode
		op        string
	}{
		{
			name:   "401 unknown admin key",
			setup:  func(t *testing.T, e *env) { e.admin = "pfk_live_thisisnotarealkeythisisnotreal" },
			call:   list(),
			check:  asA(&unauth, nil),
			status: 401, op: "list",
		},
		{
			name: "401 revoked admin key",
			setup: func(t *testing.T, e *env) {
				id, _ := e.srv.Authenticate(testOrg, e.admin)
				e.srv.Revoke(testOrg, id)
			},
			call:   create("x", []string{"payments:read"}, "i1"),
			check:  asA(&unauth, nil),
			status: 401, op: "create",
		},
		{
			name:   "401 wrong org",
			config: func(c *reevit.Config) { c.OrgID = "org_other" },
			call:   revoke("key_x", "i1"),
			check:  asA(&unauth, nil),
			status: 401, op: "revoke",
		},
		{
			name: "403 list without api_keys:read",
			setup: func(t *testing.T, e *env) {
				_, e.admin = e.srv.SeedKey(testOrg, "live", "writer", []string{"api_keys:write"})
			},
			call: list(),
			check: asA(&forbidden, func() {
				if forbidden.Scope != "api_keys:read" {
					t.Errorf("Scope = %q", forbidden.Scope)
				}
			}),
			status: 403, op: "list",
		},
		{
			name: "403 create without api_keys:write",
			setup: func(t *testing.T, e *env) {
				_, e.admin = e.srv.SeedKey(testOrg, "live", "reader", []string{"api_keys:read"})
			},
			call: create("x", []string{"payments:read"}, "i1"),
			check: asA(&forbidden, func() {
				if forbidden.Scope != "api_keys:write" {
					t.Errorf("Scope = %q", forbidden.Scope)
				}
			}),
			status: 403, op: "create",
		},
		{
			name: "403 scope escalation names the scope",
			call: create("x", []string{"payments:read", "webhooks:write"}, "i1"),
			check: asA(&forbidden, func() {
				if forbidden.Scope != "webhooks:write" {
					t.Errorf("Scope = %q", forbidden.Scope)
				}
			}),
			status: 403, op: "create",
		},
		{
			name:  "403 without a scope in the message",
			setup: func(t *testing.T, e *env) { e.srv.Faults().FailNext(1, 403) },
			call:  list(),
			check: asA(&forbidden, func() {
				if forbidden.Scope != "" {
					t.Errorf("Scope = %q, want empty", forbidden.Scope)
				}
			}),
			status: 403, op: "list",
		},
		{
			name: "429 rate limit window",
			setup: func(t *testing.T, e *env) {
				e.srv.Faults().SetRateLimit(1, 30*time.Second)
				e.clock.Step(0)
				if _, err := e.client(t).ListKeys(context.Background()); err != nil {
					t.Fatal(err)
				}
				e.clock.Step(10 * time.Second)
			},
			call: list(),
			check: asA(&limited, func() {
				if limited.RetryAfter != 20*time.Second {
					t.Errorf("RetryAfter = %v, want 20s", limited.RetryAfter)
				}
			}),
			retryable: true, status: 429, op: "list",
		},
		{
			name:  "429 injected answers the documented retry_after 60",
			setup: func(t *testing.T, e *env) { e.srv.Faults().FailNext(1, 429) },
			call:  create("x", []string{"payments:read"}, "i1"),
			check: asA(&limited, func() {
				if limited.RetryAfter != 60*time.Second {
					t.Errorf("RetryAfter = %v", limited.RetryAfter)
				}
			}),
			retryable: true, status: 429, op: "create",
		},
		{
			name:   "404 on create",
			setup:  func(t *testing.T, e *env) { e.srv.Faults().FailNext(1, 404) },
			call:   create("x", []string{"payments:read"}, "i1"),
			check:  asA(&notFound, nil),
			status: 404, op: "create",
		},
		{
			name:   "404 on list",
			setup:  func(t *testing.T, e *env) { e.srv.Faults().FailNext(1, 404) },
			call:   list(),
			check:  asA(&notFound, nil),
			status: 404, op: "list",
		},
		{
			name:      "500",
			setup:     func(t *testing.T, e *env) { e.srv.Faults().FailNext(1, 500) },
			call:      revoke("key_x", "i1"),
			check:     asA(&server, nil),
			retryable: true, status: 500, op: "revoke",
		},
		{
			name:      "503 outage",
			setup:     func(t *testing.T, e *env) { e.srv.Faults().SetOutage(true) },
			call:      list(),
			check:     asA(&server, nil),
			retryable: true, status: 503, op: "list",
		},
		{
			name: "400 unknown scope",
			call: create("x", []string{"payments:fly"}, "i1"),
			check: asA(&bad, func() {
				if bad.Code != "bad_request" || !strings.Contains(bad.Message, "payments:fly") {
					t.Errorf("BadRequestError = %+v", bad)
				}
			}),
			status: 400, op: "create",
		},
		{
			name:   "400 empty name",
			call:   create("", []string{"payments:read"}, "i1"),
			check:  asA(&bad, nil),
			status: 400, op: "create",
		},
		{
			name:   "400 no scopes",
			call:   create("x", nil, "i1"),
			check:  asA(&bad, nil),
			status: 400, op: "create",
		},
		{
			name: "422 idempotency key reused with a different request",
			setup: func(t *testing.T, e *env) {
				if _, err := e.client(t).CreateKey(context.Background(), "first", []string{"payments:read"}, "same"); err != nil {
					t.Fatal(err)
				}
			},
			call: create("second", []string{"payments:read"}, "same"),
			check: asA(&bad, func() {
				if !bad.IdempotencyKeyReused() {
					t.Errorf("IdempotencyKeyReused false for %+v", bad)
				}
			}),
			status: 422, op: "create",
		},
		{
			name:  "network error from a closed server",
			setup: func(t *testing.T, e *env) { e.srv.Close() },
			call:  list(),
			check: asA(&network, func() {
				if network.Timeout {
					t.Error("Timeout should be false for a refused connection")
				}
			}),
			retryable: true, status: 0, op: "list",
		},
		{
			name:   "timeout via latency",
			setup:  func(t *testing.T, e *env) { e.srv.Faults().SetLatency(5 * time.Second) },
			config: func(c *reevit.Config) { c.Timeout = 100 * time.Millisecond },
			call:   create("x", []string{"payments:read"}, "i1"),
			check: asA(&network, func() {
				if !network.Timeout {
					t.Error("Timeout should be true")
				}
			}),
			retryable: true, status: 0, op: "create",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.setup != nil {
				tt.setup(t, e)
			}
			var cfgs []func(*reevit.Config)
			if tt.config != nil {
				cfgs = append(cfgs, tt.config)
			}
			err := tt.call(context.Background(), e.client(t, cfgs...))
			if err == nil {
				t.Fatal("want an error, got nil")
			}
			tt.check(t, err)
			if got := reevit.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if _, ok := reevit.RetryAfter(err); ok != (tt.status == 429) {
				t.Errorf("RetryAfter ok = %v", ok)
			}
			status, op := statusAndOp(err)
			if status != tt.status || op != tt.op {
				t.Errorf("StatusCode, Operation = %d, %q; want %d, %q", status, op, tt.status, tt.op)
			}
			if strings.Contains(err.Error(), e.admin) {
				t.Errorf("error contains the admin key: %v", err)
			}
		})
	}
}

func statusAndOp(err error) (int, string) {
	var (
		a *reevit.UnauthorizedError
		b *reevit.ForbiddenError
		c *reevit.RateLimitedError
		d *reevit.NotFoundError
		f *reevit.ServerError
		g *reevit.BadRequestError
		h *reevit.NetworkError
		i *reevit.UnexpectedResponseError
	)
	switch {
	case errors.As(err, &a):
		return a.StatusCode, a.Operation
	case errors.As(err, &b):
		return b.StatusCode, b.Operation
	case errors.As(err, &c):
		return c.StatusCode, c.Operation
	case errors.As(err, &d):
		return d.StatusCode, d.Operation
	case errors.As(err, &f):
		return f.StatusCode, f.Operation
	case errors.As(err, &g):
		return g.StatusCode, g.Operation
	case errors.As(err, &h):
		return h.StatusCode, h.Operation
	case errors.As(err, &i):
		return i.StatusCode, i.Operation
	}
	return -1, ""
}

func TestTimeoutIsDeadlineExceeded(t *testing.T) {
	e := newEnv(t)
	e.srv.Faults().SetLatency(5 * time.Second)
	err := e.client(t, func(c *reevit.Config) { c.Timeout = 50 * time.Millisecond }).RevokeKey(context.Background(), "key_x", "i")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want errors.Is DeadlineExceeded, got %v", err)
	}
}

func TestRevokeNotFoundIsSuccess(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()
	if err := c.RevokeKey(ctx, "key_doesnotexist", "r1"); err != nil {
		t.Fatalf("unknown id: %v", err)
	}
	k, err := c.CreateKey(ctx, "x", []string{"payments:read"}, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !e.srv.Revoke(testOrg, k.ID) {
		t.Fatal("out-of-band revoke failed")
	}
	if err := c.RevokeKey(ctx, k.ID, "r2"); err != nil {
		t.Fatalf("already revoked: %v", err)
	}
	if n := e.srv.Counts().CountStatus("revoke", 404); n != 2 {
		t.Fatalf("revoke 404s = %d, want 2", n)
	}
}

func TestMissingIdempotencyKeySendsNothing(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	if _, err := c.CreateKey(context.Background(), "x", []string{"payments:read"}, ""); !errors.Is(err, reevit.ErrMissingIdempotencyKey) {
		t.Fatalf("CreateKey: %v", err)
	}
	if err := c.RevokeKey(context.Background(), "key_x", ""); !errors.Is(err, reevit.ErrMissingIdempotencyKey) {
		t.Fatalf("RevokeKey: %v", err)
	}
	if snap := e.srv.Counts().Snapshot(); len(snap) != 0 {
		t.Fatalf("requests were sent: %v", snap)
	}
}

func TestDropAfterCommitThenRetryReturnsSameKey(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, freshConnections)
	ctx := context.Background()
	scopes := []string{"payments:read"}

	e.srv.Faults().DropAfterCommit(1)
	_, err := c.CreateKey(ctx, "dropped", scopes, "create-dropped")
	var ne *reevit.NetworkError
	if !errors.As(err, &ne) || !reevit.IsRetryable(err) {
		t.Fatalf("first create: want a retryable *NetworkError, got %T %v", err, err)
	}
	committed := e.srv.ActiveKeys(testOrg)
	if len(committed) != 2 {
		t.Fatalf("the dropped create should have committed: %d active keys", len(committed))
	}

	k, err := c.CreateKey(ctx, "dropped", scopes, "create-dropped")
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if k.ID != committed[1].ID {
		t.Fatalf("retry returned id %s, committed %s", k.ID, committed[1].ID)
	}
	if id, ok := e.srv.Authenticate(testOrg, k.Key); !ok || id != k.ID {
		t.Fatal("replayed secret is not the committed key's")
	}
	k2, err := c.CreateKey(ctx, "dropped", scopes, "create-dropped")
	if err != nil || k2.Key != k.Key || k2.ID != k.ID {
		t.Fatalf("second replay differs: %v", err)
	}
	if n := len(e.srv.Keys(testOrg)); n != 2 {
		t.Fatalf("%d keys exist, want 2 (admin + one created)", n)
	}
	if got := e.srv.Counts().CountStatus("create", 0); got != 1 {
		t.Fatalf("dropped creates = %d", got)
	}

	// Revoke: dropped after commit, the retry replays the stored 200.
	e.srv.Faults().DropAfterCommit(1)
	if err := c.RevokeKey(ctx, k.ID, "revoke-1"); !errors.As(err, &ne) {
		t.Fatalf("dropped revoke: %v", err)
	}
	if _, ok := e.srv.Authenticate(testOrg, k.Key); ok {
		t.Fatal("dropped revoke did not commit")
	}
	if err := c.RevokeKey(ctx, k.ID, "revoke-1"); err != nil {
		t.Fatalf("revoke retry: %v", err)
	}
	if got := e.srv.Counts().CountStatus("revoke", 200); got != 1 {
		t.Fatalf("revoke 200s = %d, want the one replay", got)
	}
}

// With keep-alive connections net/http itself resends a request carrying an
// Idempotency-Key when a reused connection dies; the server replays, so the
// caller sees one success and one key.
func TestDropOnReusedConnectionIsTransparent(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()
	if _, err := c.ListKeys(ctx); err != nil { // open a keep-alive connection
		t.Fatal(err)
	}
	e.srv.Faults().DropAfterCommit(1)
	k, err := c.CreateKey(ctx, "x", []string{"payments:read"}, "idem")
	if err != nil {
		var ne *reevit.NetworkError
		if !errors.As(err, &ne) {
			t.Fatalf("CreateKey: %v", err)
		}
		if k, err = c.CreateKey(ctx, "x", []string{"payments:read"}, "idem"); err != nil {
			t.Fatal(err)
		}
	}
	if act := e.srv.ActiveKeys(testOrg); len(act) != 2 || act[1].ID != k.ID {
		t.Fatalf("active keys %+v, created %s", act, k.ID)
	}
}

func TestIdempotencyExpiresAfter24h(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()
	scopes := []string{"payments:read"}

	first, err := c.CreateKey(ctx, "x", scopes, "daily")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Step(24*time.Hour - time.Second)
	again, err := c.CreateKey(ctx, "x", scopes, "daily")
	if err != nil || again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("within 24h: want replay of %s, got %+v, %v", first.ID, again, err)
	}
	e.clock.Step(time.Second)
	later, err := c.CreateKey(ctx, "x", scopes, "daily")
	if err != nil {
		t.Fatal(err)
	}
	if later.ID == first.ID || later.Key == first.Key {
		t.Fatal("after 24h the Idempotency-Key should be free and create a new key")
	}
	if n := len(e.srv.ActiveKeys(testOrg)); n != 3 {
		t.Fatalf("%d active keys, want 3", n)
	}
}

func TestConcurrentCreatesWithOneIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			k, err := c.CreateKey(context.Background(), "x", []string{"payments:read"}, "one")
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
	if n := len(e.srv.Keys(testOrg)); n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
}

func TestInsecureURL(t *testing.T) {
	_, err := reevit.New(reevit.Config{BaseURL: "http://api.reevit.com", OrgID: testOrg, AdminKey: "pfk_live_x"})
	var ie *reevit.InsecureURLError
	if !errors.As(err, &ie) || !errors.Is(err, reevit.ErrInsecureURL) {
		t.Fatalf("want *InsecureURLError, got %v", err)
	}
	if _, err := reevit.New(reevit.Config{BaseURL: "http://api.reevit.com", OrgID: testOrg, AdminKey: "pfk_live_x", AllowHTTP: true}); err != nil {
		t.Fatalf("AllowHTTP: %v", err)
	}
	for _, bad := range []string{"", "api.reevit.com", "ftp://x", "https://user:pw@api.reevit.com", "https://api.reevit.com?x=1"} {
		if _, err := reevit.New(reevit.Config{BaseURL: bad, OrgID: testOrg, AdminKey: "k"}); err == nil {
			t.Errorf("BaseURL %q accepted", bad)
		}
	}
	if _, err := reevit.New(reevit.Config{BaseURL: "https://api.reevit.com", AdminKey: "k"}); err == nil {
		t.Error("missing OrgID accepted")
	}
	if _, err := reevit.New(reevit.Config{BaseURL: "https://api.reevit.com", OrgID: testOrg}); err == nil {
		t.Error("missing AdminKey accepted")
	}
}

func TestTLSServer(t *testing.T) {
	srv := reevittest.NewTLSServer()
	defer srv.Close()
	_, admin := srv.SeedKey(testOrg, "live", "admin", adminScopes)
	c, err := reevit.New(reevit.Config{BaseURL: srv.URL, OrgID: testOrg, AdminKey: admin, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBareListShape(t *testing.T) {
	e := newEnv(t)
	e.srv.SetListShape(true)
	c := e.client(t)
	k, err := c.CreateKey(context.Background(), "x", []string{"payments:read"}, "i")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[1].ID != k.ID || keys[1].Name != "x" || !keys[1].CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("bare list decoded as %+v", keys)
	}
}

func TestHeadersAndObserve(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var seen []http.Header
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		e.srv.ServeHTTP(w, r)
	}))
	defer spy.Close()

	type obs struct {
		op   string
		code int
	}
	var observed []obs
	c := e.client(t, func(cfg *reevit.Config) {
		cfg.BaseURL = spy.URL + "/"
		cfg.HTTPClient = nil // the shared default client
		cfg.ActorID = "user_789"
		cfg.Observe = func(op string, code int, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			observed = append(observed, obs{op, code})
		}
	})
	ctx := context.Background()
	k, err := c.CreateKey(ctx, "x", []string{"payments:read"}, "create-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeKey(ctx, k.ID, "revoke-1"); err != nil {
		t.Fatal(err)
	}
	_ = c.RevokeKey(ctx, k.ID, "revoke-2") // 404, still nil

	want := []obs{{"create", 201}, {"list", 200}, {"revoke", 200}, {"revoke", 404}}
	if !slices.Equal(observed, want) {
		t.Fatalf("observed %v, want %v", observed, want)
	}
	for i, h := range seen {
		if h.Get("X-Reevit-Key") != e.admin || h.Get("X-Org-Id") != testOrg || h.Get("X-Actor-Id") != "user_789" ||
			h.Get("Accept") != "application/json" {
			t.Errorf("request %d: missing auth/accept headers: %v", i, h)
		}
	}
	if seen[0].Get("Content-Type") != "application/json" || seen[0].Get("Idempotency-Key") != "create-1" {
		t.Errorf("create headers: %v", seen[0])
	}
	if seen[1].Get("Idempotency-Key") != "" || seen[1].Get("Content-Type") != "" {
		t.Errorf("list should carry neither Idempotency-Key nor Content-Type: %v", seen[1])
	}
	if seen[2].Get("Idempotency-Key") != "revoke-1" {
		t.Errorf("revoke headers: %v", seen[2])
	}
}

func TestObserveNetworkErrorCodeZero(t *testing.T) {
	e := newEnv(t)
	e.srv.Close()
	var code = -1
	c := e.client(t, func(cfg *reevit.Config) { cfg.Observe = func(_ string, c int, _ time.Duration) { code = c } })
	_, _ = c.ListKeys(context.Background())
	if code != 0 {
		t.Fatalf("Observe code = %d, want 0", code)
	}
}

// rawServer answers every request with a fixed response.
func rawServer(t *testing.T, status int, header map[string]string, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func rawClient(t *testing.T, url string) *reevit.Client {
	t.Helper()
	c, err := reevit.New(reevit.Config{BaseURL: url, OrgID: testOrg, AdminKey: "pfk_live_admin", AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRetryAfterSources(t *testing.T) {
	testRetryAfter(t, []retryAfterCase{
		{"body wins", map[string]string{"Retry-After": "5"}, `{"error":"rate_limited","retry_after":12}`, 12 * time.Second},
		{"header seconds", map[string]string{"Retry-After": "7"}, `{"error":"rate_limited"}`, 7 * time.Second},
		{"default 60s", nil, `not json`, 60 * time.Second},
	})
}

// retryAfterCase is a 429 answer (header and body) and the delay
// RetryAfter must read from it.
type retryAfterCase struct {
	name   string
	header map[string]string
	body   string
	want   time.Duration
}

// testRetryAfter lists keys against each case's answer and checks the
// delay RetryAfter returns, and that the error names no negative delay.
func testRetryAfter(t *testing.T, tests []retryAfterCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rawClient(t, rawServer(t, 429, tt.header, tt.body)).ListKeys(context.Background())
			d, ok := reevit.RetryAfter(err)
			if !ok || d != tt.want {
				t.Fatalf("RetryAfter = %v, %v; want %v", d, ok, tt.want)
			}
			if strings.Contains(err.Error(), "-") {
				t.Fatalf("negative delay in %q", err)
			}
		})
	}
}

func TestUnexpectedResponses(t *testing.T) {
	var target atomicBool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Reevit-Key") != "" {
			target.set()
		}
	}))
	defer elsewhere.Close()

	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
	}{
		{"redirect is not followed", 307, map[string]string{"Location": elsewhere.URL}, ""},
		{"2xx not JSON", 200, nil, "<html>"},
		{"object without data", 200, nil, `{"keys":[]}`},
		{"body over 1 MiB", 200, nil, `[` + strings.Repeat(" ", 1<<20+10) + `]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rawClient(t, rawServer(t, tt.status, tt.header, tt.body)).ListKeys(context.Background())
			var ue *reevit.UnexpectedResponseError
			if !errors.As(err, &ue) {
				t.Fatalf("want *UnexpectedResponseError, got %T %v", err, err)
			}
		})
	}
	if target.get() {
		t.Fatal("the admin key was sent to the redirect target")
	}
	// A create answer without a secret is unusable.
	_, err := rawClient(t, rawServer(t, 201, nil, `{"id":"key_1","name":"x"}`)).CreateKey(context.Background(), "x", []string{"a"}, "i")
	var ue *reevit.UnexpectedResponseError
	if !errors.As(err, &ue) {
		t.Fatalf("create without key: %v", err)
	}
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) set() { b.mu.Lock(); b.v = true; b.mu.Unlock() }
func (b *atomicBool) get() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}
