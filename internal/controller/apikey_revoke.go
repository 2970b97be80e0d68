package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// stepQuarantine queues a key reported compromised for revocation now.
func (r *ApiKeyReconciler) stepQuarantine(_ context.Context, p *apiKeyPass) (stepResult, error) {
	quarantineCompromised(p.ak, p.now)
	return next(0)
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

// stepRevoke revokes the keys whose time has come, on every pass.
func (r *ApiKeyReconciler) stepRevoke(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	cur := p.existing
	if p.foreign {
		cur = nil // never written
	}
	return r.revokeDue(ctx, p.ak, p.conns, cur, p.now)
}

// revokeDue revokes the previous keys whose grace period has ended (and
// whose rollouts finished, within RolloutWaitLimit) and drops them from the
// Secret. It asks for a look when the next one is due; Stop is set when the
// pass cannot go on.
func (r *ApiKeyReconciler) revokeDue(ctx context.Context, ak *v1alpha1.ApiKey, conns *reevitConns, existing *corev1.Secret, now time.Time) (stepResult, error) {
	st := &ak.Status
	due, nextAt := dueRevocations(st.PendingRevocations, now)
	var wait time.Duration
	if !nextAt.IsZero() {
		wait = until(now, nextAt)
	}
	if len(due) > 0 && len(ak.Spec.RolloutRestart) > 0 && existing != nil {
		var hold time.Duration
		var err error
		if due, hold, err = r.pastRollouts(ctx, ak, existing, due, now); err != nil {
			return stop(ctrl.Result{}, err)
		}
		wait = earliest(wait, hold)
	}
	if len(due) > 0 {
		revokedNow, out, err := r.revokeEach(ctx, ak, conns, existing, due, now)
		if halted(out, err) {
			return out, err
		}
		if out, err := r.scrubSecret(ctx, ak, existing, revokedNow, now); halted(out, err) {
			return out, err
		}
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRevoked, len(st.PendingRevocations) == 0, revokedReason(st), revokedMessage(st))
	return next(wait)
}

// pastRollouts keeps of due the revocations whose workloads finished
// rolling out the current Secret (a compromised key never waits; a rollout
// stuck past RolloutWaitLimit is told and waited for no longer). hold is
// when to look at the rollouts again.
func (r *ApiKeyReconciler) pastRollouts(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, due []v1alpha1.PendingRevocation, now time.Time) ([]v1alpha1.PendingRevocation, time.Duration, error) {
	done, err := secretsync.RolloutsDone(ctx, r.APIReader, ak.Namespace, existing.Name, ak.Spec.RolloutRestart, secretsync.RestartHash(existing.Data))
	if err != nil {
		return nil, 0, err
	}
	var out []v1alpha1.PendingRevocation
	var hold time.Duration
	for _, p := range due {
		if done || p.Reason == createCompromised {
			out = append(out, p)
			continue
		}
		if now.Before(p.RevokeAfter.Add(r.RolloutWaitLimit)) {
			hold = rolloutPoll
			continue
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutStuck, "Revoke",
			"rollout targets did not finish within %s after the grace period: revoking key %s anyway", r.RolloutWaitLimit, p.KeyID)
		out = append(out, p)
	}
	return out, hold, nil
}

// revokeEach revokes the due keys, each at the organisation that made it.
func (r *ApiKeyReconciler) revokeEach(ctx context.Context, ak *v1alpha1.ApiKey, conns *reevitConns, existing *corev1.Secret, due []v1alpha1.PendingRevocation, now time.Time) ([]string, stepResult, error) {
	st := &ak.Status
	var revokedNow []string
	for _, p := range due {
		if err := r.crash("during-revoke"); err != nil {
			out, err := stop(ctrl.Result{}, err)
			return nil, out, err
		}
		rec := p.Issuer
		if rec == nil {
			rec = st.Issuer
		}
		c, f := conns.get(rec)
		if f != nil {
			auditNote(ctx, revokeFailedRecord(ak, now, rec, p, f))
			return nil, stepResult{}, f
		}
		if err := c.RevokeKey(ctx, p.KeyID, revokeIdempotencyKey(p.KeyID)); err != nil {
			f := classifyReevit(err)
			auditNote(ctx, revokeFailedRecord(ak, now, rec, p, f))
			return nil, stepResult{}, f
		}
		st.PendingRevocations = removePending(st.PendingRevocations, p.KeyID)
		markRevoked(ak, p.KeyID, p.Reason, now)
		auditNote(ctx, apiKeyRecord(ak, audit.KeyRevoked, now, rec, p.KeyID, p.KeyPrefix, p.Reason))
		revokedNow = append(revokedNow, p.KeyID)
		if p.KeyID == st.KeyID {
			// The current key itself (compromised, not replaced yet): gone.
			st.KeyID, st.KeyPrefix, st.ActiveSince, st.NextRotationTime = "", "", nil, nil
		}
		r.tellRevoked(ak, existing, p)
	}
	return revokedNow, stepResult{}, nil
}

// tellRevoked records a revocation in an event; a key the Secret still held
// as its current one leaves the workload without a valid key.
func (r *ApiKeyReconciler) tellRevoked(ak *v1alpha1.ApiKey, existing *corev1.Secret, p v1alpha1.PendingRevocation) {
	if existing == nil || string(existing.Data["keyId"]) != p.KeyID {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRevoked, "Revoke", "previous key %s revoked", p.KeyID)
		return
	}
	reason := v1alpha1.ReasonRevoked
	if p.Reason == createCompromised {
		reason = v1alpha1.ReasonCompromised
	}
	r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, reason, "Revoke",
		"%s key %s revoked and removed from Secret %s; no replacement yet: the workload has no valid key until one is issued", p.Reason, p.KeyID, existing.Name)
}

// scrubSecret removes revoked keys from the Secret: a revoked key it still
// holds as its current key (a compromised key whose replacement failed),
// and a revoked previous key.
func (r *ApiKeyReconciler) scrubSecret(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, revokedNow []string, now time.Time) (stepResult, error) {
	st := &ak.Status
	if existing != nil && len(existing.Data["keyId"]) > 0 && string(existing.Data["keyId"]) != st.KeyID &&
		slices.Contains(revokedNow, string(existing.Data["keyId"])) {
		written, err := r.applySecret(ctx, ak, existing, keyData(st.Issuer, "", ""))
		if err != nil {
			return failed(classifySecretWrite(err))
		}
		existing = written
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, false, v1alpha1.ReasonRevoked,
			"the key Secret "+existing.Name+" held was revoked and removed from it; the workload has no valid key until a replacement is issued")
	}
	if existing != nil && len(existing.Data["previousKeyId"]) > 0 && !hasPending(st.PendingRevocations, string(existing.Data["previousKeyId"])) {
		data := keyData(st.Issuer, string(existing.Data["keyId"]), string(existing.Data["apiKey"]))
		if _, err := r.applySecret(ctx, ak, existing, data); err != nil {
			return failed(classifySecretWrite(err))
		}
	}
	return stepResult{}, nil
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
