package reevit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"
)

// anyKey matches anything shaped like a Reevit key.
var anyKey = regexp.MustCompile(`pfk_(live|test)_[a-z0-9]{8,}`)

// assertClean fails if any rendering of v contains a secret or key-shaped text.
func assertClean(t *testing.T, what string, v any, secrets []string) {
	t.Helper()
	var renders []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		renders = append(renders, fmt.Sprintf(f, v))
	}
	if err, ok := v.(error); ok && err != nil {
		renders = append(renders, err.Error())
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			renders = append(renders, u.Error(), fmt.Sprintf("%+v", u))
		}
	}
	for _, r := range renders {
		for _, s := range secrets {
			if s != "" && strings.Contains(r, s) {
				t.Errorf("%s leaks a key: %s", what, r)
			}
		}
		if m := anyKey.FindString(r); m != "" {
			t.Errorf("%s contains key-shaped text %q: %s", what, m, r)
		}
	}
}

func TestNoSecretInErrorsOrPrints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := e.client(t)
	created, err := good.CreateKey(ctx, "victim", []string{"payments:read"}, "hyg-create")
	if err != nil {
		t.Fatal(err)
	}
	_, readOnly := e.srv.SeedKey(testOrg, "live", "reader", []string{"api_keys:read"})
	revokedID, revokedKey := e.srv.SeedKey(testOrg, "test", "revoked", adminScopes)
	e.srv.Revoke(testOrg, revokedID)
	secrets := []string{e.admin, created.Key, readOnly, revokedKey}

	// The created key, printed every way.
	assertClean(t, "Key", *created, secrets)
	assertClean(t, "*Key", created, secrets)
	assertClean(t, "[]Key", []reevit.Key{*created}, secrets)
	assertClean(t, "[]*Key", []*reevit.Key{created}, secrets)
	if s := created.String(); !strings.Contains(s, "[REDACTED]") || !strings.Contains(s, created.ID) {
		t.Errorf("String() = %q, want the id and a redaction marker", s)
	}
	if s := fmt.Sprintf("%#v", created); !strings.HasPrefix(s, "reevit.Key{") {
		t.Errorf("GoString = %q", s)
	}

	// Clients and configs.
	cfg := reevit.Config{BaseURL: e.srv.URL, OrgID: testOrg, AdminKey: e.admin, AllowHTTP: true}
	assertClean(t, "Config", cfg, secrets)
	assertClean(t, "*Config", &cfg, secrets)
	assertClean(t, "Client", good, secrets)

	// Every failing path, driven with each key as the admin key.
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, admin := range secrets {
		c := e.client(t, func(cfg *reevit.Config) { cfg.AdminKey = admin })
		collect(call(list())(ctx, c))
		collect(call(create("x", []string{"payments:read", "fraud:write"}, "h1"))(ctx, c))
		collect(call(create("", nil, "h2"))(ctx, c))
		collect(call(create("x", []string{"nope"}, "h3"))(ctx, c))
		collect(call(create("other", []string{"payments:read"}, "hyg-create"))(ctx, c)) // 422 for the admin
		collect(call(revoke(created.ID, ""))(ctx, c))
		for _, status := range []int{400, 401, 403, 404, 409, 422, 429, 500, 502, 503} {
			e.srv.Faults().FailNext(1, status)
			collect(call(create("x", []string{"payments:read"}, "h4"))(ctx, c))
		}
		e.srv.Faults().SetLatency(time.Second)
		tc := e.client(t, func(cfg *reevit.Config) { cfg.AdminKey = admin; cfg.Timeout = 20 * time.Millisecond })
		collect(call(list())(ctx, tc))
		e.srv.Faults().SetLatency(0)
		e.srv.Faults().DropAfterCommit(1)
		fc := e.client(t, func(cfg *reevit.Config) { cfg.AdminKey = admin }, freshConnections)
		collect(call(revoke("key_none", "h5"))(ctx, fc)) // 404 is not committed, so not dropped
		collect(call(create("d", []string{"payments:read"}, "h6"))(ctx, fc))
		e.srv.Faults().Reset()
	}
	_, err = reevit.New(reevit.Config{BaseURL: "http://" + e.admin + "@example.com", OrgID: testOrg, AdminKey: e.admin})
	collect(err)
	_, err = reevit.New(reevit.Config{BaseURL: "http://example.com/", OrgID: testOrg, AdminKey: e.admin})
	collect(err)

	// A hostile server that echoes the admin key everywhere it can.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("X-Reevit-Key")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", k)
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = fmt.Fprintf(w, `{"error":%q,"message":"bad key %s, missing required scope: %s"}`, k, k, k)
	}))
	defer echo.Close()
	ec, err := reevit.New(reevit.Config{BaseURL: echo.URL, OrgID: testOrg, AdminKey: e.admin, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	collect(call(list())(ctx, ec))

	if len(errs) < 4*16 {
		t.Fatalf("only %d failing paths were exercised", len(errs))
	}
	types := map[string]bool{}
	for i, err := range errs {
		types[fmt.Sprintf("%T", err)] = true
		assertClean(t, fmt.Sprintf("error %d (%T)", i, err), err, secrets)
	}
	for _, want := range []string{"*reevit.UnauthorizedError", "*reevit.ForbiddenError", "*reevit.RateLimitedError",
		"*reevit.NotFoundError", "*reevit.ServerError", "*reevit.BadRequestError", "*reevit.NetworkError",
		"*reevit.InsecureURLError"} {
		if !types[want] {
			t.Errorf("no %s was exercised (saw %v)", want, types)
		}
	}
}
