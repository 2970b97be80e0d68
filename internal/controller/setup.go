package controller

import (
	"context"
	"net/http"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
