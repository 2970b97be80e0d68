package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Credential is what the two credential kinds, ApiKey and RevioToken, share
// for the controller and the plugin: their conditions and the workloads
// they restart when their Secret changes.
//
// +kubebuilder:object:generate=false
type Credential interface {
	metav1.Object
	runtime.Object
	// GetConditions is the object's status conditions.
	GetConditions() []metav1.Condition
	// RolloutTargets is spec.rolloutRestart.
	RolloutTargets() []RolloutTarget
}

var (
	_ Credential = &ApiKey{}
	_ Credential = &RevioToken{}
)

// GetConditions is the ApiKey's status conditions.
func (a *ApiKey) GetConditions() []metav1.Condition { return a.Status.Conditions }

// RolloutTargets is the ApiKey's spec.rolloutRestart.
func (a *ApiKey) RolloutTargets() []RolloutTarget { return a.Spec.RolloutRestart }

// GetConditions is the RevioToken's status conditions.
func (r *RevioToken) GetConditions() []metav1.Condition { return r.Status.Conditions }

// RolloutTargets is the RevioToken's spec.rolloutRestart.
func (r *RevioToken) RolloutTargets() []RolloutTarget { return r.Spec.RolloutRestart }
