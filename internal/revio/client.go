// Package revio is a client for Rev.io's API-key authentication: exchange an
// API key for a JWT (POST /api/v1/auth/api-key/exchange), then call the API
// with "Authorization: Bearer <jwt>" and "X-Revio-Host: <PSA host>".
//
// It knows HTTP and nothing of Kubernetes. Every failure is a typed error
// (usable with errors.As) whose text never contains the API key or a token,
// and the client never logs.
package revio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/httpcore"
)

// DefaultBaseURL is Rev.io's documented API root, the default of an issuer's
// spec.url (the CRD's +kubebuilder:default repeats it, as markers cannot name
// a constant).
const DefaultBaseURL = v1alpha1.DefaultRevioURL

// DefaultTimeout bounds each call when Config.Timeout is zero.
const DefaultTimeout = httpcore.DefaultTimeout

// ExchangePath is the documented path of the API-key exchange.
const ExchangePath = "/api/v1/auth/api-key/exchange"

// Operation names passed to Config.Observe and set on errors.
const (
	OpExchange = "exchange"
	OpCall     = "call"
)

const userAgent = "keywarden-revio-client"

// Config configures a Client.
type Config struct {
	// BaseURL is the API root; empty means DefaultBaseURL.
	BaseURL string
	// Host is sent as X-Revio-Host on authenticated calls: the domain of
	// the PSA website, e.g. "acme.psarev.io". Required by Get.
	Host string
	// AllowHTTP permits a non-https BaseURL (local simulators, tests).
	AllowHTTP bool
	// Timeout bounds each call; 0 means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient sends the requests; nil means a package-wide shared client.
	// Its redirect policy is replaced so redirects are never followed.
	HTTPClient *http.Client
	// Observe, when set, is called after every call with the operation
	// ("exchange" or "call"), the HTTP status (0 when no answer was read)
	// and the call's duration. It must be safe for concurrent use.
	Observe func(operation string, code int, d time.Duration)
}

// Client exchanges API keys for tokens and makes authenticated calls. It is
// safe for concurrent use and holds no secret: the API key and the token
// are arguments of each call.
type Client struct {
	cfg  Config
	base string // BaseURL without a trailing slash
	core httpcore.Caller
}

// New validates cfg and returns a Client. A non-https BaseURL is refused with
// an *InsecureURLError unless cfg.AllowHTTP is set; any other unusable field
// (a BaseURL that is no http(s) URL, a Host that is not a bare host name, or
// holds white space or a control character) is a *ConfigError.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, &ConfigError{Field: "BaseURL", Reason: fmt.Sprintf("must be an absolute http(s) URL (got %q)", httpcore.Sanitize(cfg.BaseURL))}
	case u.User != nil:
		return nil, &ConfigError{Field: "BaseURL", Reason: "must not carry credentials"}
	case u.RawQuery != "" || u.Fragment != "":
		return nil, &ConfigError{Field: "BaseURL", Reason: fmt.Sprintf("must not have a query or fragment (got %q)", httpcore.Sanitize(cfg.BaseURL))}
	case u.Scheme != "https" && !cfg.AllowHTTP:
		return nil, &InsecureURLError{URL: cfg.BaseURL}
	}
	if cfg.Host != "" {
		var he *httpcore.HeaderError
		if errors.As(httpcore.CheckHeaderValue("X-Revio-Host", cfg.Host), &he) {
			return nil, &ConfigError{Field: "Host", Reason: he.Reason + " and cannot be sent as X-Revio-Host"}
		}
		if !validHost(cfg.Host) {
			return nil, &ConfigError{Field: "Host", Reason: fmt.Sprintf("must be a bare host name such as acme.psarev.io (got %q)", httpcore.Sanitize(cfg.Host))}
		}
	}
	return &Client{cfg: cfg, base: strings.TrimRight(u.String(), "/"), core: httpcore.Caller{Service: service,
		HTTP: httpcore.Client(cfg.HTTPClient), Timeout: cfg.Timeout, UserAgent: userAgent, Observe: cfg.Observe,
	}}, nil
}

// validHost accepts a host name or host:port, without scheme, path or spaces.
func validHost(h string) bool {
	if strings.ContainsAny(h, "/?#@ \t\r\n") {
		return false
	}
	u, err := url.Parse("https://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

// String describes the client.
func (c *Client) String() string {
	return fmt.Sprintf("revio.Client{BaseURL:%q, Host:%q}", c.base, c.cfg.Host)
}

// BaseURL returns the API root the client calls, without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// Host returns the X-Revio-Host the client sends.
func (c *Client) Host() string { return c.cfg.Host }

// Exchange trades apiKey for a JWT (POST {BaseURL}/api/v1/auth/api-key/exchange,
// body {"apiKey": ...}) and returns data.token. IssuedAt and ExpiresAt are
// read from the JWT's iat and exp claims without verifying its signature; a
// token that is not a JWT or has no exp is still returned, with zero times.
//
// Errors: *InvalidAPIKeyError (4xx other than 429, or an empty key),
// *RateLimitedError, *ServerError, *NetworkError, *ProtocolError (a 2xx
// without data.token, or an unusable answer).
//
// Surrounding white space of apiKey (a trailing newline left by `echo` in
// the Secret) is dropped; a key that is then empty, or holds a control
// character, is an *InvalidAPIKeyError with StatusCode 0 and nothing is sent.
func (c *Client) Exchange(ctx context.Context, apiKey string) (*Token, error) {
	apiKey = strings.TrimSpace(apiKey)
	if apiKey == "" {
		return nil, &InvalidAPIKeyError{}
	}
	if strings.ContainsFunc(apiKey, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, &InvalidAPIKeyError{Message: "the key contains a control character"}
	}
	body, err := json.Marshal(struct {
		APIKey string `json:"apiKey"`
	}{apiKey})
	if err != nil {
		return nil, &ProtocolError{Operation: OpExchange, Reason: "cannot encode the request"}
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	resp, err := c.do(ctx, OpExchange, http.MethodPost, ExchangePath, hdr, body)
	if err != nil {
		return nil, err
	}
	switch s := resp.Status; {
	case s >= 200 && s < 300:
	case s == http.StatusTooManyRequests || s >= 500:
		return nil, c.statusError(OpExchange, resp, apiKey)
	case s >= 400:
		eb := httpcore.DecodeErrorBody(resp.Body)
		return nil, &InvalidAPIKeyError{StatusCode: s, Code: httpcore.Sanitize(eb.Error, apiKey), Message: httpcore.Sanitize(eb.Message, apiKey)}
	default:
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: s, Reason: "status is neither success nor error (redirects are not followed)"}
	}

	var out struct {
		Data *struct {
			Token json.RawMessage `json:"token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.Status, Reason: "response is not a JSON object"}
	}
	var jwt string
	if out.Data == nil || len(out.Data.Token) == 0 || json.Unmarshal(out.Data.Token, &jwt) != nil || strings.TrimSpace(jwt) == "" {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.Status, Reason: "response has no data.token string"}
	}
	if !validToken(jwt) {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.Status, Reason: "data.token is not a valid header value"}
	}
	t := &Token{JWT: jwt}
	if iat, exp, ok := ParseClaims(jwt); ok {
		t.IssuedAt, t.ExpiresAt = iat, exp
	}
	return t, nil
}

// Get makes an authenticated GET of path (relative to BaseURL, starting with
// "/", optionally with a query) with "Authorization: Bearer <token>",
// "X-Revio-Host: <Host>" and "Content-Type: application/json".
//
// Whenever an answer was read, status and body (at most 1 MiB) are returned.
// err is non-nil for a 401 (*UnauthorizedError: exchange again), a 429
// (*RateLimitedError), a 5xx (*ServerError), a transport failure
// (*NetworkError, status 0) or an oversized body (*ProtocolError); any other
// status (2xx, 3xx, 404, ...) is for the caller to judge.
func (c *Client) Get(ctx context.Context, token, path string) (status int, body []byte, err error) {
	if c.cfg.Host == "" {
		return 0, nil, &ConfigError{Field: "Host", Reason: "(X-Revio-Host) is required for authenticated calls"}
	}
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.ContainsAny(path, " \t\r\n#") {
		return 0, nil, &ConfigError{Field: "path", Reason: fmt.Sprintf("%q must be relative to the base URL and start with a single /", httpcore.Sanitize(path, token))}
	}
	if !validToken(token) {
		return 0, nil, &UnauthorizedError{}
	}
	hdr := http.Header{
		"Authorization": {"Bearer " + token},
		"X-Revio-Host":  {c.cfg.Host},
		"Content-Type":  {"application/json"},
	}
	resp, err := c.do(ctx, OpCall, http.MethodGet, path, hdr, nil)
	if err != nil {
		return 0, nil, err
	}
	switch s := resp.Status; {
	case s == http.StatusUnauthorized:
		eb := httpcore.DecodeErrorBody(resp.Body)
		return s, resp.Body, &UnauthorizedError{StatusCode: s, Code: httpcore.Sanitize(eb.Error, token), Message: httpcore.Sanitize(eb.Message, token)}
	case s == http.StatusTooManyRequests || s >= 500:
		return s, resp.Body, c.statusError(OpCall, resp, token)
	}
	return resp.Status, resp.Body, nil
}

// validToken reports whether a token can be sent as a Bearer credential:
// non-empty visible ASCII.
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= 0x20 || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// do sends one request and returns the answer, or a *NetworkError, a
// *ProtocolError (oversized body) or a *ConfigError (a header value that
// cannot be sent).
func (c *Client) do(ctx context.Context, op, method, path string, hdr http.Header, body []byte) (*httpcore.Response, error) {
	resp, err := c.core.Do(ctx, httpcore.Request{Operation: op, Method: method, URL: c.base + path, Header: hdr, Body: body})
	if err != nil {
		return nil, httpcore.MapError(err,
			func(e *httpcore.NetworkError) error {
				return &NetworkError{Service: e.Service, Operation: op, Timeout: e.Timeout, Err: e.Err}
			},
			func(e *httpcore.BodyTooLargeError) error {
				return &ProtocolError{Operation: op, StatusCode: e.StatusCode, Reason: e.Error()}
			},
			func(e *httpcore.HeaderError) error { return &ConfigError{Field: e.Name, Reason: e.Reason} })
	}
	return resp, nil
}

// statusError maps a 429 or 5xx answer to its typed error.
func (c *Client) statusError(op string, resp *httpcore.Response, secret string) error {
	eb := httpcore.DecodeErrorBody(resp.Body)
	code, msg := httpcore.Sanitize(eb.Error, secret), httpcore.Sanitize(eb.Message, secret)
	if resp.Status == http.StatusTooManyRequests {
		return &RateLimitedError{Operation: op, StatusCode: resp.Status, Code: code, Message: msg,
			RetryAfter: httpcore.RetryAfter(eb.RetryAfter, resp.Header.Get("Retry-After"), time.Now())}
	}
	return &ServerError{Operation: op, StatusCode: resp.Status, Code: code, Message: msg}
}
