package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/issuerref"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

const (
	kindApiKey = "ApiKey"
	// finalizer makes deletion wait for revocation.
	finalizer = issuerref.RevokeFinalizer
	// replayWindow is how long Reevit replays a mutation for an
	// Idempotency-Key (24 h), with a safety margin.
	replayWindow = 23 * time.Hour
	// maxPendingRevocations bounds the previous keys waiting for revocation:
	// past it no rotation starts (status stays far below its size limit).
	maxPendingRevocations = 32
	// rolloutPoll is how often a revocation waiting for rollouts looks again.
	rolloutPoll = 15 * time.Second
)

// keyAPI is what the ApiKey reconciler needs from Reevit.
type keyAPI interface {
	CreateKey(ctx context.Context, name string, scopes []string, idempotencyKey string) (*reevit.Key, error)
	ListKeys(ctx context.Context) ([]reevit.Key, error)
	RevokeKey(ctx context.Context, id, idempotencyKey string) error
}

// errCrash is returned by the crash hook in tests: the reconcile stops as if
// the process died at that instant.
var errCrash = errors.New("simulated crash")

// ApiKeyReconciler creates, rotates and revokes Reevit keys.
type ApiKeyReconciler struct {
	credentialReconciler

	driftMu   sync.Mutex
	nextDrift map[types.UID]time.Time
	// connector reaches Reevit; nil: connectReevit (tests pass a fake).
	connector reevitConnector
}

// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys/status,verbs=get;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys/finalizers,verbs=update

func newApiKeyList() client.ObjectList { return &v1alpha1.ApiKeyList{} }

// SetupWithManager registers the controller and its watches.
func (r *ApiKeyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.defaults(mgr); err != nil {
		return err
	}
	r.nextDrift = map[types.UID]time.Time{}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ApiKey{}, builder.WithPredicates(primaryPredicate())).
		Watches(secretMetadata(), enqueueBySecret(mgr.GetClient(), func() client.ObjectList { return &v1alpha1.ApiKeyList{} }), builder.OnlyMetadata).
		Watches(&v1alpha1.ReevitIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindReevitIssuer, false, newApiKeyList), builder.WithPredicates(issuerChanged())).
		Watches(&v1alpha1.ClusterReevitIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindClusterReevitIssuer, true, newApiKeyList), builder.WithPredicates(issuerChanged())).
		Watches(&corev1.Namespace{}, enqueueWaitingInNamespace(mgr.GetClient(), newApiKeyList), builder.WithPredicates(namespaceLabelsChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("apikey").
		Complete(r)
}

func (r *ApiKeyReconciler) crash(step string) error {
	if r.crashAt != nil && r.crashAt(step) {
		return fmt.Errorf("%w at %s", errCrash, step)
	}
	return nil
}

// Reconcile brings one ApiKey to its desired state.
func (r *ApiKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ak := &v1alpha1.ApiKey{}
	if err := r.Get(ctx, req.NamespacedName, ak); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.Forget(kindApiKey, req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if r.superseded.stale(ak) {
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}
	if !ak.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, ak)
	}
	if !controllerutil.ContainsFinalizer(ak, finalizer) {
		before := ak.ResourceVersion
		patch := client.MergeFrom(ak.DeepCopy())
		controllerutil.AddFinalizer(ak, finalizer)
		if err := r.Patch(ctx, ak, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		r.superseded.add(ak.UID, before)
	}
	orig := ak.DeepCopy()
	ctx, records := withAudit(ctx)
	res, err := r.reconcile(ctx, ak, orig)
	return r.finish(ctx, records, ak, orig, res, err)
}

// finish ends every ApiKey pass, the finalizer's too: Ready derived from the
// narrow conditions, the one status write (writeStatus's conflict policy),
// the metrics, and the pass's audit records, written whether or not the
// status write landed (what was done at Reevit was done). A simulated crash
// (tests) writes nothing more, as a dead process would.
func (r *ApiKeyReconciler) finish(ctx context.Context, records *auditBuffer, ak, orig *v1alpha1.ApiKey, res ctrl.Result, err error) (ctrl.Result, error) {
	if errors.Is(err, errCrash) {
		records.drop()
		return ctrl.Result{}, err
	}
	if cerr := r.crash("before-status-patch/" + ak.Namespace + "/" + ak.Name); cerr != nil {
		records.drop()
		return ctrl.Result{}, cerr
	}
	defer records.flush(r.Audit)
	ak.Status.ObservedGeneration = ak.Generation
	summariseApiKey(ak)
	if wres, ok, werr := statusWritten(writeStatus(ctx, r.Client, r.superseded, ak, orig, ak.Status, orig.Status)); !ok {
		return wres, werr
	}
	recordApiKey(ak)
	return res, err
}

// apiKeyPass is what one pass of the ApiKey reconciler knows; its steps
// read and update it in order.
type apiKeyPass struct {
	// ak is the object being reconciled; orig what status already holds on
	// the server, for the intermediate write that records an intent.
	ak, orig   *v1alpha1.ApiKey
	now        time.Time
	secretName string
	// existing is the output Secret as last read or written this pass.
	existing *corev1.Secret
	// foreign: the output name is taken by a Secret this ApiKey does not own.
	foreign bool
	// current is the issuer spec.issuerRef resolves to (nil: none).
	current      *v1alpha1.IssuerRecord
	adminVersion string
	// policy is the issuer's policy (nil: no issuer), for its rotation
	// windows and maximum key age.
	policy *v1alpha1.ReevitIssuerPolicy
	// gate stops the create path: a missing issuer, a policy violation, an
	// issuer being deleted.
	gate *failure
	// issuerRecovered: the issuer's check passed after the last failure.
	issuerRecovered bool
	// conns hands out one Reevit client per issuer record for the pass.
	conns    *reevitConns
	specHash string
	// created: this pass published a new key.
	created bool
}

// apiKeySteps is the ApiKey reconcile, in order. Revocations run on every
// pass, whatever stopped the create path: a failure that needs a person, a
// backoff, a foreign Secret or a policy never keeps a previous or
// compromised key live.
func (r *ApiKeyReconciler) apiKeySteps() []step[*apiKeyPass] {
	return []step[*apiKeyPass]{
		{name: "quarantine", owns: v1alpha1.ConditionRevoked, run: r.stepQuarantine},
		{name: "ownership", owns: v1alpha1.ConditionSecretSynced, run: r.stepOwnership},
		{name: "issuer", owns: v1alpha1.ConditionIssued, run: r.stepIssuerGate},
		{name: "backoff", owns: v1alpha1.ConditionIssued, run: r.stepBackoff},
		{name: "schedule", owns: v1alpha1.ConditionIssued, run: r.stepSchedule},
		{name: "intent", owns: v1alpha1.ConditionIssued, run: r.stepIntent},
		{name: "create", owns: v1alpha1.ConditionIssued, run: r.stepCreate},
		{name: "reschedule", owns: v1alpha1.ConditionRotationWindow, run: r.stepReschedule},
		{name: "metadata", owns: v1alpha1.ConditionSecretSynced, run: r.stepMetadata},
		{name: "restarts", owns: v1alpha1.ConditionRolloutsComplete, run: r.stepResumeRestarts},
		{name: "revoke", owns: v1alpha1.ConditionRevoked, run: r.stepRevoke, always: true},
		{name: "drift", owns: v1alpha1.ConditionIssued, run: r.stepDrift},
		{name: "settle", owns: v1alpha1.ConditionIssued, run: r.stepSettle},
	}
}

// reconcile reads what the pass needs (the output Secret, the issuer) and
// runs the steps.
func (r *ApiKeyReconciler) reconcile(ctx context.Context, ak, orig *v1alpha1.ApiKey) (ctrl.Result, error) {
	p := &apiKeyPass{ak: ak, orig: orig, now: r.Clock.Now(), secretName: outputSecretName(ak.Name, ak.Spec.Secret)}
	existing, err := r.secrets.get(ctx, ak.Namespace, p.secretName)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("read output secret: %w", err)
	}
	p.existing = existing
	p.foreign = existing != nil && !secretsync.Controlled(existing, ak)
	r.resolveIssuer(ctx, p)
	p.conns = r.newConns(ctx, ak.Namespace, p.current)
	return runSteps(ctx, p, r.apiKeySteps(), r.failApiKey)
}

// failApiKey is the ApiKey passes' failure hook (fail).
func (r *ApiKeyReconciler) failApiKey(_ context.Context, p *apiKeyPass, cond string, f *failure) stepResult {
	return r.fail(p.ak, p.now, cond, f)
}

// resolveIssuer finds the issuer and decides whether it may serve the ApiKey.
func (r *ApiKeyReconciler) resolveIssuer(ctx context.Context, p *apiKeyPass) {
	ak := p.ak
	iss, gate := getReevitIssuer(ctx, r.Client, ak.Namespace, ak.Spec.IssuerRef.Kind, ak.Spec.IssuerRef.Name, r.ClusterResourceNamespace)
	p.gate = gate
	if iss == nil {
		return
	}
	p.current, p.adminVersion = iss.record(), iss.version(ctx, r.Cache)
	p.issuerRecovered = issuerRecovered(iss.obj, ak.Status.FailedAttempts, ak.Status.LastFailureTime)
	p.policy = iss.spec.Policy.DeepCopy()
	var nsLabels map[string]string
	if iss.cluster() && iss.spec.Policy.NamespaceSelector != nil {
		nsLabels = namespaceLabels(ctx, r.Client, ak.Namespace)
	}
	p.gate = reevitPolicyViolation(ak, iss, nsLabels)
	if p.gate == nil && !iss.obj.GetDeletionTimestamp().IsZero() {
		p.gate = &failure{Reason: v1alpha1.ReasonIssuerInUse, Message: iss.describe() +
			" is being deleted: no new key is made through it (revocations still run); point spec.issuerRef at another issuer or delete this ApiKey"}
	}
}

// stepOwnership stops at an output name taken by a foreign Secret: the
// Secret watch brings the object back once it is gone.
func (r *ApiKeyReconciler) stepOwnership(_ context.Context, p *apiKeyPass) (stepResult, error) {
	if !p.foreign {
		return next(0)
	}
	return failed(classifySecretWrite(&secretsync.ConflictError{Namespace: p.ak.Namespace, Name: p.secretName}))
}

// stepIssuerGate stops when the issuer cannot serve the ApiKey.
func (r *ApiKeyReconciler) stepIssuerGate(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	if p.gate != nil {
		return r.gated(ctx, p.ak, p.gate, p.now, p.current)
	}
	metrics.PolicyViolations.DeleteLabelValues(kindApiKey, p.ak.Namespace, p.ak.Name)
	return next(0)
}

// stepBackoff holds the create path back while an earlier failure's backoff
// runs, or until a change when it needs a person.
func (r *ApiKeyReconciler) stepBackoff(_ context.Context, p *apiKeyPass) (stepResult, error) {
	ak, st := p.ak, &p.ak.Status
	liftResolved(&st.Conditions, ak.Generation, &st.RetryStatus, p.issuerRecovered)
	if wait, isHeld := held(st.RetryStatus, apiKeyWaitedOn(ak), apiKeyInputs(ak, p.adminVersion), p.now); isHeld {
		return stepResult{RequeueAfter: wait, Stop: true}, nil
	}
	if p.adminVersion != "" {
		st.AdminKeySecretVersion = p.adminVersion
	}
	p.specHash = keySpecHash(ak, p.current)
	return next(0)
}

// stepSchedule recomputes the next rotation: the schedule may have changed
// since the key became active. A rotation due outside the rotation windows
// waits for the next one (applyWindows, which owns RotationWindow).
func (r *ApiKeyReconciler) stepSchedule(_ context.Context, p *apiKeyPass) (stepResult, error) {
	st := &p.ak.Status
	if st.KeyID == "" || st.PendingCreate != nil || st.ActiveSince == nil {
		return next(0)
	}
	at, err := nextRotation(p.ak.Spec.Rotation, st.ActiveSince.Time)
	if err != nil {
		// A spec error: recorded in a condition, retried when the spec changes.
		return failed(&failure{Reason: v1alpha1.ReasonBadRequest, Message: err.Error() + ": fix spec.rotation"})
	}
	st.NextRotationTime = optTime(applyWindows(p.ak, p.policy, at, p.now))
	return next(0)
}

// stepMetadata follows a change of spec.secret labels or annotations: same
// data, new metadata.
func (r *ApiKeyReconciler) stepMetadata(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	ak, existing := p.ak, p.existing
	if p.created || existing == nil || !secretsync.Intact(existing) || string(existing.Data["keyId"]) != ak.Status.KeyID ||
		secretsync.MetadataMatches(existing, ak.Spec.Secret.Labels, ak.Spec.Secret.Annotations) {
		return next(0)
	}
	written, err := r.applySecret(ctx, ak, existing, existing.Data)
	if err != nil {
		return failed(classifySecretWrite(err))
	}
	p.existing = written
	return next(0)
}

// stepSettle ends a pass that failed nowhere: an earlier transient failure
// (a drift listing, a refused Secret write) no longer describes the key.
func (r *ApiKeyReconciler) stepSettle(_ context.Context, p *apiKeyPass) (stepResult, error) {
	ak, st := p.ak, &p.ak.Status
	st.RetryStatus = v1alpha1.RetryStatus{}
	if st.KeyID != "" && st.PendingCreate == nil {
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+st.KeyID+" issued")
		if p.existing != nil && string(p.existing.Data["keyId"]) == st.KeyID {
			setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, true, v1alpha1.ReasonSucceeded, "Secret "+p.secretName+" holds key "+st.KeyID)
		}
	}
	if st.NextRotationTime != nil {
		return next(until(p.now, st.NextRotationTime.Time))
	}
	return next(0)
}

// gated handles an ApiKey its issuer cannot serve (missing, or a policy
// violation): nothing is created; the caller still runs revocations, so a
// policy tightened later never keeps an old key live.
func (r *ApiKeyReconciler) gated(ctx context.Context, ak *v1alpha1.ApiKey, f *failure, now time.Time, iss *v1alpha1.IssuerRecord) (stepResult, error) {
	if gateToldAlready(kindApiKey, ak, ak.Status.Conditions, f) {
		return stepResult{Stop: true}, nil
	}
	if f.Reason == v1alpha1.ReasonPolicyViolation {
		rec := apiKeyRecord(ak, audit.PolicyRefused, now, iss, "", "", f.Reason)
		rec.Message = f.Message
		auditNote(ctx, rec)
	}
	return failed(f)
}

func (r *ApiKeyReconciler) applySecret(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, data map[string][]byte) (*corev1.Secret, error) {
	return r.secrets.apply(ctx, r.Client, existing, secretsync.Desired{
		Namespace: ak.Namespace, Name: outputSecretName(ak.Name, ak.Spec.Secret), Owner: ak,
		OwnerAPI: v1alpha1.GroupVersion.String(), OwnerKind: kindApiKey,
		Labels: ak.Spec.Secret.Labels, Annotations: ak.Spec.Secret.Annotations, Data: data,
	})
}

// summariseApiKey derives Ready from the narrower conditions.
func summariseApiKey(ak *v1alpha1.ApiKey) {
	st := &ak.Status
	st.ResolvedIssuer = issuerKey(reevitKind(ak.Spec.IssuerRef.Kind), ak.Spec.IssuerRef.Name)
	for _, t := range []string{v1alpha1.ConditionSecretSynced, v1alpha1.ConditionIssued, v1alpha1.ConditionRevoked} {
		c := meta.FindStatusCondition(st.Conditions, t)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason != v1alpha1.ReasonRevocationPending && c.Reason != v1alpha1.ReasonProgressing {
			setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionReady, false, c.Reason, c.Message)
			return
		}
	}
	if st.KeyID != "" && st.PendingCreate == nil {
		msg := "key " + st.KeyID + " active"
		if st.NextRotationTime != nil {
			msg += "; next rotation " + st.NextRotationTime.UTC().Format(time.RFC3339)
		}
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionReady, true, v1alpha1.ReasonSucceeded, msg)
		return
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonProgressing, "creating a key")
}

func recordApiKey(ak *v1alpha1.ApiKey) {
	var next time.Time
	if ak.Status.NextRotationTime != nil {
		next = ak.Status.NextRotationTime.Time
	}
	metrics.SetTime(metrics.NextRenewal, next, kindApiKey, ak.Namespace, ak.Name)
	metrics.PendingRevocations.WithLabelValues(ak.Namespace, ak.Name).Set(float64(len(ak.Status.PendingRevocations)))
}

func appendHistory(ak *v1alpha1.ApiKey, e v1alpha1.KeyHistoryEntry) {
	limit := 10
	if ak.Spec.HistoryLimit != nil {
		limit = int(*ak.Spec.HistoryLimit)
	}
	h := append(ak.Status.History, e)
	if len(h) > limit {
		h = h[len(h)-limit:]
	}
	if len(h) == 0 {
		h = nil
	}
	ak.Status.History = h
}
