package main

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/issuerref"
)

// TestIssuerUsersAreWhatBlocksDeletion: for every state an ApiKey can be in
// towards a ReevitIssuer, the plugin lists it as holding a key made through
// the issuer exactly when the issuer controller's deletion waits for it
// (issuerref.BlocksDeletion, the rule IssuerReconciler.dependents counts
// with), and the table's expectations pin that rule: a creation in flight
// counts, UIDs are not compared, other kinds, names and namespaces do not
// count, an ApiKey going with its keys revoked does not count.
func TestIssuerUsersAreWhatBlocksDeletion(t *testing.T) {
	const issuerUID = types.UID("uid-now")
	rec := func(kind, name string, uid types.UID) *v1alpha1.IssuerRecord {
		return &v1alpha1.IssuerRecord{Kind: kind, Name: name, UID: uid, OrgID: "org_acme", URL: "https://api.reevit.com"}
	}
	this := rec(v1alpha1.KindReevitIssuer, "reevit", issuerUID)
	gone := rec(v1alpha1.KindReevitIssuer, "reevit", "uid-of-a-deleted-namesake")
	noUID := rec(v1alpha1.KindReevitIssuer, "reevit", "")
	cluster := rec(v1alpha1.KindClusterReevitIssuer, "reevit", "uid-cluster")
	otherName := rec(v1alpha1.KindReevitIssuer, "other", "uid-other")
	pending := func(r *v1alpha1.IssuerRecord) *v1alpha1.KeyRequest {
		return &v1alpha1.KeyRequest{IdempotencyKey: "k", Name: "n", Reason: "Created", StartedAt: metav1.NewTime(testNow), Issuer: r}
	}
	revoking := func(r *v1alpha1.IssuerRecord) []v1alpha1.PendingRevocation {
		return []v1alpha1.PendingRevocation{{KeyID: "key_old", Issuer: r}}
	}
	cases := []struct {
		name string
		// specNames: spec.issuerRef names ri/reevit (else ri/other).
		specNames bool
		namespace string
		deleting  bool
		finalizer bool
		status    v1alpha1.ApiKeyStatus
		want      bool
	}{
		{name: "no key", status: v1alpha1.ApiKeyStatus{}},
		{name: "active key", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: this}, want: true},
		{name: "active key, issuer of the same name with another UID", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: gone}, want: true},
		{name: "active key, record without UID", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: noUID}, want: true},
		{name: "issuer recorded but no key id", status: v1alpha1.ApiKeyStatus{Issuer: this}},
		{name: "active key of the cluster issuer of the same name", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: cluster}},
		{name: "active key of another issuer", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: otherName}},
		{name: "pendingCreate through the issuer", status: v1alpha1.ApiKeyStatus{PendingCreate: pending(this)}, want: true},
		{name: "pendingCreate through a namesake with another UID", status: v1alpha1.ApiKeyStatus{PendingCreate: pending(gone)}, want: true},
		{name: "pendingCreate through another issuer", status: v1alpha1.ApiKeyStatus{PendingCreate: pending(otherName)}},
		{name: "pendingCreate without issuer, spec names the issuer", specNames: true, status: v1alpha1.ApiKeyStatus{PendingCreate: pending(nil)}, want: true},
		{name: "pendingCreate without issuer, spec names another", status: v1alpha1.ApiKeyStatus{PendingCreate: pending(nil)}},
		{name: "pending revocation", status: v1alpha1.ApiKeyStatus{PendingRevocations: revoking(this)}, want: true},
		{name: "pending revocation, namesake with another UID", status: v1alpha1.ApiKeyStatus{PendingRevocations: revoking(gone)}, want: true},
		{name: "pending revocation of another issuer", status: v1alpha1.ApiKeyStatus{PendingRevocations: revoking(otherName)}},
		{name: "active key, in another namespace", namespace: "elsewhere", status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: this}},
		{name: "being deleted, keys not yet revoked", deleting: true, finalizer: true, status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: this}, want: true},
		{name: "being deleted, keys revoked", deleting: true, status: v1alpha1.ApiKeyStatus{KeyID: "key_1", Issuer: this}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reevit", UID: issuerUID}}
			ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "holder"}, Status: tc.status}
			ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindReevitIssuer, Name: "other"}
			if tc.specNames {
				ak.Spec.IssuerRef.Name = "reevit"
			}
			if tc.namespace != "" {
				ak.Namespace = tc.namespace
			}
			if tc.deleting {
				ak.DeletionTimestamp = mtime(0)
				ak.Finalizers = []string{"example.com/keep"} // the fake client keeps no deleting object without one
			}
			if tc.finalizer {
				ak.Finalizers = append(ak.Finalizers, issuerref.RevokeFinalizer)
			}

			if got := issuerref.BlocksDeletion(ak, v1alpha1.KindReevitIssuer, "reevit") && ak.Namespace == iss.Namespace; got != tc.want {
				t.Errorf("deletion waits for the ApiKey = %v, want %v", got, tc.want)
			}

			v, _ := viewIssuer(iss)
			users, err := issuerUsers(context.Background(), newFake([]client.Object{iss, ak}...), v)
			if err != nil {
				t.Fatal(err)
			}
			listed := false
			for _, u := range users {
				if strings.HasPrefix(u, "apikey/holder") {
					listed = true
				}
			}
			if listed != tc.want {
				t.Errorf("plugin lists apikey/holder as a user = %v (users %q), want %v (what blocks the issuer's deletion)", listed, users, tc.want)
			}
		})
	}
}
