package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

const (
	kindApiKey = "ApiKey"
	// finalizer makes deletion wait for revocation.
	finalizer = "credentials.keywarden.dev/revoke"
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
	client.Client
	// APIReader reads workloads, and Secrets through secrets, directly:
	// neither is in the informer cache.
	APIReader client.Reader
	// Cache serves the metadata-only view of Secrets.
	Cache    client.Reader
	Recorder recorder.EventRecorder
	Options

	// secrets reads the Secrets the resources name (shared with the other
	// reconciler by Setup).
	secrets *secretReader

	driftMu   sync.Mutex
	nextDrift map[types.UID]time.Time
}

// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys/status,verbs=get;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=apikeys/finalizers,verbs=update

func newApiKeyList() client.ObjectList { return &v1alpha1.ApiKeyList{} }

// SetupWithManager registers the controller and its watches.
func (r *ApiKeyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	if r.secrets == nil {
		var err error
		if r.secrets, err = managerSecretReader(mgr); err != nil {
			return err
		}
	}
	r.nextDrift = map[types.UID]time.Time{}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ApiKey{}, builder.WithPredicates(primaryPredicate())).
		Watches(secretMetadata(), enqueueBySecret(mgr.GetClient(), func() client.ObjectList { return &v1alpha1.ApiKeyList{} }), secretWatch).
		Watches(&v1alpha1.ReevitIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindReevitIssuer, false, newApiKeyList), builder.WithPredicates(issuerChanged())).
		Watches(&v1alpha1.ClusterReevitIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindClusterReevitIssuer, true, newApiKeyList), builder.WithPredicates(issuerChanged())).
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
	res, err := r.reconcile(ctx, ak, orig)
	if errors.Is(err, errCrash) {
		return ctrl.Result{}, err // a dead process writes nothing more
	}
	ak.Status.ObservedGeneration = ak.Generation
	summariseApiKey(ak)
	if perr := patchStatus(ctx, r.Client, r.superseded, ak, orig, ak.Status, orig.Status); perr != nil {
		if apierrors.IsConflict(perr) {
			return ctrl.Result{RequeueAfter: staleRequeue}, nil
		}
		return ctrl.Result{}, fmt.Errorf("patch status: %w", perr)
	}
	recordApiKey(ak)
	return res, err
}

// reconcile runs the steps in order; orig tracks what status already holds
// on the server, for the intermediate write that records an intent.
func (r *ApiKeyReconciler) reconcile(ctx context.Context, ak, orig *v1alpha1.ApiKey) (ctrl.Result, error) {
	now := r.Clock.Now()
	st := &ak.Status
	secretName := outputSecretName(ak.Name, ak.Spec.Secret)
	existing, err := r.secrets.get(ctx, ak.Namespace, secretName)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("read output secret: %w", err)
	}
	foreign := existing != nil && !secretsync.Controlled(existing, ak)

	iss, gate := getReevitIssuer(ctx, r.Client, ak.Namespace, ak.Spec.IssuerRef.Kind, ak.Spec.IssuerRef.Name, r.ClusterResourceNamespace)
	var current *v1alpha1.IssuerRecord
	adminVersion := ""
	if iss != nil {
		current, adminVersion = iss.record(), iss.version(ctx, r.Cache)
		var nsLabels map[string]string
		if iss.cluster() && iss.spec.Policy.NamespaceSelector != nil {
			nsLabels = namespaceLabels(ctx, r.Client, ak.Namespace)
		}
		gate = reevitPolicyViolation(ak, iss, nsLabels)
		if gate == nil && !iss.obj.GetDeletionTimestamp().IsZero() {
			gate = &failure{Reason: v1alpha1.ReasonIssuerInUse, Message: iss.describe() +
				" is being deleted: no new key is made through it (revocations still run); point spec.issuerRef at another issuer or delete this ApiKey"}
		}
	}
	conns := r.newConns(ctx, ak.Namespace, current)
	quarantineCompromised(ak, now)
	// Revocations run on every pass, whatever stops the create path: a
	// failure that needs a person, a backoff, a foreign Secret or a policy
	// must never keep a previous or compromised key live.
	finish := func(res ctrl.Result, err error) (ctrl.Result, error) {
		if errors.Is(err, errCrash) {
			return res, err
		}
		cur := existing
		if w := r.secrets.written(ak.Namespace, secretName); w != nil {
			cur = w
		}
		if foreign {
			cur = nil // never written
		}
		wait, rres, rerr, done := r.revokeDue(ctx, ak, conns, cur, now)
		if err == nil {
			err = rerr
		}
		if done {
			wait = rres.RequeueAfter
		}
		if wait > 0 && (res.RequeueAfter == 0 || wait < res.RequeueAfter) {
			res.RequeueAfter = wait
		}
		return res, err
	}
	if foreign {
		r.fail(ak, now, classifySecretWrite(&secretsync.ConflictError{Namespace: ak.Namespace, Name: secretName}), v1alpha1.ConditionSecretSynced)
		return finish(ctrl.Result{}, nil) // the Secret watch brings us back
	}
	if gate != nil {
		return finish(r.gated(ak, gate, now))
	}
	metrics.PolicyViolations.DeleteLabelValues(kindApiKey, ak.Namespace, ak.Name)
	// Getting here means no foreign Secret holds the output name any more: a
	// SecretConflict recorded earlier is gone, which no other field shows.
	conflictGone := hasReason(st.Conditions, v1alpha1.ConditionSecretSynced, v1alpha1.ReasonSecretConflict)
	if conflictGone {
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, false, v1alpha1.ReasonProgressing, "the conflicting Secret is gone")
	}
	if st.FailedAttempts > 0 && !conflictGone {
		if wait, blocked := r.backingOff(ak, now, adminVersion); blocked {
			return finish(ctrl.Result{RequeueAfter: wait}, nil)
		}
	}
	if adminVersion != "" {
		st.AdminKeySecretVersion = adminVersion
	}

	specHash := keySpecHash(ak, current)
	if st.KeyID != "" && st.PendingCreate == nil && st.ActiveSince != nil {
		// The schedule may have changed since the key became active.
		next, err := nextRotation(ak.Spec.Rotation, st.ActiveSince.Time)
		if err != nil {
			// A spec error: recorded in a condition, retried when the spec changes.
			r.fail(ak, now, &failure{Reason: v1alpha1.ReasonBadRequest, Message: err.Error() + ": fix spec.rotation"}, v1alpha1.ConditionIssued)
			return finish(ctrl.Result{}, nil) //nolint:nilerr // reported through the condition; no retry until the spec changes
		}
		st.NextRotationTime = optTime(next)
	}
	if st.PendingCreate == nil {
		if reason := newKeyReason(ak, existing, specHash, now); reason != "" {
			if len(st.PendingRevocations) >= maxPendingRevocations && reason != createCompromised && reason != createInitial {
				// Revocations are failing: making more keys would only grow
				// the number live. Wait for them (they run in finish).
				return finish(r.failResult(ak, now, &failure{Reason: v1alpha1.ReasonRevocationBacklog, Transient: true, Message: fmt.Sprintf(
					"%d previous keys still wait for revocation: no new key (%s) until they are revoked; see RevocationsComplete", len(st.PendingRevocations), reason)}, v1alpha1.ConditionIssued))
			}
			if res, err, done := r.recordIntent(ctx, ak, orig, reason, specHash, current); done {
				return finish(res, err)
			}
		}
	}
	if st.PendingCreate != nil {
		c, f := conns.get(st.PendingCreate.Issuer)
		if f != nil {
			return finish(r.failResult(ak, now, f, v1alpha1.ConditionIssued))
		}
		res, err, done := r.completeCreate(ctx, ak, c, existing, specHash, now)
		if done {
			return finish(res, err)
		}
		// completeCreate wrote the Secret a moment ago; the metadata cache
		// may not show that version yet, so take the server's answer.
		existing = r.secrets.written(ak.Namespace, secretName)
	} else if existing != nil && secretsync.Intact(existing) && string(existing.Data["keyId"]) == st.KeyID &&
		!secretsync.MetadataMatches(existing, ak.Spec.Secret.Labels, ak.Spec.Secret.Annotations) {
		// spec.secret labels or annotations changed: same data, new metadata.
		if _, err := r.applySecret(ctx, ak, existing, existing.Data); err != nil {
			return finish(r.failResult(ak, now, classifySecretWrite(err), v1alpha1.ConditionSecretSynced))
		}
	}

	wait, res, err, done := r.revokeDue(ctx, ak, conns, existing, now)
	if done {
		return res, err
	}
	driftWait, res, err, done := r.checkDrift(ctx, ak, conns, now)
	if done {
		return res, err
	}
	var rotateWait time.Duration
	if st.NextRotationTime != nil {
		rotateWait = until(now, st.NextRotationTime.Time)
	}
	st.FailedAttempts, st.LastFailureTime, st.NextRetryTime = 0, nil, nil
	if st.KeyID != "" && st.PendingCreate == nil {
		// A pass that got here failed nowhere: an earlier transient failure
		// (a drift listing, a refused Secret write) no longer describes the key.
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+st.KeyID+" issued")
		if existing != nil && string(existing.Data["keyId"]) == st.KeyID {
			setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, true, v1alpha1.ReasonSucceeded, "Secret "+secretName+" holds key "+st.KeyID)
		}
	}
	return ctrl.Result{RequeueAfter: earliest(rotateWait, wait, driftWait)}, nil
}

// backingOff reports whether a previous failure still holds the object back:
// a failure that needs a person waits for a change of the spec, the admin
// Secret or an annotation; a transient one for its backoff.
func (r *ApiKeyReconciler) backingOff(ak *v1alpha1.ApiKey, now time.Time, adminVersion string) (time.Duration, bool) {
	st := &ak.Status
	// A trigger annotation not acted on yet lifts the wait only when no
	// creation is recorded: a recorded one is the attempt that failed (or
	// will act on the trigger), and must keep its backoff.
	changed := ak.Generation != st.ObservedGeneration || (adminVersion != "" && adminVersion != st.AdminKeySecretVersion) ||
		(st.PendingCreate == nil && (newTrigger(ak.Annotations[v1alpha1.AnnotationRotate], st.LastRotateRequest) ||
			newTrigger(ak.Annotations[v1alpha1.AnnotationCompromised], st.LastCompromisedRequest)))
	if changed {
		return 0, false
	}
	if permanentFailure(st.Conditions) {
		return 0, true
	}
	if st.LastFailureTime == nil {
		return 0, false
	}
	if retry := retryTime(st); now.Before(retry) {
		return retry.Sub(now), true
	}
	return 0, false
}

// recordIntent records the next key creation in status before anything is
// sent. The write uses optimistic locking: a reconcile working from a stale
// read fails here instead of creating a second key.
func (r *ApiKeyReconciler) recordIntent(ctx context.Context, ak, orig *v1alpha1.ApiKey, reason, specHash string, iss *v1alpha1.IssuerRecord) (ctrl.Result, error, bool) {
	st := &ak.Status
	st.KeyGeneration++
	st.PendingCreate = &v1alpha1.KeyRequest{
		IdempotencyKey: createIdempotencyKey(ak, st.KeyGeneration, specHash),
		Name:           keyName(ak, st.KeyGeneration),
		Reason:         reason,
		StartedAt:      *mtime(r.Clock.Now()),
		RevokeCurrent:  reason == createCompromised || reason == createDrift,
		Scopes:         slices.Clone(ak.Spec.Scopes),
		Issuer:         iss.DeepCopy(),
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, false, v1alpha1.ReasonProgressing, "creating a new key ("+reason+")")
	st.ObservedGeneration = ak.Generation
	if err := patchStatus(ctx, r.Client, r.superseded, ak, orig, ak.Status, orig.Status); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: staleRequeue}, nil, true
		}
		return ctrl.Result{}, fmt.Errorf("record key intent: %w", err), true
	}
	*orig = *ak.DeepCopy()
	if err := r.crash("intent-recorded"); err != nil {
		return ctrl.Result{}, err, true
	}
	return ctrl.Result{}, nil, false
}

// completeCreate sends the recorded creation (a replay when it was sent
// before), checks the environment, writes the Secret, then switches status
// to the new key.
func (r *ApiKeyReconciler) completeCreate(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, existing *corev1.Secret, specHash string, now time.Time) (ctrl.Result, error, bool) {
	st := &ak.Status
	req := st.PendingCreate
	if now.Sub(req.StartedAt.Time) > replayWindow {
		// Reevit no longer replays this request: adopt what the Secret holds
		// or revoke what was created, then start afresh.
		res, err := r.recoverExpired(ctx, ak, c, existing, now)
		return res, err, true
	}
	// A replay sends exactly the recorded request.
	recorded := req.Scopes
	if len(recorded) == 0 {
		recorded = ak.Spec.Scopes
	}
	scopes := make([]string, len(recorded))
	for i, s := range recorded {
		scopes[i] = string(s)
	}
	key, err := c.CreateKey(ctx, req.Name, scopes, req.IdempotencyKey)
	var malformed *reevit.MalformedKeyError
	if errors.As(err, &malformed) {
		// Reevit made a key but answered with a value of an unknown shape
		// (too short, another prefix): never published, revoked by id, and
		// the next attempt uses a new Idempotency-Key (a replay would give
		// the same answer for 24 h).
		res, ferr := r.discardMalformed(ctx, ak, c, malformed, now)
		return res, ferr, true
	}
	if err != nil {
		f := classifyReevit(err)
		if !f.Transient {
			// This answer made nothing, but an earlier attempt of the same
			// record may have (a crash after the POST, then a refused
			// replay): find such a key by its marker name and revoke it
			// before the record goes, so no key is left live untracked.
			if sf := r.sweepByName(ctx, ak, c, req.Name); sf != nil {
				res, ferr := r.failResult(ak, now, sf, v1alpha1.ConditionIssued)
				return res, ferr, true
			}
			st.PendingCreate = nil
		}
		res, ferr := r.failResult(ak, now, f, v1alpha1.ConditionIssued)
		return res, ferr, true
	}
	if err := r.crash("after-post"); err != nil {
		return ctrl.Result{}, err, true
	}
	if !wellFormedKey(key.Key) {
		// Stricter than the client's own check (the status prefix must
		// leave most of the key unseen): the same handling as its
		// MalformedKeyError, never published, revoked, asked for anew.
		res, ferr := r.discardMalformed(ctx, ak, c, &reevit.MalformedKeyError{ID: key.ID,
			Reason: fmt.Sprintf("%d characters, not pfk_live_ or pfk_test_ and at least 16 letters and digits", len(key.Key))}, now)
		return res, ferr, true
	}
	if !strings.HasPrefix(key.Key, "pfk_"+ak.Spec.Environment+"_") {
		if err := c.RevokeKey(ctx, key.ID, revokeIdempotencyKey(key.ID)); err != nil {
			res, ferr := r.failResult(ak, now, classifyReevit(err), v1alpha1.ConditionIssued)
			return res, ferr, true
		}
		st.PendingCreate = nil
		appendHistory(ak, v1alpha1.KeyHistoryEntry{KeyID: key.ID, KeyPrefix: keyPrefix(key.Key), CreatedAt: *mtime(key.CreatedAt), RevokedAt: mtime(now), Reason: v1alpha1.ReasonEnvironmentMismatch})
		r.fail(ak, now, &failure{Reason: v1alpha1.ReasonEnvironmentMismatch, Message: fmt.Sprintf(
			"Reevit issued a %s key but spec.environment is %q: the key was revoked; use an admin key of the %s environment or change spec.environment",
			key.Key[:9], ak.Spec.Environment, ak.Spec.Environment)}, v1alpha1.ConditionIssued)
		return ctrl.Result{}, nil, true
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+key.ID+" issued")

	// A compromise reported while this creation was in flight (recorded for
	// another reason) revokes the current key at once too: switchTo records
	// the compromised value as acted on.
	if st.KeyID != "" && !req.RevokeCurrent && newTrigger(ak.Annotations[v1alpha1.AnnotationCompromised], st.LastCompromisedRequest) {
		req.RevokeCurrent, req.Reason = true, createCompromised
	}

	// The Secret is written before the status that declares the key active.
	keepPrevious := st.KeyID != "" && !req.RevokeCurrent
	data := keyData(req.Issuer, key.ID, key.Key)
	if keepPrevious && existing != nil {
		switch string(existing.Data["keyId"]) {
		case st.KeyID:
			data["previousApiKey"] = existing.Data["apiKey"]
			data["previousKeyId"] = []byte(st.KeyID)
		case key.ID:
			// An earlier pass wrote the Secret and did not record its status
			// (a crash, or a conflict with another write): keep the previous
			// key it put there instead of dropping it.
			if string(existing.Data["previousKeyId"]) == st.KeyID {
				data["previousApiKey"] = existing.Data["previousApiKey"]
				data["previousKeyId"] = existing.Data["previousKeyId"]
			}
		}
	}
	if _, err := r.applySecret(ctx, ak, existing, data); err != nil {
		res, ferr := r.failResult(ak, now, classifySecretWrite(err), v1alpha1.ConditionSecretSynced)
		return res, ferr, true
	}
	if err := r.crash("after-secret"); err != nil {
		return ctrl.Result{}, err, true
	}
	r.switchTo(ak, key, req, specHash, now)
	if err := r.crash("after-switch"); err != nil {
		return ctrl.Result{}, err, true
	}
	restartTargets(ctx, r.APIReader, r.Client, r.Recorder, ak, outputSecretName(ak.Name, ak.Spec.Secret), ak.Spec.RolloutRestart, secretsync.Hash(data))
	return ctrl.Result{}, nil, false
}

// sweepByName revokes every key named name (the marker of one creation).
func (r *ApiKeyReconciler) sweepByName(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, name string) *failure {
	keys, err := c.ListKeys(ctx)
	if err != nil {
		f := classifyReevit(err)
		f.Transient = true // the record stays until the sweep succeeds
		return f
	}
	for _, k := range keys {
		if k.Name != name {
			continue
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			f := classifyReevit(err)
			f.Transient = true
			return f
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked, "Recover",
			"revoked key %s: made by an earlier attempt of a creation Reevit now refuses", k.ID)
	}
	return nil
}

// discardMalformed revokes a created key whose value cannot be used and
// records a fresh creation, so nothing made is left live or untracked.
func (r *ApiKeyReconciler) discardMalformed(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, mk *reevit.MalformedKeyError, now time.Time) (ctrl.Result, error) {
	st := &ak.Status
	if mk.ID != "" {
		if err := c.RevokeKey(ctx, mk.ID, revokeIdempotencyKey(mk.ID)); err != nil {
			return r.failResult(ak, now, classifyReevit(err), v1alpha1.ConditionIssued) // the replay brings the same id back
		}
		appendHistory(ak, v1alpha1.KeyHistoryEntry{KeyID: mk.ID, CreatedAt: *mtime(now), RevokedAt: mtime(now), Reason: v1alpha1.ReasonMalformedKey})
	}
	st.KeyGeneration++
	st.PendingCreate.IdempotencyKey = createIdempotencyKey(ak, st.KeyGeneration, keySpecHash(ak, st.PendingCreate.Issuer))
	st.PendingCreate.Name = keyName(ak, st.KeyGeneration)
	st.PendingCreate.StartedAt = *mtime(now)
	return r.failResult(ak, now, &failure{Reason: v1alpha1.ReasonMalformedKey, Transient: true, Message: fmt.Sprintf(
		"Reevit created key %q but answered with an unusable value (%s): it was revoked and a new key is requested with backoff; report this to Reevit if it persists", mk.ID, mk.Reason)}, v1alpha1.ConditionIssued)
}

// switchTo makes key the active key in status and queues the previous one
// for revocation.
func (r *ApiKeyReconciler) switchTo(ak *v1alpha1.ApiKey, key *reevit.Key, req *v1alpha1.KeyRequest, specHash string, now time.Time) {
	st := &ak.Status
	replaced := st.KeyID != "" && st.KeyID != key.ID
	if replaced && !hasPending(st.PendingRevocations, st.KeyID) {
		revokeAfter := now.Add(gracePeriod(ak.Spec.Rotation))
		if req.RevokeCurrent {
			revokeAfter = now
		}
		st.PendingRevocations = append(st.PendingRevocations, v1alpha1.PendingRevocation{
			KeyID: st.KeyID, KeyPrefix: st.KeyPrefix, RevokeAfter: *mtime(revokeAfter), Reason: req.Reason, Issuer: st.Issuer.DeepCopy()})
	}
	if replaced || req.Reason == createCompromised {
		st.Rotations++
		st.LastRotationTime = mtime(now)
	}
	st.KeyID, st.KeyPrefix = key.ID, keyPrefix(key.Key)
	if req.Issuer != nil {
		st.Issuer = req.Issuer.DeepCopy()
	}
	st.ActiveSince = mtime(now)
	st.KeySpecHash = specHash
	st.SecretName = outputSecretName(ak.Name, ak.Spec.Secret)
	st.LastRotateRequest = ak.Annotations[v1alpha1.AnnotationRotate]
	st.LastCompromisedRequest = ak.Annotations[v1alpha1.AnnotationCompromised]
	st.PendingCreate = nil
	appendHistory(ak, v1alpha1.KeyHistoryEntry{KeyID: key.ID, KeyPrefix: st.KeyPrefix, CreatedAt: *mtime(key.CreatedAt)})
	next, err := nextRotation(ak.Spec.Rotation, now)
	st.NextRotationTime = optTime(next)
	if err != nil {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonBadRequest, "Rotate", "%v", err)
	}
	metrics.Renewals.WithLabelValues(kindApiKey, "success").Inc()
	if req.Reason == createCompromised {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonCompromised, "Rotate",
			"key marked compromised: replaced by %s and the previous key is revoked now, without grace period", key.ID)
	} else if req.Reason != createInitial {
		// The first key is told by the conditions alone: an event per
		// created object is a write per object the API server can spare.
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRotated, "Rotate", "key %s (%s) is active (%s)", key.ID, st.KeyPrefix, req.Reason)
	}
}

// recoverExpired handles a recorded creation older than Reevit's replay
// window: a key it created is adopted when the Secret holds it, otherwise
// revoked, and a fresh creation is recorded.
func (r *ApiKeyReconciler) recoverExpired(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, existing *corev1.Secret, now time.Time) (ctrl.Result, error) {
	st := &ak.Status
	keys, err := c.ListKeys(ctx)
	if err != nil {
		return r.failResult(ak, now, classifyReevit(err), v1alpha1.ConditionIssued)
	}
	for _, k := range keys {
		if k.Name != st.PendingCreate.Name {
			continue
		}
		if existing != nil && string(existing.Data["keyId"]) == k.ID && secretsync.Intact(existing) {
			adopted := k
			adopted.Key = string(existing.Data["apiKey"])
			r.switchTo(ak, &adopted, st.PendingCreate, keySpecHash(ak, st.PendingCreate.Issuer), now)
			return ctrl.Result{RequeueAfter: staleRequeue}, nil
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			return r.failResult(ak, now, classifyReevit(err), v1alpha1.ConditionIssued)
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked, "Recover",
			"revoked key %s: created by an interrupted request older than Reevit's replay window", k.ID)
	}
	st.KeyGeneration++
	st.PendingCreate.IdempotencyKey = createIdempotencyKey(ak, st.KeyGeneration, keySpecHash(ak, st.PendingCreate.Issuer))
	st.PendingCreate.Name = keyName(ak, st.KeyGeneration)
	st.PendingCreate.StartedAt = *mtime(now)
	// Record the fresh intent before sending it.
	return ctrl.Result{RequeueAfter: staleRequeue}, nil
}

// revokeDue revokes the previous keys whose grace period has ended (and
// whose rollouts finished, within RolloutWaitLimit) and drops them from the
// Secret. It returns the delay until the next one is due.
func (r *ApiKeyReconciler) revokeDue(ctx context.Context, ak *v1alpha1.ApiKey, conns *reevitConns, existing *corev1.Secret, now time.Time) (time.Duration, ctrl.Result, error, bool) {
	st := &ak.Status
	due, next := dueRevocations(st.PendingRevocations, now)
	var wait time.Duration
	if !next.IsZero() {
		wait = until(now, next)
	}
	if len(due) == 0 {
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRevoked, len(st.PendingRevocations) == 0, revokedReason(st), revokedMessage(st))
		return wait, ctrl.Result{}, nil, false
	}
	if len(ak.Spec.RolloutRestart) > 0 && existing != nil {
		done, err := secretsync.RolloutsDone(ctx, r.APIReader, ak.Namespace, existing.Name, ak.Spec.RolloutRestart, existing.Annotations[secretsync.AnnotationDataHash])
		if err != nil {
			return 0, ctrl.Result{}, err, true
		}
		var held []v1alpha1.PendingRevocation
		for _, p := range due {
			if done || p.Reason == createCompromised {
				held = append(held, p)
				continue
			}
			if now.Before(p.RevokeAfter.Add(r.RolloutWaitLimit)) {
				wait = earliest(wait, rolloutPoll)
				continue
			}
			r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutStuck, "Revoke",
				"rollout targets did not finish within %s after the grace period: revoking key %s anyway", r.RolloutWaitLimit, p.KeyID)
			held = append(held, p)
		}
		due = held
	}
	if len(due) == 0 {
		return wait, ctrl.Result{}, nil, false
	}
	var revokedNow []string
	for _, p := range due {
		if err := r.crash("during-revoke"); err != nil {
			return 0, ctrl.Result{}, err, true
		}
		rec := p.Issuer
		if rec == nil {
			rec = st.Issuer
		}
		c, f := conns.get(rec)
		if f != nil {
			res, err := r.failResult(ak, now, f, v1alpha1.ConditionRevoked)
			return 0, res, err, true
		}
		if err := c.RevokeKey(ctx, p.KeyID, revokeIdempotencyKey(p.KeyID)); err != nil {
			res, ferr := r.failResult(ak, now, classifyReevit(err), v1alpha1.ConditionRevoked)
			return 0, res, ferr, true
		}
		st.PendingRevocations = removePending(st.PendingRevocations, p.KeyID)
		markRevoked(ak, p.KeyID, p.Reason, now)
		revokedNow = append(revokedNow, p.KeyID)
		if p.KeyID == st.KeyID {
			// The current key itself (compromised, not replaced yet): gone.
			st.KeyID, st.KeyPrefix, st.ActiveSince, st.NextRotationTime = "", "", nil, nil
		}
		if existing != nil && string(existing.Data["keyId"]) == p.KeyID {
			reason := v1alpha1.ReasonRevoked
			if p.Reason == createCompromised {
				reason = v1alpha1.ReasonCompromised
			}
			r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, reason, "Revoke",
				"%s key %s revoked and removed from Secret %s; no replacement yet: the workload has no valid key until one is issued", p.Reason, p.KeyID, existing.Name)
		} else {
			r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRevoked, "Revoke", "previous key %s revoked", p.KeyID)
		}
	}
	// A revoked key the Secret still holds as its current key (a compromised
	// key whose replacement failed) leaves the Secret.
	if existing != nil && len(existing.Data["keyId"]) > 0 && string(existing.Data["keyId"]) != st.KeyID &&
		slices.Contains(revokedNow, string(existing.Data["keyId"])) {
		data := keyData(st.Issuer, "", "")
		written, err := r.applySecret(ctx, ak, existing, data)
		if err != nil {
			res, ferr := r.failResult(ak, now, classifySecretWrite(err), v1alpha1.ConditionSecretSynced)
			return 0, res, ferr, true
		}
		existing = written
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, false, v1alpha1.ReasonRevoked,
			"the key Secret "+existing.Name+" held was revoked and removed from it; the workload has no valid key until a replacement is issued")
	}
	// Drop the revoked key from the Secret's previous* fields.
	if existing != nil && len(existing.Data["previousKeyId"]) > 0 && !hasPending(st.PendingRevocations, string(existing.Data["previousKeyId"])) {
		data := keyData(st.Issuer, string(existing.Data["keyId"]), string(existing.Data["apiKey"]))
		if _, err := r.applySecret(ctx, ak, existing, data); err != nil {
			res, ferr := r.failResult(ak, now, classifySecretWrite(err), v1alpha1.ConditionSecretSynced)
			return 0, res, ferr, true
		}
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRevoked, len(st.PendingRevocations) == 0, revokedReason(st), revokedMessage(st))
	return wait, ctrl.Result{}, nil, false
}

func revokedReason(st *v1alpha1.ApiKeyStatus) string {
	if len(st.PendingRevocations) > 0 {
		return v1alpha1.ReasonRevocationPending
	}
	return v1alpha1.ReasonSucceeded
}

func revokedMessage(st *v1alpha1.ApiKeyStatus) string {
	if n := len(st.PendingRevocations); n > 0 {
		return fmt.Sprintf("%d previous key(s) valid until their grace period ends", n)
	}
	return "no previous key is active"
}

// checkDrift lists the organisation's keys now and then (never on start-up,
// never more often than DriftCheckInterval per object): it replaces an active
// key revoked outside Keywarden and revokes leaked keys carrying this
// object's marker that nothing tracks.
func (r *ApiKeyReconciler) checkDrift(ctx context.Context, ak *v1alpha1.ApiKey, conns *reevitConns, now time.Time) (time.Duration, ctrl.Result, error, bool) {
	if r.DriftCheckInterval <= 0 || ak.Status.KeyID == "" {
		return 0, ctrl.Result{}, nil, false
	}
	r.driftMu.Lock()
	at, seen := r.nextDrift[ak.UID]
	if !seen {
		at = now.Add(r.DriftCheckInterval + time.Duration(r.jitter()*float64(r.DriftCheckInterval)/4))
		r.nextDrift[ak.UID] = at
	}
	r.driftMu.Unlock()
	if now.Before(at) {
		return until(now, at), ctrl.Result{}, nil, false
	}
	r.driftMu.Lock()
	r.nextDrift[ak.UID] = now.Add(r.DriftCheckInterval)
	r.driftMu.Unlock()
	failed := func(f *failure) (time.Duration, ctrl.Result, error, bool) {
		// Check again once the failure's backoff allows, not a whole
		// interval later, so the failure condition does not outlive its cause.
		r.driftMu.Lock()
		r.nextDrift[ak.UID] = now
		r.driftMu.Unlock()
		res, err := r.failResult(ak, now, f, v1alpha1.ConditionIssued)
		return 0, res, err, true
	}
	c, f := conns.get(ak.Status.Issuer)
	if f != nil {
		return failed(f)
	}
	keys, err := c.ListKeys(ctx)
	if err != nil {
		return failed(classifyReevit(err))
	}
	st := &ak.Status
	activeFound, live := false, 0
	for _, k := range keys {
		uid, _, ok := parseMarker(k.Name)
		if k.ID == st.KeyID {
			activeFound = true
		}
		if !ok || uid != string(ak.UID) {
			continue
		}
		if k.ID == st.KeyID || hasPending(st.PendingRevocations, k.ID) {
			live++
			continue
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			return failed(classifyReevit(err))
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked, "Sweep",
			"key %s carried this ApiKey's marker but was not tracked: revoked", k.ID)
	}
	metrics.LiveKeys.WithLabelValues(ak.Namespace, ak.Name).Set(float64(live))
	if !activeFound {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonDrift, "Drift",
			"active key %s was revoked outside Keywarden: issuing a replacement now", st.KeyID)
		// Missing from a listing is not proof of revocation: the key is
		// queued for revocation (a 404 counts as done), never forgotten.
		if !hasPending(st.PendingRevocations, st.KeyID) {
			st.PendingRevocations = append(st.PendingRevocations, v1alpha1.PendingRevocation{
				KeyID: st.KeyID, KeyPrefix: st.KeyPrefix, RevokeAfter: *mtime(now), Reason: createDrift, Issuer: st.Issuer.DeepCopy()})
		}
		st.KeyID = "" // replaced on the next pass
		st.NextRotationTime = nil
		return 0, ctrl.Result{RequeueAfter: staleRequeue}, nil, true
	}
	// The active key is live at Reevit: a failure an earlier check left on
	// Issued is over.
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+st.KeyID+" is active at Reevit")
	return r.DriftCheckInterval, ctrl.Result{}, nil, false
}

// finalize revokes keys per deletionPolicy and releases the finalizer.
func (r *ApiKeyReconciler) finalize(ctx context.Context, ak *v1alpha1.ApiKey) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(ak, finalizer) {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	orig := ak.DeepCopy()
	if ak.Spec.DeletionPolicy != v1alpha1.DeletionPolicyRetain {
		if wait, held := r.deletionHeld(ctx, ak, now); held {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		if res, err, blocked := r.revokeAll(ctx, ak, now); blocked {
			ak.Status.ObservedGeneration = ak.Generation
			summariseApiKey(ak)
			if perr := patchStatus(ctx, r.Client, r.superseded, ak, orig, ak.Status, orig.Status); perr != nil && !apierrors.IsNotFound(perr) {
				return ctrl.Result{}, perr
			}
			return res, err
		}
	}
	if ak.Spec.DeletionPolicy == v1alpha1.DeletionPolicyRetain {
		if err := r.orphanSecret(ctx, ak); err != nil {
			return ctrl.Result{}, err
		}
	}
	patch := client.MergeFrom(ak.DeepCopy())
	controllerutil.RemoveFinalizer(ak, finalizer)
	if err := r.Patch(ctx, ak, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	r.driftMu.Lock()
	delete(r.nextDrift, ak.UID)
	r.driftMu.Unlock()
	metrics.Forget(kindApiKey, ak.Namespace, ak.Name)
	r.superseded.forget(ak.UID)
	return ctrl.Result{}, nil
}

// orphanSecret keeps a retained key's Secret: without its owner reference
// the garbage collector would delete the only copy of a key left live.
func (r *ApiKeyReconciler) orphanSecret(ctx context.Context, ak *v1alpha1.ApiKey) error {
	s, err := r.secrets.get(ctx, ak.Namespace, outputSecretName(ak.Name, ak.Spec.Secret))
	if err != nil {
		return fmt.Errorf("read output secret: %w", err)
	}
	if s == nil || !secretsync.Controlled(s, ak) {
		return nil
	}
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: *s.ObjectMeta.DeepCopy()}
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	m.OwnerReferences = slices.DeleteFunc(m.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == ak.UID })
	if err := r.Patch(ctx, m, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release output secret: %w", err)
	}
	r.secrets.forget(ak.Namespace, s.Name)
	r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRetained, "Delete",
		"deletionPolicy Retain: key %s stays live at Reevit and Secret %s is kept, no longer owned by this ApiKey", ak.Status.KeyID, s.Name)
	return nil
}

// revokeAll revokes the active key, every pending one and any key an
// interrupted creation made. blocked is true while that is not possible.
func (r *ApiKeyReconciler) revokeAll(ctx context.Context, ak *v1alpha1.ApiKey, now time.Time) (ctrl.Result, error, bool) {
	st := &ak.Status
	type target struct {
		id  string
		rec *v1alpha1.IssuerRecord
	}
	var targets []target
	ids := []string{}
	if st.KeyID != "" {
		targets, ids = append(targets, target{st.KeyID, st.Issuer}), append(ids, st.KeyID)
	}
	for _, p := range st.PendingRevocations {
		rec := p.Issuer
		if rec == nil {
			rec = st.Issuer
		}
		targets, ids = append(targets, target{p.KeyID, rec}), append(ids, p.KeyID)
	}
	if len(targets) == 0 && st.PendingCreate == nil {
		return ctrl.Result{}, nil, false
	}
	iss, _ := getReevitIssuer(ctx, r.Client, ak.Namespace, ak.Spec.IssuerRef.Kind, ak.Spec.IssuerRef.Name, r.ClusterResourceNamespace)
	var current *v1alpha1.IssuerRecord
	if iss != nil {
		current = iss.record()
	}
	conns := r.newConns(ctx, ak.Namespace, current)
	if st.PendingCreate != nil {
		c, f := conns.get(st.PendingCreate.Issuer)
		if f != nil {
			return r.blockDeletion(ak, now, f)
		}
		keys, err := c.ListKeys(ctx)
		if err != nil {
			return r.blockDeletion(ak, now, classifyReevit(err))
		}
		for _, k := range keys {
			if uid, _, ok := parseMarker(k.Name); ok && uid == string(ak.UID) && !containsString(ids, k.ID) {
				targets, ids = append(targets, target{k.ID, st.PendingCreate.Issuer}), append(ids, k.ID)
			}
		}
	}
	for _, t := range targets {
		c, f := conns.get(t.rec)
		if f != nil {
			return r.blockDeletion(ak, now, f)
		}
		if err := c.RevokeKey(ctx, t.id, revokeIdempotencyKey(t.id)); err != nil {
			return r.blockDeletion(ak, now, classifyReevit(err))
		}
		markRevoked(ak, t.id, "Deletion", now)
	}
	r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRevoked, "Delete", "revoked %d key(s) before deletion", len(ids))
	return ctrl.Result{}, nil, false
}

// deletionHeld reports whether a blocked deletion still waits for its
// backoff. Every status write of a deleting object is an update event that
// comes back here, so without this a blocked deletion would spin. A change
// of the admin-key Secret or of the spec lifts the wait at once.
func (r *ApiKeyReconciler) deletionHeld(ctx context.Context, ak *v1alpha1.ApiKey, now time.Time) (time.Duration, bool) {
	st := &ak.Status
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRevoked)
	if c == nil || c.Reason != v1alpha1.ReasonDeletionBlocked || st.LastFailureTime == nil || ak.Generation != st.ObservedGeneration {
		return 0, false
	}
	if iss, _ := getReevitIssuer(ctx, r.Client, ak.Namespace, ak.Spec.IssuerRef.Kind, ak.Spec.IssuerRef.Name, r.ClusterResourceNamespace); iss != nil {
		if v := iss.version(ctx, r.Cache); v != st.AdminKeySecretVersion {
			return 0, false
		}
	}
	if retry := retryTime(st); now.Before(retry) {
		return retry.Sub(now), true
	}
	return 0, false
}

func (r *ApiKeyReconciler) blockDeletion(ak *v1alpha1.ApiKey, now time.Time, f *failure) (ctrl.Result, error, bool) {
	msg := "deletion waits until the keys can be revoked: " + f.Message + " (or set spec.deletionPolicy: Retain to keep them)"
	res, err := r.failResult(ak, now, &failure{Reason: v1alpha1.ReasonDeletionBlocked, Message: msg, Transient: f.Transient, RetryAfter: f.RetryAfter}, v1alpha1.ConditionRevoked)
	return res, err, true
}

// keyData is the output Secret's data for a key made through rec.
func keyData(rec *v1alpha1.IssuerRecord, id, key string) map[string][]byte {
	d := map[string][]byte{"apiKey": []byte(key), "keyId": []byte(id)}
	if rec != nil {
		d["orgId"], d["url"] = []byte(rec.OrgID), []byte(rec.URL)
	}
	return d
}

// quarantineCompromised queues the current key for revocation now when a
// new keywarden.dev/compromised value arrives, before anything else of the
// pass can stop: a missing issuer, a policy, a foreign Secret or a failing
// create never keep a compromised key live. The key stays current in status
// until it is replaced or revoked.
func quarantineCompromised(ak *v1alpha1.ApiKey, now time.Time) {
	st := &ak.Status
	if st.KeyID == "" || hasPending(st.PendingRevocations, st.KeyID) ||
		!newTrigger(ak.Annotations[v1alpha1.AnnotationCompromised], st.LastCompromisedRequest) {
		return
	}
	st.PendingRevocations = append(st.PendingRevocations, v1alpha1.PendingRevocation{
		KeyID: st.KeyID, KeyPrefix: st.KeyPrefix, RevokeAfter: *mtime(now), Reason: createCompromised, Issuer: st.Issuer.DeepCopy()})
}

// gated handles an ApiKey its issuer cannot serve (missing, or a policy
// violation): nothing is created; the caller still runs revocations, so a
// policy tightened later never keeps an old key live.
func (r *ApiKeyReconciler) gated(ak *v1alpha1.ApiKey, f *failure, now time.Time) (ctrl.Result, error) {
	if f.Reason == v1alpha1.ReasonPolicyViolation {
		metrics.PolicyViolations.WithLabelValues(kindApiKey, ak.Namespace, ak.Name).Set(1)
	}
	if c := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionIssued); c != nil && c.Reason == f.Reason && c.Message == f.Message && !f.Transient {
		return ctrl.Result{}, nil // told once; the issuer and spec watches bring it back
	}
	return r.failResult(ak, now, f, v1alpha1.ConditionIssued)
}

func (r *ApiKeyReconciler) applySecret(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, data map[string][]byte) (*corev1.Secret, error) {
	return r.secrets.apply(ctx, r.Client, existing, secretsync.Desired{
		Namespace: ak.Namespace, Name: outputSecretName(ak.Name, ak.Spec.Secret), Owner: ak,
		OwnerAPI: v1alpha1.GroupVersion.String(), OwnerKind: kindApiKey,
		Labels: ak.Spec.Secret.Labels, Annotations: ak.Spec.Secret.Annotations, Data: data,
	})
}

func (r *ApiKeyReconciler) fail(ak *v1alpha1.ApiKey, now time.Time, f *failure, condType string) {
	st := &ak.Status
	setCondition(&st.Conditions, ak.Generation, condType, false, f.Reason, f.Message)
	st.FailedAttempts++
	st.LastFailureTime = mtime(now)
	metrics.Renewals.WithLabelValues(kindApiKey, "failure").Inc()
	r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, f.Reason, "Reconcile", "%s", f.Message)
}

func (r *ApiKeyReconciler) failResult(ak *v1alpha1.ApiKey, now time.Time, f *failure, condType string) (ctrl.Result, error) {
	r.fail(ak, now, f, condType)
	if !f.Transient {
		return ctrl.Result{}, nil
	}
	d := backoff(ak.Status.FailedAttempts)
	if f.RetryAfter > 0 {
		d = f.RetryAfter
	}
	// Kept in status so an event or a restart before then does not retry early.
	ak.Status.NextRetryTime = mtime(now.Add(d))
	return ctrl.Result{RequeueAfter: d}, nil
}

// retryTime is when a transient failure may be retried.
func retryTime(st *v1alpha1.ApiKeyStatus) time.Time {
	if st.NextRetryTime != nil {
		return st.NextRetryTime.Time
	}
	return st.LastFailureTime.Add(backoff(st.FailedAttempts))
}

// summariseApiKey derives Ready from the narrower conditions.
func summariseApiKey(ak *v1alpha1.ApiKey) {
	st := &ak.Status
	for _, t := range []string{v1alpha1.ConditionSecretSynced, v1alpha1.ConditionIssued, v1alpha1.ConditionRevoked} {
		c := meta.FindStatusCondition(st.Conditions, t)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason != v1alpha1.ReasonRevocationPending && c.Reason != v1alpha1.ReasonProgressing {
			setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionReady, false, c.Reason, c.Message)
			return
		}
	}
	if st.KeyID != "" && st.PendingCreate == nil {
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, true, v1alpha1.ReasonSucceeded, "Secret "+st.SecretName+" holds key "+st.KeyID)
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

func markRevoked(ak *v1alpha1.ApiKey, id, reason string, now time.Time) {
	for i := range ak.Status.History {
		h := &ak.Status.History[i]
		if h.KeyID == id && h.RevokedAt == nil {
			h.RevokedAt = mtime(now)
			h.Reason = reason
		}
	}
}

func removePending(p []v1alpha1.PendingRevocation, id string) []v1alpha1.PendingRevocation {
	out := p[:0:0]
	for _, x := range p {
		if x.KeyID != id {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func hasPending(p []v1alpha1.PendingRevocation, id string) bool {
	for _, x := range p {
		if x.KeyID == id {
			return true
		}
	}
	return false
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// hasReason reports whether a condition of the type has the reason.
func hasReason(conds []metav1.Condition, typ, reason string) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Reason == reason
}
