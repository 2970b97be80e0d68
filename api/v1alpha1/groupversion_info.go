// Package v1alpha1 contains the Keywarden API: ApiKey (Reevit API keys that are
// created, rotated and revoked) and RevioToken (Rev.io JWTs that are exchanged
// and refreshed), in the group credentials.keywarden.dev.
// +kubebuilder:object:generate=true
// +groupName=credentials.keywarden.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the Keywarden API.
	GroupVersion = schema.GroupVersion{Group: "credentials.keywarden.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Keywarden types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Keywarden types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ApiKey{}, &ApiKeyList{}, &RevioToken{}, &RevioTokenList{},
		&ReevitIssuer{}, &ReevitIssuerList{}, &ClusterReevitIssuer{}, &ClusterReevitIssuerList{},
		&RevioIssuer{}, &RevioIssuerList{}, &ClusterRevioIssuer{}, &ClusterRevioIssuerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
