// Package v1alpha1 contains the Keywarden API: ApiKey (Reevit API keys that are
// created, rotated and revoked) and RevioToken (Rev.io JWTs that are exchanged
// and refreshed), in the group credentials.keywarden.dev.
// +kubebuilder:object:generate=true
// +groupName=credentials.keywarden.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the Keywarden API.
	GroupVersion = schema.GroupVersion{Group: "credentials.keywarden.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Keywarden types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Keywarden types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
