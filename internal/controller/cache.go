package controller

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lastApplied is the annotation kubectl apply keeps a copy of the object in.
const lastApplied = corev1.LastAppliedConfigAnnotation

// TrimForCache is the cache's transform: it drops managed fields from every
// object, and kubectl's last-applied-configuration annotation (a second
// copy of the spec that no reconciler reads) from the typed ones, the
// ApiKeys and RevioTokens. That is safe because the reconcilers write them
// with patches computed between two cached copies, never with an update of
// a whole cached object, which would drop the annotation on the server.
// Metadata-only objects (Secrets, thousands of them unrelated to
// Keywarden) keep only what the controllers read from the cache: name,
// namespace, resourceVersion (to know whether a remembered copy is current),
// deletion timestamp and finalizers (the admin-key Secret's in-use
// finalizer) and Keywarden's own annotations. Labels, owner references,
// UIDs and timestamps are dropped, so each unrelated Secret costs little.
func TrimForCache(obj any) (any, error) {
	a, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return obj, nil
	}
	m := a.GetObjectMeta()
	m.SetManagedFields(nil)
	p, isMeta := obj.(*metav1.PartialObjectMetadata)
	if !isMeta {
		if ann := m.GetAnnotations(); ann != nil {
			delete(ann, lastApplied)
			if len(ann) == 0 {
				m.SetAnnotations(nil)
			}
		}
		return obj, nil
	}
	var keep map[string]string
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "keywarden.dev/") {
			if keep == nil {
				keep = map[string]string{}
			}
			keep[k] = v
		}
	}
	p.ObjectMeta = metav1.ObjectMeta{
		Name:              p.Name,
		Namespace:         p.Namespace,
		ResourceVersion:   p.ResourceVersion,
		DeletionTimestamp: p.DeletionTimestamp,
		Finalizers:        p.Finalizers,
		Annotations:       keep,
	}
	return p, nil
}
