// Package issuerref says which ApiKeys hold keys of an issuer: the one
// definition the issuer controller (whose deletion waits for them, reason
// IssuerInUse) and the kubectl plugin (which lists them as the issuer's
// users) share.
package issuerref

import (
	"slices"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// RevokeFinalizer is the ApiKey finalizer that revokes its keys before the
// object goes.
const RevokeFinalizer = "credentials.keywarden.dev/revoke"

// HoldsKeys says whether the ApiKey's status records a key (active, pending
// revocation, or a creation in flight) made through the issuer of that kind
// and name. A creation in flight that recorded no issuer is taken as made
// through the issuer spec.issuerRef names. UIDs are not compared: an issuer
// recreated under the same name waits for the keys of its predecessor.
func HoldsKeys(ak *v1alpha1.ApiKey, kind, name string) bool {
	is := func(r *v1alpha1.IssuerRecord) bool { return r != nil && r.Kind == kind && r.Name == name }
	st := &ak.Status
	if st.KeyID != "" && is(st.Issuer) {
		return true
	}
	if st.PendingCreate != nil && (is(st.PendingCreate.Issuer) || (st.PendingCreate.Issuer == nil &&
		SpecKind(ak.Spec.IssuerRef.Kind) == kind && ak.Spec.IssuerRef.Name == name)) {
		return true
	}
	for i := range st.PendingRevocations {
		if is(st.PendingRevocations[i].Issuer) {
			return true
		}
	}
	return false
}

// BlocksDeletion says whether the deletion of the issuer of that kind and
// name waits for the ApiKey: it holds keys of the issuer and is not being
// deleted, or is being deleted with its keys not yet revoked (RevokeFinalizer
// still on). The caller lists ApiKeys of the issuer's namespace only, for a
// namespaced issuer.
func BlocksDeletion(ak *v1alpha1.ApiKey, kind, name string) bool {
	return HoldsKeys(ak, kind, name) && (ak.DeletionTimestamp.IsZero() || slices.Contains(ak.Finalizers, RevokeFinalizer))
}

// SpecKind is the Reevit issuer kind spec.issuerRef names, with its default.
func SpecKind(k string) string {
	if k == "" {
		return v1alpha1.KindReevitIssuer
	}
	return k
}
