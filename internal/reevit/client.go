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
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds each call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxBodyBytes bounds how much of a response body is read.
const maxBodyBytes = 1 << 20

// Operation names passed to Config.Observe and set on errors.
const (
	OpCreate = "create"
	OpList   = "list"
	OpRevoke = "revoke"
)

const userAgent = "keywarden-reevit-client"

// sharedTransport is used by every Client without its own HTTPClient, so all
// of them reuse the same connection pool.
var sharedTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}()

var sharedHTTPClient = &http.Client{Transport: sharedTransport, CheckRedirect: noRedirects}

// noRedirects stops the client following redirects: net/http would resend
// the X-Reevit-Key header to the new location.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

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
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = fmt.Fprint(f, c.GoString())
	case f.Flag('+'):
		_, _ = fmt.Fprintf(f, "%+v", c.printable())
	default:
		_, _ = fmt.Fprintf(f, "%v", c.printable())
	}
}

func (c Config) printable() printableConfig {
	p := printableConfig{BaseURL: c.BaseURL, OrgID: c.OrgID, ActorID: c.ActorID, AllowHTTP: c.AllowHTTP,
		Timeout: c.Timeout, HTTPClient: c.HTTPClient, Observe: c.Observe != nil}
	if c.AdminKey != "" {
		p.AdminKey = redacted
	}
	return p
}

// Client calls Reevit's API-key endpoints for one organization. It is safe
// for concurrent use.
type Client struct {
	cfg     Config
	base    string // BaseURL without a trailing slash
	http    *http.Client
	timeout time.Duration
}

// New validates cfg and returns a Client. A non-https BaseURL is refused with
// an *InsecureURLError unless cfg.AllowHTTP is set.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("reevit: BaseURL %q must be an absolute http(s) URL", cfg.BaseURL)
	}
	if u.User != nil {
		return nil, errors.New("reevit: BaseURL must not carry credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("reevit: BaseURL %q must not have a query or fragment", cfg.BaseURL)
	}
	if u.Scheme != "https" && !cfg.AllowHTTP {
		return nil, &InsecureURLError{URL: cfg.BaseURL}
	}
	if cfg.OrgID == "" {
		return nil, errors.New("reevit: OrgID is required")
	}
	if cfg.AdminKey == "" {
		return nil, errors.New("reevit: AdminKey is required")
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(u.String(), "/"), http: sharedHTTPClient, timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		hc.CheckRedirect = noRedirects
		c.http = &hc
	}
	return c, nil
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

// CreateKey creates a key named name with scopes (POST /v1/api-keys). The
// returned Key is the only time Reevit reveals the secret. idempotencyKey is
// required: resending the same request with it within 24 hours returns the
// same key instead of creating another, so derive it deterministically and
// record it before calling.
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
	if kj.ID == "" || kj.Key == "" {
		return nil, &UnexpectedResponseError{Operation: OpCreate, StatusCode: status, Reason: "response lacks the key id or secret"}
	}
	k := kj.toKey()
	return &k, nil
}

// ListKeys lists the organization's active keys (GET /v1/api-keys). Listed
// keys never carry the secret (Key is empty). Both a bare JSON array and an
// object {"data": [...]} are accepted, since the shape is undocumented.
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
		return errors.New("reevit revoke: key id is required")
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
	start := time.Now()
	defer func() {
		if c.cfg.Observe != nil {
			c.cfg.Observe(op, status, time.Since(start))
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("reevit %s: build request: %w", op, err)
	}
	req.Header.Set("X-Reevit-Key", c.cfg.AdminKey)
	req.Header.Set("X-Org-Id", c.cfg.OrgID)
	if c.cfg.ActorID != "" {
		req.Header.Set("X-Actor-Id", c.cfg.ActorID)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, c.networkError(ctx, op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	status = resp.StatusCode
	if err != nil {
		// The answer started but did not finish: as good as no answer.
		return 0, nil, c.networkError(ctx, op, err)
	}
	if len(raw) > maxBodyBytes {
		return status, nil, &UnexpectedResponseError{Operation: op, StatusCode: status, Reason: "response body exceeds 1 MiB"}
	}
	if status >= 200 && status < 300 {
		return status, raw, nil
	}
	return status, nil, c.statusError(op, resp, raw)
}

func (c *Client) networkError(ctx context.Context, op string, err error) error {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
	return &NetworkError{Operation: op, Timeout: timeout, Err: err}
}

// errorBody is Reevit's error shape.
type errorBody struct {
	Error      string          `json:"error"`
	Message    string          `json:"message"`
	RetryAfter json.RawMessage `json:"retry_after"`
}

const missingScopeMarker = "missing required scope:"

func (c *Client) statusError(op string, resp *http.Response, raw []byte) error {
	var eb errorBody
	_ = json.Unmarshal(raw, &eb) // a non-JSON body leaves the fields empty
	code := sanitize(eb.Error, c.cfg.AdminKey)
	msg := sanitize(eb.Message, c.cfg.AdminKey)
	status := resp.StatusCode

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
			RetryAfter: retryAfter(eb.RetryAfter, resp.Header.Get("Retry-After"), time.Now())}
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

// retryAfter reads the body's retry_after (seconds), else the Retry-After
// header (seconds or an HTTP date), else 60s.
func retryAfter(body json.RawMessage, header string, now time.Time) time.Duration {
	if len(body) > 0 {
		var secs float64
		if err := json.Unmarshal(body, &secs); err == nil && secs > 0 {
			return time.Duration(secs * float64(time.Second))
		}
		var s string
		if err := json.Unmarshal(body, &s); err == nil {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f > 0 {
				return time.Duration(f * float64(time.Second))
			}
		}
	}
	if header = strings.TrimSpace(header); header != "" {
		if secs, err := strconv.Atoi(header); err == nil && secs > 0 {
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(header); err == nil && t.After(now) {
			return t.Sub(now)
		}
	}
	return defaultRetryAfter
}
