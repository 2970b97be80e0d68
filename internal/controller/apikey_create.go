package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// stepIntent decides whether a new key is needed and records the creation
// before anything is sent.
func (r *ApiKeyReconciler) stepIntent(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	ak, st := p.ak, &p.ak.Status
	if st.PendingCreate != nil {
		return next(0)
	}
	reason := newKeyReason(ak, p.existing, p.specHash, p.now)
	if reason == "" {
		return next(0)
	}
	if len(st.PendingRevocations) >= maxPendingRevocations && reason != createCompromised && reason != createInitial {
		// Revocations are failing: making more keys would only grow the
		// number live. Wait for them (the revoke step runs regardless).
		return failed(&failure{Reason: v1alpha1.ReasonRevocationBacklog, Transient: true, Message: fmt.Sprintf(
			"%d previous keys still wait for revocation: no new key (%s) until they are revoked; see RevocationsComplete", len(st.PendingRevocations), reason)})
	}
	if out, err := r.recordIntent(ctx, ak, p.orig, reason, p.specHash, p.current); halted(out, err) {
		return out, err
	}
	return next(0)
}

// stepCreate sends the recorded creation and publishes its key.
func (r *ApiKeyReconciler) stepCreate(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	st := &p.ak.Status
	if st.PendingCreate == nil {
		return next(0)
	}
	c, f := p.conns.get(st.PendingCreate.Issuer)
	if f != nil {
		return failed(f)
	}
	if out, err := r.completeCreate(ctx, p.ak, c, p.existing, p.specHash, p.now); halted(out, err) {
		return out, err
	}
	// completeCreate wrote the Secret a moment ago; the metadata cache may
	// not show that version yet, so take the server's answer.
	p.existing = r.secrets.written(p.ak.Namespace, p.secretName)
	p.created = true
	return next(0)
}

// recordIntent records the next key creation in status before anything is
// sent. The write uses optimistic locking: a reconcile working from a stale
// read fails here instead of creating a second key.
func (r *ApiKeyReconciler) recordIntent(ctx context.Context, ak, orig *v1alpha1.ApiKey, reason, specHash string, iss *v1alpha1.IssuerRecord) (stepResult, error) {
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
	if again, err := writeStatus(ctx, r.Client, r.superseded, ak, orig, ak.Status, orig.Status); err != nil {
		return stop(ctrl.Result{}, fmt.Errorf("record key intent: %w", err))
	} else if again {
		// Never sent on a stale read: the next pass reads the newer object.
		return stepResult{RequeueAfter: staleRequeue, Stop: true}, nil
	}
	*orig = *ak.DeepCopy()
	if err := r.crash("intent-recorded"); err != nil {
		return stop(ctrl.Result{}, err)
	}
	return stepResult{}, nil
}

// completeCreate sends the recorded creation (a replay when it was sent
// before), checks the environment, writes the Secret, then switches status
// to the new key. Stop is set when the pass cannot go on.
func (r *ApiKeyReconciler) completeCreate(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, existing *corev1.Secret, specHash string, now time.Time) (stepResult, error) {
	if now.Sub(ak.Status.PendingCreate.StartedAt.Time) > replayWindow {
		// Reevit no longer replays this request: adopt what the Secret holds
		// or revoke what was created, then start afresh.
		return r.recoverExpired(ctx, ak, c, existing, now)
	}
	key, out, err := r.sendCreate(ctx, ak, c, now)
	if halted(out, err) {
		return out, err
	}
	if out, err := r.refuseUnusable(ctx, ak, c, key, now); halted(out, err) {
		return out, err
	}
	return r.publishKey(ctx, ak, key, existing, specHash, now)
}

// sendCreate sends exactly the recorded request (a replay sends the same).
func (r *ApiKeyReconciler) sendCreate(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, now time.Time) (*reevit.Key, stepResult, error) {
	st := &ak.Status
	req := st.PendingCreate
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
		out, err := r.discardMalformed(ctx, ak, c, malformed, now)
		return nil, out, err
	}
	if err != nil {
		f := classifyReevit(err)
		if !f.Transient {
			// This answer made nothing, but an earlier attempt of the same
			// record may have (a crash after the POST, then a refused
			// replay): find such a key by its marker name and revoke it
			// before the record goes, so no key is left live untracked.
			if sf := r.sweepByName(ctx, ak, c, req.Name); sf != nil {
				return nil, stepResult{}, sf
			}
			st.PendingCreate = nil
		}
		return nil, stepResult{}, f
	}
	if err := r.crash("after-post"); err != nil {
		out, err := stop(ctrl.Result{}, err)
		return nil, out, err
	}
	return key, stepResult{}, nil
}

// refuseUnusable revokes a created key that must not be published: of an
// unusable shape, or of another environment than spec.environment.
func (r *ApiKeyReconciler) refuseUnusable(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, key *reevit.Key, now time.Time) (stepResult, error) {
	st := &ak.Status
	if !wellFormedKey(key.Key) {
		// Stricter than the client's own check (the status prefix must
		// leave most of the key unseen): the same handling as its
		// MalformedKeyError, never published, revoked, asked for anew.
		return r.discardMalformed(ctx, ak, c, &reevit.MalformedKeyError{ID: key.ID,
			Reason: fmt.Sprintf("%d characters, not pfk_live_ or pfk_test_ and at least 16 letters and digits", len(key.Key))}, now)
	}
	if strings.HasPrefix(key.Key, "pfk_"+ak.Spec.Environment+"_") {
		return stepResult{}, nil
	}
	if err := c.RevokeKey(ctx, key.ID, revokeIdempotencyKey(key.ID)); err != nil {
		return failed(classifyReevit(err))
	}
	st.PendingCreate = nil
	appendHistory(ak, v1alpha1.KeyHistoryEntry{KeyID: key.ID, KeyPrefix: keyPrefix(key.Key), CreatedAt: *mtime(key.CreatedAt), RevokedAt: mtime(now), Reason: v1alpha1.ReasonEnvironmentMismatch})
	return failed(&failure{Reason: v1alpha1.ReasonEnvironmentMismatch, Message: fmt.Sprintf(
		"Reevit issued a %s key but spec.environment is %q: the key was revoked; use an admin key of the %s environment or change spec.environment",
		key.Key[:9], ak.Spec.Environment, ak.Spec.Environment)})
}

// publishKey writes the new key into the Secret (keeping the previous one
// for its grace period), then declares it active in status.
func (r *ApiKeyReconciler) publishKey(ctx context.Context, ak *v1alpha1.ApiKey, key *reevit.Key, existing *corev1.Secret, specHash string, now time.Time) (stepResult, error) {
	st := &ak.Status
	req := st.PendingCreate
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "key "+key.ID+" issued")
	// A compromise reported while this creation was in flight (recorded for
	// another reason) revokes the current key at once too: switchTo records
	// the compromised value as acted on.
	if st.KeyID != "" && !req.RevokeCurrent && newTrigger(ak.Annotations[v1alpha1.AnnotationCompromised], st.LastCompromisedRequest) {
		req.RevokeCurrent, req.Reason = true, createCompromised
	}
	// The Secret is written before the status that declares the key active.
	data := keyData(req.Issuer, key.ID, key.Key)
	if st.KeyID != "" && !req.RevokeCurrent {
		keepPrevious(data, existing, st.KeyID, key.ID)
	}
	if _, err := r.applySecret(ctx, ak, existing, data); err != nil {
		return failed(classifySecretWrite(err))
	}
	setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionSecretSynced, true, v1alpha1.ReasonSucceeded, "Secret "+outputSecretName(ak.Name, ak.Spec.Secret)+" holds key "+key.ID)
	if err := r.crash("after-secret"); err != nil {
		return stop(ctrl.Result{}, err)
	}
	r.switchTo(ctx, ak, key, req, specHash, now)
	if err := r.crash("after-switch"); err != nil {
		return stop(ctrl.Result{}, err)
	}
	r.restarts.request(ctx, ak, outputSecretName(ak.Name, ak.Spec.Secret), ak.Spec.RolloutRestart, secretsync.RestartHash(data))
	return stepResult{}, nil
}

// keepPrevious puts the previous key (activeID) beside the new one (newID)
// in data, from what the Secret holds.
func keepPrevious(data map[string][]byte, existing *corev1.Secret, activeID, newID string) {
	if existing == nil {
		return
	}
	switch string(existing.Data["keyId"]) {
	case activeID:
		data["previousApiKey"] = existing.Data["apiKey"]
		data["previousKeyId"] = []byte(activeID)
	case newID:
		// An earlier pass wrote the Secret and did not record its status (a
		// crash, or a conflict with another write): keep the previous key it
		// put there instead of dropping it.
		if string(existing.Data["previousKeyId"]) == activeID {
			data["previousApiKey"] = existing.Data["previousApiKey"]
			data["previousKeyId"] = existing.Data["previousKeyId"]
		}
	}
}

// sweepByName revokes every key named name (the marker of one creation).
func (r *ApiKeyReconciler) sweepByName(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, name string) *failure {
	// A failed sweep keeps the record (the caller returns before dropping
	// it): a transient failure is retried with backoff, one that needs a
	// person (a rejected admin key) waits for a change, as the create would.
	keys, err := c.ListKeys(ctx)
	if err != nil {
		return classifyReevit(err)
	}
	for _, k := range keys {
		if k.Name != name {
			continue
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			return classifyReevit(err)
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked, "Recover",
			"revoked key %s: made by an earlier attempt of a creation Reevit now refuses", k.ID)
		auditNote(ctx, apiKeyRecord(ak, audit.LeakedKeyRevoked, r.Clock.Now(), ak.Status.PendingCreate.Issuer, k.ID, k.Prefix, "RefusedCreation"))
	}
	return nil
}

// discardMalformed revokes a created key whose value cannot be used and
// records a fresh creation, so nothing made is left live or untracked.
func (r *ApiKeyReconciler) discardMalformed(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, mk *reevit.MalformedKeyError, now time.Time) (stepResult, error) {
	st := &ak.Status
	if mk.ID != "" {
		if err := c.RevokeKey(ctx, mk.ID, revokeIdempotencyKey(mk.ID)); err != nil {
			return failed(classifyReevit(err)) // the replay brings the same id back
		}
		appendHistory(ak, v1alpha1.KeyHistoryEntry{KeyID: mk.ID, CreatedAt: *mtime(now), RevokedAt: mtime(now), Reason: v1alpha1.ReasonMalformedKey})
	}
	st.KeyGeneration++
	st.PendingCreate.IdempotencyKey = createIdempotencyKey(ak, st.KeyGeneration, keySpecHash(ak, st.PendingCreate.Issuer))
	st.PendingCreate.Name = keyName(ak, st.KeyGeneration)
	st.PendingCreate.StartedAt = *mtime(now)
	return failed(&failure{Reason: v1alpha1.ReasonMalformedKey, Transient: true, Message: fmt.Sprintf(
		"Reevit created key %q but answered with an unusable value (%s): it was revoked and a new key is requested with backoff; report this to Reevit if it persists", mk.ID, mk.Reason)})
}

// switchTo makes key the active key in status and queues the previous one
// for revocation.
func (r *ApiKeyReconciler) switchTo(ctx context.Context, ak *v1alpha1.ApiKey, key *reevit.Key, req *v1alpha1.KeyRequest, specHash string, now time.Time) {
	st := &ak.Status
	previous := st.KeyID
	replaced := previous != "" && previous != key.ID
	r.auditSwitch(ctx, ak, key, req, now)
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
		if previous == "" {
			previous = "(none yet)"
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonCompromised, "Rotate",
			"key %s marked compromised: replaced by %s and revoked now, without grace period (older previous keys keep their own revocation time)", previous, key.ID)
	} else if req.Reason != createInitial {
		// The first key is told by the conditions alone: an event per
		// created object is a write per object the API server can spare.
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.ReasonRotated, "Rotate", "key %s (%s) is active (%s)", key.ID, st.KeyPrefix, req.Reason)
	}
}

// auditSwitch notes what switchTo tells: a rotation or a compromise acted
// on (naming the key replaced), the key minted and the key active.
func (r *ApiKeyReconciler) auditSwitch(ctx context.Context, ak *v1alpha1.ApiKey, key *reevit.Key, req *v1alpha1.KeyRequest, now time.Time) {
	st := &ak.Status
	if v := ak.Annotations[v1alpha1.AnnotationRotate]; v != "" && v != st.LastRotateRequest {
		auditNote(ctx, apiKeyRecord(ak, audit.RotationRequested, now, st.Issuer, st.KeyID, st.KeyPrefix, req.Reason))
	}
	if v := ak.Annotations[v1alpha1.AnnotationCompromised]; v != "" && v != st.LastCompromisedRequest {
		auditNote(ctx, apiKeyRecord(ak, audit.KeyCompromised, now, st.Issuer, st.KeyID, st.KeyPrefix, req.Reason))
	}
	if key.ID == st.KeyID {
		return
	}
	rec := req.Issuer
	if rec == nil {
		rec = st.Issuer
	}
	prefix := keyPrefix(key.Key)
	auditNote(ctx, apiKeyRecord(ak, audit.KeyMinted, key.CreatedAt, rec, key.ID, prefix, req.Reason))
	auditNote(ctx, apiKeyRecord(ak, audit.KeyActivated, now, rec, key.ID, prefix, req.Reason))
}

// recoverExpired handles a recorded creation older than Reevit's replay
// window: a key it created is adopted when the Secret holds it, otherwise
// revoked, and a fresh creation is recorded.
func (r *ApiKeyReconciler) recoverExpired(ctx context.Context, ak *v1alpha1.ApiKey, c keyAPI, existing *corev1.Secret, now time.Time) (stepResult, error) {
	st := &ak.Status
	keys, err := c.ListKeys(ctx)
	if err != nil {
		return failed(classifyReevit(err))
	}
	for _, k := range keys {
		if k.Name != st.PendingCreate.Name {
			continue
		}
		if existing != nil && string(existing.Data["keyId"]) == k.ID && secretsync.Intact(existing) {
			adopted := k
			adopted.Key = string(existing.Data["apiKey"])
			r.switchTo(ctx, ak, &adopted, st.PendingCreate, keySpecHash(ak, st.PendingCreate.Issuer), now)
			return stepResult{RequeueAfter: staleRequeue, Stop: true}, nil
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			return failed(classifyReevit(err))
		}
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked, "Recover",
			"revoked key %s: created by an interrupted request older than Reevit's replay window", k.ID)
		auditNote(ctx, apiKeyRecord(ak, audit.LeakedKeyRevoked, now, st.PendingCreate.Issuer, k.ID, k.Prefix, "ExpiredCreation"))
	}
	st.KeyGeneration++
	st.PendingCreate.IdempotencyKey = createIdempotencyKey(ak, st.KeyGeneration, keySpecHash(ak, st.PendingCreate.Issuer))
	st.PendingCreate.Name = keyName(ak, st.KeyGeneration)
	st.PendingCreate.StartedAt = *mtime(now)
	// Record the fresh intent before sending it.
	return stepResult{RequeueAfter: staleRequeue, Stop: true}, nil
}

// keyData is the output Secret's data for a key made through rec.
func keyData(rec *v1alpha1.IssuerRecord, id, key string) map[string][]byte {
	d := map[string][]byte{"apiKey": []byte(key), "keyId": []byte(id)}
	if rec != nil {
		d["orgId"], d["url"] = []byte(rec.OrgID), []byte(rec.URL)
	}
	return d
}
