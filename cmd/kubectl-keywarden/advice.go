package main

import "github.com/keywarden/keywarden/api/v1alpha1"

// advice says what a person should do about each condition reason; it
// follows the README's "Conditions and what to do" table. A test checks
// every reason of api/v1alpha1 has an entry.
var advice = map[string]string{
	v1alpha1.ReasonSucceeded:                "nothing",
	v1alpha1.ReasonKeyTooOld:                "make a new API key in Rev.io's UI, put it in the issuer's Secret, then delete the old one in Rev.io: tokens keep being exchanged meanwhile",
	v1alpha1.ReasonProgressing:              "wait: a key is being created",
	v1alpha1.ReasonIssuerNotFound:           "create the issuer, or fix spec.issuerRef (a ReevitIssuer or RevioIssuer must be in the object's namespace; set kind ClusterReevitIssuer or ClusterRevioIssuer for a cluster issuer); Keywarden acts as soon as it appears",
	v1alpha1.ReasonPolicyViolation:          "change the spec to what the issuer's policy allows (the message names the field), or ask the platform team to change the policy or to label the namespace for the issuer's namespaceSelector; Keywarden acts as soon as either changes, and the Secret keeps what it holds meanwhile (a token until it expires)",
	v1alpha1.ReasonEndpointNotAllowed:       "use an allowed URL in the issuer, or add it to the manager's --allowed-endpoints",
	v1alpha1.ReasonSecretTypeNotAllowed:     "name an Opaque Secret holding the real credential in the issuer (kubectl create secret generic), not one Keywarden writes",
	v1alpha1.ReasonSecretNotFound:           "create the issuer's credential Secret (and its data key): in the issuer's namespace, or in --cluster-resource-namespace for a cluster issuer; Keywarden retries when it appears",
	v1alpha1.ReasonPlaceholderCredential:    "put the real key in the issuer's Secret (kubectl create secret generic ... --dry-run=client -o yaml | kubectl apply -f -): it still holds a sample value; nothing was sent, and Keywarden checks again when the Secret changes",
	v1alpha1.ReasonInvalidAPIKey:            "put a valid Rev.io API key into the issuer's Secret; there is no retry until the Secret, the issuer or the spec changes",
	v1alpha1.ReasonUnauthorized:             "put a valid admin key of this organisation into the issuer's Secret",
	v1alpha1.ReasonMissingScope:             "issue an admin key holding the named scope, or drop it from spec.scopes",
	v1alpha1.ReasonRateLimited:              "nothing: retried after the API's retry_after",
	v1alpha1.ReasonAPIUnavailable:           "nothing: retried with backoff; check the API's status if it lasts",
	v1alpha1.ReasonBadRequest:               "fix the spec, the issuer or its Secret (the message names what was refused); not retried until one changes",
	v1alpha1.ReasonInsecureEndpoint:         "use an https:// URL in the issuer (http:// needs a manager started with --allow-http-endpoints)",
	v1alpha1.ReasonMalformedKey:             "nothing: the key was revoked and never published; retried with backoff, report it to Reevit if it persists",
	v1alpha1.ReasonSecretConflict:           "rename spec.secret.name or delete the Secret Keywarden did not create; it is never modified",
	v1alpha1.ReasonSecretWriteFailed:        "check the manager's RBAC and the API server; retried with backoff",
	v1alpha1.ReasonSecretReadFailed:         "check the manager's RBAC and the API server; retried with backoff",
	v1alpha1.ReasonEnvironmentMismatch:      "use an issuer whose admin key is of the right environment, or change spec.environment",
	v1alpha1.ReasonTokenExpired:             "look at the Issued condition: refreshes are failing",
	v1alpha1.ReasonVerificationFailed:       "check the issuer's host and spec.verify.path; the previous token stays",
	v1alpha1.ReasonRevocationPending:        "nothing: previous keys wait for their grace period",
	v1alpha1.ReasonRevocationFailed:         "check the issuer, its admin key and the Reevit API; revocation is retried",
	v1alpha1.ReasonRevocationBacklog:        "fix what RevocationsComplete says (the issuer, its admin key or the Reevit API): no new key is made until the previous keys are revoked",
	v1alpha1.ReasonDeletionBlocked:          "fix the issuer or its admin key, or set spec.deletionPolicy: Retain",
	v1alpha1.ReasonIssuerInUse:              "delete the ApiKeys holding keys made through this issuer, or move them to another issuer; it goes once their keys are revoked or retained",
	v1alpha1.ReasonRotated:                  "nothing",
	v1alpha1.ReasonRefreshed:                "nothing",
	v1alpha1.ReasonRevoked:                  "fix what the Issued condition says: the revoked key was removed and a new one is written as soon as one can be made",
	v1alpha1.ReasonDrift:                    "find who revoked the key outside Keywarden; it was replaced",
	v1alpha1.ReasonCompromised:              "nothing: the key was revoked at once on request",
	v1alpha1.ReasonLeakedKeyRevoked:         "nothing",
	v1alpha1.ReasonRetained:                 "delete the Secret and revoke the key at Reevit when done with it: the key stays live",
	v1alpha1.ReasonRolloutRestarted:         "nothing",
	v1alpha1.ReasonRolloutTargetMissing:     "fix spec.rolloutRestart or create the workload",
	v1alpha1.ReasonRolloutTargetRefused:     "mount the output Secret in the workload (env, envFrom or a volume), or annotate it keywarden.dev/allow-restart-for: <secret name>",
	v1alpha1.ReasonRolloutStuck:             "look at the stuck workload (kubectl rollout status)",
	v1alpha1.ReasonInWindow:                 "nothing: the next rotation waits for a rotation window",
	v1alpha1.ReasonNoWindowBeforeMaxKeyAge:  "rotate more often (spec.rotation.every shorter than the issuer's policy.maxKeyAge by the longest gap between windows), or widen the windows",
	v1alpha1.ReasonInvalidTimeZone:          "use an IANA time zone the manager knows (such as Europe/Berlin) in the rotation windows",
	v1alpha1.ReasonRolloutFailed:            "fix or roll back the failed workload (kubectl rollout status) before the previous key's grace period and --rollout-wait-limit end: it is revoked then",
	v1alpha1.ReasonRolloutRestartNotNeeded:  "nothing: the kubelet updates the mounted files; make the application reread them, or set when: Always on the rollout target",
	v1alpha1.ReasonAdminKeyUnidentified:     "put an admin key that Reevit lists (exactly one listed key carries its prefix) into the issuer's Secret, or remove spec.adminKeyRotation; nothing is rotated meanwhile",
	v1alpha1.ReasonAdminKeyManagedElsewhere: "rotate the admin key where its Secret is managed (the message names the owner), or remove spec.adminKeyRotation; Keywarden never writes that Secret",
	v1alpha1.ReasonAdminKeyRefused:          "nothing at first: the unusable new key was revoked, the old admin key kept and the rotation is retried with backoff; if it persists, check the organisation's key settings at Reevit",
	v1alpha1.ReasonAdminKeyRotationFailed:   "nothing: retried with backoff; check the issuer's admin key and the Reevit API if it lasts",
	v1alpha1.ReasonAdminKeyRevokeFailed:     "check the Reevit API and the new admin key's api_keys:write scope; the previous admin key's revocation is retried with backoff (kubectl keywarden status shows it)",
	v1alpha1.ReasonAdminKeySecretEdited:     "nothing: the value a person put into the admin-key Secret is kept, the key the rotation had made was revoked, and the next rotation starts from the new value",
	v1alpha1.ReasonAdminKeyRotated:          "nothing",
}

// adviceFor returns what to do about reason, with a fallback for reasons
// newer than this plugin.
func adviceFor(reason string) string {
	if a, ok := advice[reason]; ok {
		return a
	}
	return "see the condition message and the README's \"Conditions and what to do\""
}
