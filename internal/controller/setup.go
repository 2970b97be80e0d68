// Package controller holds the ApiKey and RevioToken reconcilers.
package controller

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
)

// Options configure both reconcilers.
type Options struct {
	// Clock is the time source; tests pass a fake clock.
	Clock clock.WithTicker
	// Audit receives the audit stream (internal/audit); nil drops it.
	Audit audit.Sink
	// AllowHTTP lets http:// endpoints through (loopback simulators only).
	AllowHTTP bool
	// HTTPClient is shared by the external API clients (connection reuse).
	// Nil means the clients' default.
	HTTPClient *http.Client
	// MaxConcurrentReconciles per controller.
	MaxConcurrentReconciles int
	// DriftCheckInterval is how often an ApiKey's organisation is listed to
	// notice keys revoked outside Keywarden and leaked keys; 0 disables.
	DriftCheckInterval time.Duration
	// RolloutWaitLimit bounds how long a revocation waits for rollouts.
	RolloutWaitLimit time.Duration
	// RestartCoalesceWindow gathers the restarts of one workload asked for
	// within this long into one pod-template patch; 0 patches at once.
	RestartCoalesceWindow time.Duration
	// MaxConcurrentRestarts bounds the workloads rolling out at once for
	// Keywarden's restarts in the whole cluster; the others wait in a
	// queue. 0: no bound.
	MaxConcurrentRestarts int
	// MaxConcurrentRestartsPerNamespace bounds them in each namespace; 0: no bound.
	MaxConcurrentRestartsPerNamespace int
	// AllowedEndpoints are the base URLs issuers may name (--allowed-endpoints).
	// Empty means DefaultAllowedEndpoints.
	AllowedEndpoints []string
	// ClusterResourceNamespace holds the credential Secrets of cluster issuers.
	ClusterResourceNamespace string
	// Jitter returns a fraction in [0,1) used to spread refreshes; nil means random.
	Jitter func() float64
	// Sharded says the cache holds only this shard's ApiKeys and RevioTokens
	// (ShardCache). A decision about the objects of every shard (releasing
	// an issuer that ApiKeys of several shards depend on) is then made on
	// the API server.
	Sharded bool

	// superseded is the manager's record of replaced resourceVersions.
	superseded *supersededSet
	// restarts coalesces the rollout restarts of both reconcilers.
	restarts *restarter

	// crashAt, in tests only, stops an ApiKey reconcile at a named step
	// boundary as if the process died there.
	crashAt func(step string) bool
}

// secretNamesIndex indexes each resource by every Secret name it refers to
// (its input Secret and its output Secret), so a Secret event finds the
// resources to reconcile without scanning.
const secretNamesIndex = "keywarden.secretNames"

// auditMemory is how many audit records the manager remembers to write
// each event once (audit.Once): a few hundred bytes each.
const auditMemory = 4096

// Setup registers the field indexes and both reconcilers with the manager.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	// A pass run again after a status conflict tells again what it already
	// did at the API: written once (internal/audit.Once).
	o.Audit = audit.NewOnce(o.Audit, auditMemory)
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = 4
	}
	if o.RolloutWaitLimit <= 0 {
		o.RolloutWaitLimit = 15 * time.Minute
	}
	o.superseded = newSupersededSet()
	var err error
	if o.restarts, err = setupRestarts(mgr, o); err != nil {
		return err
	}
	if len(o.AllowedEndpoints) == 0 {
		o.AllowedEndpoints = DefaultAllowedEndpoints()
	}
	if err := setupIndexes(mgr); err != nil {
		return err
	}
	// One reader for both kinds: a Secret either names is read once per version.
	secrets, err := managerSecretReader(mgr)
	if err != nil {
		return err
	}
	rt := &RevioTokenReconciler{credentialReconciler: newCredentialReconciler(mgr, o, secrets)}
	if err := rt.SetupWithManager(mgr); err != nil {
		return err
	}
	ak := &ApiKeyReconciler{credentialReconciler: newCredentialReconciler(mgr, o, secrets)}
	if err := ak.SetupWithManager(mgr); err != nil {
		return err
	}
	for _, kind := range v1alpha1.IssuerKinds {
		ir := &IssuerReconciler{Client: mgr.GetClient(), Cache: mgr.GetCache(), Recorder: mgr.GetEventRecorder("keywarden"),
			Options: o, secrets: secrets, k: kindOf(kind)}
		if o.Sharded {
			// The cache holds this shard's ApiKeys only: an issuer's
			// dependents are counted over every shard, on the API server.
			ir.AllShards = mgr.GetAPIReader()
		}
		if err := ir.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return (&SecretReleaseReconciler{Client: mgr.GetClient(), Cache: mgr.GetCache(), Secrets: secrets, ClusterResourceNamespace: o.ClusterResourceNamespace}).SetupWithManager(mgr)
}

// outputSecretName is the name of the Secret a resource writes.
func outputSecretName(name string, t v1alpha1.SecretTemplate) string {
	if t.Name != "" {
		return t.Name
	}
	return name
}

// secretMetadata is the metadata-only view of Secrets the controllers watch.
// Only metadata is cached, trimmed by TrimForCache, never Secret data.
func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// enqueueBySecret maps a Secret event to the resources of list's kind in the
// same namespace that name the Secret as input or output.
func enqueueBySecret(c client.Client, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{secretNamesIndex: o.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list resources for secret event", "secret", o.GetName())
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		})
		return reqs
	})
}

func forEachItem(list client.ObjectList, fn func(client.Object)) {
	switch l := list.(type) {
	case *v1alpha1.ApiKeyList:
		for i := range l.Items {
			fn(&l.Items[i])
		}
	case *v1alpha1.RevioTokenList:
		for i := range l.Items {
			fn(&l.Items[i])
		}
	}
}

// enqueueByIssuer maps an issuer to the objects depending on it.
func enqueueByIssuer(c client.Client, kind string, cluster bool, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		opts := []client.ListOption{client.MatchingFields{issuerRefsIndex: issuerKey(kind, o.GetName())}}
		if !cluster {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		list := newList()
		if err := c.List(ctx, list, opts...); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		})
		return reqs
	})
}

// enqueueWaitingInNamespace maps a Namespace to the resources of list's kind
// in it that wait on their issuer's namespace selector (Issued is
// PolicyViolation): a label the platform team adds may be what they wait
// for, and nothing else would wake them.
func enqueueWaitingInNamespace(c client.Client, newList func() client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetName())); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list resources for namespace event", "namespace", o.GetName())
			return nil
		}
		var reqs []reconcile.Request
		forEachItem(list, func(obj client.Object) {
			if hasReason(conditionsOf(obj), v1alpha1.ConditionIssued, v1alpha1.ReasonPolicyViolation) {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}
		})
		return reqs
	})
}

// conditionsOf is the status conditions of an ApiKey or a RevioToken.
func conditionsOf(obj client.Object) []metav1.Condition {
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		return o.Status.Conditions
	case *v1alpha1.RevioToken:
		return o.Status.Conditions
	}
	return nil
}

// namespaceLabelsChanged passes Namespace updates that change its labels,
// the only part of a namespace an issuer's selector reads.
func namespaceLabelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}

// issuerChanged passes issuer events its consumers act on: creation (an
// object waiting for a missing issuer), deletion, a spec change (policy,
// org, URL), a newly checked credential version and a change of its Ready
// condition, not every status write.
func issuerChanged() predicate.Predicate {
	ready := func(o client.Object) string {
		gi, ok := o.(v1alpha1.GenericIssuer)
		if !ok {
			return ""
		}
		st := gi.IssuerStatus()
		// A new credential version checked is a change too: it lifts the
		// consumers' failures that waited for a person.
		out := st.CheckedVersion
		if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
			out += "/" + string(c.Status) + "/" + c.Reason
		}
		return out
	}
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() || ready(e.ObjectOld) != ready(e.ObjectNew)
	}}
}

// primaryPredicate lets through spec changes (generation), annotation
// changes (manual triggers) and deletions, but not our own status writes.
func primaryPredicate() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().IsZero()
		}})
}

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

// setupIndexes registers the field indexes the watches look objects up by:
// output Secret names, issuer references, issuers' credential Secrets.
func setupIndexes(mgr ctrl.Manager) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.RevioToken{}, secretNamesIndex, func(o client.Object) []string {
		rt := o.(*v1alpha1.RevioToken)
		return []string{outputSecretName(rt.Name, rt.Spec.Secret)}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.RevioToken{}, issuerRefsIndex, func(o client.Object) []string {
		rt := o.(*v1alpha1.RevioToken)
		return []string{issuerKey(revioKind(rt.Spec.IssuerRef.Kind), rt.Spec.IssuerRef.Name)}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.ApiKey{}, issuerRefsIndex, func(o client.Object) []string {
		return apiKeyIssuerKeys(o.(*v1alpha1.ApiKey))
	}); err != nil {
		return err
	}
	for _, ix := range []struct {
		obj client.Object
		fn  func(client.Object) string
	}{
		{&v1alpha1.ReevitIssuer{}, func(o client.Object) string { return o.(*v1alpha1.ReevitIssuer).Spec.AdminKeySecretRef.Name }},
		{&v1alpha1.ClusterReevitIssuer{}, func(o client.Object) string { return o.(*v1alpha1.ClusterReevitIssuer).Spec.AdminKeySecretRef.Name }},
		{&v1alpha1.RevioIssuer{}, func(o client.Object) string { return o.(*v1alpha1.RevioIssuer).Spec.APIKeySecretRef.Name }},
		{&v1alpha1.ClusterRevioIssuer{}, func(o client.Object) string { return o.(*v1alpha1.ClusterRevioIssuer).Spec.APIKeySecretRef.Name }},
	} {
		fn := ix.fn
		if err := idx.IndexField(ctx, ix.obj, issuerSecretIndex, func(o client.Object) []string { return []string{fn(o)} }); err != nil {
			return err
		}
	}
	if err := idx.IndexField(ctx, &v1alpha1.ApiKey{}, secretNamesIndex, func(o client.Object) []string {
		ak := o.(*v1alpha1.ApiKey)
		return []string{outputSecretName(ak.Name, ak.Spec.Secret)}
	}); err != nil {
		return err
	}
	return nil
}

// credentialReconciler is what the ApiKey and RevioToken reconcilers share.
type credentialReconciler struct {
	client.Client
	// APIReader reads workloads, and Secrets through secrets, directly:
	// neither is in the informer cache.
	APIReader client.Reader
	// Cache serves the metadata-only view of Secrets.
	Cache    client.Reader
	Recorder recorder.EventRecorder
	Options

	// secrets reads the Secrets the resources name (one per manager, shared
	// by its reconcilers: a Secret either names is read once per version).
	secrets *secretReader
}

func newCredentialReconciler(mgr ctrl.Manager, o Options, secrets *secretReader) credentialReconciler {
	return credentialReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("keywarden"), Options: o, secrets: secrets}
}

// defaults fills what a reconciler built without Setup lacks.
func (r *credentialReconciler) defaults(mgr ctrl.Manager) error {
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	if r.secrets == nil {
		var err error
		if r.secrets, err = managerSecretReader(mgr); err != nil {
			return err
		}
	}
	return nil
}
