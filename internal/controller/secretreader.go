package controller

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/internal/secretsync"
)

// maxKnownSecrets bounds the Secrets a secretReader remembers. It is far
// above what a manager's resources name; past it, an arbitrary entry goes
// (it is read again when needed).
const maxKnownSecrets = 1 << 15

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

// get returns the Secret (nil when absent), from memory when the metadata
// cache shows the remembered version, else from the API server.
func (r *secretReader) get(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: ns, Name: name}
	if rv := secretVersion(ctx, r.cache, ns, name); rv != "" {
		r.mu.Lock()
		s := r.known[key]
		r.mu.Unlock()
		if s != nil && s.ResourceVersion == rv {
			return s.DeepCopy(), nil
		}
	}
	s, err := secretsync.Get(ctx, r.api, ns, name)
	if err != nil {
		return nil, err
	}
	if s == nil {
		r.forget(ns, name)
		return nil, nil
	}
	r.remember(s)
	return s, nil
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.known) >= maxKnownSecrets {
		for k := range r.known {
			delete(r.known, k)
			break
		}
	}
	r.known[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = c
}

// forget drops a Secret (deleted, or its resource is gone).
func (r *secretReader) forget(ns, name string) {
	r.mu.Lock()
	delete(r.known, types.NamespacedName{Namespace: ns, Name: name})
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
