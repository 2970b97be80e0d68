package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Issuer kinds an issuerRef can name.
const (
	KindReevitIssuer        = "ReevitIssuer"
	KindClusterReevitIssuer = "ClusterReevitIssuer"
	KindRevioIssuer         = "RevioIssuer"
	KindClusterRevioIssuer  = "ClusterRevioIssuer"
)

// ReevitIssuerPolicy bounds what the ApiKeys using an issuer may ask for.
// Every field is optional; an empty policy allows everything.
type ReevitIssuerPolicy struct {
	// AllowedScopes lists the scopes ApiKeys may ask for. Empty allows every
	// scope the admin key holds.
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	AllowedScopes []Scope `json:"allowedScopes,omitempty"`

	// Environments lists the environments (live, test) ApiKeys may ask for.
	// Empty allows both.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	Environments []Environment `json:"environments,omitempty"`

	// NamespaceSelector selects the namespaces whose ApiKeys may use a
	// ClusterReevitIssuer. Empty or absent selects every namespace. Not
	// allowed on a (namespaced) ReevitIssuer, which serves its own namespace only.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// MaxKeyAge makes every ApiKey using the issuer rotate at least this
	// often: spec.rotation.every (or the interval of spec.rotation.schedule)
	// must not be longer. A Go duration such as 720h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="policy.maxKeyAge must be a Go duration such as 720h (units h, m, s; no days)"
	// +optional
	MaxKeyAge *metav1.Duration `json:"maxKeyAge,omitempty"`

	// MaxGracePeriod bounds spec.rotation.gracePeriod of the ApiKeys using the
	// issuer (and the default grace period, 10m). A Go duration such as 1h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="policy.maxGracePeriod must be a Go duration such as 1h (units h, m, s; no days)"
	// +optional
	MaxGracePeriod *metav1.Duration `json:"maxGracePeriod,omitempty"`

	// RotationWindows are the rotation windows of the ApiKeys using the
	// issuer that set no spec.rotation.windows of their own (an ApiKey's own
	// list wins). See ApiKey spec.rotation.windows.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	RotationWindows []RotationWindow `json:"rotationWindows,omitempty"`
}

// Environment is a Reevit key environment.
// +kubebuilder:validation:Enum=live;test
type Environment string

// ReevitIssuerSpec says which Reevit organisation issues keys, with which
// administrator credential, and what the ApiKeys using it may ask for.
type ReevitIssuerSpec struct {
	// URL is the base URL of the Reevit API. The manager's
	// --allowed-endpoints flag lists the URLs an issuer may name.
	// +kubebuilder:default="https://api.reevit.com"
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')",message="url must use https:// (http:// is allowed only for localhost, 127.0.0.1 and [::1])"
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="url must be an absolute URL with a host, such as https://api.reevit.com"
	// +optional
	URL string `json:"url,omitempty"`

	// OrgID is the Reevit organisation, sent as the X-Org-Id header.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	OrgID string `json:"orgId"`

	// ActorID is sent as X-Actor-Id so Reevit's audit log names who acted.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$`
	// +optional
	ActorID string `json:"actorId,omitempty"`

	// AdminKeySecretRef points at an Opaque Secret holding a Reevit key with
	// the api_keys:read and api_keys:write scopes: in the issuer's namespace
	// for a ReevitIssuer, in the manager's cluster-resource namespace
	// (--cluster-resource-namespace) for a ClusterReevitIssuer. It never
	// leaves that namespace; the teams using the issuer need no access to it.
	AdminKeySecretRef SecretKeyReference `json:"adminKeySecretRef"`

	// Policy bounds what the ApiKeys using the issuer may ask for.
	// +optional
	Policy ReevitIssuerPolicy `json:"policy,omitempty"`

	// AdminKeyRotation makes the issuer replace its own admin key: a new key
	// with exactly the current key's scopes, minted through the current key,
	// written into the admin-key Secret, proven, then the old key revoked
	// after gracePeriod. Absent: the admin key is never changed by Keywarden.
	// The keywarden.dev/rotate and keywarden.dev/compromised annotations on
	// the issuer ask for one rotation now (compromised: the old key is
	// revoked at once). See docs/admin-key-rotation.md.
	// +optional
	AdminKeyRotation *AdminKeyRotation `json:"adminKeyRotation,omitempty"`
}

// AdminKeyRotation says how often an issuer replaces its admin key.
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || !self.every.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || !self.gracePeriod.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.gracePeriod) <= duration(self.every)",message="adminKeyRotation.gracePeriod must not be longer than adminKeyRotation.every"
type AdminKeyRotation struct {
	// Every rotates the admin key at this interval after it became active,
	// as a Go duration such as 720h. At least 1m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="adminKeyRotation.every must be a Go duration such as 720h (units h, m, s, ms, us, ns; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('1m')",message="adminKeyRotation.every must be at least 1m"
	Every *metav1.Duration `json:"every"`

	// GracePeriod is how long the previous admin key stays valid after the
	// Secret holds the new one, for anything else still using it. Defaults
	// to 10m, or to Every when Every is shorter. At most 720h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="adminKeyRotation.gracePeriod must be a Go duration such as 10m or 1h30m (units h, m, s, ms, us, ns; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) <= duration('720h')",message="adminKeyRotation.gracePeriod must be at most 720h"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// AdminKeyStatus is what a Reevit issuer knows of its admin key at Reevit:
// never the key itself.
type AdminKeyStatus struct {
	// ID of the admin key at Reevit.
	// +optional
	ID string `json:"id,omitempty"`
	// Prefix is the key's public prefix (its first 13 characters), as
	// Reevit lists it.
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// Scopes the admin key holds; a new admin key gets exactly these.
	// +optional
	Scopes []string `json:"scopes,omitempty"`
	// Environment of the admin key: live or test.
	// +optional
	Environment string `json:"environment,omitempty"`
	// Fingerprint of the Secret value this record describes (as
	// status.credential).
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`
	// ActiveSince is when the key was created at Reevit (or first seen).
	// +optional
	ActiveSince *metav1.Time `json:"activeSince,omitempty"`
	// NextRotationTime is when spec.adminKeyRotation replaces the key.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`
	// Rotations counts the rotations begun; it makes each rotation's
	// Idempotency-Key and name marker unique.
	// +optional
	Rotations int64 `json:"rotations,omitempty"`
	// LastRotateRequest is the keywarden.dev/rotate value acted on.
	// +optional
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`
	// LastCompromisedRequest is the keywarden.dev/compromised value acted on.
	// +optional
	LastCompromisedRequest string `json:"lastCompromisedRequest,omitempty"`
	// Pending is the rotation in flight, recorded before the creation is
	// sent: a restarted manager replays it with the same Idempotency-Key.
	// +optional
	Pending *AdminKeyPending `json:"pending,omitempty"`
	// Previous is the replaced admin key, revoked after the grace period.
	// +optional
	Previous *AdminKeyPrevious `json:"previous,omitempty"`
	// FailedAttempts counts consecutive failed rotation steps; it drives
	// the backoff.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// LastFailureTime is when a rotation step last failed.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
}

// AdminKeyPending is an admin-key creation recorded before it is sent.
type AdminKeyPending struct {
	// IdempotencyKey sent with the creation; the same on every replay.
	IdempotencyKey string `json:"idempotencyKey"`
	// Name of the new key at Reevit, carrying a marker that finds it again.
	Name string `json:"name"`
	// Reason: schedule, manual or compromised.
	Reason string `json:"reason"`
	// StartedAt is when the intent was recorded.
	StartedAt metav1.Time `json:"startedAt"`
	// Scopes asked for: the current key's.
	Scopes []string `json:"scopes"`
	// Environment the new key must have: the current key's.
	Environment string `json:"environment"`
	// OldFingerprint is the fingerprint of the Secret value the creation
	// was sent with; a Secret holding neither it nor the new key was
	// edited by a person, and the rotation starts over.
	OldFingerprint string `json:"oldFingerprint"`
	// OldID is the id of the admin key being replaced.
	OldID string `json:"oldId"`
	// OldPrefix is the prefix of the admin key being replaced.
	// +optional
	OldPrefix string `json:"oldPrefix,omitempty"`
}

// AdminKeyPrevious is a replaced admin key waiting for revocation.
type AdminKeyPrevious struct {
	// ID of the key at Reevit.
	ID string `json:"id"`
	// Prefix of the key.
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// RevokeAfter is when it is revoked (its grace period's end, or at once
	// when compromised), or retried after a failure.
	RevokeAfter metav1.Time `json:"revokeAfter"`
	// Attempts counts failed revocations.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// LastError is the reason of the last failed revocation.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// RevioIssuerSpec says which Rev.io endpoint and API key issue tokens.
type RevioIssuerSpec struct {
	// URL is the base URL of the Rev.io API. The manager's
	// --allowed-endpoints flag lists the URLs an issuer may name.
	// +kubebuilder:default="https://api.psarev.io"
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.matches('^http://(localhost|127[.]0[.]0[.]1|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')",message="url must use https:// (http:// is allowed only for localhost, 127.0.0.1 and [::1])"
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="url must be an absolute URL with a host, such as https://api.psarev.io"
	// +optional
	URL string `json:"url,omitempty"`

	// Host is the domain of your PSA website, sent as X-Revio-Host, such as
	// acme.psarev.io.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="host must be a lower-case DNS name such as acme.psarev.io, without scheme, port or path"
	Host string `json:"host"`

	// APIKeySecretRef points at an Opaque Secret holding the Rev.io API key:
	// in the issuer's namespace for a RevioIssuer, in the manager's
	// cluster-resource namespace for a ClusterRevioIssuer. Consuming
	// namespaces receive only the short-lived JWT.
	APIKeySecretRef SecretKeyReference `json:"apiKeySecretRef"`

	// NamespaceSelector selects the namespaces whose RevioTokens may use a
	// ClusterRevioIssuer. Empty or absent selects every namespace. Not allowed
	// on a (namespaced) RevioIssuer.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// MaxKeyAge is how long one Rev.io API key value may stay in use. Rev.io
	// API keys are made by administrators in Rev.io's UI, so Keywarden cannot
	// rotate them: it tracks since when the Secret has held the current value
	// (status.credential) and, past this age, sets KeyAge=False (KeyTooOld)
	// with a Warning event, for a person to make a new key. Tokens keep being
	// exchanged. A Go duration such as 2160h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="maxKeyAge must be a Go duration such as 2160h (units h, m, s; no days)"
	// +optional
	MaxKeyAge *metav1.Duration `json:"maxKeyAge,omitempty"`
}

// Fingerprint identifies a credential without revealing it: "sha256:" and
// the first 16 hex characters of its SHA-256, enough to compare two copies,
// useless to recover the value. status.credential and kubectl keywarden
// inspect secret print the same.
func Fingerprint(value []byte) string {
	sum := sha256.Sum256(value)
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// CredentialRecord identifies the credential an issuer's Secret holds,
// never its value.
type CredentialRecord struct {
	// Fingerprint is "sha256:" and the first 16 hex characters of the
	// SHA-256 of the value: it tells two values apart and reveals nothing
	// (kubectl keywarden inspect secret prints the same).
	Fingerprint string `json:"fingerprint"`
	// FirstSeen is when Keywarden first saw this value in the Secret: the
	// key's age counts from here.
	FirstSeen metav1.Time `json:"firstSeen"`
}

// IssuerStatus is the observed state of an issuer: whether its credential
// works. It never holds the credential.
type IssuerStatus struct {
	// CheckedVersion is the issuer generation and credential Secret
	// resourceVersion last checked: one check per version, not per consumer.
	// +optional
	CheckedVersion string `json:"checkedVersion,omitempty"`
	// LastCheckTime is when the credential was last checked.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`
	// RetryStatus records consecutive failed checks. A failed check is
	// retried with backoff whatever the failure (needsAttention stays
	// false): what fixes an issuer's credential may happen at the API,
	// where no watch sees it.
	RetryStatus `json:",inline"`
	// Credential identifies the credential the Secret holds (a fingerprint)
	// and since when: the age of the admin key or the Rev.io API key.
	// +optional
	Credential *CredentialRecord `json:"credential,omitempty"`
	// AdminKey describes a Reevit issuer's admin key and its rotation
	// (spec.adminKeyRotation).
	// +optional
	AdminKey *AdminKeyStatus `json:"adminKey,omitempty"`
	// Conditions: Ready is True once the credential is proven.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ReevitIssuer lets the ApiKeys of its namespace get Reevit keys without
// holding the admin key, within its policy.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ri,categories=keywarden
// +kubebuilder:validation:XValidation:rule="!has(self.spec.policy) || !has(self.spec.policy.namespaceSelector)",message="spec.policy.namespaceSelector applies only to ClusterReevitIssuer: a ReevitIssuer serves its own namespace"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Org",type=string,JSONPath=`.spec.orgId`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`,priority=1
type ReevitIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the issuer's endpoint, credential and policy.
	Spec ReevitIssuerSpec `json:"spec"`
	// Status says whether the credential works.
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// ReevitIssuerList is a list of ReevitIssuers.
// +kubebuilder:object:root=true
type ReevitIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReevitIssuer `json:"items"`
}

// ClusterReevitIssuer lets the ApiKeys of the namespaces it selects get
// Reevit keys, within its policy. Its admin-key Secret lives in the manager's
// cluster-resource namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cri,categories=keywarden
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Org",type=string,JSONPath=`.spec.orgId`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`,priority=1
type ClusterReevitIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the issuer's endpoint, credential and policy.
	Spec ReevitIssuerSpec `json:"spec"`
	// Status says whether the credential works.
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// ClusterReevitIssuerList is a list of ClusterReevitIssuers.
// +kubebuilder:object:root=true
type ClusterReevitIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterReevitIssuer `json:"items"`
}

// RevioIssuer lets the RevioTokens of its namespace get Rev.io tokens
// without holding the API key.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rvi,categories=keywarden
// +kubebuilder:validation:XValidation:rule="!has(self.spec.namespaceSelector)",message="spec.namespaceSelector applies only to ClusterRevioIssuer: a RevioIssuer serves its own namespace"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`,priority=1
type RevioIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the issuer's endpoint and credential.
	Spec RevioIssuerSpec `json:"spec"`
	// Status says whether the credential works.
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// RevioIssuerList is a list of RevioIssuers.
// +kubebuilder:object:root=true
type RevioIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RevioIssuer `json:"items"`
}

// ClusterRevioIssuer lets the RevioTokens of the namespaces it selects get
// Rev.io tokens. Its API-key Secret lives in the manager's cluster-resource
// namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=crvi,categories=keywarden
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`,priority=1
type ClusterRevioIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the issuer's endpoint and credential.
	Spec RevioIssuerSpec `json:"spec"`
	// Status says whether the credential works.
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// ClusterRevioIssuerList is a list of ClusterRevioIssuers.
// +kubebuilder:object:root=true
type ClusterRevioIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterRevioIssuer `json:"items"`
}

// ReevitIssuerReference names the issuer of an ApiKey.
type ReevitIssuerReference struct {
	// Kind of the issuer: ReevitIssuer (in the ApiKey's namespace, the
	// default) or ClusterReevitIssuer.
	// +kubebuilder:validation:Enum=ReevitIssuer;ClusterReevitIssuer
	// +kubebuilder:default=ReevitIssuer
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the issuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// RevioIssuerReference names the issuer of a RevioToken.
type RevioIssuerReference struct {
	// Kind of the issuer: RevioIssuer (in the RevioToken's namespace, the
	// default) or ClusterRevioIssuer.
	// +kubebuilder:validation:Enum=RevioIssuer;ClusterRevioIssuer
	// +kubebuilder:default=RevioIssuer
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the issuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// IssuerRecord says which issuer, organisation and URL created a key, so
// that its revocation goes there with that issuer's credential, whatever the
// spec says now.
type IssuerRecord struct {
	// Kind of the issuer.
	Kind string `json:"kind"`
	// Name of the issuer.
	Name string `json:"name"`
	// UID of the issuer when the key was created.
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// OrgID the key belongs to.
	OrgID string `json:"orgId"`
	// URL of the Reevit API that created the key.
	URL string `json:"url"`
}
