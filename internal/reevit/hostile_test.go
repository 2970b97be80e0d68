package reevit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"
)

// TestHostileCreateAnswers: whatever a server answers to a create, the
// client returns a usable key or a typed error, never a key a caller could
// not slice or store, and a created key is never lost silently.
func TestHostileCreateAnswers(t *testing.T) {
	const goodKey = "pfk_test_0123456789abcdefghijklmnopqrstuv"
	body := func(id, key string) string {
		return fmt.Sprintf(`{"id":%q,"name":"x","key":%q,"scopes":["a"]}`, id, key)
	}
	tests := []struct {
		name      string
		body      string
		malformed bool // a *MalformedKeyError naming key_1
		secret    string
	}{
		{name: "key shorter than its prefix", body: body("key_1", "pfk_t"), malformed: true},
		{name: "prefix only", body: body("key_1", "pfk_live_"), malformed: true},
		{name: "too short after the prefix", body: body("key_1", "pfk_live_abc"), malformed: true, secret: "pfk_live_abc"},
		{name: "unknown prefix", body: body("key_1", "sk_live_0123456789abcdefghij"), malformed: true, secret: "sk_live_0123456789abcdefghij"},
		{name: "unknown environment", body: body("key_1", "pfk_prod_0123456789abcdefghij"), malformed: true, secret: "pfk_prod_0123456789abcdefghij"},
		{name: "newline inside the key", body: body("key_1", "pfk_live_01234567\n89abcdef"), malformed: true, secret: "01234567"},
		{name: "overlong key", body: body("key_1", "pfk_live_"+strings.Repeat("a", 600)), malformed: true, secret: strings.Repeat("a", 40)},
		{name: "no key at all", body: `{"id":"key_1","name":"x"}`, malformed: true},
		{name: "key not a string", body: `{"id":"key_1","key":42}`},
		{name: "no id", body: body("", goodKey), secret: goodKey},
		{name: "id with a newline", body: body("key_1\nX-Evil: 1", goodKey), secret: goodKey},
		{name: "truncated JSON", body: `{"id":"key_1","key":"pfk_li`},
		{name: "not JSON", body: `<html>`},
		{name: "JSON array", body: `[]`},
		{name: "body over 1 MiB", body: `{"id":"key_1","key":"` + goodKey + `","name":"` + strings.Repeat("n", 1<<20) + `"}`, secret: goodKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawClient(t, rawServer(t, 201, map[string]string{"Content-Type": "application/json"}, tt.body))
			k, err := c.CreateKey(context.Background(), "x", []string{"a"}, "idem")
			if err == nil {
				t.Fatalf("want an error, got key %v", k)
			}
			var ue *reevit.UnexpectedResponseError
			if !errors.As(err, &ue) || ue.Operation != reevit.OpCreate || ue.StatusCode != 201 {
				t.Fatalf("want an *UnexpectedResponseError of create, got %T %v", err, err)
			}
			var mk *reevit.MalformedKeyError
			if got := errors.As(err, &mk); got != tt.malformed {
				t.Fatalf("MalformedKeyError = %v, want %v (%v)", got, tt.malformed, err)
			}
			if tt.malformed && (mk.ID != "key_1" || !strings.Contains(err.Error(), "key_1")) {
				t.Fatalf("the error must name the created key's id: %+v, %v", mk, err)
			}
			if reevit.IsRetryable(err) {
				t.Error("the same request would replay the same answer: not retryable as is")
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error leaks the key: %v", err)
			}
		})
	}

	c := rawClient(t, rawServer(t, 201, nil, body("key_1", goodKey)))
	k, err := c.CreateKey(context.Background(), "x", []string{"a"}, "idem")
	if err != nil || k.Key != goodKey || k.ID != "key_1" {
		t.Fatalf("a well-formed key: %v, %v", k, err)
	}
}

func TestHostileListAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"item without id":      `{"data":[{"id":"key_1","name":"a"},{"name":"b"}]}`,
		"item id with newline": `[{"id":"key_1\r\nX: y","name":"a"}]`,
		"truncated":            `{"data":[{"id":"key_1"`,
	} {
		t.Run(name, func(t *testing.T) {
			keys, err := rawClient(t, rawServer(t, 200, nil, body)).ListKeys(context.Background())
			var ue *reevit.UnexpectedResponseError
			if !errors.As(err, &ue) || keys != nil {
				t.Fatalf("want *UnexpectedResponseError and no keys, got %v, %T %v", keys, err, err)
			}
		})
	}
}

// A 429 never parks a caller for more than an hour, and no value overflows.
func TestRetryAfterIsCapped(t *testing.T) {
	testRetryAfter(t, []retryAfterCase{
		{"retry_after 999999999 (31.7 years)", nil, `{"error":"rate_limited","retry_after":999999999}`, time.Hour},
		{"retry_after 9999999999 would overflow", nil, `{"error":"rate_limited","retry_after":9999999999}`, time.Hour},
		{"retry_after as a huge string", nil, `{"error":"rate_limited","retry_after":"9999999999"}`, time.Hour},
		{"Retry-After header far ahead", map[string]string{"Retry-After": "99999999999"}, `{}`, time.Hour},
		{"Retry-After date in year 9999", map[string]string{"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, `{}`, time.Hour},
		{"retry_after a microsecond", nil, `{"retry_after":0.000001}`, time.Second},
	})
}

// TestConfigHeaderValues: a secret's surrounding white space is dropped; any
// other value that cannot be sent as a header is a permanent *ConfigError
// from New, never a network error retried forever.
func TestConfigHeaderValues(t *testing.T) {
	const admin = "pfk_live_adminadminadmin0123"
	var got http.Header
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = w.Write([]byte(`{"data":[]}`))
	}))
	defer spy.Close()

	tests := []struct {
		name   string
		mutate func(*reevit.Config)
		field  string // "" when New must succeed
	}{
		{name: "admin key with a trailing newline is trimmed", mutate: func(c *reevit.Config) { c.AdminKey = admin + "\n" }},
		{name: "admin key with CRLF and spaces is trimmed", mutate: func(c *reevit.Config) { c.AdminKey = "  " + admin + "\r\n" }},
		{name: "admin key of white space only", mutate: func(c *reevit.Config) { c.AdminKey = " \n" }, field: "AdminKey"},
		{name: "admin key with an inner newline", mutate: func(c *reevit.Config) { c.AdminKey = "pfk_live_abc\ndef" }, field: "AdminKey"},
		{name: "actor id with a newline", mutate: func(c *reevit.Config) { c.ActorID = "user_789\n" }, field: "ActorID"},
		{name: "actor id injecting a header", mutate: func(c *reevit.Config) { c.ActorID = "u\r\nX-Reevit-Key: other" }, field: "ActorID"},
		{name: "actor id with surrounding space", mutate: func(c *reevit.Config) { c.ActorID = " user_789" }, field: "ActorID"},
		{name: "actor id with a NUL", mutate: func(c *reevit.Config) { c.ActorID = "user\x00" }, field: "ActorID"},
		{name: "org id with a newline", mutate: func(c *reevit.Config) { c.OrgID = "org_123\n" }, field: "OrgID"},
		{name: "org id with a tab around", mutate: func(c *reevit.Config) { c.OrgID = "\torg_123" }, field: "OrgID"},
		{name: "missing org id", mutate: func(c *reevit.Config) { c.OrgID = "" }, field: "OrgID"},
		{name: "not a URL", mutate: func(c *reevit.Config) { c.BaseURL = "api.reevit.com" }, field: "BaseURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := reevit.Config{BaseURL: spy.URL, OrgID: testOrg, AdminKey: admin, ActorID: "user_789", AllowHTTP: true}
			tt.mutate(&cfg)
			c, err := reevit.New(cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if _, err := c.ListKeys(context.Background()); err != nil {
					t.Fatalf("ListKeys: %v", err)
				}
				if got.Get("X-Reevit-Key") != admin {
					t.Fatalf("X-Reevit-Key sent as %q, want the trimmed key", got.Get("X-Reevit-Key"))
				}
				return
			}
			var ce *reevit.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("want a *ConfigError for %s, got %T %v", tt.field, err, err)
			}
			if reevit.IsRetryable(err) {
				t.Error("a config error must not be retryable")
			}
			if strings.Contains(err.Error(), "adminadmin") || strings.Contains(err.Error(), "\n") {
				t.Errorf("the error leaks the key or a newline: %q", err)
			}
		})
	}
}

// An Idempotency-Key that cannot be a header is refused before sending, as
// a *ConfigError, not a network error.
func TestBadIdempotencyKeyIsNotANetworkError(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	_, err := c.CreateKey(context.Background(), "x", []string{"payments:read"}, "idem\n")
	var ce *reevit.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Idempotency-Key" {
		t.Fatalf("CreateKey: want *ConfigError for Idempotency-Key, got %T %v", err, err)
	}
	if err := c.RevokeKey(context.Background(), "key_1", "idem\r\nX: y"); !errors.As(err, &ce) {
		t.Fatalf("RevokeKey: want *ConfigError, got %T %v", err, err)
	}
	if err := c.RevokeKey(context.Background(), "", "idem"); !errors.As(err, &ce) {
		t.Fatalf("RevokeKey without id: want *ConfigError, got %T %v", err, err)
	}
	if snap := e.srv.Counts().Snapshot(); len(snap) != 0 {
		t.Fatalf("requests were sent: %v", snap)
	}
}
