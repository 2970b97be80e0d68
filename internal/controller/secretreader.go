package controller

import (
	"context"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// maxKnownSecrets bounds the Secrets a secretReader remembers. It is far
// above what a manager's resources name; past it, an arbitrary entry goes
// (it is read again when needed).
const maxKnownSecrets = 1 << 15

// maxKnownBytes bounds the Secret data a secretReader keeps in memory; past
// it, arbitrary entries go (they are read again when needed).
const maxKnownBytes = 64 << 20

// secretReader reads the Secrets the resources name: their input Secrets
// (API keys) and their output Secrets. Secret data is never in the informer
// cache, which holds Secret metadata only; so the reader remembers the last
// copy it read or wrote of each named Secret and hands it out again while
// the metadata cache shows the same resourceVersion. A resourceVersion names
// one exact content, so a remembered copy is never wrong, only possibly
// older than the server's (as any cache read is): the watch event of the
// newer version brings the resource back, and that pass reads it afresh.
//
// A thousand resources sharing one admin Secret then cost one GET of it per
// version, not one per reconcile, and a resource reconciled after its own
// Secret write needs no GET at all. Unrelated Secrets are never read, so
// never remembered.
type secretReader struct {
	api   client.Reader // the API server
	cache client.Reader // the metadata-only Secret view

	mu    sync.Mutex
	known map[types.NamespacedName]*corev1.Secret
	bytes int // data bytes held in known
}

func newSecretReader(api, cache client.Reader) *secretReader {
	return &secretReader{api: api, cache: cache, known: map[types.NamespacedName]*corev1.Secret{}}
}

// managerSecretReader is the manager's reader: direct reads, the manager's
// metadata cache, and deleted Secrets forgotten.
func managerSecretReader(mgr ctrl.Manager) (*secretReader, error) {
	r := newSecretReader(mgr.GetAPIReader(), mgr.GetCache())
	return r, r.forgetOnDelete(context.Background(), mgr.GetCache())
}

// get returns an output Secret (nil when absent), from memory when the
// metadata cache shows the remembered version, else from the API server.
// Only a Secret Keywarden writes is remembered: a foreign Secret holding an
// output name (however large) is read, refused and dropped, so no tenant
// can make the manager keep other Secrets in memory.
func (r *secretReader) get(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	if s := r.fresh(ctx, ns, name, ""); s != nil {
		return s, nil
	}
	if stub, err := r.foreignStub(ctx, ns, name); stub != nil || err != nil {
		return stub, err
	}
	s, err := secretsync.Get(ctx, r.api, ns, name)
	if err != nil {
		return nil, err
	}
	if s == nil || !ownedByKeywarden(s) {
		r.forget(ns, name)
		return s, nil
	}
	r.remember(s)
	return s, nil
}

// foreignStub answers for a Secret the metadata cache shows without
// Keywarden's data-hash annotation: its metadata alone (a metadata-only GET)
// says whether Keywarden owns it, so a foreign Secret at an output name,
// however large, is refused without its data ever being downloaded. It
// returns nil, nil when the Secret may be Keywarden's (then read in full).
func (r *secretReader) foreignStub(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	m := secretMetadata()
	if err := r.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil || m.Annotations[secretsync.AnnotationDataHash] != "" {
		return nil, nil //nolint:nilerr // not cached yet: read in full
	}
	if err := r.api.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	stub := &corev1.Secret{ObjectMeta: *m.ObjectMeta.DeepCopy()}
	if ownedByKeywarden(stub) {
		return nil, nil // Keywarden's, its annotation edited away: read in full
	}
	r.forget(ns, name)
	return stub, nil
}

// getInput returns a credential Secret, remembering only the data key the
// reader needs (nil when absent).
func (r *secretReader) getInput(ctx context.Context, ns, name, key string) (*corev1.Secret, error) {
	if s := r.fresh(ctx, ns, name, key); s != nil {
		return s, nil
	}
	s, err := secretsync.Get(ctx, r.api, ns, name)
	if err != nil {
		return nil, err
	}
	if s == nil {
		r.forget(ns, name)
		return nil, nil
	}
	keep := &corev1.Secret{TypeMeta: s.TypeMeta, Type: s.Type, Data: map[string][]byte{}, ObjectMeta: metav1.ObjectMeta{
		Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion, OwnerReferences: s.OwnerReferences}}
	r.mu.Lock()
	if prev := r.known[types.NamespacedName{Namespace: ns, Name: name}]; prev != nil && prev.ResourceVersion == s.ResourceVersion {
		for k, v := range prev.Data {
			keep.Data[k] = v // another issuer's key of the same Secret
		}
	}
	r.mu.Unlock()
	if v, ok := s.Data[key]; ok {
		keep.Data[key] = v
	}
	r.remember(keep)
	return keep.DeepCopy(), nil
}

// fresh is the remembered copy when the metadata cache shows its version
// (and it holds key, when key is set).
func (r *secretReader) fresh(ctx context.Context, ns, name, key string) *corev1.Secret {
	rv := secretVersion(ctx, r.cache, ns, name)
	if rv == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.known[types.NamespacedName{Namespace: ns, Name: name}]
	if s == nil || s.ResourceVersion != rv {
		return nil
	}
	if key != "" {
		if _, ok := s.Data[key]; !ok {
			return nil
		}
	}
	return s.DeepCopy()
}

// ownedByKeywarden says whether a Keywarden resource controls the Secret.
func ownedByKeywarden(s *corev1.Secret) bool {
	ref := metav1.GetControllerOf(s)
	return ref != nil && strings.HasPrefix(ref.APIVersion, v1alpha1.GroupVersion.Group+"/")
}

func dataSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	return n
}

// apply writes an output Secret (secretsync.Apply) and remembers the API
// server's answer: the next pass, started by this very write's watch event,
// needs no GET.
func (r *secretReader) apply(ctx context.Context, c client.Client, existing *corev1.Secret, d secretsync.Desired) (*corev1.Secret, error) {
	written, err := secretsync.Apply(ctx, c, existing, d)
	if err != nil {
		return nil, err
	}
	r.remember(written)
	return written, nil
}

// remember stores a copy of a Secret read or written (the API server's
// answer, with its resourceVersion).
func (r *secretReader) remember(s *corev1.Secret) {
	if s == nil || s.ResourceVersion == "" {
		return
	}
	c := s.DeepCopy()
	c.ManagedFields = nil
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked(key)
	size := dataSize(c)
	if size > maxKnownBytes {
		return
	}
	for k := range r.known {
		if len(r.known) < maxKnownSecrets && r.bytes+size <= maxKnownBytes {
			break
		}
		r.dropLocked(k)
	}
	r.known[key] = c
	r.bytes += size
}

func (r *secretReader) dropLocked(k types.NamespacedName) {
	if old := r.known[k]; old != nil {
		r.bytes -= dataSize(old)
		delete(r.known, k)
	}
}

// forget drops a Secret (deleted, or its resource is gone).
func (r *secretReader) forget(ns, name string) {
	r.mu.Lock()
	r.dropLocked(types.NamespacedName{Namespace: ns, Name: name})
	r.mu.Unlock()
}

// forgetOnDelete drops a remembered Secret when the metadata watch sees it
// deleted, so Secrets of deleted resources do not stay in memory.
func (r *secretReader) forgetOnDelete(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, secretMetadata())
	if err != nil {
		return err
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			r.forget(m.GetNamespace(), m.GetName())
		}
	}})
	return err
}

// size is the number of Secrets remembered (for tests).
func (r *secretReader) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.known)
}

// written returns the remembered copy of a Secret this process has just
// written, whatever the metadata cache shows yet (nil when none).
func (r *secretReader) written(ns, name string) *corev1.Secret {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.known[types.NamespacedName{Namespace: ns, Name: name}]; s != nil {
		return s.DeepCopy()
	}
	return nil
}
