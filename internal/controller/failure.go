package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// failure is a classified runtime failure: the condition reason, a message
// that tells a person what to do, and when to try again.
type failure struct {
	Reason  string
	Message string
	// RetryAfter > 0 asks for a retry at that delay (429).
	RetryAfter time.Duration
	// Transient failures back off exponentially and retry by themselves.
	Transient bool
	// Err is the underlying error, never containing a secret.
	Err error
	// Condition is the condition the failure belongs to whichever step
	// meets it (an output-Secret write: SecretSynced); "" means the
	// condition the failing step owns.
	Condition string
}

func (f *failure) Error() string { return f.Reason + ": " + f.Message }

// secretNotFound builds the failure for a missing input Secret or key.
func secretNotFound(kind, ns string, ref v1alpha1.SecretKeyReference, keyMissing bool) *failure {
	if keyMissing {
		return &failure{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
			"Secret %s/%s has no data key %q: add it, or set %s.key to the key that holds the credential", ns, ref.Name, ref.Key, kind)}
	}
	return &failure{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
		"Secret %s/%s not found: create it there with the credential under data key %q", ns, ref.Name, ref.Key)}
}

// classifyReevit turns a Reevit client error into a failure.
func classifyReevit(err error) *failure {
	var (
		unauth  *reevit.UnauthorizedError
		forbid  *reevit.ForbiddenError
		limited *reevit.RateLimitedError
		server  *reevit.ServerError
		network *reevit.NetworkError
		bad     *reevit.BadRequestError
		insec   *reevit.InsecureURLError
		config  *reevit.ConfigError
	)
	switch {
	case errors.As(err, &config):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "the Reevit request cannot be sent: " + config.Error() + "; fix the issuer (orgId, actorId) or the admin-key Secret (one key, no line breaks)"}
	case errors.As(err, &unauth):
		return &failure{Reason: v1alpha1.ReasonUnauthorized, Err: err, Message: "Reevit rejected the admin key (401): put a valid, unrevoked key of this organisation into the admin-key Secret"}
	case errors.As(err, &forbid):
		scope := forbid.Scope
		if scope == "" {
			scope = "api_keys:read, api_keys:write or a scope in spec.scopes"
		}
		return &failure{Reason: v1alpha1.ReasonMissingScope, Err: err, Message: fmt.Sprintf("the admin key lacks the scope %s (403): issue an admin key that holds it, or drop it from spec.scopes", scope)}
	case errors.As(err, &limited):
		d := capRetryAfter(limited.RetryAfter)
		return &failure{Reason: v1alpha1.ReasonRateLimited, Err: err, RetryAfter: d, Transient: true, Message: fmt.Sprintf("Reevit rate limit reached (429): retrying after %s", d)}
	case errors.As(err, &server):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: fmt.Sprintf("Reevit answered %d: retrying with backoff", server.StatusCode)}
	case errors.As(err, &network):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Reevit could not be reached (" + network.Error() + "): retrying with backoff"}
	case errors.As(err, &bad):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "Reevit refused the request: " + bad.Error() + "; check spec.scopes and spec.displayName"}
	case errors.As(err, &insec):
		return &failure{Reason: v1alpha1.ReasonInsecureEndpoint, Err: err, Message: "the issuer's spec.url uses http://, which this manager refuses: use https:// (http:// needs the --allow-http-endpoints flag, meant for local simulators)"}
	}
	return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Reevit request failed: " + err.Error()}
}

// classifyRevio turns a Rev.io client error into a failure.
func classifyRevio(err error) *failure {
	var (
		invalid *revio.InvalidAPIKeyError
		unauth  *revio.UnauthorizedError
		limited *revio.RateLimitedError
		server  *revio.ServerError
		network *revio.NetworkError
		insec   *revio.InsecureURLError
		config  *revio.ConfigError
	)
	switch {
	case errors.As(err, &config):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "the Rev.io request cannot be sent: " + config.Error() + "; fix the issuer (url, host)"}
	case errors.As(err, &invalid):
		return &failure{Reason: v1alpha1.ReasonInvalidAPIKey, Err: err, Message: fmt.Sprintf("Rev.io rejected the API key (%d): put a valid key into the API-key Secret; Keywarden retries when the Secret or the spec changes", invalid.StatusCode)}
	case errors.As(err, &unauth):
		return &failure{Reason: v1alpha1.ReasonVerificationFailed, Err: err, Transient: true, Message: "Rev.io answered 401 to the new token on spec.verify.path: exchanging again with backoff; the previous token stays in place"}
	case errors.As(err, &limited):
		d := capRetryAfter(limited.RetryAfter)
		return &failure{Reason: v1alpha1.ReasonRateLimited, Err: err, RetryAfter: d, Transient: true, Message: fmt.Sprintf("Rev.io rate limit reached (429): retrying after %s", d)}
	case errors.As(err, &server):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: fmt.Sprintf("Rev.io answered %d: retrying with backoff", server.StatusCode)}
	case errors.As(err, &network):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Rev.io could not be reached (" + network.Error() + "): retrying with backoff"}
	case errors.As(err, &insec):
		return &failure{Reason: v1alpha1.ReasonInsecureEndpoint, Err: err, Message: "the issuer's spec.url uses http://, which this manager refuses: use https:// (http:// needs the --allow-http-endpoints flag, meant for local simulators)"}
	}
	return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Rev.io request failed: " + err.Error()}
}

// classifySecretWrite turns an output-Secret write error into a failure.
func classifySecretWrite(err error) *failure {
	var conflict *secretsync.ConflictError
	if errors.As(err, &conflict) {
		return &failure{Reason: v1alpha1.ReasonSecretConflict, Err: err, Message: conflict.Error(), Condition: v1alpha1.ConditionSecretSynced}
	}
	return &failure{Reason: v1alpha1.ReasonSecretWriteFailed, Err: err, Transient: true, Condition: v1alpha1.ConditionSecretSynced,
		Message: "writing the output Secret failed: " + err.Error() + "; check the manager's RBAC for secrets"}
}
