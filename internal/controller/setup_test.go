package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

	// Typed objects (the resources) lose their managed fields only.
	cm := &corev1.ConfigMap{ObjectMeta: *meta.DeepCopy()}
	out, err = TrimForCache(cm)
	g.Expect(err).NotTo(HaveOccurred())
	want := meta.DeepCopy()
	want.ManagedFields = nil
	g.Expect(out.(*corev1.ConfigMap).ObjectMeta).To(Equal(*want))
}
