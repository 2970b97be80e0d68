package controller

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// inUseFinalizer protects an admin-key Secret while an ApiKey with
// deletionPolicy Revoke needs it: when a whole namespace is deleted, its
// Secrets and ApiKeys go at the same time, and without this the ApiKeys could
// no longer authenticate to revoke their keys.
const inUseFinalizer = "keywarden.dev/in-use"

// protectAdminSecret puts inUseFinalizer on the admin-key Secret. Only the
// metadata is read (from the cache) and patched.
func (r *ApiKeyReconciler) protectAdminSecret(ctx context.Context, ak *v1alpha1.ApiKey) error {
	if ak.Spec.DeletionPolicy == v1alpha1.DeletionPolicyRetain {
		return nil
	}
	m := secretMetadata()
	if err := r.Cache.Get(ctx, client.ObjectKey{Namespace: ak.Namespace, Name: ak.Spec.Reevit.AdminKeySecretRef.Name}, m); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !m.DeletionTimestamp.IsZero() || slices.Contains(m.Finalizers, inUseFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	m.Finalizers = append(m.Finalizers, inUseFinalizer)
	if err := r.Patch(ctx, m, patch); err != nil && !apierrors.IsNotFound(err) {
		if apierrors.IsConflict(err) {
			// Another ApiKey sharing the Secret got there first; the next
			// reconcile looks again.
			return nil
		}
		return fmt.Errorf("protect admin-key secret: %w", err)
	}
	return nil
}

// releaseRelevant passes only the ApiKey events that can release an
// admin-key Secret: deletions, and changes of the policy or the reference.
// Creations and status writes never can, and with thousands of ApiKeys
// sharing one Secret, reacting to them would cost a list per event.
func releaseRelevant() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*v1alpha1.ApiKey), e.ObjectNew.(*v1alpha1.ApiKey)
			return !n.DeletionTimestamp.IsZero() || o.Spec.DeletionPolicy != n.Spec.DeletionPolicy ||
				o.Spec.Reevit.AdminKeySecretRef.Name != n.Spec.Reevit.AdminKeySecretRef.Name ||
				len(o.Finalizers) != len(n.Finalizers)
		},
	}
}

// AdminSecretReconciler removes inUseFinalizer from an admin-key Secret once
// no ApiKey that may still have to revoke keys refers to it. It runs per
// Secret, so ApiKeys finishing together cannot each leave the finalizer
// for the other.
type AdminSecretReconciler struct {
	client.Client
	Cache client.Reader
	// AllShards, when set, is read before a release: with a sharded cache
	// (--watch-label-selector) ApiKeys of other shards may need the Secret
	// too, and this shard's cache does not show them.
	AllShards client.Reader
}

// SetupWithManager watches Secrets carrying the finalizer (metadata only) and
// ApiKeys, mapped to their admin-key Secret.
func (r *AdminSecretReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	hasFinalizer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return slices.Contains(o.GetFinalizers(), inUseFinalizer)
	})
	adminSecret := func(o client.Object) reconcile.Request {
		ak := o.(*v1alpha1.ApiKey)
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ak.Namespace, Name: ak.Spec.Reevit.AdminKeySecretRef.Name}}
	}
	// On an update both Secrets are looked at: the one an ApiKey stopped
	// referring to may be free now.
	toAdminSecret := handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(adminSecret(e.ObjectOld))
			q.Add(adminSecret(e.ObjectNew))
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(adminSecret(e.Object))
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("adminsecret").
		WatchesMetadata(secretMetadata(), &handler.EnqueueRequestForObject{}, builder.WithPredicates(hasFinalizer)).
		Watches(&v1alpha1.ApiKey{}, toAdminSecret, builder.WithPredicates(releaseRelevant())).
		Complete(r)
}

// Reconcile releases the Secret when nothing needs it any more.
func (r *AdminSecretReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := secretMetadata()
	if err := r.Cache.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !slices.Contains(m.Finalizers, inUseFinalizer) {
		return ctrl.Result{}, nil
	}
	list := &v1alpha1.ApiKeyList{}
	if err := r.List(ctx, list, client.InNamespace(req.Namespace), client.MatchingFields{secretNamesIndex: req.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	if needsAdminSecret(list.Items, req.Name) {
		return ctrl.Result{}, nil
	}
	if r.AllShards != nil {
		// Rare: only when no ApiKey of this shard needs the Secret. Pages,
		// so a namespace of thousands is never held in memory at once.
		all := &v1alpha1.ApiKeyList{}
		for {
			if err := r.AllShards.List(ctx, all, client.InNamespace(req.Namespace), client.Limit(500), client.Continue(all.Continue)); err != nil {
				return ctrl.Result{}, fmt.Errorf("list ApiKeys of every shard: %w", err)
			}
			if needsAdminSecret(all.Items, req.Name) {
				return ctrl.Result{}, nil
			}
			if all.Continue == "" {
				break
			}
		}
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	m.Finalizers = slices.DeleteFunc(m.Finalizers, func(f string) bool { return f == inUseFinalizer })
	if err := r.Patch(ctx, m, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("release admin-key secret: %w", err)
	}
	return ctrl.Result{}, nil
}

// needsAdminSecret reports whether any of the ApiKeys may still have to
// revoke keys with the admin-key Secret name.
func needsAdminSecret(aks []v1alpha1.ApiKey, name string) bool {
	for _, ak := range aks {
		if ak.Spec.Reevit.AdminKeySecretRef.Name == name && ak.Spec.DeletionPolicy != v1alpha1.DeletionPolicyRetain &&
			(ak.DeletionTimestamp.IsZero() || slices.Contains(ak.Finalizers, finalizer)) {
			return true
		}
	}
	return false
}
