package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/issuerref"
)

// issuerView is what the plugin shows of an issuer of any of the four kinds.
type issuerView struct {
	kind kind
	obj  client.Object
	// reevit or revio is set, by kind.
	reevit *v1alpha1.ReevitIssuerSpec
	revio  *v1alpha1.RevioIssuerSpec
	status *v1alpha1.IssuerStatus
}

// viewIssuer returns the view of an issuer object; ok is false for any
// other object.
func viewIssuer(obj client.Object) (issuerView, bool) {
	gi, ok := obj.(v1alpha1.GenericIssuer)
	if !ok {
		return issuerView{}, false
	}
	k, _ := kindOfAPI(gi.IssuerKind())
	return issuerView{kind: k, obj: gi, reevit: gi.ReevitSpec(), revio: gi.RevioSpec(), status: gi.IssuerStatus()}, true
}

// credentialRef is the issuer's credential Secret reference and the field
// that holds it.
func (v issuerView) credentialRef() (v1alpha1.SecretKeyReference, string) {
	if v.reevit != nil {
		return v.reevit.AdminKeySecretRef, "spec.adminKeySecretRef"
	}
	return v.revio.APIKeySecretRef, "spec.apiKeySecretRef"
}

// secretNamespace is where the issuer's credential Secret lives: its own
// namespace, or the manager's cluster-resource namespace for a cluster issuer.
func (v issuerView) secretNamespace(clusterResourceNamespace string) string {
	if v.kind.clusterScoped() {
		return clusterResourceNamespace
	}
	return v.obj.GetNamespace()
}

// url is the issuer's URL, with the API's default when the spec has none.
func (v issuerView) url() string { return v.obj.(v1alpha1.GenericIssuer).BaseURL() }

// readyCondition is the issuer's Ready condition, or nil.
func (v issuerView) readyCondition() *metav1.Condition {
	return meta.FindStatusCondition(v.status.Conditions, v1alpha1.ConditionReady)
}

// readyWord is "Ready True", "Ready False (Reason)" or "Ready unknown".
func (v issuerView) readyWord() string {
	c := v.readyCondition()
	switch {
	case c == nil:
		return "Ready not reported yet"
	case c.Status == metav1.ConditionTrue:
		return "Ready True"
	}
	return fmt.Sprintf("Ready %s (%s)", c.Status, c.Reason)
}

// issuerRefOf returns the issuer an ApiKey or a RevioToken names, with the
// API's default kind filled in.
func issuerRefOf(obj client.Object) (kind, string) {
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		k, ok := kindOfAPI(o.Spec.IssuerRef.Kind)
		if !ok || (k != kindReevitIssuer && k != kindClusterReevitIssuer) {
			k = kindReevitIssuer
		}
		return k, o.Spec.IssuerRef.Name
	case *v1alpha1.RevioToken:
		k, ok := kindOfAPI(o.Spec.IssuerRef.Kind)
		if !ok || (k != kindRevioIssuer && k != kindClusterRevioIssuer) {
			k = kindRevioIssuer
		}
		return k, o.Spec.IssuerRef.Name
	}
	return "", ""
}

// issuerState is what status knows of the issuer an object names.
type issuerState struct {
	kind    kind
	name    string
	view    issuerView // set when read
	read    bool
	missing bool
	err     error
}

func (s issuerState) String() string { return s.kind.Kind() + " " + s.name }

// readIssuer reads the issuer obj names (a namespaced one in obj's namespace).
func readIssuer(ctx context.Context, c client.Client, obj client.Object) issuerState {
	k, name := issuerRefOf(obj)
	s := issuerState{kind: k, name: name}
	if name == "" {
		s.missing = true
		return s
	}
	key := client.ObjectKey{Name: name}
	if !k.clusterScoped() {
		key.Namespace = obj.GetNamespace()
	}
	o := k.newObject()
	switch err := c.Get(ctx, key, o); {
	case apierrors.IsNotFound(err):
		s.missing = true
	case err != nil:
		s.err = err
	default:
		s.view, _ = viewIssuer(o)
		s.read = true
	}
	return s
}

// line is the issuer on one line: kind, name and whether it is Ready.
func (s issuerState) line() string {
	switch {
	case s.missing:
		return s.String() + " (not found: " + adviceFor(v1alpha1.ReasonIssuerNotFound) + ")"
	case s.err != nil:
		return s.String() + " (cannot read: " + shortErr(s.err) + ")"
	}
	return s.String() + " (" + s.view.readyWord() + ")"
}

// maxUsers is how many users of an issuer status and inspect name.
const maxUsers = 12

// issuerUsers lists the ApiKeys or RevioTokens that name the issuer in
// spec.issuerRef and, for a Reevit issuer, those whose keys made through it
// its deletion waits for (issuerref.BlocksDeletion, the controller's own
// rule: status.issuer, status.pendingCreate, status.pendingRevocations[]). Users of a cluster issuer are named with their
// namespace.
func issuerUsers(ctx context.Context, c client.Client, v issuerView) ([]string, error) {
	var opts []client.ListOption
	if !v.kind.clusterScoped() {
		opts = append(opts, client.InNamespace(v.obj.GetNamespace()))
	}
	display := func(k kind, obj client.Object) string {
		if v.kind.clusterScoped() {
			return obj.GetNamespace() + "/" + string(k) + "/" + obj.GetName()
		}
		return string(k) + "/" + obj.GetName()
	}
	names := func(obj client.Object) bool {
		k, name := issuerRefOf(obj)
		return k == v.kind && name == v.obj.GetName() && (k.clusterScoped() || obj.GetNamespace() == v.obj.GetNamespace())
	}
	var out []string
	if v.reevit != nil {
		var aks v1alpha1.ApiKeyList
		if err := c.List(ctx, &aks, opts...); err != nil {
			return nil, err
		}
		for i := range aks.Items {
			ak := &aks.Items[i]
			switch {
			case names(ak):
				out = append(out, display(kindApiKey, ak))
			case issuerref.BlocksDeletion(ak, v.kind.Kind(), v.obj.GetName()):
				out = append(out, display(kindApiKey, ak)+" (holds a key made through it)")
			}
		}
		return out, nil
	}
	var rts v1alpha1.RevioTokenList
	if err := c.List(ctx, &rts, opts...); err != nil {
		return nil, err
	}
	for i := range rts.Items {
		if names(&rts.Items[i]) {
			out = append(out, display(kindRevioToken, &rts.Items[i]))
		}
	}
	return out, nil
}

// joinUsers joins at most maxUsers names.
func joinUsers(users []string) string {
	if len(users) > maxUsers {
		return strings.Join(users[:maxUsers], ", ") + fmt.Sprintf(" and %d more", len(users)-maxUsers)
	}
	return strings.Join(users, ", ")
}

// secretReaders lists the issuers that name Secret ns/name as their
// credential: ReevitIssuers and RevioIssuers of ns and, when ns is the
// manager's cluster-resource namespace, the cluster issuers. Each comes with
// the ApiKeys or RevioTokens it serves.
func secretReaders(ctx context.Context, c client.Client, ns, name, clusterResourceNamespace string) ([]string, error) {
	kinds := []kind{kindReevitIssuer, kindRevioIssuer}
	if ns == clusterResourceNamespace {
		kinds = append(kinds, kindClusterReevitIssuer, kindClusterRevioIssuer)
	}
	var out []string
	for _, k := range kinds {
		list := k.newList()
		var opts []client.ListOption
		if !k.clusterScoped() {
			opts = append(opts, client.InNamespace(ns))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return out, fmt.Errorf("list %ss: %w", k, err)
		}
		var issuers []client.Object
		if err := meta.EachListItem(list, func(o runtime.Object) error {
			issuers = append(issuers, o.(client.Object))
			return nil
		}); err != nil {
			return out, err
		}
		for _, obj := range issuers {
			v, _ := viewIssuer(obj)
			r, field := v.credentialRef()
			if r.Name != name {
				continue
			}
			s := fmt.Sprintf("%s/%s (%s, data key %s", k, obj.GetName(), field, keyOr(r.Key))
			switch users, err := issuerUsers(ctx, c, v); {
			case err != nil:
				s += "; its users cannot be listed: " + shortErr(err)
			case len(users) == 0:
				s += "; no user yet"
			default:
				s += "; used by " + joinUsers(users)
			}
			out = append(out, s+")")
		}
	}
	return out, nil
}

func keyOr(k string) string {
	if k == "" {
		return "apiKey"
	}
	return k
}

// secretPresence says whether a Secret exists, reading its metadata only.
func secretPresence(ctx context.Context, c client.Client, ns, name string) string {
	sm := &metav1.PartialObjectMetadata{}
	sm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sm); {
	case apierrors.IsNotFound(err):
		return " (not found: " + adviceFor(v1alpha1.ReasonSecretNotFound) + ")"
	case err != nil:
		return " (cannot read: " + shortErr(err) + ")"
	case !sm.DeletionTimestamp.IsZero():
		return " (being deleted)"
	}
	return ""
}
