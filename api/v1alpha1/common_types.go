package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SecretKeyReference points at one data key of a Secret in the same namespace
// as the resource. Cross-namespace references are not possible by design.
type SecretKeyReference struct {
	// Name of the Secret, in the same namespace as this resource.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key is the data key inside the Secret that holds the credential.
	// +kubebuilder:default=apiKey
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// SecretTemplate shapes the Secret that Keywarden writes and keeps up to date.
type SecretTemplate struct {
	// Name of the output Secret, in the same namespace. Defaults to the
	// resource's own name. Keywarden refuses to overwrite a Secret it did not
	// create (reason SecretConflict).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Name string `json:"name,omitempty"`

	// Labels added to the output Secret.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations added to the output Secret.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RolloutTarget picks workloads in the same namespace whose pods are
// restarted when the output Secret changes: one workload by name, or every
// workload of the kind whose labels match a selector. Either way a workload
// is restarted only when it reads the output Secret or opts in with the
// annotation keywarden.dev/allow-restart-for (reason RolloutTargetRefused
// otherwise).
// +kubebuilder:validation:XValidation:rule="has(self.name) != has(self.selector)",message="exactly one of name or selector must be set"
type RolloutTarget struct {
	// Kind of the workload.
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// Name of the workload. Exclusive with selector.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Selector picks the workloads of this kind in the namespace by their
	// labels (at most 100 per entry). An empty selector ({}) picks all of
	// them: only those reading the Secret are restarted. Exclusive with name.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// When says which of the picked workloads reading the Secret are
	// restarted. Needed (the default) restarts only those whose pods cannot
	// see a new value without a restart: they read it through env
	// (valueFrom.secretKeyRef) or envFrom, mount it with subPath, or opt in
	// with keywarden.dev/allow-restart-for. A workload reading the Secret only
	// through secret or projected volumes is not restarted: the kubelet
	// updates the mounted files in place (within about a minute), and the
	// application should reread them. Always restarts every picked workload
	// that reads the Secret.
	// +kubebuilder:default=Needed
	// +optional
	When RestartWhen `json:"when,omitempty"`
}

// RestartWhen says when a rollout target's workloads are restarted.
// +kubebuilder:validation:Enum=Needed;Always
type RestartWhen string

const (
	// RestartWhenNeeded restarts only workloads that cannot see a new Secret
	// value without a restart (env, envFrom, subPath, opt-in annotation).
	RestartWhenNeeded RestartWhen = "Needed"
	// RestartWhenAlways restarts every workload that reads the Secret.
	RestartWhenAlways RestartWhen = "Always"
)

// Annotations understood on Keywarden resources.
const (
	// AnnotationRotate on an ApiKey: each new value asks for one immediate rotation.
	AnnotationRotate = "keywarden.dev/rotate"
	// AnnotationCompromised on an ApiKey: each new value rotates at once and
	// revokes the current key immediately, without grace period.
	AnnotationCompromised = "keywarden.dev/compromised"
	// AnnotationRefresh on a RevioToken: each new value asks for one immediate refresh.
	AnnotationRefresh = "keywarden.dev/refresh"
	// AnnotationSecretHash is the pod-template annotation that releases
	// before per-Secret restart annotations (secret-hash.keywarden.dev/<Secret>)
	// wrote. It is still read, never written.
	AnnotationSecretHash = "keywarden.dev/secret-hash"
)

// RetryStatus is the retry record every reconciled kind keeps in its status:
// consecutive failures, when the last one happened and when it is retried.
// The version of the inputs it waits on (spec, credential Secret,
// annotations) is kept by each kind next to it.
type RetryStatus struct {
	// FailedAttempts counts consecutive failures; it drives the backoff.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// NeedsAttention is true when the last failure is one no retry can fix
	// (a rejected credential, a missing scope, a conflicting Secret): nothing
	// is retried until one of the object's inputs changes. The Ready
	// condition says what to do.
	// +optional
	NeedsAttention bool `json:"needsAttention,omitempty"`
	// LastFailureTime is when the last attempt failed.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
	// NextRetryTime is when a transient failure is retried (backoff, or the
	// API's retry_after).
	// +optional
	NextRetryTime *metav1.Time `json:"nextRetryTime,omitempty"`
}
