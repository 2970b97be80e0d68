package v1alpha1

// Condition types. Ready summarises; the narrower types each have one owner
// step in the reconcilers.
const (
	// ConditionReady is True when the Secret holds a valid credential and nothing needs a person.
	ConditionReady = "Ready"
	// ConditionIssued is owned by the step that obtains the credential from the external API.
	ConditionIssued = "Issued"
	// ConditionSecretSynced is owned by the step that writes the output Secret.
	ConditionSecretSynced = "SecretSynced"
	// ConditionRevoked is owned by the step that revokes previous ApiKey keys.
	ConditionRevoked = "RevocationsComplete"
	// ConditionKeyAge, on a Rev.io issuer with spec.maxKeyAge, is False
	// (KeyTooOld) once its API key has been in use for longer. It does not
	// change Ready: the key still works.
	ConditionKeyAge = "KeyAge"
	// ConditionRotationWindow, on an ApiKey whose rotations follow windows
	// (spec.rotation.windows or the issuer's policy.rotationWindows), is
	// owned by the schedule step: True when the next rotation waits for or
	// falls in a window, False when the windows cannot be followed. It does
	// not change Ready: the key works.
	ConditionRotationWindow = "RotationWindow"
	// ConditionRolloutsComplete, on an ApiKey with spec.rolloutRestart, is
	// owned by the restarts step: True when every target that needs a
	// restart runs the current Secret, False (Progressing) while one is
	// restarting, False (RolloutFailed) when a rollout failed. It does not
	// change Ready: the Secret holds a valid key.
	ConditionRolloutsComplete = "RolloutsComplete"
	// ConditionAdminKeyRotation, on a Reevit issuer with
	// spec.adminKeyRotation (or an admin-key rotation still in flight), is
	// owned by the admin-key rotation step: True while rotations work,
	// False with a reason when one needs a person or retries.
	ConditionAdminKeyRotation = "AdminKeyRotation"
)

// Condition reasons. They double as event reasons; the README lists what a
// person should do about each.
const (
	ReasonSucceeded = "Succeeded"
	// ReasonKeyTooOld: the issuer's credential is older than spec.maxKeyAge.
	ReasonKeyTooOld            = "KeyTooOld"
	ReasonProgressing          = "Progressing"
	ReasonSecretNotFound       = "SecretNotFound"
	ReasonInvalidAPIKey        = "InvalidAPIKey"
	ReasonUnauthorized         = "Unauthorized"
	ReasonMissingScope         = "MissingScope"
	ReasonRateLimited          = "RateLimited"
	ReasonAPIUnavailable       = "APIUnavailable"
	ReasonBadRequest           = "BadRequest"
	ReasonInsecureEndpoint     = "InsecureEndpoint"
	ReasonSecretConflict       = "SecretConflict"
	ReasonSecretWriteFailed    = "SecretWriteFailed"
	ReasonSecretReadFailed     = "SecretReadFailed"
	ReasonEnvironmentMismatch  = "EnvironmentMismatch"
	ReasonTokenExpired         = "TokenExpired"
	ReasonVerificationFailed   = "VerificationFailed"
	ReasonRevocationPending    = "RevocationPending"
	ReasonRevocationFailed     = "RevocationFailed"
	ReasonDeletionBlocked      = "DeletionBlocked"
	ReasonRotated              = "Rotated"
	ReasonRefreshed            = "Refreshed"
	ReasonRevoked              = "Revoked"
	ReasonDrift                = "KeyRevokedExternally"
	ReasonCompromised          = "Compromised"
	ReasonLeakedKeyRevoked     = "LeakedKeyRevoked"
	ReasonRolloutRestarted     = "RolloutRestarted"
	ReasonRolloutTargetMissing = "RolloutTargetMissing"
	ReasonRolloutStuck         = "RolloutStuck"
	// ReasonIssuerNotFound: spec.issuerRef names no issuer.
	ReasonIssuerNotFound = "IssuerNotFound"
	// ReasonPolicyViolation: the spec asks for more than the issuer's policy allows.
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonEndpointNotAllowed: the issuer's URL is outside --allowed-endpoints.
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	// ReasonSecretTypeNotAllowed: an issuer credential Secret is not Opaque.
	ReasonSecretTypeNotAllowed = "SecretTypeNotAllowed"
	// ReasonPlaceholderCredential: an issuer credential Secret still holds a
	// sample or documentation value (replace-me, <...>, xxx), not a key.
	ReasonPlaceholderCredential = "PlaceholderCredential"
	// ReasonMalformedKey: Reevit answered a create with a key of an unknown shape.
	ReasonMalformedKey = "MalformedKey"
	// ReasonRolloutTargetRefused: a rollout target does not consume the output Secret.
	ReasonRolloutTargetRefused = "RolloutTargetRefused"
	// ReasonRetained: an ApiKey deleted with deletionPolicy Retain left its key live and its Secret in place.
	ReasonRetained = "Retained"
	// ReasonRevocationBacklog: too many previous keys wait for revocation; no new key until they go.
	ReasonRevocationBacklog = "RevocationBacklog"
	// ReasonIssuerInUse: an issuer's deletion waits for the keys made through it.
	ReasonIssuerInUse = "IssuerInUse"
	// ReasonRolloutRestartNotNeeded: a rollout target reads the Secret only
	// through volumes the kubelet updates in place; it was not restarted.
	ReasonRolloutRestartNotNeeded = "RolloutRestartNotNeeded"
	// ReasonInWindow: the next scheduled rotation starts inside a rotation window.
	ReasonInWindow = "InWindow"
	// ReasonNoWindowBeforeMaxKeyAge: no rotation window opens before the key
	// passes the issuer's policy.maxKeyAge; it rotates when due anyway.
	ReasonNoWindowBeforeMaxKeyAge = "NoWindowBeforeMaxKeyAge"
	// ReasonInvalidTimeZone: a rotation window's time zone does not load in
	// the manager; the windows are ignored.
	ReasonInvalidTimeZone = "InvalidTimeZone"
	// ReasonRolloutFailed: a rollout target's rollout failed (a Deployment
	// past its progress deadline, a StatefulSet or DaemonSet that stopped
	// progressing); the previous key is kept.
	ReasonRolloutFailed = "RolloutFailed"
	// ReasonAdminKeyUnidentified: the issuer's listing matches its admin key to no listed key, or to several.
	ReasonAdminKeyUnidentified = "AdminKeyUnidentified"
	// ReasonAdminKeyManagedElsewhere: the admin-key Secret is managed by another controller; Keywarden never writes it.
	ReasonAdminKeyManagedElsewhere = "AdminKeyManagedElsewhere"
	// ReasonAdminKeyRefused: Reevit answered an admin-key creation with a key of fewer scopes, another environment or an unknown shape; it was revoked and the old key kept.
	ReasonAdminKeyRefused = "AdminKeyRefused"
	// ReasonAdminKeyRotationFailed: an admin-key creation or its proof failed; it is retried with backoff.
	ReasonAdminKeyRotationFailed = "AdminKeyRotationFailed"
	// ReasonAdminKeyRevokeFailed: the previous admin key could not be revoked; it is retried with backoff.
	ReasonAdminKeyRevokeFailed = "AdminKeyRevokeFailed"
	// ReasonAdminKeySecretEdited: a person changed the admin-key Secret during a rotation; the rotation started over.
	ReasonAdminKeySecretEdited = "AdminKeySecretEdited"
	// ReasonAdminKeyRotated: the issuer replaced its admin key (event).
	ReasonAdminKeyRotated = "AdminKeyRotated"
)
