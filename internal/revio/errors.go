package revio

import (
	"errors"
	"time"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// ErrInsecureURL is matched (errors.Is) by every *InsecureURLError.
var ErrInsecureURL = errors.New("revio: refusing a non-https base URL (set AllowHTTP to permit it)")

// service names the API in error texts and to httpcore.
const service = "revio"

// InsecureURLError is returned by New for a non-https BaseURL when AllowHTTP
// is false: the API key and the tokens must only travel over TLS. Its field
// is httpcore.InsecureURLError's: URL, the refused base URL.
type InsecureURLError httpcore.InsecureURLError

func (e *InsecureURLError) Error() string { return (*httpcore.InsecureURLError)(e).Describe(service) }

// Is makes errors.Is(err, ErrInsecureURL) true.
func (e *InsecureURLError) Is(target error) bool { return target == ErrInsecureURL }

// InvalidAPIKeyError is a 4xx other than 429 from the exchange: Rev.io does
// not accept the API key (unknown, revoked, or malformed). Exchanging again
// with the same key will not help. StatusCode 0 means the key was refused
// before sending: it is empty, or holds a control character (Message says
// which).
type InvalidAPIKeyError struct {
	StatusCode int
	Code       string // the body's "error" field, e.g. "invalid_api_key"
	Message    string // the body's "message" field
}

func (e *InvalidAPIKeyError) Error() string {
	if e.StatusCode == 0 {
		if e.Message != "" {
			return "revio exchange: invalid API key: " + e.Message
		}
		return "revio exchange: invalid API key: the key is empty"
	}
	return describe(OpExchange, "invalid API key", e.StatusCode, e.Message)
}

// UnauthorizedError is a 401 from an authenticated call: the token expired,
// was revoked, or does not belong to the X-Revio-Host. Exchange the API key
// for a new token. StatusCode 0 means the token was refused before sending
// because it is empty or not a valid header value.
type UnauthorizedError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *UnauthorizedError) Error() string {
	if e.StatusCode == 0 {
		return "revio call: unauthorized: the token is empty or malformed; exchange the API key again"
	}
	return describe(OpCall, "unauthorized (exchange the API key again)", e.StatusCode, e.Message)
}

// RateLimitedError is a 429. Its fields are httpcore.RateLimitedError's:
// Operation ("exchange" or "call"), StatusCode, Code, Message (the body's
// "error" and "message" fields) and RetryAfter, from the body's
// retry_after, else the Retry-After header, else 60s, always between 1s and
// 1h (httpcore.RetryAfter).
type RateLimitedError httpcore.RateLimitedError

func (e *RateLimitedError) Error() string { return (*httpcore.RateLimitedError)(e).Describe(service) }

// ServerError is any 5xx. Its fields are httpcore.StatusError's: Operation,
// StatusCode, Code and Message.
type ServerError httpcore.StatusError

func (e *ServerError) Error() string {
	return describe(e.Operation, "server error", e.StatusCode, e.Message)
}

// ProtocolError is an answer the client cannot use: a 2xx exchange response
// without data.token, a non-JSON body, a 1xx/3xx status on the exchange
// (redirects are never followed, so the key is never sent elsewhere), or a
// body over 1 MiB. Its fields are httpcore.UnexpectedResponseError's:
// Operation, StatusCode and Reason.
type ProtocolError httpcore.UnexpectedResponseError

func (e *ProtocolError) Error() string {
	return (*httpcore.UnexpectedResponseError)(e).Describe(service)
}

// ConfigError is a value the client cannot send: a Config field (BaseURL,
// Host) that is malformed, surrounded by white space or holding a control
// character such as a newline. It is permanent: nothing was sent, and
// nothing will be until the input changes.
type ConfigError struct {
	// Field names the input, e.g. "Host".
	Field string
	// Reason says what is wrong, e.g. "contains a control character".
	Reason string
}

func (e *ConfigError) Error() string { return service + ": " + e.Field + " " + e.Reason }

// NetworkError is a transport failure: no complete HTTP answer was read.
//
// Its fields are httpcore.NetworkError's: Operation, StatusCode (always 0),
// Timeout (the call's deadline passed, or a dial or TLS handshake timed out)
// and Err, the underlying error (usually a *url.Error, which carries the
// method and URL but never headers or the body).
type NetworkError httpcore.NetworkError

func (e *NetworkError) Error() string { return (*httpcore.NetworkError)(e).Error() }

// Unwrap returns the underlying transport error.
func (e *NetworkError) Unwrap() error { return e.Err }

// IsRetryable reports whether resending the same request later may succeed:
// rate limits, 5xx and network errors. An *UnauthorizedError is not: it needs
// a new token first.
func IsRetryable(err error) bool {
	return httpcore.AsAny(err, new(*RateLimitedError), new(*ServerError), new(*NetworkError))
}

// RetryAfter returns the delay a rate-limited server asked for, and false
// when err is not a *RateLimitedError.
func RetryAfter(err error) (time.Duration, bool) {
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		return rl.RetryAfter, true
	}
	return 0, false
}

func describe(op, what string, status int, msg string) string {
	return httpcore.Describe(service, op, what, status, msg)
}
