package httpcore

import (
	"fmt"
	"time"
)

// The structures below are the API errors both clients have. As with
// NetworkError, each client declares its own error types of them (type
// ServerError httpcore.StatusError), so errors.As tells the clients' and
// the statuses' errors apart while the fields and the wording are shared.

// StatusError is an error answer (4xx, 5xx) as the client reports it.
type StatusError struct {
	// Operation names the call, e.g. "create".
	Operation  string
	StatusCode int
	// Code is the body's "error" field, e.g. "unauthorized".
	Code string
	// Message is the body's "message" field, sanitised.
	Message string
}

// RateLimitedError is a 429.
type RateLimitedError struct {
	// Operation names the call, e.g. "create".
	Operation  string
	StatusCode int
	// Code and Message are the body's "error" and "message" fields.
	Code    string
	Message string
	// RetryAfter comes from the body's retry_after, else the Retry-After
	// header, else 60s; it is always between 1s and 1h (RetryAfter).
	RetryAfter time.Duration
}

// Describe is the error's text for service: "<service> <op>: rate
// limited, retry after <RetryAfter> (HTTP 429 ...): <message>".
func (e *RateLimitedError) Describe(service string) string {
	return Describe(service, e.Operation, fmt.Sprintf("rate limited, retry after %s", e.RetryAfter), e.StatusCode, e.Message)
}

// UnexpectedResponseError is an answer the client cannot use: a status that
// is neither success nor error (redirects are never followed), a body that
// is not the documented JSON, or one over MaxBodyBytes.
type UnexpectedResponseError struct {
	// Operation names the call, e.g. "create".
	Operation  string
	StatusCode int
	// Reason says what is wrong with the answer, without quoting a secret.
	Reason string
}

// Describe is the error's text for service: "<service> <op>: unexpected
// response (HTTP <status> ...): <reason>".
func (e *UnexpectedResponseError) Describe(service string) string {
	return Describe(service, e.Operation, "unexpected response", e.StatusCode, e.Reason)
}

// InsecureURLError is a non-https base URL refused because the client's
// AllowHTTP is false: credentials must only travel over TLS.
type InsecureURLError struct {
	// URL is the refused base URL.
	URL string
}

// Describe is the error's text for service.
func (e *InsecureURLError) Describe(service string) string {
	return fmt.Sprintf("%s: refusing non-https base URL %q (set AllowHTTP to permit it)", service, e.URL)
}
