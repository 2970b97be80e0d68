package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Refresh says when a new token is obtained.
type Refresh struct {
	// Before is how long before the token's expiry it is refreshed, as a Go
	// duration such as 10m. Defaults to one third of the token's lifetime.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="refresh.before must be a Go duration such as 10m or 1h30m (units h, m, s, ms, us, ns; no days)"
	// +optional
	Before *metav1.Duration `json:"before,omitempty"`

	// Interval is how often a token without an exp claim is refreshed.
	// +kubebuilder:default="1h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="refresh.interval must be a Go duration such as 30m or 1h (units h, m, s, ms, us, ns; no days)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('10s')",message="refresh.interval must be at least 10s"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// Verify asks Keywarden to call Rev.io with a new token before publishing it.
type Verify struct {
	// Path is a GET path under url, such as /billing/api/v1/customers. Only a
	// 2xx answer publishes the token.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^/[A-Za-z0-9/_.~%-]*$`
	Path string `json:"path"`
}

// RevioTokenSpec is the desired Rev.io token.
type RevioTokenSpec struct {
	// IssuerRef names the RevioIssuer (same namespace) or ClusterRevioIssuer
	// whose API key is exchanged for the token. The team creating the
	// RevioToken never holds the API key.
	IssuerRef RevioIssuerReference `json:"issuerRef"`

	// Refresh says when the token is renewed.
	// +kubebuilder:default={}
	// +optional
	Refresh Refresh `json:"refresh,omitempty"`

	// Verify, when set, checks a new token against Rev.io before publishing it.
	// +optional
	Verify *Verify `json:"verify,omitempty"`

	// Secret shapes the output Secret (data keys token, authorization, host,
	// url, expiresAt).
	// +optional
	Secret SecretTemplate `json:"secret,omitempty"`

	// RolloutRestart lists workloads restarted when the token changes.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	RolloutRestart []RolloutTarget `json:"rolloutRestart,omitempty"`
}

// RevioTokenStatus is the observed state of a RevioToken. It never holds a token.
type RevioTokenStatus struct {
	// IssuedAt is the token's iat claim.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`
	// ExpiresAt is the token's exp claim; empty when the token carries none.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// LastRefreshTime is when the token in the Secret was obtained.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`
	// NextRefreshTime is when the next refresh is due.
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`
	// Refreshes counts the exchanges that produced a published token.
	// +optional
	Refreshes int64 `json:"refreshes,omitempty"`
	// LastRefreshRequest is the last keywarden.dev/refresh value acted on.
	// +optional
	LastRefreshRequest string `json:"lastRefreshRequest,omitempty"`
	// ResolvedIssuer is the issuer spec.issuerRef names, as Kind/name with
	// the kind defaulted (RevioIssuer/billing, ClusterRevioIssuer/platform):
	// the Issuer column of kubectl get.
	// +optional
	ResolvedIssuer string `json:"resolvedIssuer,omitempty"`
	// APIKeySecretVersion is the resourceVersion of the API-key Secret used
	// for the current token; a change triggers a new exchange.
	// +optional
	APIKeySecretVersion string `json:"apiKeySecretVersion,omitempty"`
	// SecretName is the output Secret the token was written to.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// RetryStatus records consecutive failures: nothing is retried until
	// the spec, the issuer or its API-key Secret, or a refresh annotation
	// changes when the last one needs a person.
	RetryStatus `json:",inline"`
	// Conditions: Ready summarises; Issued and SecretSynced say which step failed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RevioToken exchanges a Rev.io API key for a JWT and keeps a fresh JWT, with
// the X-Revio-Host value workloads need, in a Secret.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rt,categories=keywarden
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.status.resolvedIssuer`,priority=1
// +kubebuilder:printcolumn:name="Refreshes",type=integer,JSONPath=`.status.refreshes`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
type RevioToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired token.
	Spec RevioTokenSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status RevioTokenStatus `json:"status,omitempty"`
}

// RevioTokenList is a list of RevioTokens.
// +kubebuilder:object:root=true
type RevioTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RevioToken `json:"items"`
}
