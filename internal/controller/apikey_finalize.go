package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// finalizePass is what one pass of an ApiKey's deletion knows.
type finalizePass struct {
	ak  *v1alpha1.ApiKey
	now time.Time
	// current is the issuer spec.issuerRef resolves to (nil: none), resolved
	// once for the pass; adminVersion its version ("" when none).
	current      *v1alpha1.IssuerRecord
	adminVersion string
	// released: the finalizer is off, the object goes, no status to write.
	released bool
}

// finalizeSteps is an ApiKey's deletion, in order, on the same runner as
// its reconcile: revoke per deletionPolicy (or keep the Secret), then
// release the finalizer.
func (r *ApiKeyReconciler) finalizeSteps() []step[*finalizePass] {
	return []step[*finalizePass]{
		{name: "backoff", owns: v1alpha1.ConditionRevoked, run: r.stepDeletionBackoff},
		{name: "revoke", owns: v1alpha1.ConditionRevoked, run: r.stepRevokeAll},
		{name: "retain", owns: v1alpha1.ConditionSecretSynced, run: r.stepRetain},
		{name: "release", owns: v1alpha1.ConditionRevoked, run: r.stepRelease},
	}
}

// finalize revokes keys per deletionPolicy and releases the finalizer.
func (r *ApiKeyReconciler) finalize(ctx context.Context, ak *v1alpha1.ApiKey) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(ak, finalizer) {
		return ctrl.Result{}, nil
	}
	orig := ak.DeepCopy()
	ctx, records := withAudit(ctx)
	p := &finalizePass{ak: ak, now: r.Clock.Now()}
	if ak.Spec.DeletionPolicy != v1alpha1.DeletionPolicyRetain {
		if iss, _ := getReevitIssuer(ctx, r.Client, ak.Namespace, ak.Spec.IssuerRef.Kind, ak.Spec.IssuerRef.Name, r.ClusterResourceNamespace); iss != nil {
			p.current, p.adminVersion = iss.record(), iss.version(ctx, r.Cache)
		}
	}
	res, err := runSteps(ctx, p, r.finalizeSteps(), func(_ context.Context, p *finalizePass, cond string, f *failure) stepResult {
		return r.fail(p.ak, p.now, cond, f)
	})
	if p.released {
		records.flush(r.Audit)
		return res, err
	}
	return r.finish(ctx, records, ak, orig, res, err)
}

// stepDeletionBackoff holds a blocked deletion in its backoff, or until a
// change of the spec or the admin-key Secret: every status write of a
// deleting object is an update event that comes back here.
func (r *ApiKeyReconciler) stepDeletionBackoff(_ context.Context, p *finalizePass) (stepResult, error) {
	ak := p.ak
	if ak.Spec.DeletionPolicy == v1alpha1.DeletionPolicyRetain {
		return next(0)
	}
	if hasReason(ak.Status.Conditions, v1alpha1.ConditionRevoked, v1alpha1.ReasonDeletionBlocked) {
		if wait, isHeld := held(ak.Status.RetryStatus, apiKeyWaitedOn(ak), apiKeyInputs(ak, p.adminVersion), p.now); isHeld {
			return stepResult{RequeueAfter: wait, Stop: true}, nil
		}
	}
	if p.adminVersion != "" {
		ak.Status.AdminKeySecretVersion = p.adminVersion
	}
	return next(0)
}

// stepRevokeAll revokes every key of the ApiKey (deletionPolicy Revoke).
func (r *ApiKeyReconciler) stepRevokeAll(ctx context.Context, p *finalizePass) (stepResult, error) {
	if p.ak.Spec.DeletionPolicy == v1alpha1.DeletionPolicyRetain {
		return next(0)
	}
	return r.revokeAll(ctx, p.ak, p.current, p.now)
}

// stepRetain keeps the Secret of a retained key (deletionPolicy Retain).
func (r *ApiKeyReconciler) stepRetain(ctx context.Context, p *finalizePass) (stepResult, error) {
	if p.ak.Spec.DeletionPolicy != v1alpha1.DeletionPolicyRetain {
		return next(0)
	}
	return stepResult{}, r.orphanSecret(ctx, p.ak)
}

// stepRelease removes the finalizer and forgets the object's metrics and
// drift schedule.
func (r *ApiKeyReconciler) stepRelease(ctx context.Context, p *finalizePass) (stepResult, error) {
	ak := p.ak
	patch := client.MergeFrom(ak.DeepCopy())
	controllerutil.RemoveFinalizer(ak, finalizer)
	if err := r.Patch(ctx, ak, patch); err != nil && !apierrors.IsNotFound(err) {
		return stepResult{}, fmt.Errorf("remove finalizer: %w", err)
	}
	p.released = true
	r.driftMu.Lock()
	delete(r.nextDrift, ak.UID)
	r.driftMu.Unlock()
	metrics.Forget(kindApiKey, ak.Namespace, ak.Name)
	r.superseded.forget(ak.UID)
	return next(0)
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
// interrupted creation made. Stop is set while that is not possible.
func (r *ApiKeyReconciler) revokeAll(ctx context.Context, ak *v1alpha1.ApiKey, current *v1alpha1.IssuerRecord, now time.Time) (stepResult, error) {
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
		return stepResult{}, nil
	}
	conns := r.newConns(ctx, ak.Namespace, current)
	if st.PendingCreate != nil {
		c, f := conns.get(st.PendingCreate.Issuer)
		if f != nil {
			return blockDeletion(f)
		}
		keys, err := c.ListKeys(ctx)
		if err != nil {
			return blockDeletion(classifyReevit(err))
		}
		for _, k := range keys {
			if uid, _, ok := reevit.ParseMarker(k.Name); ok && uid == string(ak.UID) && !slices.Contains(ids, k.ID) {
				targets, ids = append(targets, target{k.ID, st.PendingCreate.Issuer}), append(ids, k.ID)
			}
		}
	}
	for _, t := range targets {
		c, f := conns.get(t.rec)
		if f != nil {
			return blockDeletion(f)
		}
		if err := c.RevokeKey(ctx, t.id, revokeIdempotencyKey(t.id)); err != nil {
			return blockDeletion(classifyReevit(err))
		}
		auditNote(ctx, apiKeyRecord(ak, audit.KeyRevoked, now, t.rec, t.id, keyPrefixOf(ak, t.id), "Deletion"))
		markRevoked(ak, t.id, "Deletion", now)
	}
	r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRevoked, "Delete", "revoked %d key(s) before deletion", len(ids))
	return stepResult{}, nil
}

// blockDeletion is the failure of a revocation a deletion waits for.
func blockDeletion(f *failure) (stepResult, error) {
	msg := "deletion waits until the keys can be revoked: " + f.Message + " (or set spec.deletionPolicy: Retain to keep them)"
	return failed(&failure{Reason: v1alpha1.ReasonDeletionBlocked, Message: msg, Transient: f.Transient, RetryAfter: f.RetryAfter})
}
