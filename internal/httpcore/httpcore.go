// Package httpcore is the HTTP plumbing the Reevit and Rev.io clients share:
// one transport with short dials and per-host connection limits, one way to
// send a request and read a bounded answer, typed transport errors, one
// Retry-After parser with one cap, and one sanitiser for server text.
// A HostGuard (one per process, wrapped around the transport) bounds the
// requests in flight to each host and opens a circuit breaker on a host
// that stops answering, so one dead host cannot hold every caller.
//
// It knows nothing of either API: each client keeps its own typed API errors
// (most of them types of this package's error structures, which hold the
// fields and the wording both share) and maps the errors of this package
// onto them. Nothing here logs, and no
// error of this package carries a header value or a body.
package httpcore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

const (
	// MaxBodyBytes bounds how much of any response body is read (1 MiB).
	MaxBodyBytes = 1 << 20
	// DefaultTimeout bounds each call when Caller.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DialTimeout bounds connecting to a host, so a black-holed address
	// fails in seconds instead of holding a worker for the whole call.
	DialTimeout = 5 * time.Second
	// TLSHandshakeTimeout bounds the TLS handshake.
	TLSHandshakeTimeout = 5 * time.Second
	// MaxConnsPerHost bounds the connections (dialing, active and idle) to
	// one host, so one slow host cannot take every socket of the process.
	MaxConnsPerHost = 32
	// MaxIdleConnsPerHost is how many idle connections are kept per host.
	MaxIdleConnsPerHost = 16
	// maxHeaderBytes bounds a response's header block.
	maxHeaderBytes = 64 << 10
)

// NewTransport returns the transport the clients use when given no
// *http.Client: proxies from the environment, a DialTimeout, TLS 1.2 or
// newer, HTTP/2 when the server offers it, MaxConnsPerHost and
// MaxIdleConnsPerHost.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    TLSHandshakeTimeout,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    MaxIdleConnsPerHost,
		MaxConnsPerHost:        MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
}

// shared is used by every client built without its own *http.Client, so all
// of them share one connection pool and its per-host limits.
var shared = &http.Client{Transport: NewTransport(), CheckRedirect: noRedirects}

// noRedirects stops net/http following redirects: it would resend
// credentials (headers, or a POST body after 307/308) to the new location.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Client returns hc with redirects disabled (a copy: hc is not changed), or
// the shared client when hc is nil.
func Client(hc *http.Client) *http.Client {
	if hc == nil {
		return shared
	}
	c := *hc
	c.CheckRedirect = noRedirects
	return &c
}

// Caller sends requests for one client. Its zero value is not usable: set
// HTTP (see Client).
type Caller struct {
	// Service names the API in error texts ("reevit", "revio").
	Service string
	// HTTP sends the requests; it must not follow redirects (see Client).
	HTTP *http.Client
	// Timeout bounds each call, answer read included; 0 means DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent as User-Agent.
	UserAgent string
	// Observe, when set, is called after every call with the operation, the
	// HTTP status (0 when no complete answer was read) and the duration.
	Observe func(operation string, code int, d time.Duration)
}

// Request is one call.
type Request struct {
	// Operation names the call for Observe and errors ("create", "exchange").
	Operation string
	Method    string
	// URL is absolute.
	URL    string
	Header http.Header
	// Body is sent as is when non-nil.
	Body []byte
}

// Response is a complete answer of any status.
type Response struct {
	Status int
	Header http.Header
	// Body is at most MaxBodyBytes long.
	Body []byte
}

// Do sends req and reads the whole answer. Every answer that was read
// completely is returned, whatever its status; the errors are:
//   - *HeaderError: a header value cannot be sent; nothing was sent.
//   - *NetworkError: no complete answer was read (the request may or may
//     not have reached the server).
//   - *BodyTooLargeError: the body exceeds MaxBodyBytes.
func (c *Caller) Do(ctx context.Context, req Request) (_ *Response, err error) {
	start := time.Now()
	status := 0
	defer func() {
		if c.Observe != nil {
			c.Observe(req.Operation, status, time.Since(start))
		}
	}()
	for name, vs := range req.Header {
		for _, v := range vs {
			if err := CheckHeaderValue(name, v); err != nil {
				return nil, err
			}
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for name, vs := range req.Header {
		hr.Header[http.CanonicalHeaderKey(name)] = vs
	}
	hr.Header.Set("Accept", "application/json")
	if c.UserAgent != "" {
		hr.Header.Set("User-Agent", c.UserAgent)
	}

	resp, err := c.HTTP.Do(hr)
	if err != nil {
		return nil, c.networkError(ctx, req.Operation, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		// The answer started but did not finish: as good as no answer.
		return nil, c.networkError(ctx, req.Operation, err)
	}
	status = resp.StatusCode
	if len(raw) > MaxBodyBytes {
		return nil, &BodyTooLargeError{StatusCode: status}
	}
	return &Response{Status: status, Header: resp.Header, Body: raw}, nil
}

// NetworkError is a transport failure: no complete HTTP answer was read.
// The request may or may not have reached the server. Each client declares
// its own NetworkError as a type of this structure, so errors.As tells the
// clients' errors apart.
type NetworkError struct {
	// Service and Operation name the call ("reevit", "create").
	Service   string
	Operation string
	// StatusCode is always 0: no status was read.
	StatusCode int
	// Timeout is true when the call's deadline passed (or a dial or
	// handshake timed out).
	Timeout bool
	// Err is the underlying error (usually a *url.Error, which carries the
	// method and URL but never headers or the body).
	Err error
}

func (e *NetworkError) Error() string {
	what := "network error"
	if e.Timeout {
		what = "timed out"
	}
	// A call with no service or operation name leaves no stray space.
	call := strings.TrimSpace(e.Service + " " + e.Operation)
	if call == "" {
		return fmt.Sprintf("%s: %v", what, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", call, what, e.Err)
}

// Unwrap returns the underlying transport error.
func (e *NetworkError) Unwrap() error { return e.Err }

func (c *Caller) networkError(ctx context.Context, op string, err error) *NetworkError {
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
	return &NetworkError{Service: c.Service, Operation: op, Timeout: timeout, Err: err}
}

// BodyTooLargeError is an answer whose body exceeds MaxBodyBytes.
type BodyTooLargeError struct {
	StatusCode int
}

func (e *BodyTooLargeError) Error() string { return "response body exceeds 1 MiB" }

// HeaderError says a header value cannot be sent: it is empty where a value
// is required, has surrounding white space, or holds a control character
// (a newline would end the header). It never holds the value.
type HeaderError struct {
	// Name is the header's name, e.g. "X-Actor-Id".
	Name string
	// Reason says what is wrong, e.g. "contains a control character".
	Reason string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("header %s: value %s", e.Name, e.Reason)
}

// maxHeaderValue bounds one header value sent; servers refuse larger.
const maxHeaderValue = 4096

// CheckHeaderValue returns a *HeaderError when v cannot be sent as the value
// of header name unchanged: empty, longer than 4096 bytes, surrounded by
// white space (servers strip it, so what arrives is not what was meant), or
// holding a control character other than a tab.
func CheckHeaderValue(name, v string) error {
	switch {
	case v == "":
		return &HeaderError{Name: name, Reason: "is empty"}
	case len(v) > maxHeaderValue:
		return &HeaderError{Name: name, Reason: "is longer than 4096 bytes"}
	case isSpace(v[0]) || isSpace(v[len(v)-1]):
		return &HeaderError{Name: name, Reason: "has leading or trailing white space"}
	}
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return &HeaderError{Name: name, Reason: "contains a control character (such as a newline)"}
		}
	}
	return nil
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f'
}

// MapError turns an error of Do into a client's own types: network, tooLarge
// and header build the client's error from this package's; any other error
// (a request that could not be built) is returned as is.
func MapError(err error, network func(*NetworkError) error, tooLarge func(*BodyTooLargeError) error, header func(*HeaderError) error) error {
	var (
		ne *NetworkError
		tl *BodyTooLargeError
		he *HeaderError
	)
	switch {
	case errors.As(err, &ne):
		return network(ne)
	case errors.As(err, &tl):
		return tooLarge(tl)
	case errors.As(err, &he):
		return header(he)
	}
	return err
}

// AsAny reports whether errors.As(err, target) holds for any of targets
// (each a pointer to an error type, e.g. new(*ServerError)).
func AsAny(err error, targets ...any) bool {
	for _, t := range targets {
		if errors.As(err, t) {
			return true
		}
	}
	return false
}

// Describe is the one shape of an API error's text:
// "<service> <op>: <what> (HTTP <status> <status text>): <message>".
// message must already be sanitised.
func Describe(service, op, what string, status int, message string) string {
	s := fmt.Sprintf("%s %s: %s (HTTP %d", service, op, what, status)
	if t := http.StatusText(status); t != "" {
		s += " " + t
	}
	s += ")"
	if message != "" {
		s += ": " + message
	}
	return s
}
