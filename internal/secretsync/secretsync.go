// Package secretsync writes the Secrets Keywarden owns and restarts the
// workloads that consume them. Both reconcilers share it, so ownership,
// field ownership and hashing follow one set of rules.
package secretsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// FieldOwner is the one server-side apply field manager Keywarden uses.
	FieldOwner = "keywarden"
	// LabelManagedBy marks every Secret Keywarden writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "keywarden"
	// AnnotationDataHash records the hash of the data Keywarden wrote, so a
	// hand edit is noticed without keeping a copy of the data anywhere else.
	AnnotationDataHash = "keywarden.dev/data-hash"
	// AnnotationRestartHash records RestartHash of the data: the version
	// consumers' pod templates record once restarted for it (see
	// HashAnnotation), for readers of metadata only such as kubectl-keywarden.
	AnnotationRestartHash = "keywarden.dev/restart-hash"
)

// ConflictError says the output Secret exists and belongs to someone else.
type ConflictError struct{ Namespace, Name string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("secret %s/%s exists and is not managed by this resource; Keywarden will not overwrite it: rename spec.secret.name or delete that Secret", e.Namespace, e.Name)
}

// Hash fingerprints Secret data: a SHA-256 over the sorted keys and values.
// It is not reversible and is safe to store in annotations.
func Hash(data map[string][]byte) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%d:%s=%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Controlled reports whether owner is the controller of the Secret.
func Controlled(s *corev1.Secret, owner client.Object) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && ref.UID == owner.GetUID()
}

// Intact reports whether the Secret still holds exactly the data Keywarden
// wrote (compared through the hash annotation).
func Intact(s *corev1.Secret) bool {
	return s != nil && s.Annotations[AnnotationDataHash] != "" && s.Annotations[AnnotationDataHash] == Hash(s.Data)
}

// Get reads a Secret directly from the API server (Secrets are never held
// in the typed cache). A missing Secret returns nil, nil.
func Get(ctx context.Context, r client.Reader, namespace, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return s, nil
}

// Desired is the Secret a reconciler wants.
type Desired struct {
	Namespace, Name string
	// Owner becomes the controller owner reference; it must carry its GVK.
	Owner       client.Object
	OwnerAPI    string
	OwnerKind   string
	Labels      map[string]string
	Annotations map[string]string
	Data        map[string][]byte
}

// Apply writes the desired Secret with server-side apply under FieldOwner.
// existing is the current Secret, read by the caller from the API server
// (nil when absent: the write must then create it). A Secret owned by someone
// else is never touched, also one created since the caller's read: Apply
// returns a *ConflictError. It returns the Secret as the API server wrote it.
func Apply(ctx context.Context, c client.Client, existing *corev1.Secret, d Desired) (*corev1.Secret, error) {
	if existing != nil && !Controlled(existing, d.Owner) {
		return nil, &ConflictError{Namespace: d.Namespace, Name: d.Name}
	}
	labels := maps.Clone(d.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	annotations := maps.Clone(d.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationDataHash] = Hash(d.Data)
	annotations[AnnotationRestartHash] = RestartHash(d.Data)

	ac := applycorev1.Secret(d.Name, d.Namespace).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithType(corev1.SecretTypeOpaque).
		WithData(d.Data).
		WithOwnerReferences(applymetav1.OwnerReference().
			WithAPIVersion(d.OwnerAPI).
			WithKind(d.OwnerKind).
			WithName(d.Owner.GetName()).
			WithUID(d.Owner.GetUID()).
			WithController(true).
			WithBlockOwnerDeletion(true))
	if existing == nil {
		// A first write creates, never takes over: a resourceVersion in an
		// apply is a precondition on an object that exists (and no Secret
		// is at etcd revision 1), and is ignored when the apply creates. A
		// Secret someone made since the caller found none is left alone.
		ac.WithResourceVersion(createOnly)
	}
	if err := c.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		if existing == nil && apierrors.IsConflict(err) {
			return nil, &ConflictError{Namespace: d.Namespace, Name: d.Name}
		}
		return nil, fmt.Errorf("apply secret %s/%s: %w", d.Namespace, d.Name, err)
	}
	// The client decoded the server's answer into ac: that is the Secret as
	// written, resourceVersion and owner references included.
	raw, err := json.Marshal(ac)
	if err != nil {
		return nil, fmt.Errorf("decode applied secret %s/%s: %w", d.Namespace, d.Name, err)
	}
	out := &corev1.Secret{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode applied secret %s/%s: %w", d.Namespace, d.Name, err)
	}
	out.ManagedFields = nil
	return out, nil
}

// createOnly is the resourceVersion a first write carries (see Apply).
const createOnly = "1"

// MetadataMatches reports whether the Secret carries every wanted label and
// annotation with its value.
func MetadataMatches(s *corev1.Secret, labels, annotations map[string]string) bool {
	for k, v := range labels {
		if got, ok := s.Labels[k]; !ok || got != v {
			return false
		}
	}
	for k, v := range annotations {
		if got, ok := s.Annotations[k]; !ok || got != v {
			return false
		}
	}
	return true
}
