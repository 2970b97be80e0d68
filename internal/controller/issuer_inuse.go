package controller

import (
	"cmp"
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

// inUseFinalizer protects the admin-key Secret of a Reevit issuer while the
// issuer exists: when a whole namespace is deleted, its Secrets, issuers and
// ApiKeys go at the same time, and without this the ApiKeys could no longer
// authenticate to revoke their keys. Only a Secret an issuer (written by a
// platform or namespace admin) names, and only once it passed every check
// the issuer makes of it (credentialSecretUsable: Opaque, not an output
// Secret, the key present), gets it: a Secret the issuer refused to read is
// never written. An ApiKey names none.
const inUseFinalizer = "keywarden.dev/in-use"

// protectSecret puts inUseFinalizer on a Secret that passed the issuer's
// checks at resourceVersion checked. Only the metadata is read (from the
// cache) and patched, and only while the Secret is still at that version (an
// optimistic lock): a Secret changed since its check is left alone, and the
// check that its change brings decides again. It returns the Secret's
// resourceVersion after its own patch ("" when it patched nothing), so that
// the patch is not taken for a new credential.
func protectSecret(ctx context.Context, cache client.Reader, c client.Client, ns, name, checked string) (string, error) {
	m := secretMetadata()
	if err := cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		if !apierrors.IsNotFound(err) {
			// A namespace outside --namespaces: the Secret goes unprotected
			// (namespace deletion can then outrun revocation), which is
			// logged, but the issuer still works.
			ctrl.LoggerFrom(ctx).Info("cannot protect the issuer's Secret: list its namespace in --namespaces", "namespace", ns, "error", err.Error())
		}
		return "", nil
	}
	if !m.DeletionTimestamp.IsZero() || slices.Contains(m.Finalizers, inUseFinalizer) || m.ResourceVersion != checked {
		return "", nil
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	m.Finalizers = append(m.Finalizers, inUseFinalizer)
	if err := c.Patch(ctx, m, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return "", nil // changed since its check (another issuer sharing it got there first), or gone
		}
		return "", fmt.Errorf("protect admin-key secret: %w", err)
	}
	return m.ResourceVersion, nil
}

// SecretReleaseReconciler removes inUseFinalizer from an admin-key Secret
// once no Reevit issuer names it, or once it no longer passes the checks of
// any issuer naming it (credentialSecretUsable: its key removed, an owner
// added). It runs per Secret, so issuers going together cannot each leave
// the finalizer for the other.
type SecretReleaseReconciler struct {
	client.Client
	// Cache serves the metadata-only view of Secrets.
	Cache client.Reader
	// Secrets reads the Secret itself (its type and data), as issuers do.
	Secrets *secretReader
	// ClusterResourceNamespace holds the Secrets of cluster issuers.
	ClusterResourceNamespace string
}

// SetupWithManager watches Secrets carrying the finalizer (metadata only) and
// the Reevit issuers, mapped to their Secret.
func (r *SecretReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	hasFinalizer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return slices.Contains(o.GetFinalizers(), inUseFinalizer)
	})
	secretOf := func(o client.Object) reconcile.Request {
		switch i := o.(type) {
		case *v1alpha1.ReevitIssuer:
			return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: i.Namespace, Name: i.Spec.AdminKeySecretRef.Name}}
		case *v1alpha1.ClusterReevitIssuer:
			return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: r.ClusterResourceNamespace, Name: i.Spec.AdminKeySecretRef.Name}}
		}
		return reconcile.Request{}
	}
	keyOf := func(o client.Object) string {
		switch i := o.(type) {
		case *v1alpha1.ReevitIssuer:
			return i.Spec.AdminKeySecretRef.Key
		case *v1alpha1.ClusterReevitIssuer:
			return i.Spec.AdminKeySecretRef.Key
		}
		return ""
	}
	// On an update both Secrets are looked at: the one an issuer stopped
	// naming may be free now, and one whose key it no longer names may no
	// longer pass.
	toSecret := handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(secretOf(e.ObjectOld))
			q.Add(secretOf(e.ObjectNew))
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(secretOf(e.Object))
		},
	}
	relevant := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return secretOf(e.ObjectOld) != secretOf(e.ObjectNew) || keyOf(e.ObjectOld) != keyOf(e.ObjectNew)
		},
		DeleteFunc: func(event.DeleteEvent) bool { return true },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("secretrelease").
		WatchesMetadata(secretMetadata(), &handler.EnqueueRequestForObject{}, builder.WithPredicates(hasFinalizer)).
		Watches(&v1alpha1.ReevitIssuer{}, toSecret, builder.WithPredicates(relevant)).
		Watches(&v1alpha1.ClusterReevitIssuer{}, toSecret, builder.WithPredicates(relevant)).
		Complete(r)
}

// Reconcile releases the Secret when no issuer names it any more, or none
// naming it may use it.
func (r *SecretReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := secretMetadata()
	if err := r.Cache.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !slices.Contains(m.Finalizers, inUseFinalizer) {
		return ctrl.Result{}, nil
	}
	ns := &v1alpha1.ReevitIssuerList{}
	if err := r.List(ctx, ns, client.InNamespace(req.Namespace), client.MatchingFields{issuerSecretIndex: req.Name}); err != nil {
		return ctrl.Result{}, err
	}
	var keys []string
	for i := range ns.Items {
		keys = append(keys, ns.Items[i].Spec.AdminKeySecretRef.Key)
	}
	if req.Namespace == r.ClusterResourceNamespace {
		cl := &v1alpha1.ClusterReevitIssuerList{}
		if err := r.List(ctx, cl, client.MatchingFields{issuerSecretIndex: req.Name}); err != nil {
			return ctrl.Result{}, err
		}
		for i := range cl.Items {
			keys = append(keys, cl.Items[i].Spec.AdminKeySecretRef.Key)
		}
	}
	for _, key := range keys {
		s, err := r.Secrets.getInput(ctx, req.Namespace, req.Name, cmp.Or(key, "apiKey"))
		if err != nil {
			return ctrl.Result{}, err
		}
		if credentialSecretUsable(s, key) {
			return ctrl.Result{}, nil
		}
	}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	m.Finalizers = slices.DeleteFunc(m.Finalizers, func(f string) bool { return f == inUseFinalizer })
	if err := r.Patch(ctx, m, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("release admin-key secret: %w", err)
	}
	return ctrl.Result{}, nil
}
