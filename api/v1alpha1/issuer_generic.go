package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Default API roots of the issuers' spec.url: the documented hosts of the
// two APIs. The clients and the manager's default --allowed-endpoints use
// these.
const (
	DefaultReevitURL = "https://api.reevit.com"
	DefaultRevioURL  = "https://api.psarev.io"
)

// GenericIssuer is what every issuer kind offers (cert-manager's
// GenericIssuer): the controller, the plugin and the bench reach the four
// kinds through it, and IssuerKinds and NewIssuer are the one place that
// lists them.
// +kubebuilder:object:generate=false
type GenericIssuer interface {
	runtime.Object
	metav1.Object
	// IssuerKind is the kind's name (KindReevitIssuer, ...).
	IssuerKind() string
	// Cluster is true for the cluster-scoped kinds, whose credential Secret
	// lives in the manager's cluster-resource namespace.
	Cluster() bool
	// ReevitSpec is the spec of a Reevit kind, nil for a Rev.io kind.
	ReevitSpec() *ReevitIssuerSpec
	// RevioSpec is the spec of a Rev.io kind, nil for a Reevit kind.
	RevioSpec() *RevioIssuerSpec
	// IssuerStatus is the status every kind shares.
	IssuerStatus() *IssuerStatus
	// CredentialRef is the Secret holding the admin key (Reevit) or the
	// API key (Rev.io).
	CredentialRef() SecretKeyReference
	// BaseURL is spec.url with its default.
	BaseURL() string
}

// IssuerKinds lists the four issuer kinds: Reevit's, then Rev.io's,
// namespaced before cluster-scoped.
var IssuerKinds = []string{KindReevitIssuer, KindClusterReevitIssuer, KindRevioIssuer, KindClusterRevioIssuer}

// NewIssuer is an empty issuer of the kind, nil for any other kind.
func NewIssuer(kind string) GenericIssuer {
	switch kind {
	case KindReevitIssuer:
		return &ReevitIssuer{}
	case KindClusterReevitIssuer:
		return &ClusterReevitIssuer{}
	case KindRevioIssuer:
		return &RevioIssuer{}
	case KindClusterRevioIssuer:
		return &ClusterRevioIssuer{}
	}
	return nil
}

// IssuerList is a list of issuers of one kind.
// +kubebuilder:object:generate=false
type IssuerList interface {
	runtime.Object
	metav1.ListInterface
	// Issuers are the list's items.
	Issuers() []GenericIssuer
}

// NewIssuerList is an empty list of the kind's issuers, nil for any other kind.
func NewIssuerList(kind string) IssuerList {
	switch kind {
	case KindReevitIssuer:
		return &ReevitIssuerList{}
	case KindClusterReevitIssuer:
		return &ClusterReevitIssuerList{}
	case KindRevioIssuer:
		return &RevioIssuerList{}
	case KindClusterRevioIssuer:
		return &ClusterRevioIssuerList{}
	}
	return nil
}

// OtherScope is the kind of the same API in the other scope: the cluster
// kind of a namespaced kind and the other way round ("" for any other kind).
func OtherScope(kind string) string {
	switch kind {
	case KindReevitIssuer:
		return KindClusterReevitIssuer
	case KindClusterReevitIssuer:
		return KindReevitIssuer
	case KindRevioIssuer:
		return KindClusterRevioIssuer
	case KindClusterRevioIssuer:
		return KindRevioIssuer
	}
	return ""
}

// IsReevitKind says whether kind is one of the Reevit issuer kinds.
func IsReevitKind(kind string) bool {
	return kind == KindReevitIssuer || kind == KindClusterReevitIssuer
}

func orDefault(url, def string) string {
	if url == "" {
		return def
	}
	return url
}

func (i *ReevitIssuer) IssuerKind() string                { return KindReevitIssuer }
func (i *ReevitIssuer) Cluster() bool                     { return false }
func (i *ReevitIssuer) ReevitSpec() *ReevitIssuerSpec     { return &i.Spec }
func (i *ReevitIssuer) RevioSpec() *RevioIssuerSpec       { return nil }
func (i *ReevitIssuer) IssuerStatus() *IssuerStatus       { return &i.Status }
func (i *ReevitIssuer) CredentialRef() SecretKeyReference { return i.Spec.AdminKeySecretRef }
func (i *ReevitIssuer) BaseURL() string                   { return orDefault(i.Spec.URL, DefaultReevitURL) }

func (i *ClusterReevitIssuer) IssuerKind() string                { return KindClusterReevitIssuer }
func (i *ClusterReevitIssuer) Cluster() bool                     { return true }
func (i *ClusterReevitIssuer) ReevitSpec() *ReevitIssuerSpec     { return &i.Spec }
func (i *ClusterReevitIssuer) RevioSpec() *RevioIssuerSpec       { return nil }
func (i *ClusterReevitIssuer) IssuerStatus() *IssuerStatus       { return &i.Status }
func (i *ClusterReevitIssuer) CredentialRef() SecretKeyReference { return i.Spec.AdminKeySecretRef }
func (i *ClusterReevitIssuer) BaseURL() string                   { return orDefault(i.Spec.URL, DefaultReevitURL) }

func (i *RevioIssuer) IssuerKind() string                { return KindRevioIssuer }
func (i *RevioIssuer) Cluster() bool                     { return false }
func (i *RevioIssuer) ReevitSpec() *ReevitIssuerSpec     { return nil }
func (i *RevioIssuer) RevioSpec() *RevioIssuerSpec       { return &i.Spec }
func (i *RevioIssuer) IssuerStatus() *IssuerStatus       { return &i.Status }
func (i *RevioIssuer) CredentialRef() SecretKeyReference { return i.Spec.APIKeySecretRef }
func (i *RevioIssuer) BaseURL() string                   { return orDefault(i.Spec.URL, DefaultRevioURL) }

func (i *ClusterRevioIssuer) IssuerKind() string                { return KindClusterRevioIssuer }
func (i *ClusterRevioIssuer) Cluster() bool                     { return true }
func (i *ClusterRevioIssuer) ReevitSpec() *ReevitIssuerSpec     { return nil }
func (i *ClusterRevioIssuer) RevioSpec() *RevioIssuerSpec       { return &i.Spec }
func (i *ClusterRevioIssuer) IssuerStatus() *IssuerStatus       { return &i.Status }
func (i *ClusterRevioIssuer) CredentialRef() SecretKeyReference { return i.Spec.APIKeySecretRef }
func (i *ClusterRevioIssuer) BaseURL() string                   { return orDefault(i.Spec.URL, DefaultRevioURL) }

func (l *ReevitIssuerList) Issuers() []GenericIssuer        { return issuersOf(l.Items) }
func (l *ClusterReevitIssuerList) Issuers() []GenericIssuer { return issuersOf(l.Items) }
func (l *RevioIssuerList) Issuers() []GenericIssuer         { return issuersOf(l.Items) }
func (l *ClusterRevioIssuerList) Issuers() []GenericIssuer  { return issuersOf(l.Items) }

func issuersOf[T any, P interface {
	*T
	GenericIssuer
}](items []T) []GenericIssuer {
	out := make([]GenericIssuer, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}
