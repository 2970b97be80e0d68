package v1alpha1

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

// RolloutTarget names a workload in the same namespace whose pods are
// restarted when the output Secret changes.
type RolloutTarget struct {
	// Kind of the workload.
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// Name of the workload.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Annotations understood on Keywarden resources.
const (
	// AnnotationRotate on an ApiKey: each new value asks for one immediate rotation.
	AnnotationRotate = "keywarden.dev/rotate"
	// AnnotationCompromised on an ApiKey: each new value rotates at once and
	// revokes the current key immediately, without grace period.
	AnnotationCompromised = "keywarden.dev/compromised"
	// AnnotationRefresh on a RevioToken: each new value asks for one immediate refresh.
	AnnotationRefresh = "keywarden.dev/refresh"
	// AnnotationSecretHash is set on the pod template of rollout targets.
	AnnotationSecretHash = "keywarden.dev/secret-hash"
)
