package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
)

// stepDrift checks now and then that Reevit still holds the active key.
func (r *ApiKeyReconciler) stepDrift(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	return r.checkDrift(ctx, p.ak, p.conns, p.now)
}

// checkDrift lists the organisation's keys now and then (never on start-up,
// never more often than DriftCheckInterval per object): it replaces an active
// key revoked outside Keywarden and revokes leaked keys carrying this
// object's marker that nothing tracks.
func (r *ApiKeyReconciler) checkDrift(ctx context.Context, ak *v1alpha1.ApiKey, conns *reevitConns, now time.Time) (stepResult, error) {
	if r.DriftCheckInterval <= 0 || ak.Status.KeyID == "" {
		return next(0)
	}
	r.driftMu.Lock()
	at, seen := r.nextDrift[ak.UID]
	if !seen {
		at = now.Add(r.DriftCheckInterval + time.Duration(r.jitter()*float64(r.DriftCheckInterval)/4))
		r.nextDrift[ak.UID] = at
	}
	r.driftMu.Unlock()
	if now.Before(at) {
		return next(until(now, at))
	}
	r.driftMu.Lock()
	r.nextDrift[ak.UID] = now.Add(r.DriftCheckInterval)
	r.driftMu.Unlock()
	failed := func(f *failure) (stepResult, error) {
		// Check again once the failure's backoff allows, not a whole
		// interval later, so the failure condition does not outlive its cause.
		r.driftMu.Lock()
		r.nextDrift[ak.UID] = now
		r.driftMu.Unlock()
		return failed(f)
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
		uid, _, ok := reevit.ParseMarker(k.Name)
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
		auditNote(ctx, apiKeyRecord(ak, audit.LeakedKeyRevoked, now, st.Issuer, k.ID, k.Prefix, "Untracked"))
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
		return stop(ctrl.Result{RequeueAfter: staleRequeue}, nil)
	}
	// The active key is live at Reevit: a failure an earlier check left on
	// Issued is over.
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+st.KeyID+" is active at Reevit")
	return next(r.DriftCheckInterval)
}
