package controller

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// TestFirstSecretWriteNeverTakesOver: a foreign Secret created between the
// reconciler's read (none) and its first write is refused with a
// ConflictError and left exactly as it was; with no Secret there, the
// first write creates one.
func TestFirstSecretWriteNeverTakesOver(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	owner := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "k", Namespace: ns, UID: types.UID("0b6f5d1e-7f55-4d4b-9d0c-1a2b3c4d5e6f")}}
	want := func(name string) secretsync.Desired {
		return secretsync.Desired{Namespace: ns, Name: name, Owner: owner, OwnerAPI: v1alpha1.GroupVersion.String(), OwnerKind: kindApiKey,
			Data: map[string][]byte{"apiKey": []byte("pfk_test_new"), "keyId": []byte("key_1")}}
	}

	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns}, Data: map[string][]byte{"mine": []byte("tenant data")}}
	if err := k8s.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	// The caller read no Secret (existing nil) just before the foreign one appeared.
	_, err := secretsync.Apply(ctx, k8s, nil, want("taken"))
	var conflict *secretsync.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("first write over a foreign Secret: err = %v, want a ConflictError", err)
	}
	got := &corev1.Secret{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "taken"}, got); err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != 1 || string(got.Data["mine"]) != "tenant data" || len(got.OwnerReferences) != 0 || got.ResourceVersion != foreign.ResourceVersion {
		t.Fatalf("the foreign Secret was changed: data keys %d, owners %v, resourceVersion %s -> %s", len(got.Data), got.OwnerReferences, foreign.ResourceVersion, got.ResourceVersion)
	}

	created, err := secretsync.Apply(ctx, k8s, nil, want("fresh"))
	if err != nil {
		t.Fatalf("first write with no Secret there: %v", err)
	}
	if created.UID == "" || created.ResourceVersion == "" || !secretsync.Controlled(created, owner) || !secretsync.Intact(created) {
		t.Fatalf("created Secret: uid %q, controlled %v", created.UID, secretsync.Controlled(created, owner))
	}
	// Later writes pass the Secret read back, and update it in place.
	if _, err := secretsync.Apply(ctx, k8s, created, want("fresh")); err != nil {
		t.Fatalf("second write: %v", err)
	}
}
