package reevittest_test

// These tests replay the examples of Reevit's authentication document
// (shared/seeds/reevit-authentication.txt) at the raw HTTP level, so the
// simulator is held to the documented contract and not to our own client.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// docTime is the created_at of the document's create example.
var docTime = time.Date(2025, 2, 10, 10, 0, 0, 0, time.UTC)

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %s", a.body)
	}
	return m
}

// do sends a raw request; headers alternate name, value.
func do(t *testing.T, srv *reevittest.Server, method, path, body string, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// sameJSON compares two JSON documents semantically and, when exact is set,
// byte for byte too.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %s", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %s", want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body\n  %s\nwant\n  %s", got, want)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, []byte(want))
	if !bytes.Equal(bytes.TrimSpace(got), compact.Bytes()) {
		t.Errorf("body %s is not exactly %s", got, compact.Bytes())
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var (
	liveKey = regexp.MustCompile(`^pfk_live_[a-z0-9]{32}$`)
	testKey = regexp.MustCompile(`^pfk_test_[a-z0-9]{32}$`)
	keyID   = regexp.MustCompile(`^key_[a-z0-9]{12}$`)
)

// newDocServer is a simulator holding org_123 with an admin key (the
// document's "pfk_live_xxx").
func newDocServer(t *testing.T, scopes ...string) (*reevittest.Server, *clocktesting.FakeClock, string) {
	t.Helper()
	clk := clocktesting.NewFakeClock(docTime)
	srv := reevittest.NewServer(reevittest.WithClock(clk), reevittest.WithSeed(1))
	t.Cleanup(srv.Close)
	if len(scopes) == 0 {
		scopes = reevittest.Scopes
	}
	_, admin := srv.SeedKey("org_123", "live", "admin", scopes)
	return srv, clk, admin
}

// The document's create, list and revoke examples, in order.
func TestDocumentCreateListRevoke(t *testing.T) {
	srv, _, admin := newDocServer(t)

	// Creating Keys: curl -X POST .../v1/api-keys -H X-Reevit-Key -H X-Org-Id
	// -H "Idempotency-Key: key-create-001" -d '{...}'. curl -d sends a form
	// Content-Type, so the body is accepted whatever the Content-Type says.
	docBody := `{
    "name": "Backend Production",
    "scopes": ["payments:read", "payments:write"]
  }`
	created := do(t, srv, http.MethodPost, "/v1/api-keys", docBody,
		"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "key-create-001",
		"Content-Type", "application/x-www-form-urlencoded")
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	c := created.json(t)
	if got := keys(c); !slices.Equal(got, []string{"created_at", "id", "key", "name", "scopes"}) {
		t.Fatalf("create response fields %v, want exactly id, name, key, scopes, created_at", got)
	}
	if c["name"] != "Backend Production" || !reflect.DeepEqual(c["scopes"], []any{"payments:read", "payments:write"}) ||
		c["created_at"] != "2025-02-10T10:00:00Z" {
		t.Fatalf("create response %s", created.body)
	}
	id, _ := c["id"].(string)
	full, _ := c["key"].(string)
	if !keyID.MatchString(id) || !liveKey.MatchString(full) {
		t.Fatalf("id %q / key shape wrong", id)
	}

	// Idempotency: "Retry with same key -> Cached response returned (no duplicate)".
	replay := do(t, srv, http.MethodPost, "/v1/api-keys", docBody,
		"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "key-create-001")
	if replay.status != created.status || !bytes.Equal(replay.body, created.body) {
		t.Fatalf("replay differs: %d %s", replay.status, replay.body)
	}
	// "Different key -> New request processed".
	other := do(t, srv, http.MethodPost, "/v1/api-keys", docBody,
		"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "key-create-002")
	if other.status != http.StatusCreated || other.json(t)["id"] == id {
		t.Fatalf("a different Idempotency-Key should create another key: %s", other.body)
	}

	// Listing Keys: curl .../v1/api-keys -H X-Reevit-Key -H X-Org-Id.
	listed := do(t, srv, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin, "X-Org-Id", "org_123")
	if listed.status != http.StatusOK {
		t.Fatalf("list: %d %s", listed.status, listed.body)
	}
	var page struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(listed.body, &page); err != nil || len(page.Data) != 3 {
		t.Fatalf("list body %s", listed.body)
	}
	for _, item := range page.Data {
		if got := keys(item); !slices.Equal(got, []string{"created_at", "id", "name", "prefix", "scopes"}) {
			t.Fatalf("list item fields %v (a list must never carry the key)", got)
		}
	}
	if page.Data[1]["id"] != id || page.Data[1]["prefix"] != full[:13] {
		t.Fatalf("list item %v", page.Data[1])
	}
	if bytes.Contains(listed.body, []byte(full)) {
		t.Fatal("the list reveals a full key")
	}

	// Revoking Keys: the document's example omits Idempotency-Key, which its
	// own Idempotency section requires for DELETE; the requirement wins.
	path := "/v1/api-keys/" + id
	bare := do(t, srv, http.MethodDelete, path, "", "X-Reevit-Key", admin, "X-Org-Id", "org_123")
	if bare.status != http.StatusBadRequest {
		t.Fatalf("DELETE without Idempotency-Key: %d %s", bare.status, bare.body)
	}
	sameJSON(t, bare.body, `{"error":"bad_request","message":"Idempotency-Key header is required for mutations"}`)

	revoked := do(t, srv, http.MethodDelete, path, "", "X-Reevit-Key", admin, "X-Org-Id", "org_123",
		"Idempotency-Key", "revoke-"+id)
	if revoked.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", revoked.status, revoked.body)
	}
	sameJSON(t, revoked.body, `{"id":"`+id+`","revoked":true,"revoked_at":"2025-02-10T10:00:00Z"}`)
	if _, ok := srv.Authenticate("org_123", full); ok {
		t.Fatal("a revoked key must stop authenticating at once")
	}
	// The revoked key itself is now a 401.
	gone := do(t, srv, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", full, "X-Org-Id", "org_123")
	if gone.status != http.StatusUnauthorized {
		t.Fatalf("revoked key answered %d", gone.status)
	}
	again := do(t, srv, http.MethodDelete, path, "", "X-Reevit-Key", admin, "X-Org-Id", "org_123",
		"Idempotency-Key", "revoke-again")
	if again.status != http.StatusNotFound {
		t.Fatalf("second revoke: %d", again.status)
	}
	sameJSON(t, again.body, `{"error":"not_found","message":"API key not found"}`)
}

// Required Headers: the Example Request's full header set (X-Actor-Id,
// Content-Type) is accepted on the API-key endpoints too.
func TestDocumentRequiredHeaders(t *testing.T) {
	srv, _, admin := newDocServer(t)
	a := do(t, srv, http.MethodPost, "/v1/api-keys", `{"name":"n","scopes":["payments:read"]}`,
		"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "order-12345",
		"X-Actor-Id", "user_789", "Content-Type", "application/json")
	if a.status != http.StatusCreated {
		t.Fatalf("%d %s", a.status, a.body)
	}
	noOrg := do(t, srv, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin)
	if noOrg.status != http.StatusUnauthorized {
		t.Fatalf("missing X-Org-Id answered %d", noOrg.status)
	}
}

func TestDocumentErrorBodies(t *testing.T) {
	// 401 Unauthorized, exactly as documented.
	t.Run("401", func(t *testing.T) {
		srv, _, admin := newDocServer(t)
		for _, h := range [][]string{
			{"X-Org-Id", "org_123"},
			{"X-Reevit-Key", "pfk_live_xxx", "X-Org-Id", "org_123"},
			{"X-Reevit-Key", admin, "X-Org-Id", "org_999"},
		} {
			a := do(t, srv, http.MethodGet, "/v1/api-keys", "", h...)
			if a.status != http.StatusUnauthorized {
				t.Fatalf("%v: %d", h, a.status)
			}
			sameJSON(t, a.body, `{"error": "unauthorized", "message": "Invalid or missing API key"}`)
		}
	})

	// Scope Errors, exactly as documented for payments:write.
	t.Run("403 scope", func(t *testing.T) {
		srv, _, admin := newDocServer(t, "api_keys:read", "api_keys:write", "payments:read")
		a := do(t, srv, http.MethodPost, "/v1/api-keys", `{"name":"n","scopes":["payments:write"]}`,
			"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "k1")
		if a.status != http.StatusForbidden {
			t.Fatalf("%d %s", a.status, a.body)
		}
		sameJSON(t, a.body, `{"error": "forbidden", "message": "API key missing required scope: payments:write"}`)
	})

	t.Run("403 endpoint scope", func(t *testing.T) {
		srv, _, admin := newDocServer(t, "api_keys:read")
		a := do(t, srv, http.MethodDelete, "/v1/api-keys/key_abc123", "",
			"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "k1")
		if a.status != http.StatusForbidden {
			t.Fatalf("%d %s", a.status, a.body)
		}
		sameJSON(t, a.body, `{"error":"forbidden","message":"API key missing required scope: api_keys:write"}`)
		srv2, _, writer := newDocServer(t, "api_keys:write")
		b := do(t, srv2, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", writer, "X-Org-Id", "org_123")
		sameJSON(t, b.body, `{"error":"forbidden","message":"API key missing required scope: api_keys:read"}`)
	})

	// 429 Too Many Requests, exactly as documented (retry_after 60).
	t.Run("429", func(t *testing.T) {
		srv, _, admin := newDocServer(t)
		srv.Faults().SetRateLimit(1, time.Minute)
		first := do(t, srv, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin, "X-Org-Id", "org_123")
		if first.status != http.StatusOK {
			t.Fatalf("first: %d", first.status)
		}
		a := do(t, srv, http.MethodGet, "/v1/api-keys", "", "X-Reevit-Key", admin, "X-Org-Id", "org_123")
		if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "60" {
			t.Fatalf("%d Retry-After %q", a.status, a.header.Get("Retry-After"))
		}
		sameJSON(t, a.body, `{"error": "rate_limited", "message": "Too many requests", "retry_after": 60}`)
	})
}

// Key format: pfk_live_ and pfk_test_; a created key takes the environment
// of the key that created it.
func TestDocumentKeyFormat(t *testing.T) {
	srv, _, _ := newDocServer(t)
	_, testAdmin := srv.SeedKey("org_123", "test", "sandbox", reevittest.Scopes)
	a := do(t, srv, http.MethodPost, "/v1/api-keys", `{"name":"s","scopes":["payments:read"]}`,
		"X-Reevit-Key", testAdmin, "X-Org-Id", "org_123", "Idempotency-Key", "t1")
	if a.status != http.StatusCreated {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if k, _ := a.json(t)["key"].(string); !testKey.MatchString(k) {
		t.Fatalf("test admin created a key that is not pfk_test_")
	}
}

// Idempotency: keys are valid for 24 hours; reuse with another request is refused.
func TestDocumentIdempotency(t *testing.T) {
	srv, clk, admin := newDocServer(t)
	h := []string{"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "order-12345"}
	body := `{"name":"n","scopes":["payments:read"]}`
	first := do(t, srv, http.MethodPost, "/v1/api-keys", body, h...)

	reused := do(t, srv, http.MethodPost, "/v1/api-keys", `{"name":"other","scopes":["payments:read"]}`, h...)
	if reused.status != http.StatusUnprocessableEntity {
		t.Fatalf("reuse: %d", reused.status)
	}
	sameJSON(t, reused.body, `{"error":"idempotency_key_reused","message":"Idempotency-Key was already used with a different request"}`)
	wrongPath := do(t, srv, http.MethodDelete, "/v1/api-keys/key_x", "", h...)
	if wrongPath.status != http.StatusUnprocessableEntity {
		t.Fatalf("reuse on DELETE: %d", wrongPath.status)
	}

	clk.Step(24*time.Hour - time.Second)
	if a := do(t, srv, http.MethodPost, "/v1/api-keys", body, h...); !bytes.Equal(a.body, first.body) {
		t.Fatal("replay within 24h differs")
	}
	clk.Step(time.Second)
	if a := do(t, srv, http.MethodPost, "/v1/api-keys", body, h...); a.status != http.StatusCreated || bytes.Equal(a.body, first.body) {
		t.Fatalf("after 24h the key should be free: %d", a.status)
	}
	if n := len(srv.ActiveKeys("org_123")); n != 3 {
		t.Fatalf("%d active keys, want admin + 2", n)
	}
}

// Validation: name and scopes, and only the 16 documented scopes.
func TestDocumentValidation(t *testing.T) {
	srv, _, admin := newDocServer(t)
	for i, body := range []string{
		`{"scopes":["payments:read"]}`,
		`{"name":"n","scopes":[]}`,
		`{"name":"n"}`,
		`{"name":"n","scopes":["payments:admin"]}`,
		`not json`,
	} {
		a := do(t, srv, http.MethodPost, "/v1/api-keys", body,
			"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "v"+string(rune('a'+i)))
		if a.status != http.StatusBadRequest || a.json(t)["error"] != "bad_request" || a.json(t)["message"] == "" {
			t.Errorf("%s: %d %s", body, a.status, a.body)
		}
	}
	if len(reevittest.Scopes) != 16 {
		t.Fatalf("%d scopes, the document lists 16", len(reevittest.Scopes))
	}
	for _, sc := range reevittest.Scopes {
		a := do(t, srv, http.MethodPost, "/v1/api-keys", `{"name":"n","scopes":["`+sc+`"]}`,
			"X-Reevit-Key", admin, "X-Org-Id", "org_123", "Idempotency-Key", "s-"+sc)
		if a.status != http.StatusCreated {
			t.Errorf("documented scope %s refused: %d %s", sc, a.status, a.body)
		}
	}
}
