package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scope is a Reevit API-key scope.
// +kubebuilder:validation:Enum=connections:read;connections:write;payments:read;payments:write;fraud:read;fraud:write;webhooks:read;webhooks:write;subscriptions:read;subscriptions:write;invoices:read;invoices:write;api_keys:read;api_keys:write;workflows:read;workflows:write
type Scope string

// DeletionPolicy says what happens to Reevit keys when the ApiKey is deleted.
// +kubebuilder:validation:Enum=Revoke;Retain
type DeletionPolicy string

const (
	// DeletionPolicyRevoke revokes the active key and every pending one.
	DeletionPolicyRevoke DeletionPolicy = "Revoke"
	// DeletionPolicyRetain leaves the keys active at Reevit.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// Weekday is a day of the week in a rotation window.
// +kubebuilder:validation:Enum=Mon;Tue;Wed;Thu;Fri;Sat;Sun
type Weekday string

// RotationWindow is a time of the week when a scheduled rotation may start:
// on each of days, from start to end in timeZone. A window ends on the day
// it starts: end is later than start, or 24:00 for midnight. A window across
// midnight is written as two (22:00-24:00 on Mon, 00:00-02:00 on Tue). On a
// day a daylight-saving change skips clock times, a window is shortened by
// the skipped hour (02:00-03:00 on the last Sunday of March in
// Europe/Berlin does not happen at all); on a day it repeats them, a
// window spanning the repeated hour is an hour longer, and a start or end
// inside it means its second occurrence.
// +kubebuilder:validation:XValidation:rule="!self.start.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$') || !self.end.matches('^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$') || self.end > self.start",message="windows[].end must be later than windows[].start on the same day (24:00 for midnight); write a window across midnight as two windows"
type RotationWindow struct {
	// Days the window opens on, in timeZone: Mon, Tue, Wed, Thu, Fri, Sat, Sun.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=7
	// +listType=set
	Days []Weekday `json:"days"`

	// Start is when the window opens, "HH:MM" (24-hour clock, 00:00 to 23:59).
	// +kubebuilder:validation:MaxLength=5
	// +kubebuilder:validation:XValidation:rule="self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')",message="windows[].start must be HH:MM on a 24-hour clock, such as 09:00"
	Start string `json:"start"`

	// End is when the window closes, "HH:MM" later than start, or 24:00.
	// +kubebuilder:validation:MaxLength=5
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$')",message="windows[].end must be HH:MM on a 24-hour clock, such as 17:00, or 24:00"
	End string `json:"end"`

	// TimeZone is the IANA time zone of days, start and end, such as
	// Europe/Berlin. Defaults to UTC. A zone the manager cannot load makes
	// the ApiKey rotate on its schedule, ignoring the windows, and is told
	// on the RotationWindow condition (InvalidTimeZone).
	// +kubebuilder:validation:MaxLength=64
	// The API server checks the name's form; CEL cannot ask whether a zone
	// exists without failing with an evaluation error, which the API server
	// reports with the field's type ("string") in place of the value.
	// +kubebuilder:validation:XValidation:rule="self != 'Local' && self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')",message="windows[].timeZone must be an IANA time zone name (Area/Location) such as Europe/Berlin or UTC, not Local or an offset"
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
}

// Rotation says when a new key replaces the current one. Without rotation the
// key is kept until the ApiKey is deleted, a key-relevant field of the spec
// changes or a rotation is asked for with the keywarden.dev/rotate annotation.
// +kubebuilder:validation:XValidation:rule="!(has(self.every) && has(self.schedule))",message="rotation.every and rotation.schedule are mutually exclusive: set one"
// +kubebuilder:validation:XValidation:rule="!has(self.timeZone) || has(self.schedule)",message="rotation.timeZone applies only to rotation.schedule"
// +kubebuilder:validation:XValidation:rule="!has(self.windows) || size(self.windows) == 0 || has(self.every) || has(self.schedule)",message="rotation.windows applies only to rotation.every or rotation.schedule: set one of them"
// +kubebuilder:validation:XValidation:rule="!has(self.every) || !has(self.gracePeriod) || !self.every.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.gracePeriod.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.gracePeriod) <= duration(self.every)",message="rotation.gracePeriod must not be longer than rotation.every"
type Rotation struct {
	// Every rotates the key at this interval after it became active, as a Go
	// duration such as 720h or 30m. At least 1m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="rotation.every must be a Go duration such as 30m, 12h or 720h (units h, m, s, ms, us, ns; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1m')",message="rotation.every must be at least 1m"
	// +optional
	Every *metav1.Duration `json:"every,omitempty"`

	// Schedule rotates the key on a 5-field cron schedule (minute hour
	// day-of-month month day-of-week), for example "0 3 * * 1" for Mondays at
	// 03:00. A rotation missed while Keywarden was down happens once at start-up.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[1-9][0-9]*)?(,([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[1-9][0-9]*)?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?)* +([*?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?(,([*?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?)* +([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[1-9][0-9]*)?(,([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[1-9][0-9]*)?)* +([*?]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[1-9][0-9]*)?(,([*?]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[1-9][0-9]*)?)*)$')",message="rotation.schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week) such as '0 3 * * 1', with minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, weekday 0-6 or SUN-SAT, or one of @hourly, @daily, @weekly, @monthly, @yearly"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// TimeZone is the IANA time zone of Schedule, such as Europe/Berlin.
	// Defaults to UTC. A zone the manager cannot load is told on the Issued
	// condition (BadRequest) and no rotation is scheduled until it is fixed.
	// +kubebuilder:validation:MaxLength=64
	// The API server checks the name's form; CEL cannot ask whether a zone
	// exists without failing with an evaluation error, which the API server
	// reports with the field's type ("string") in place of the value.
	// +kubebuilder:validation:XValidation:rule="self != 'Local' && self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')",message="rotation.timeZone must be an IANA time zone name (Area/Location) such as Europe/Berlin or UTC, not Local or an offset"
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// GracePeriod is how long the previous key stays valid after the Secret
	// holds the new one, so running workloads can pick the new key up.
	// Defaults to 10m, or to Every when Every is shorter. At most 720h,
	// with a schedule too.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="rotation.gracePeriod must be a Go duration such as 10m or 1h30m (units h, m, s, ms, us, ns; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) <= duration('720h')",message="rotation.gracePeriod must be at most 720h: a previous key stays valid no longer than 30 days"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`

	// Windows are the times of the week a scheduled rotation (every or
	// schedule) may start. A rotation due outside every window waits for the
	// next window to open, and starts within its first half (a delay fixed
	// per ApiKey, so many ApiKeys do not rotate at once); status.nextRotationTime
	// shows when. A compromised key, the keywarden.dev/rotate annotation, a
	// spec change, a lost Secret and a key revoked outside Keywarden never
	// wait. Empty: the issuer's policy.rotationWindows, else any time. When
	// no window opens before the key would pass the issuer's
	// policy.maxKeyAge, the key rotates when due anyway (RotationWindow
	// condition, reason NoWindowBeforeMaxKeyAge).
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Windows []RotationWindow `json:"windows,omitempty"`
}

// ApiKeySpec is the desired Reevit API key.
type ApiKeySpec struct {
	// IssuerRef names the ReevitIssuer (same namespace) or ClusterReevitIssuer
	// that makes the keys: the platform's admin credential and policy. The
	// team creating the ApiKey never holds the admin key.
	IssuerRef ReevitIssuerReference `json:"issuerRef"`

	// DisplayName is the key's name at Reevit. Defaults to <namespace>/<name>.
	// Keywarden appends a marker tying the key to this object.
	// +kubebuilder:validation:MaxLength=200
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// Scopes the key carries: 1 to 16 distinct Reevit scopes, within the
	// issuer's policy.allowedScopes. The issuer's admin key must hold every
	// scope it grants.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	Scopes []Scope `json:"scopes"`

	// Environment the issued key must belong to: live (pfk_live_) or test
	// (pfk_test_). A key of the other kind is revoked at once.
	// +kubebuilder:validation:Enum=live;test
	Environment string `json:"environment"`

	// Rotation says when the key is replaced.
	// +optional
	Rotation *Rotation `json:"rotation,omitempty"`

	// Secret shapes the output Secret (data keys apiKey, keyId, orgId, url;
	// previousApiKey and previousKeyId while a previous key awaits revocation).
	// +optional
	Secret SecretTemplate `json:"secret,omitempty"`

	// RolloutRestart lists workloads restarted when the key changes.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	RolloutRestart []RolloutTarget `json:"rolloutRestart,omitempty"`

	// DeletionPolicy says whether deleting the ApiKey revokes its keys.
	// +kubebuilder:default=Revoke
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// HistoryLimit is how many keys status.history keeps.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	HistoryLimit *int32 `json:"historyLimit,omitempty"`
}

// PendingRevocation is a previous key that stays valid until RevokeAfter.
type PendingRevocation struct {
	// KeyID is the Reevit id of the key.
	KeyID string `json:"keyId"`
	// KeyPrefix is the key's first 13 characters.
	// +optional
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// RevokeAfter is when the grace period ends.
	RevokeAfter metav1.Time `json:"revokeAfter"`
	// Reason is why the key is being replaced.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Issuer that created the key; its revocation goes there.
	// +optional
	Issuer *IssuerRecord `json:"issuer,omitempty"`
}

// KeyRequest records a key creation before it is sent, so that a process that
// dies at any instant resends the same Idempotency-Key and loses nothing.
type KeyRequest struct {
	// IdempotencyKey sent with the create request.
	IdempotencyKey string `json:"idempotencyKey"`
	// Name the key is created with at Reevit.
	Name string `json:"name"`
	// Reason is why the key is being created.
	Reason string `json:"reason"`
	// StartedAt is when the request was first recorded.
	StartedAt metav1.Time `json:"startedAt"`
	// RevokeCurrent asks for the current key to be revoked at once (compromised).
	// +optional
	RevokeCurrent bool `json:"revokeCurrent,omitempty"`
	// Scopes sent with the request: a replay sends exactly these, whatever
	// the spec says by then.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Scopes []Scope `json:"scopes,omitempty"`
	// Issuer the request is sent to.
	// +optional
	Issuer *IssuerRecord `json:"issuer,omitempty"`
}

// KeyHistoryEntry is one key in the audit trail. It never holds the key.
type KeyHistoryEntry struct {
	// KeyID is the Reevit id of the key.
	KeyID string `json:"keyId"`
	// KeyPrefix is the key's first 13 characters.
	KeyPrefix string `json:"keyPrefix"`
	// CreatedAt is when the key was issued.
	CreatedAt metav1.Time `json:"createdAt"`
	// RevokedAt is when Keywarden revoked the key.
	// +optional
	RevokedAt *metav1.Time `json:"revokedAt,omitempty"`
	// Reason the key was replaced or revoked: Rotation, Compromised, Drift,
	// Deletion, SpecChange, SecretLost or EnvironmentMismatch.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// ApiKeyStatus is the observed state of an ApiKey. It never holds a key.
type ApiKeyStatus struct {
	// KeyID is the Reevit id of the active key.
	// +optional
	KeyID string `json:"keyId,omitempty"`
	// KeyPrefix is the active key's first 13 characters, such as pfk_live_a1b2.
	// +optional
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// Issuer that created the active key (kind, name, UID, organisation and
	// URL); its revocation goes there even after spec.issuerRef changes.
	// +optional
	Issuer *IssuerRecord `json:"issuer,omitempty"`
	// ResolvedIssuer is the issuer spec.issuerRef names, as Kind/name with
	// the kind defaulted (ReevitIssuer/payments,
	// ClusterReevitIssuer/platform): the Issuer column of kubectl get.
	// +optional
	ResolvedIssuer string `json:"resolvedIssuer,omitempty"`
	// ActiveSince is when the Secret started holding the active key.
	// +optional
	ActiveSince *metav1.Time `json:"activeSince,omitempty"`
	// LastRotationTime is when the key was last replaced.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// NextRotationTime is when the next scheduled rotation is due.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`
	// Rotations counts the keys issued after the first one.
	// +optional
	Rotations int64 `json:"rotations,omitempty"`
	// Generation counts every key creation started for this object; it makes
	// Idempotency-Keys unique and deterministic.
	// +optional
	KeyGeneration int64 `json:"keyGeneration,omitempty"`
	// PendingRevocations are previous keys still valid until their grace
	// period ends. At most 32: past that, no new key is made until
	// revocations catch up (RevocationBacklog).
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=keyId
	// +optional
	PendingRevocations []PendingRevocation `json:"pendingRevocations,omitempty"`
	// PendingCreate is a key creation recorded before it was sent.
	// +optional
	PendingCreate *KeyRequest `json:"pendingCreate,omitempty"`
	// KeySpecHash fingerprints the spec fields that need a new key when they change.
	// +optional
	KeySpecHash string `json:"keySpecHash,omitempty"`
	// LastRotateRequest is the last keywarden.dev/rotate value acted on.
	// +optional
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`
	// LastCompromisedRequest is the last keywarden.dev/compromised value acted on.
	// +optional
	LastCompromisedRequest string `json:"lastCompromisedRequest,omitempty"`
	// AdminKeySecretVersion is the version of the issuer and of its admin-key
	// Secret at the last attempt; a change lifts a failure that needed a person.
	// +optional
	AdminKeySecretVersion string `json:"adminKeySecretVersion,omitempty"`
	// SecretName is the output Secret the active key was written to.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// RetryStatus records consecutive failures: nothing is retried until
	// the spec, the issuer or its admin-key Secret, or a rotate or
	// compromised annotation changes when the last one needs a person.
	RetryStatus `json:",inline"`
	// History is the audit trail of the last spec.historyLimit keys.
	// +listType=atomic
	// +optional
	History []KeyHistoryEntry `json:"history,omitempty"`
	// Conditions: Ready summarises; Issued, SecretSynced and
	// RevocationsComplete say which step failed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ApiKey keeps a Reevit API key in a Secret: it creates the key, rotates it on
// a schedule with a grace period, and revokes it when the ApiKey is deleted.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ak,categories=keywarden
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.status.keyPrefix`
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.status.resolvedIssuer`
// +kubebuilder:printcolumn:name="Next Rotation",type=string,JSONPath=`.status.nextRotationTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Key ID",type=string,JSONPath=`.status.keyId`,priority=1
// +kubebuilder:printcolumn:name="Rotations",type=integer,JSONPath=`.status.rotations`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
type ApiKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired key.
	Spec ApiKeySpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status ApiKeyStatus `json:"status,omitempty"`
}

// ApiKeyList is a list of ApiKeys.
// +kubebuilder:object:root=true
type ApiKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApiKey `json:"items"`
}
