package reevit

import (
	"errors"
	"time"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// ErrInsecureURL is matched (errors.Is) by every *InsecureURLError.
var ErrInsecureURL = errors.New("reevit: refusing a non-https base URL (set AllowHTTP to permit it)")

// ErrMissingIdempotencyKey is returned, without sending anything, when a
// mutation is called with an empty Idempotency-Key.
var ErrMissingIdempotencyKey = errors.New("reevit: an Idempotency-Key is required for mutations")

// service names the API in error texts and to httpcore.
const service = "reevit"

// InsecureURLError is returned by New for a non-https BaseURL when AllowHTTP
// is false. Its field is httpcore.InsecureURLError's: URL, the refused base
// URL.
type InsecureURLError httpcore.InsecureURLError

func (e *InsecureURLError) Error() string { return (*httpcore.InsecureURLError)(e).Describe(service) }

// Is makes errors.Is(err, ErrInsecureURL) true.
func (e *InsecureURLError) Is(target error) bool { return target == ErrInsecureURL }

// The errors of an error answer have httpcore.StatusError's fields:
// Operation ("create", "list" or "revoke"), StatusCode, Code (the body's
// "error" field, e.g. "unauthorized") and Message (the body's "message"
// field); ForbiddenError and RateLimitedError add theirs.

// UnauthorizedError is a 401: the admin key is invalid, revoked, or not a key
// of the organization.
type UnauthorizedError httpcore.StatusError

func (e *UnauthorizedError) Error() string {
	return describe(e.Operation, "unauthorized", e.StatusCode, e.Message)
}

// ForbiddenError is a 403: the admin key lacks a scope.
type ForbiddenError struct {
	Operation  string
	StatusCode int
	Code       string
	Message    string
	// Scope is the missing scope named by the server ("api_keys:write"),
	// or "" when the message names none.
	Scope string
}

func (e *ForbiddenError) Error() string {
	return describe(e.Operation, "forbidden", e.StatusCode, e.Message)
}

// RateLimitedError is a 429. Its fields are httpcore.RateLimitedError's:
// those of the other error answers and RetryAfter, from the body's
// retry_after, else the Retry-After header, else 60s, always between 1s and
// 1h (httpcore.RetryAfter).
type RateLimitedError httpcore.RateLimitedError

func (e *RateLimitedError) Error() string { return (*httpcore.RateLimitedError)(e).Describe(service) }

// NotFoundError is a 404 from create or list (a 404 from revoke is success).
type NotFoundError httpcore.StatusError

func (e *NotFoundError) Error() string {
	return describe(e.Operation, "not found", e.StatusCode, e.Message)
}

// ServerError is any 5xx.
type ServerError httpcore.StatusError

func (e *ServerError) Error() string {
	return describe(e.Operation, "server error", e.StatusCode, e.Message)
}

// BadRequestError is any other 4xx (400, 409, 422, ...): the request itself
// is wrong and resending it unchanged will not help. Its Code is e.g.
// "bad_request" or "idempotency_key_reused".
type BadRequestError httpcore.StatusError

func (e *BadRequestError) Error() string {
	return describe(e.Operation, "request rejected", e.StatusCode, e.Message)
}

// IdempotencyKeyReused reports whether the server refused the request because
// its Idempotency-Key was already used with a different request.
func (e *BadRequestError) IdempotencyKeyReused() bool {
	return e.Code == "idempotency_key_reused"
}

// UnexpectedResponseError is an answer the client cannot use: a 1xx/3xx
// status (redirects are never followed, so the admin key is never sent
// elsewhere), or a 2xx body that is not the documented JSON. Its fields are
// httpcore.UnexpectedResponseError's: Operation, StatusCode and Reason.
type UnexpectedResponseError httpcore.UnexpectedResponseError

func (e *UnexpectedResponseError) Error() string {
	return (*httpcore.UnexpectedResponseError)(e).Describe(service)
}

// MalformedKeyError is a create answer (2xx) that names the key Reevit
// created but whose secret is not a Reevit key: missing, shorter than its
// prefix, with neither the pfk_live_ nor the pfk_test_ prefix, or holding
// characters no key has. The error never holds the secret or any part of it.
//
// The key exists at Reevit and may be live: revoke ID. It is a fault of the
// server, so treat it as transient: revoke, then back off and create again.
// Resending the same request under the same Idempotency-Key replays this
// same answer for 24 hours, so IsRetryable reports false; the next attempt
// needs a new Idempotency-Key. errors.As also matches it as an
// *UnexpectedResponseError.
type MalformedKeyError struct {
	Operation  string // always "create"
	StatusCode int
	// ID is the id of the created key, to revoke.
	ID string
	// Reason says what is wrong with the key, without quoting it.
	Reason string
}

func (e *MalformedKeyError) Error() string {
	return describe(e.Operation, "key "+e.ID+" was created but its secret is malformed", e.StatusCode,
		e.Reason+"; revoke it")
}

// Unwrap makes errors.As(err, &*UnexpectedResponseError) true.
func (e *MalformedKeyError) Unwrap() error {
	return &UnexpectedResponseError{Operation: e.Operation, StatusCode: e.StatusCode, Reason: e.Reason}
}

// ConfigError is a value the client cannot send: a Config field (BaseURL,
// OrgID, AdminKey, ActorID) or a call argument (a key id, an
// Idempotency-Key) that is missing, malformed, surrounded by white space
// (AdminKey's is trimmed instead) or holding a control character such as a
// newline. It is permanent: nothing was sent, and nothing will be until the
// input changes. It never holds the value.
type ConfigError struct {
	// Field names the input, e.g. "ActorID" or "Idempotency-Key".
	Field string
	// Reason says what is wrong, e.g. "contains a control character".
	Reason string
}

func (e *ConfigError) Error() string { return service + ": " + e.Field + " " + e.Reason }

// NetworkError is a transport failure: no HTTP answer was read. The request
// may or may not have reached the server, so mutations must be retried with
// the same Idempotency-Key.
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
// rate limits, 5xx and network errors.
func IsRetryable(err error) bool {
	return httpcore.AsAny(err, new(*RateLimitedError), new(*ServerError), new(*NetworkError))
}

// RetryAfter returns the delay a rate-limited server asked for.
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
