package main

import "github.com/keywarden/keywarden/api/v1alpha1"

// advice says what a person should do about each condition reason; it
// follows the README's "Conditions and what to do" table. A test checks
// every reason of api/v1alpha1 has an entry.
var advice = map[string]string{
	v1alpha1.ReasonSucceeded:            "nothing",
	v1alpha1.ReasonProgressing:          "wait: a key is being created",
	v1alpha1.ReasonSecretNotFound:       "create the referenced Secret (and its data key) in the same namespace; Keywarden retries when it appears",
	v1alpha1.ReasonInvalidAPIKey:        "put a valid Rev.io API key into the referenced Secret; there is no retry until the Secret or the spec changes",
	v1alpha1.ReasonUnauthorized:         "put a valid admin key of this organisation into the referenced Secret",
	v1alpha1.ReasonMissingScope:         "issue an admin key holding the named scope, or drop it from spec.scopes",
	v1alpha1.ReasonRateLimited:          "nothing: retried after the API's retry_after",
	v1alpha1.ReasonAPIUnavailable:       "nothing: retried with backoff; check the API's status if it lasts",
	v1alpha1.ReasonBadRequest:           "fix the spec (the message names what the API refused)",
	v1alpha1.ReasonInsecureEndpoint:     "use an https:// URL (http:// needs a manager started with --allow-http-endpoints)",
	v1alpha1.ReasonSecretConflict:       "rename spec.secret.name or delete the Secret Keywarden did not create; it is never modified",
	v1alpha1.ReasonSecretWriteFailed:    "check the manager's RBAC and the API server; retried with backoff",
	v1alpha1.ReasonSecretReadFailed:     "check the manager's RBAC and the API server; retried with backoff",
	v1alpha1.ReasonEnvironmentMismatch:  "use an admin key of the right environment or change spec.environment",
	v1alpha1.ReasonTokenExpired:         "look at the Issued condition: refreshes are failing",
	v1alpha1.ReasonVerificationFailed:   "check spec.host and spec.verify.path; the previous token stays",
	v1alpha1.ReasonRevocationPending:    "nothing: previous keys wait for their grace period",
	v1alpha1.ReasonRevocationFailed:     "check the admin key and the Reevit API; revocation is retried",
	v1alpha1.ReasonDeletionBlocked:      "fix the admin key, or set spec.deletionPolicy: Retain",
	v1alpha1.ReasonRotated:              "nothing",
	v1alpha1.ReasonRefreshed:            "nothing",
	v1alpha1.ReasonRevoked:              "nothing",
	v1alpha1.ReasonDrift:                "find who revoked the key outside Keywarden; it was replaced",
	v1alpha1.ReasonCompromised:          "nothing: the key was revoked at once on request",
	v1alpha1.ReasonLeakedKeyRevoked:     "nothing",
	v1alpha1.ReasonRolloutRestarted:     "nothing",
	v1alpha1.ReasonRolloutTargetMissing: "fix spec.rolloutRestart or create the workload",
	v1alpha1.ReasonRolloutStuck:         "look at the stuck workload (kubectl rollout status)",
}

// adviceFor returns what to do about reason, with a fallback for reasons
// newer than this plugin.
func adviceFor(reason string) string {
	if a, ok := advice[reason]; ok {
		return a
	}
	return "see the condition message and the README's \"Conditions and what to do\""
}
