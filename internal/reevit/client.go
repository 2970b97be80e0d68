// Package reevit is a client for Reevit's API-key endpoints: create, list and
// revoke keys of one organization, authenticated by an admin key.
//
// It knows HTTP and nothing of Kubernetes. Every failure is a typed error
// (usable with errors.As) whose text never contains a key, and the client
// never logs.
package reevit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/httpcore"
)

// DefaultBaseURL is Reevit's documented API root, the default of an issuer's
// spec.url (the CRD's +kubebuilder:default repeats it, as markers cannot name
// a constant).
const DefaultBaseURL = v1alpha1.DefaultReevitURL

// DefaultTimeout bounds each call when Config.Timeout is zero.
const DefaultTimeout = httpcore.DefaultTimeout

// Operation names passed to Config.Observe and set on errors.
const (
	OpCreate = "create"
	OpList   = "list"
	OpRevoke = "revoke"
)

const userAgent = "keywarden-reevit-client"

// Config configures a Client.
type Config struct {
	// BaseURL is the API root, e.g. "https://api.reevit.com".
	BaseURL string
	// OrgID is sent as X-Org-Id.
	OrgID string
	// AdminKey is sent as X-Reevit-Key. It needs api_keys:read to list and
	// api_keys:write to create and revoke. It never appears in errors or
	// when the Config is printed.
	AdminKey string
	// ActorID is sent as X-Actor-Id (for Reevit's audit log) when non-empty.
	ActorID string
	// AllowHTTP permits a non-https BaseURL (local simulators, tests).
	AllowHTTP bool
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient sends the requests; nil means a package-wide shared client.
	// Its redirect policy is replaced so redirects are never followed.
	HTTPClient *http.Client
	// Observe, when set, is called after every call with the operation
	// ("create", "list", "revoke"), the HTTP status (0 when no answer was
	// read) and the call's duration. It must be safe for concurrent use.
	Observe func(operation string, code int, d time.Duration)
}

// printableConfig mirrors Config for printing, without methods.
type printableConfig struct {
	BaseURL    string
	OrgID      string
	AdminKey   string
	ActorID    string
	AllowHTTP  bool
	Timeout    time.Duration
	HTTPClient *http.Client
	Observe    bool
}

// String returns the configuration with AdminKey redacted.
func (c Config) String() string { return fmt.Sprintf("%+v", c.printable()) }

// GoString returns the configuration with AdminKey redacted.
func (c Config) GoString() string { return "reevit.Config" + c.String() }

// Format prints the configuration with AdminKey redacted for every verb.
func (c Config) Format(f fmt.State, verb rune) {
	httpcore.FormatRedacted(f, verb, c.GoString(), c.printable())
}

func (c Config) printable() printableConfig {
	p := printableConfig{BaseURL: c.BaseURL, OrgID: c.OrgID, ActorID: c.ActorID, AllowHTTP: c.AllowHTTP,
		Timeout: c.Timeout, HTTPClient: c.HTTPClient, Observe: c.Observe != nil}
	if c.AdminKey != "" {
		p.AdminKey = httpcore.Redacted
	}
	return p
}

// Client calls Reevit's API-key endpoints for one organization. It is safe
// for concurrent use.
type Client struct {
	cfg      Config
	adminKey string // cfg.AdminKey without surrounding white space
	base     string // BaseURL without a trailing slash
	core     httpcore.Caller
}

// New validates cfg and returns a Client. A non-https BaseURL is refused with
// an *InsecureURLError unless cfg.AllowHTTP is set; any other unusable field
// is a *ConfigError. Surrounding white space of AdminKey (a trailing newline
// left by `echo` in the Secret) is dropped; OrgID and ActorID are sent as
// they are, so white space around them or a control character in any of the
// three is a *ConfigError instead of a request that can never be sent.
func New(cfg Config) (*Client, error) {
	adminKey := strings.TrimSpace(cfg.AdminKey)
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, &ConfigError{Field: "BaseURL", Reason: fmt.Sprintf("must be an absolute http(s) URL (got %q)", httpcore.Sanitize(cfg.BaseURL, adminKey))}
	case u.User != nil:
		return nil, &ConfigError{Field: "BaseURL", Reason: "must not carry credentials"}
	case u.RawQuery != "" || u.Fragment != "":
		return nil, &ConfigError{Field: "BaseURL", Reason: fmt.Sprintf("must not have a query or fragment (got %q)", httpcore.Sanitize(cfg.BaseURL, adminKey))}
	case u.Scheme != "https" && !cfg.AllowHTTP:
		return nil, &InsecureURLError{URL: cfg.BaseURL}
	case cfg.OrgID == "":
		return nil, &ConfigError{Field: "OrgID", Reason: "is required"}
	case adminKey == "":
		return nil, &ConfigError{Field: "AdminKey", Reason: "is required"}
	}
	for _, h := range []struct{ field, header, value string }{
		{"OrgID", "X-Org-Id", cfg.OrgID},
		{"AdminKey", "X-Reevit-Key", adminKey},
		{"ActorID", "X-Actor-Id", cfg.ActorID},
	} {
		if h.value == "" {
			continue // only ActorID may be empty here
		}
		var he *httpcore.HeaderError
		if errors.As(httpcore.CheckHeaderValue(h.header, h.value), &he) {
			return nil, &ConfigError{Field: h.field, Reason: he.Reason + " and cannot be sent as " + h.header}
		}
	}
	return &Client{cfg: cfg, adminKey: adminKey, base: strings.TrimRight(u.String(), "/"), core: httpcore.Caller{Service: service,
		HTTP: httpcore.Client(cfg.HTTPClient), Timeout: cfg.Timeout, UserAgent: userAgent, Observe: cfg.Observe,
	}}, nil
}

// String describes the client without its admin key.
func (c *Client) String() string {
	return fmt.Sprintf("reevit.Client{BaseURL:%q, OrgID:%q}", c.base, c.cfg.OrgID)
}

// GoString describes the client without its admin key.
func (c *Client) GoString() string { return c.String() }

// Format prints the client without its admin key for every verb.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// keyJSON is a key as Reevit encodes it in create and list answers.
type keyJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Key       string   `json:"key"`
	Prefix    string   `json:"prefix"`
	Scopes    []string `json:"scopes"`
	CreatedAt string   `json:"created_at"`
}

func (k keyJSON) toKey() Key {
	out := Key{ID: k.ID, Name: k.Name, Key: k.Key, Prefix: k.Prefix, Scopes: k.Scopes}
	if t, err := time.Parse(time.RFC3339Nano, k.CreatedAt); err == nil {
		out.CreatedAt = t
	}
	return out
}

// Key formats Reevit documents.
const (
	PrefixLive = "pfk_live_"
	PrefixTest = "pfk_test_"
)

const (
	minKeyBody = 8   // characters after the prefix; real keys have 32
	maxKeyLen  = 512 // longer is no key, and no header a server accepts
	maxIDLen   = 256
)

// checkKey returns why a created key is unusable, or "" when it has a
// documented prefix followed by at least minKeyBody key characters.
func checkKey(k string) string {
	body, ok := strings.CutPrefix(k, PrefixLive)
	if !ok {
		body, ok = strings.CutPrefix(k, PrefixTest)
	}
	switch {
	case k == "":
		return "the answer has no key"
	case !ok:
		return "the key has neither the pfk_live_ nor the pfk_test_ prefix"
	case len(body) < minKeyBody:
		return "the key is too short to be a Reevit key"
	case len(k) > maxKeyLen:
		return "the key is longer than 512 characters"
	case strings.IndexFunc(body, func(r rune) bool { return !isKeyChar(r) }) >= 0:
		return "the key holds characters a Reevit key never has"
	}
	return ""
}

func isKeyChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// validID reports whether a key id is usable in a URL path, a header and a
// status field: 1 to 256 visible ASCII characters.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// CreateKey creates a key named name with scopes (POST /v1/api-keys). The
// returned Key is the only time Reevit reveals the secret. idempotencyKey is
// required: resending the same request with it within 24 hours returns the
// same key instead of creating another, so derive it deterministically and
// record it before calling.
//
// The returned key always starts with PrefixLive or PrefixTest followed by
// at least 8 key characters. A 2xx answer whose key is not such a key
// (missing, too short, unknown prefix) is a *MalformedKeyError carrying the
// id of the key Reevit created, which is live: revoke it. An answer without
// a usable id is an *UnexpectedResponseError.
func (c *Client) CreateKey(ctx context.Context, name string, scopes []string, idempotencyKey string) (*Key, error) {
	if idempotencyKey == "" {
		return nil, ErrMissingIdempotencyKey
	}
	if scopes == nil {
		scopes = []string{}
	}
	body, err := json.Marshal(struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}{name, scopes})
	if err != nil {
		return nil, fmt.Errorf("reevit create: encode request: %w", err)
	}
	status, raw, err := c.do(ctx, OpCreate, http.MethodPost, "/v1/api-keys", body, idempotencyKey)
	if err != nil {
		return nil, err
	}
	var kj keyJSON
	if err := json.Unmarshal(raw, &kj); err != nil {
		return nil, &UnexpectedResponseError{Operation: OpCreate, StatusCode: status, Reason: "response is not a JSON key object"}
	}
	if kj.ID == "" {
		return nil, &UnexpectedResponseError{Operation: OpCreate, StatusCode: status, Reason: "response lacks the key id"}
	}
	if !validID(kj.ID) {
		return nil, &UnexpectedResponseError{Operation: OpCreate, StatusCode: status, Reason: "response has a key id that is not 1 to 256 visible ASCII characters"}
	}
	if reason := checkKey(kj.Key); reason != "" {
		return nil, &MalformedKeyError{Operation: OpCreate, StatusCode: status, ID: kj.ID, Reason: reason}
	}
	k := kj.toKey()
	return &k, nil
}

// ListKeys lists the organization's active keys (GET /v1/api-keys). Listed
// keys never carry the secret (Key is empty). Both a bare JSON array and an
// object {"data": [...]} are accepted, since the shape is undocumented. A
// listed key without a usable id makes the whole answer an
// *UnexpectedResponseError: a partial listing must decide nothing.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	status, raw, err := c.do(ctx, OpList, http.MethodGet, "/v1/api-keys", nil, "")
	if err != nil {
		return nil, err
	}
	items, err := decodeList(raw)
	if err != nil {
		return nil, &UnexpectedResponseError{Operation: OpList, StatusCode: status, Reason: err.Error()}
	}
	keys := make([]Key, 0, len(items))
	for _, it := range items {
		if !validID(it.ID) {
			return nil, &UnexpectedResponseError{Operation: OpList, StatusCode: status, Reason: "a listed key has no id of 1 to 256 visible ASCII characters"}
		}
		k := it.toKey()
		k.Key = "" // a list never reveals secrets; do not keep one if sent
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeList(raw []byte) ([]keyJSON, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '[':
		var items []keyJSON
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, errors.New("list response is not a JSON array of keys")
		}
		return items, nil
	case len(raw) > 0 && raw[0] == '{':
		var obj struct {
			Data *[]keyJSON `json:"data"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, errors.New(`list response is not a JSON object {"data": [...]}`)
		}
		if obj.Data == nil {
			return nil, errors.New(`list response object has no "data" field`)
		}
		return *obj.Data, nil
	default:
		return nil, errors.New("list response is not JSON")
	}
}

// RevokeKey revokes key id (DELETE /v1/api-keys/{id}). A key that is already
// gone (404) counts as revoked and returns nil. idempotencyKey is required.
func (c *Client) RevokeKey(ctx context.Context, id, idempotencyKey string) error {
	if idempotencyKey == "" {
		return ErrMissingIdempotencyKey
	}
	if id == "" {
		return &ConfigError{Field: "key id", Reason: "is required"}
	}
	_, _, err := c.do(ctx, OpRevoke, http.MethodDelete, "/v1/api-keys/"+url.PathEscape(id), nil, idempotencyKey)
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	return err
}

// do sends one request and returns the status and body of a 2xx answer, or
// a typed error.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, idempotencyKey string) (status int, raw []byte, err error) {
	hdr := http.Header{"X-Reevit-Key": {c.adminKey}, "X-Org-Id": {c.cfg.OrgID}}
	if c.cfg.ActorID != "" {
		hdr.Set("X-Actor-Id", c.cfg.ActorID)
	}
	if body != nil {
		hdr.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		hdr.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.core.Do(ctx, httpcore.Request{Operation: op, Method: method, URL: c.base + path, Header: hdr, Body: body})
	if err != nil {
		return 0, nil, httpcore.MapError(err,
			func(e *httpcore.NetworkError) error {
				return &NetworkError{Operation: op, Timeout: e.Timeout, Err: e.Err}
			},
			func(e *httpcore.BodyTooLargeError) error {
				return &UnexpectedResponseError{Operation: op, StatusCode: e.StatusCode, Reason: e.Error()}
			},
			func(e *httpcore.HeaderError) error { return &ConfigError{Field: e.Name, Reason: e.Reason} })
	}
	if resp.Status >= 200 && resp.Status < 300 {
		return resp.Status, resp.Body, nil
	}
	return resp.Status, nil, c.statusError(op, resp)
}

const missingScopeMarker = "missing required scope:"

func (c *Client) statusError(op string, resp *httpcore.Response) error {
	eb := httpcore.DecodeErrorBody(resp.Body)
	code := httpcore.Sanitize(eb.Error, c.adminKey)
	msg := httpcore.Sanitize(eb.Message, c.adminKey)
	status := resp.Status

	switch {
	case status == http.StatusUnauthorized:
		return &UnauthorizedError{Operation: op, StatusCode: status, Code: code, Message: msg}
	case status == http.StatusForbidden:
		scope := ""
		if i := strings.Index(msg, missingScopeMarker); i >= 0 {
			scope = strings.TrimSpace(msg[i+len(missingScopeMarker):])
		}
		return &ForbiddenError{Operation: op, StatusCode: status, Code: code, Message: msg, Scope: scope}
	case status == http.StatusTooManyRequests:
		return &RateLimitedError{Operation: op, StatusCode: status, Code: code, Message: msg,
			RetryAfter: httpcore.RetryAfter(eb.RetryAfter, resp.Header.Get("Retry-After"), time.Now())}
	case status == http.StatusNotFound:
		return &NotFoundError{Operation: op, StatusCode: status, Code: code, Message: msg}
	case status >= 500:
		return &ServerError{Operation: op, StatusCode: status, Code: code, Message: msg}
	case status >= 400:
		return &BadRequestError{Operation: op, StatusCode: status, Code: code, Message: msg}
	default:
		return &UnexpectedResponseError{Operation: op, StatusCode: status, Reason: "status is neither success nor error (redirects are not followed)"}
	}
}
