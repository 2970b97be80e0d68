// Package revio is a client for Rev.io's API-key authentication: exchange an
// API key for a JWT (POST /api/v1/auth/api-key/exchange), then call the API
// with "Authorization: Bearer <jwt>" and "X-Revio-Host: <PSA host>".
//
// It knows HTTP and nothing of Kubernetes. Every failure is a typed error
// (usable with errors.As) whose text never contains the API key or a token,
// and the client never logs.
package revio

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
	"strings"
	"time"
)

// DefaultBaseURL is Rev.io's documented API root.
const DefaultBaseURL = "https://api.psarev.io"

// DefaultTimeout bounds each call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// ExchangePath is the documented path of the API-key exchange.
const ExchangePath = "/api/v1/auth/api-key/exchange"

// maxBodyBytes bounds how much of a response body is read.
const maxBodyBytes = 1 << 20

// Operation names passed to Config.Observe and set on errors.
const (
	OpExchange = "exchange"
	OpCall     = "call"
)

const userAgent = "keywarden-revio-client"

// sharedTransport is used by every Client without its own HTTPClient, so all
// of them reuse the same connection pool.
var sharedTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}()

var sharedHTTPClient = &http.Client{Transport: sharedTransport, CheckRedirect: noRedirects}

// noRedirects stops the client following redirects: net/http would resend
// the API key (a POST body after 307/308) or X-Revio-Host elsewhere.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

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
	cfg     Config
	base    string // BaseURL without a trailing slash
	http    *http.Client
	timeout time.Duration
}

// New validates cfg and returns a Client. A non-https BaseURL is refused with
// an *InsecureURLError unless cfg.AllowHTTP is set.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("revio: BaseURL %q must be an absolute http(s) URL", cfg.BaseURL)
	}
	if u.User != nil {
		return nil, errors.New("revio: BaseURL must not carry credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("revio: BaseURL %q must not have a query or fragment", cfg.BaseURL)
	}
	if u.Scheme != "https" && !cfg.AllowHTTP {
		return nil, &InsecureURLError{URL: cfg.BaseURL}
	}
	if cfg.Host != "" && !validHost(cfg.Host) {
		return nil, fmt.Errorf("revio: Host %q must be a bare host name such as acme.psarev.io", cfg.Host)
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
func (c *Client) Exchange(ctx context.Context, apiKey string) (*Token, error) {
	if strings.TrimSpace(apiKey) == "" {
		return nil, &InvalidAPIKeyError{}
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
	switch s := resp.status; {
	case s >= 200 && s < 300:
	case s == http.StatusTooManyRequests || s >= 500:
		return nil, c.statusError(OpExchange, resp, apiKey)
	case s >= 400:
		eb := decodeErrorBody(resp.body)
		return nil, &InvalidAPIKeyError{StatusCode: s, Code: sanitize(eb.Error, apiKey), Message: sanitize(eb.Message, apiKey)}
	default:
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: s, Reason: "status is neither success nor error (redirects are not followed)"}
	}

	var out struct {
		Data *struct {
			Token json.RawMessage `json:"token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.status, Reason: "response is not a JSON object"}
	}
	var jwt string
	if out.Data == nil || len(out.Data.Token) == 0 || json.Unmarshal(out.Data.Token, &jwt) != nil || strings.TrimSpace(jwt) == "" {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.status, Reason: "response has no data.token string"}
	}
	if !validToken(jwt) {
		return nil, &ProtocolError{Operation: OpExchange, StatusCode: resp.status, Reason: "data.token is not a valid header value"}
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
		return 0, nil, errors.New("revio call: Config.Host (X-Revio-Host) is required for authenticated calls")
	}
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.ContainsAny(path, " \t\r\n#") {
		return 0, nil, fmt.Errorf("revio call: path %q must be relative to the base URL and start with a single /", path)
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
	switch s := resp.status; {
	case s == http.StatusUnauthorized:
		eb := decodeErrorBody(resp.body)
		return s, resp.body, &UnauthorizedError{StatusCode: s, Code: sanitize(eb.Error, token), Message: sanitize(eb.Message, token)}
	case s == http.StatusTooManyRequests || s >= 500:
		return s, resp.body, c.statusError(OpCall, resp, token)
	}
	return resp.status, resp.body, nil
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

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request and returns the answer, or a *NetworkError or
// *ProtocolError (oversized body).
func (c *Client) do(ctx context.Context, op, method, path string, hdr http.Header, body []byte) (_ *response, err error) {
	start := time.Now()
	status := 0
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
		return nil, fmt.Errorf("revio %s: build request for path %q: %w", op, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, networkError(ctx, op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		// The answer started but did not finish: as good as no answer.
		return nil, networkError(ctx, op, err)
	}
	status = resp.StatusCode
	if len(raw) > maxBodyBytes {
		return nil, &ProtocolError{Operation: op, StatusCode: status, Reason: "response body exceeds 1 MiB"}
	}
	return &response{status: status, header: resp.Header, body: raw}, nil
}

func networkError(ctx context.Context, op string, err error) error {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
	return &NetworkError{Operation: op, Timeout: timeout, Err: err}
}

// errorBody is Rev.io's error shape, as the simulator and Reevit use it.
type errorBody struct {
	Error      string          `json:"error"`
	Message    string          `json:"message"`
	RetryAfter json.RawMessage `json:"retry_after"`
}

func decodeErrorBody(raw []byte) errorBody {
	var eb errorBody
	_ = json.Unmarshal(raw, &eb) // a non-JSON body leaves the fields empty
	return eb
}

// statusError maps a 429 or 5xx answer to its typed error.
func (c *Client) statusError(op string, resp *response, secret string) error {
	eb := decodeErrorBody(resp.body)
	code, msg := sanitize(eb.Error, secret), sanitize(eb.Message, secret)
	if resp.status == http.StatusTooManyRequests {
		return &RateLimitedError{Operation: op, StatusCode: resp.status, Code: code, Message: msg,
			RetryAfter: retryAfter(eb.RetryAfter, resp.header.Get("Retry-After"), time.Now())}
	}
	return &ServerError{Operation: op, StatusCode: resp.status, Code: code, Message: msg}
}
