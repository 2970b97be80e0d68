package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func TestTrimForCache(t *testing.T) {
	g := NewWithT(t)
	now := metav1.Now()
	meta := metav1.ObjectMeta{
		Name: "s", Namespace: "ns", UID: types.UID("u"), ResourceVersion: "7", Generation: 3,
		CreationTimestamp: now, DeletionTimestamp: &now,
		Labels:          map[string]string{"app": "x"},
		Annotations:     map[string]string{"keywarden.dev/data-hash": "h", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		Finalizers:      []string{inUseFinalizer},
		OwnerReferences: []metav1.OwnerReference{{Name: "o", UID: "ou"}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "m"}},
	}

	// A Secret's metadata keeps only what the controllers read.
	m := secretMetadata()
	m.ObjectMeta = *meta.DeepCopy()
	out, err := TrimForCache(m)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.(*metav1.PartialObjectMetadata).ObjectMeta).To(Equal(metav1.ObjectMeta{
		Name: "s", Namespace: "ns", ResourceVersion: "7", DeletionTimestamp: &now,
		Finalizers:  []string{inUseFinalizer},
		Annotations: map[string]string{"keywarden.dev/data-hash": "h"},
	}))
	g.Expect(out.(*metav1.PartialObjectMetadata).GroupVersionKind().Kind).To(Equal("Secret"))

	// Typed objects (the resources) lose their managed fields and kubectl's
	// copy of the last applied object, nothing else.
	cm := &corev1.ConfigMap{ObjectMeta: *meta.DeepCopy()}
	out, err = TrimForCache(cm)
	g.Expect(err).NotTo(HaveOccurred())
	want := meta.DeepCopy()
	want.ManagedFields = nil
	want.Annotations = map[string]string{"keywarden.dev/data-hash": "h"}
	g.Expect(out.(*corev1.ConfigMap).ObjectMeta).To(Equal(*want))
}

// TestTrimForCachePrimaryKinds: the cached ApiKeys and RevioTokens keep
// everything the reconcilers read (spec, status, labels, the trigger
// annotations, finalizers, owner references, deletion timestamp,
// generation, resourceVersion, UID) and lose managedFields and the
// last-applied-configuration annotation, the bulk of a kubectl-applied
// object's metadata.
func TestTrimForCachePrimaryKinds(t *testing.T) {
	g := NewWithT(t)
	now := metav1.Now()
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: "a", Namespace: "ns", UID: types.UID("u"), ResourceVersion: "7", Generation: 3,
			CreationTimestamp: now, DeletionTimestamp: &now,
			Labels: map[string]string{ShardLabel: "shard1"},
			Annotations: map[string]string{
				v1alpha1.AnnotationRotate: "1", v1alpha1.AnnotationRefresh: "2",
				corev1.LastAppliedConfigAnnotation: `{"spec":{"scopes":["payments:read"]}}`,
			},
			Finalizers:      []string{finalizer},
			OwnerReferences: []metav1.OwnerReference{{Name: "o", UID: "ou"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: "keywarden-manager", Subresource: "status"}},
		}
	}
	wantMeta := meta()
	wantMeta.ManagedFields = nil
	delete(wantMeta.Annotations, corev1.LastAppliedConfigAnnotation)

	ak := &v1alpha1.ApiKey{
		ObjectMeta: meta(),
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef: v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: "platform"},
			Scopes:    []v1alpha1.Scope{"payments:read"}, Environment: "test",
		},
		Status: v1alpha1.ApiKeyStatus{
			KeyID: "key_1", KeyGeneration: 2, ObservedGeneration: 3,
			PendingCreate: &v1alpha1.KeyRequest{IdempotencyKey: "idem", Name: "n", StartedAt: now},
			Conditions:    []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue}},
		},
	}
	want := ak.DeepCopy()
	want.ObjectMeta = *wantMeta.DeepCopy()
	out, err := TrimForCache(ak)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(want))

	rt := &v1alpha1.RevioToken{
		ObjectMeta: meta(),
		Spec:       v1alpha1.RevioTokenSpec{IssuerRef: v1alpha1.RevioIssuerReference{Name: "revio"}},
		Status:     v1alpha1.RevioTokenStatus{ExpiresAt: &now, Refreshes: 4, SecretName: "s"},
	}
	wantRT := rt.DeepCopy()
	wantRT.ObjectMeta = *wantMeta.DeepCopy()
	out, err = TrimForCache(rt)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(wantRT))

	// Only the last-applied copy there: no empty annotation map is left.
	only := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "b", Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}"}}}
	out, err = TrimForCache(only)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.(*v1alpha1.ApiKey).Annotations).To(BeNil())
}
