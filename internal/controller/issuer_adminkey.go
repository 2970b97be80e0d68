package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// Admin-key rotation (spec.adminKeyRotation): a Reevit issuer replaces its
// own admin key. The order of writes makes a process killed at any instant
// lose no key and leave none untracked:
//
//  1. intent: status.adminKey.pending (a deterministic Idempotency-Key and a
//     name carrying the issuer's marker) is stored before anything is sent;
//  2. the creation is sent with the current key (a replay after a crash gets
//     the same key back for 24 h), the answer checked (shape, environment,
//     exactly the scopes asked for: anything else is revoked at once);
//  3. the new key is written into the admin Secret, before any status;
//  4. a listing made with the new key proves it and finds its id by the
//     marker name; only then does status switch to it, the old key becoming
//     status.adminKey.previous;
//  5. the previous key is revoked with the new one after the grace period
//     (at once when compromised), retried with backoff.
//
// A pending record is resumed from what the Secret holds: the old value
// (step 2 again, a replay), the new key (step 4), or anything else (a
// person's edit wins: the minted key, found by its marker name, is revoked
// and the rotation starts over).

// Reasons an admin-key rotation starts.
const (
	adminRotateSchedule    = "schedule"
	adminRotateManual      = "manual"
	adminRotateCompromised = "compromised"
)

// adminKeyPrefixLen is how many leading characters of a key Reevit lists as
// its prefix.
const adminKeyPrefixLen = 13

// defaultAdminGrace is the grace period of a replaced admin key when
// spec.adminKeyRotation.gracePeriod is not set.
const defaultAdminGrace = 10 * time.Minute

// reevitSpecOf returns a Reevit issuer's spec (nil for the Rev.io kinds).
func reevitSpecOf(obj client.Object) *v1alpha1.ReevitIssuerSpec {
	return obj.(v1alpha1.GenericIssuer).ReevitSpec()
}

// adminGrace is the grace period in effect: the spec's, else 10m, or Every
// when that is shorter.
func adminGrace(r *v1alpha1.AdminKeyRotation) time.Duration {
	if r == nil {
		return defaultAdminGrace
	}
	if r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	if r.Every != nil && r.Every.Duration > 0 && r.Every.Duration < defaultAdminGrace {
		return r.Every.Duration
	}
	return defaultAdminGrace
}

// keyEnvironment is the environment a key's prefix names ("" when neither).
func keyEnvironment(prefix string) string {
	switch {
	case strings.HasPrefix(prefix, reevit.PrefixLive):
		return "live"
	case strings.HasPrefix(prefix, reevit.PrefixTest):
		return "test"
	}
	return ""
}

// identifyAdminKey finds the admin key (value) among the keys a listing made
// with it returned: exactly one listed key must carry its prefix.
func identifyAdminKey(keys []reevit.Key, value, secret string) (reevit.Key, *failure) {
	unidentified := func(format string, args ...any) (reevit.Key, *failure) {
		return reevit.Key{}, &failure{Reason: v1alpha1.ReasonAdminKeyUnidentified, Message: fmt.Sprintf(format, args...) +
			"; nothing is rotated until the admin key in Secret " + secret + " can be identified (replace it with a key Reevit lists, or remove spec.adminKeyRotation)"}
	}
	if len(value) < adminKeyPrefixLen+8 || keyEnvironment(value) == "" {
		return unidentified("the admin key is not a pfk_live_ or pfk_test_ key of a known shape")
	}
	prefix := value[:adminKeyPrefixLen]
	var found []reevit.Key
	for _, k := range keys {
		if k.Prefix == prefix {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return unidentified("none of the %d keys Reevit lists carries the admin key's prefix %s", len(keys), prefix)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, k := range found {
		ids[i] = k.ID
	}
	return unidentified("%d listed keys (%s) carry the admin key's prefix %s", len(found), strings.Join(ids, ", "), prefix)
}

// recordAdminKey records the identified admin key in status; a key already
// recorded keeps its activeSince.
func recordAdminKey(st *v1alpha1.IssuerStatus, k reevit.Key, fingerprint string, rot *v1alpha1.AdminKeyRotation, now time.Time) {
	if st.AdminKey == nil {
		st.AdminKey = &v1alpha1.AdminKeyStatus{}
	}
	a := st.AdminKey
	if a.ID != k.ID || a.Fingerprint != fingerprint || a.ActiveSince == nil {
		since := k.CreatedAt
		if since.IsZero() || since.After(now) {
			since = now
		}
		a.ID, a.Fingerprint, a.ActiveSince = k.ID, fingerprint, mtime(since)
	}
	a.Prefix, a.Scopes, a.Environment = k.Prefix, slices.Clone(k.Scopes), keyEnvironment(k.Prefix)
	slices.Sort(a.Scopes)
	a.NextRotationTime = nextAdminRotation(rot, a)
}

// nextAdminRotation is when the schedule replaces the key (nil: never).
func nextAdminRotation(rot *v1alpha1.AdminKeyRotation, a *v1alpha1.AdminKeyStatus) *metav1.Time {
	if rot == nil || rot.Every == nil || rot.Every.Duration <= 0 || a.ActiveSince == nil {
		return nil
	}
	return mtime(a.ActiveSince.Add(rot.Every.Duration))
}

// adminRotationDue is the pure decision to start a rotation: the reason
// ("" none) and, when none, how long until the schedule asks (0: never).
func adminRotationDue(rot *v1alpha1.AdminKeyRotation, a *v1alpha1.AdminKeyStatus, annotations map[string]string, now time.Time) (string, time.Duration) {
	if rot == nil || a == nil {
		return "", 0
	}
	if newTrigger(annotations[v1alpha1.AnnotationCompromised], a.LastCompromisedRequest) {
		return adminRotateCompromised, 0
	}
	if newTrigger(annotations[v1alpha1.AnnotationRotate], a.LastRotateRequest) {
		return adminRotateManual, 0
	}
	if a.NextRotationTime == nil {
		return "", 0
	}
	if !now.Before(a.NextRotationTime.Time) {
		return adminRotateSchedule, 0
	}
	return "", until(now, a.NextRotationTime.Time)
}

// refuseAdminKey is why a created admin key must not be used ("" it may):
// an unknown shape, another environment, or other scopes than asked for.
func refuseAdminKey(k *reevit.Key, p *v1alpha1.AdminKeyPending) string {
	if !wellFormedKey(k.Key) {
		return fmt.Sprintf("the key has an unknown shape (%d characters, not pfk_live_ or pfk_test_ and at least 16 letters and digits)", len(k.Key))
	}
	if env := keyEnvironment(k.Key); env != p.Environment {
		return fmt.Sprintf("the key is of the %s environment, the admin key it replaces of %s", env, p.Environment)
	}
	got, want := slices.Clone(k.Scopes), slices.Clone(p.Scopes)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(got), slices.Compact(want)) {
		return fmt.Sprintf("the key carries the scopes [%s], not exactly the admin key's [%s]", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	return ""
}

// managedElsewhere says why another manager owns the Secret ("" none): an
// owner reference, a managed-by label naming another manager, or the
// labels and annotations of known secret managers.
func managedElsewhere(s *corev1.Secret) string {
	if len(s.OwnerReferences) > 0 {
		o := s.OwnerReferences[0]
		return fmt.Sprintf("it is owned by %s %s", o.Kind, o.Name)
	}
	if m, ok := s.Labels["app.kubernetes.io/managed-by"]; ok && !strings.EqualFold(m, "keywarden") {
		return fmt.Sprintf("its label app.kubernetes.io/managed-by is %q", m)
	}
	foreign := []string{"external-secrets.io/", "reconcile.external-secrets.io/", "vault.hashicorp.com/", "secrets.hashicorp.com/",
		"sealedsecrets.bitnami.com/", "replicator.v1.mittwald.de/", "kubed.appscode.com/", "reflector.v1.k8s.emberstack.com/",
		"secrets-store.csi.k8s.io/", "secret.reloader.stakater.com/sync"}
	for _, m := range []map[string]string{s.Labels, s.Annotations} {
		for k := range m {
			for _, f := range foreign {
				if strings.HasPrefix(k, f) || strings.Contains(k, "."+f) {
					return fmt.Sprintf("it carries %s", k)
				}
			}
		}
	}
	return ""
}

// adminPass is one issuer reconcile's admin-key work.
type adminPass struct {
	obj        client.Object
	orig       client.Object
	st         *v1alpha1.IssuerStatus
	origStatus v1alpha1.IssuerStatus
	spec       *v1alpha1.ReevitIssuerSpec
	secretNS   string
	now        time.Time
	audits     []audit.Record
}

func (r *IssuerReconciler) crash(step string) error {
	if r.crashAt != nil && r.crashAt(step) {
		return fmt.Errorf("%w at %s", errCrash, step)
	}
	return nil
}

// save stores the status now (optimistic locking): the intent is on the
// server before the creation is sent.
func (r *IssuerReconciler) save(ctx context.Context, p *adminPass) (again bool, err error) {
	if again, err := writeStatus(ctx, r.Client, r.superseded, p.obj, p.orig, *p.st, p.origStatus); err != nil || again {
		return again, err
	}
	p.orig = p.obj.DeepCopyObject().(client.Object)
	p.origStatus = *p.st.DeepCopy()
	return false, nil
}

// adminKeyStep runs the admin-key rotation of a Reevit issuer: it resumes a
// rotation in flight, revokes a previous key when due, and starts a
// rotation when due. Without spec.adminKeyRotation and nothing in flight it
// does nothing and calls nothing.
func (r *IssuerReconciler) adminKeyStep(ctx context.Context, p *adminPass) (ctrl.Result, error) {
	st, rot := p.st, p.spec.AdminKeyRotation
	a := st.AdminKey
	defer r.exportAdminKeyAge(p)
	if rot == nil && (a == nil || a.Pending == nil && a.Previous == nil) {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionAdminKeyRotation)
		return ctrl.Result{}, nil
	}
	if a == nil {
		return ctrl.Result{}, nil // the check identifies the key first (Ready says why not)
	}
	compromised := rot != nil && newTrigger(p.obj.GetAnnotations()[v1alpha1.AnnotationCompromised], a.LastCompromisedRequest)
	if a.FailedAttempts > 0 && a.LastFailureTime != nil && !compromised {
		if retry := a.LastFailureTime.Add(backoff(a.FailedAttempts)); p.now.Before(retry) {
			return ctrl.Result{RequeueAfter: retry.Sub(p.now)}, nil
		}
	}
	if a.Pending != nil {
		return r.continueAdminRotation(ctx, p)
	}
	if a.Previous != nil {
		if !compromised && p.now.Before(a.Previous.RevokeAfter.Time) {
			return ctrl.Result{RequeueAfter: until(p.now, a.Previous.RevokeAfter.Time)}, nil
		}
		if res, done, err := r.revokePreviousAdmin(ctx, p); !done || err != nil {
			return res, err
		}
	}
	return r.startAdminRotation(ctx, p)
}

// exportAdminKeyAge exports the admin key's age (from status.adminKey
// under spec.adminKeyRotation, else from the credential's first sighting)
// and the age it should not pass: every plus grace, 0 without rotation.
func (r *IssuerReconciler) exportAdminKeyAge(p *adminPass) {
	labels := []string{r.k.kind, p.obj.GetNamespace(), p.obj.GetName()}
	rot := p.spec.AdminKeyRotation
	var since *metav1.Time
	switch a := p.st.AdminKey; {
	case rot != nil && a != nil && a.ActiveSince != nil:
		since = a.ActiveSince
	case p.st.Credential != nil:
		since = &p.st.Credential.FirstSeen
	}
	if since == nil {
		metrics.IssuerAdminKeyAge.Delete(labels...)
		metrics.IssuerAdminKeyMaxAge.DeleteLabelValues(labels...)
		return
	}
	metrics.IssuerAdminKeyAge.Set(since.Time, labels...)
	limit := 0.0
	if rot != nil && rot.Every != nil {
		limit = (rot.Every.Duration + adminGrace(rot)).Seconds()
	}
	metrics.IssuerAdminKeyMaxAge.WithLabelValues(labels...).Set(limit)
}

// adminFail is the issuer passes' failure hook (runSteps): it records a
// failed admin-key rotation step into cond (AdminKeyRotation, the step's),
// a Warning event when the reason is new, and the rotation's backoff.
func (r *IssuerReconciler) adminFail(_ context.Context, p *adminPass, cond string, f *failure) stepResult {
	if !hasReason(p.st.Conditions, cond, f.Reason) {
		r.Recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, f.Reason, "RotateAdminKey", "%s", f.Message)
	}
	setCondition(&p.st.Conditions, p.obj.GetGeneration(), cond, false, f.Reason, f.Message)
	d := backoff(1)
	if a := p.st.AdminKey; a != nil {
		a.FailedAttempts++
		a.LastFailureTime = mtime(p.now)
		d = backoff(a.FailedAttempts)
	}
	if f.RetryAfter > d {
		d = f.RetryAfter
	}
	return stepResult{RequeueAfter: d}
}

// adminClient is a Reevit client for the issuer with the given key.
func (r *IssuerReconciler) adminClient(p *adminPass, key string) (keyAPI, *failure) {
	iss := &reevitIssuer{obj: p.obj, kind: r.k.kind, spec: *p.spec, secretNS: p.secretNS}
	if !endpointAllowed(iss.url(), r.AllowedEndpoints) {
		return nil, endpointRefused(iss.describe(), iss.url(), r.AllowedEndpoints)
	}
	c, err := reevit.New(reevit.Config{BaseURL: iss.url(), OrgID: p.spec.OrgID, AdminKey: key, ActorID: p.spec.ActorID,
		AllowHTTP: r.AllowHTTP, HTTPClient: r.HTTPClient, Observe: metrics.Observer("reevit")})
	if err != nil {
		return nil, classifyReevit(err)
	}
	return c, nil
}

// adminSecret reads the admin Secret in full from the API server (labels,
// annotations and owners decide whether it may be written).
func (r *IssuerReconciler) adminSecret(ctx context.Context, p *adminPass) (*corev1.Secret, string, *failure) {
	ref := p.spec.AdminKeySecretRef
	s, err := secretsync.Get(ctx, r.secrets.api, p.secretNS, ref.Name)
	if err != nil {
		return nil, "", &failure{Reason: v1alpha1.ReasonSecretReadFailed, Transient: true, Err: err, Message: "reading the admin-key Secret failed: " + err.Error()}
	}
	if s == nil {
		return nil, "", secretNotFound(r.k.kind, p.secretNS, ref, false)
	}
	return s, strings.TrimSpace(string(s.Data[secretDataKey(ref)])), nil
}

func secretDataKey(ref v1alpha1.SecretKeyReference) string {
	if ref.Key == "" {
		return "apiKey"
	}
	return ref.Key
}

// adminRecord is an audit record about the issuer's admin key.
func (r *IssuerReconciler) adminRecord(p *adminPass, ev audit.Event, keyID, prefix, reason string) audit.Record {
	iss := &reevitIssuer{obj: p.obj, kind: r.k.kind, spec: *p.spec, secretNS: p.secretNS}
	rec := audit.Record{Time: p.now, Event: ev, Object: audit.Object{Kind: r.k.kind, Namespace: p.obj.GetNamespace(), Name: p.obj.GetName(), UID: string(p.obj.GetUID())},
		Issuer: auditIssuer(iss.record()), KeyID: keyID, KeyPrefix: prefix, Reason: reason}
	if a := p.st.AdminKey; a != nil {
		rec.Scopes, rec.Environment = slices.Clone(a.Scopes), a.Environment
	}
	return rec
}

// startAdminRotation records the intent of a due rotation, then sends it.
func (r *IssuerReconciler) startAdminRotation(ctx context.Context, p *adminPass) (ctrl.Result, error) {
	st, a := p.st, p.st.AdminKey
	reason, wait := adminRotationDue(p.spec.AdminKeyRotation, a, p.obj.GetAnnotations(), p.now)
	if reason == "" {
		a.FailedAttempts, a.LastFailureTime = 0, nil
		if a.Previous == nil && !hasReason(st.Conditions, v1alpha1.ConditionAdminKeyRotation, v1alpha1.ReasonAdminKeyManagedElsewhere) {
			msg := "admin key " + a.ID + " is active"
			if a.NextRotationTime != nil {
				msg += "; next rotation at " + a.NextRotationTime.UTC().Format(time.RFC3339)
			}
			setCondition(&st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, true, v1alpha1.ReasonSucceeded, msg)
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	// Only a key the check identified in the Secret's current value is
	// rotated: Ready for this generation and the fingerprints agree.
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != p.obj.GetGeneration() ||
		st.Credential == nil || a.ID == "" || a.Fingerprint != st.Credential.Fingerprint {
		return ctrl.Result{}, nil
	}
	s, value, f := r.adminSecret(ctx, p)
	if f != nil {
		return ctrl.Result{}, f
	}
	if why := managedElsewhere(s); why != "" {
		f := &failure{Reason: v1alpha1.ReasonAdminKeyManagedElsewhere, Message: fmt.Sprintf(
			"the admin-key Secret %s/%s is managed elsewhere (%s): Keywarden never writes it, so the admin key is not rotated; rotate it where it is managed, or remove spec.adminKeyRotation", s.Namespace, s.Name, why)}
		if !hasReason(st.Conditions, v1alpha1.ConditionAdminKeyRotation, f.Reason) {
			r.Recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, f.Reason, "RotateAdminKey", "%s", f.Message)
		}
		setCondition(&st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, false, f.Reason, f.Message)
		return ctrl.Result{}, nil // a change of the Secret or the issuer brings it back
	}
	if credentialFingerprint(value) != a.Fingerprint {
		return ctrl.Result{RequeueAfter: staleRequeue}, nil // changed since the check: checked again first
	}
	a.Rotations++
	a.Pending = &v1alpha1.AdminKeyPending{
		IdempotencyKey: fmt.Sprintf("keywarden-admin-%s-%d", p.obj.GetUID(), a.Rotations),
		Name:           fmt.Sprintf("keywarden admin %s %s", strings.ToLower(r.k.kind), reevit.Marker(string(p.obj.GetUID()), a.Rotations)),
		Reason:         reason,
		StartedAt:      *mtime(p.now),
		Scopes:         slices.Clone(a.Scopes),
		Environment:    a.Environment,
		OldFingerprint: a.Fingerprint,
		OldID:          a.ID,
		OldPrefix:      a.Prefix,
	}
	switch reason {
	case adminRotateManual:
		a.LastRotateRequest = p.obj.GetAnnotations()[v1alpha1.AnnotationRotate]
	case adminRotateCompromised:
		a.LastCompromisedRequest = p.obj.GetAnnotations()[v1alpha1.AnnotationCompromised]
	}
	setCondition(&st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, false, v1alpha1.ReasonProgressing, "rotating admin key "+a.ID+" ("+reason+")")
	if again, err := r.save(ctx, p); err != nil {
		return ctrl.Result{}, fmt.Errorf("record admin-key intent: %w", err)
	} else if again {
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}
	if err := r.crash("admin-intent"); err != nil {
		return ctrl.Result{}, err
	}
	return r.continueAdminRotation(ctx, p)
}

// continueAdminRotation resumes the recorded rotation from what the Secret
// holds.
func (r *IssuerReconciler) continueAdminRotation(ctx context.Context, p *adminPass) (ctrl.Result, error) {
	a := p.st.AdminKey
	pend := a.Pending
	s, value, f := r.adminSecret(ctx, p)
	if f != nil {
		return ctrl.Result{}, f
	}
	if credentialFingerprint(value) == pend.OldFingerprint {
		c, f := r.adminClient(p, value)
		if f != nil {
			return ctrl.Result{}, f
		}
		if why := managedElsewhere(s); why != "" || p.now.Sub(pend.StartedAt.Time) > replayWindow {
			// The Secret may no longer be written, or Reevit no longer
			// replays the creation: whatever it made goes, found by name.
			msg := "Reevit no longer replays the admin-key creation begun at " + pend.StartedAt.UTC().Format(time.RFC3339)
			reason := v1alpha1.ReasonAdminKeyRotationFailed
			if why != "" {
				msg = fmt.Sprintf("the admin-key Secret %s/%s became managed elsewhere (%s)", s.Namespace, s.Name, why)
				reason = v1alpha1.ReasonAdminKeyManagedElsewhere
			}
			if sf := r.sweepAdmin(ctx, p, c, pend.Name, ""); sf != nil {
				return ctrl.Result{}, sf
			}
			a.Pending = nil
			return ctrl.Result{}, &failure{Reason: reason, Message: msg + ": the rotation was abandoned and any key it made revoked; the current admin key stays"}
		}
		key, err := r.sendAdminCreate(ctx, p, c)
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := r.crash("admin-after-post"); err != nil {
			return ctrl.Result{}, err
		}
		// A merge patch of the one data key, locked on the resourceVersion
		// read (the manager holds patch on Secrets, not update).
		patch := client.MergeFromWithOptions(s.DeepCopy(), client.MergeFromWithOptimisticLock{})
		s.Data[secretDataKey(p.spec.AdminKeySecretRef)] = []byte(key.Key)
		if err := r.Patch(ctx, s, patch); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: staleRequeue}, nil // read again: a person's edit wins
			}
			f := classifySecretWrite(err)
			f.Condition = "" // the issuer's own input Secret: the rotation's failure
			return ctrl.Result{}, f
		}
		if err := r.crash("admin-after-secret"); err != nil {
			return ctrl.Result{}, err
		}
		value = key.Key
	}
	return r.proveAdminKey(ctx, p, value)
}

// sendAdminCreate sends the recorded creation with the current key and
// checks the answer; done is false when the pass cannot go on (a failure
// recorded, or the answer refused and revoked).
func (r *IssuerReconciler) sendAdminCreate(ctx context.Context, p *adminPass, c keyAPI) (*reevit.Key, error) {
	a := p.st.AdminKey
	pend := a.Pending
	key, err := c.CreateKey(ctx, pend.Name, pend.Scopes, pend.IdempotencyKey)
	var malformed *reevit.MalformedKeyError
	if errors.As(err, &malformed) {
		key, err = &reevit.Key{ID: malformed.ID}, nil
	}
	if err != nil {
		f := classifyReevit(err)
		if !f.Transient {
			// An earlier attempt of this record may have made a key (a
			// crash after the POST, then a refused replay).
			if sf := r.sweepAdmin(ctx, p, c, pend.Name, ""); sf != nil {
				return nil, sf
			}
			a.Pending = nil
		}
		f.Reason, f.Message = v1alpha1.ReasonAdminKeyRotationFailed, "creating the new admin key failed ("+f.Reason+"): "+f.Message
		return nil, f
	}
	if key.ID == pend.OldID {
		// A hostile or broken answer naming the current key: revoking
		// "the new key" would revoke the one in use. Nothing is revoked.
		a.Pending = nil
		return nil, &failure{Reason: v1alpha1.ReasonAdminKeyRefused, Message: fmt.Sprintf(
			"Reevit answered the admin-key creation with the id of the current admin key %s: nothing was written or revoked; retried with backoff", key.ID)}
	}
	why := "the answer has no usable key"
	if key.Key != "" {
		why = refuseAdminKey(key, pend)
	}
	if why == "" {
		return key, nil
	}
	// Never written anywhere: revoked with the current key, which stays.
	if err := c.RevokeKey(ctx, key.ID, revokeIdempotencyKey(key.ID)); err != nil {
		f := classifyReevit(err)
		f.Reason, f.Message = v1alpha1.ReasonAdminKeyRevokeFailed, "revoking refused new admin key "+key.ID+" failed ("+f.Reason+"): "+f.Message+"; retried with the same request"
		return nil, f // the pending record stays: a replay returns the same key to revoke
	}
	p.audits = append(p.audits, r.adminRecord(p, audit.AdminKeyRevoked, key.ID, "", v1alpha1.ReasonAdminKeyRefused))
	a.Pending = nil
	return nil, &failure{Reason: v1alpha1.ReasonAdminKeyRefused, Message: fmt.Sprintf(
		"Reevit answered the admin-key creation with key %s that cannot replace admin key %s: %s; the new key was revoked and the old one kept (retried with backoff; check the organisation's key settings at Reevit)", key.ID, a.ID, why)}
}

// sweepAdmin revokes every listed key named name except keep (the keys one
// rotation record made), with c.
func (r *IssuerReconciler) sweepAdmin(ctx context.Context, p *adminPass, c keyAPI, name, keep string) *failure {
	keys, err := c.ListKeys(ctx)
	if err != nil {
		f := classifyReevit(err)
		f.Reason, f.Message = v1alpha1.ReasonAdminKeyRotationFailed, "listing keys to find those of an unfinished admin-key rotation failed ("+f.Reason+"): "+f.Message
		return f
	}
	for _, k := range keys {
		if k.Name != name || k.ID == keep {
			continue
		}
		if err := c.RevokeKey(ctx, k.ID, revokeIdempotencyKey(k.ID)); err != nil {
			f := classifyReevit(err)
			f.Reason, f.Message = v1alpha1.ReasonAdminKeyRevokeFailed, "revoking key "+k.ID+" of an unfinished admin-key rotation failed ("+f.Reason+"): "+f.Message
			return f
		}
		p.audits = append(p.audits, r.adminRecord(p, audit.AdminKeyRevoked, k.ID, k.Prefix, "Abandoned"))
	}
	return nil
}

// proveAdminKey lists the keys with the value the Secret holds. The minted
// key (its marker name and prefix) proves the rotation: status switches to
// it. Anything else is a person's edit: the minted key is revoked and the
// rotation starts over.
func (r *IssuerReconciler) proveAdminKey(ctx context.Context, p *adminPass, value string) (ctrl.Result, error) {
	st, a := p.st, p.st.AdminKey
	pend := a.Pending
	c, f := r.adminClient(p, value)
	if f != nil {
		return ctrl.Result{}, f
	}
	keys, err := c.ListKeys(ctx)
	if err != nil {
		f := classifyReevit(err)
		f.Reason, f.Message = v1alpha1.ReasonAdminKeyRotationFailed, "proving the new admin key (a listing made with it) failed ("+f.Reason+"): "+f.Message
		return ctrl.Result{}, f
	}
	var mine *reevit.Key
	for i := range keys {
		if keys[i].Name == pend.Name && keys[i].ID != pend.OldID && len(value) >= adminKeyPrefixLen && keys[i].Prefix == value[:adminKeyPrefixLen] {
			mine = &keys[i]
		}
	}
	if mine == nil {
		if sf := r.sweepAdmin(ctx, p, c, pend.Name, ""); sf != nil {
			return ctrl.Result{}, sf
		}
		a.Pending = nil
		return ctrl.Result{}, &failure{Reason: v1alpha1.ReasonAdminKeySecretEdited, Message: fmt.Sprintf(
			"the admin-key Secret changed during the rotation of admin key %s: the value a person put there is kept, the key the rotation made was revoked, and the rotation starts over", pend.OldID)}
	}
	grace := adminGrace(p.spec.AdminKeyRotation)
	reason := pend.Reason
	if reason != adminRotateCompromised && newTrigger(p.obj.GetAnnotations()[v1alpha1.AnnotationCompromised], a.LastCompromisedRequest) {
		reason, a.LastCompromisedRequest = adminRotateCompromised, p.obj.GetAnnotations()[v1alpha1.AnnotationCompromised]
	}
	if reason == adminRotateCompromised {
		grace = 0
	}
	a.Previous = &v1alpha1.AdminKeyPrevious{ID: pend.OldID, Prefix: pend.OldPrefix, RevokeAfter: *mtime(p.now.Add(grace))}
	a.ID, a.Prefix, a.Fingerprint = mine.ID, mine.Prefix, credentialFingerprint(value)
	a.Scopes, a.Environment, a.ActiveSince = slices.Clone(mine.Scopes), keyEnvironment(mine.Prefix), mtime(p.now)
	slices.Sort(a.Scopes)
	a.NextRotationTime = nextAdminRotation(p.spec.AdminKeyRotation, a)
	a.Pending, a.FailedAttempts, a.LastFailureTime = nil, 0, nil
	msg := fmt.Sprintf("admin key %s replaced %s (%s); %s is revoked at %s", a.ID, pend.OldID, reason, pend.OldID, a.Previous.RevokeAfter.UTC().Format(time.RFC3339))
	r.Recorder.Eventf(p.obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonAdminKeyRotated, "RotateAdminKey", "%s", msg)
	setCondition(&st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, true, v1alpha1.ReasonAdminKeyRotated, msg)
	p.audits = append(p.audits, r.adminRecord(p, audit.AdminKeyRotated, a.ID, a.Prefix, reason))
	if grace == 0 {
		if err := r.crash("admin-before-revoke"); err != nil {
			return ctrl.Result{}, err
		}
		if res, done, err := r.revokePreviousAdmin(ctx, p); !done || err != nil {
			return res, err
		}
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: earliest(until(p.now, a.Previous.RevokeAfter.Time))}, nil
}

// revokePreviousAdmin revokes the previous admin key with the key the Secret
// holds now; done is true once it is gone.
func (r *IssuerReconciler) revokePreviousAdmin(ctx context.Context, p *adminPass) (ctrl.Result, bool, error) {
	a := p.st.AdminKey
	prev := a.Previous
	if prev == nil {
		return ctrl.Result{}, true, nil
	}
	fail := func(f *failure) (ctrl.Result, bool, error) {
		prev.Attempts++
		prev.LastError = f.Reason
		d := backoff(prev.Attempts)
		if f.RetryAfter > d {
			d = f.RetryAfter
		}
		prev.RevokeAfter = *mtime(p.now.Add(d))
		msg := fmt.Sprintf("revoking the previous admin key %s failed (%s, attempt %d): %s; retried at %s", prev.ID, f.Reason, prev.Attempts, f.Message, prev.RevokeAfter.UTC().Format(time.RFC3339))
		if !hasReason(p.st.Conditions, v1alpha1.ConditionAdminKeyRotation, v1alpha1.ReasonAdminKeyRevokeFailed) {
			r.Recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonAdminKeyRevokeFailed, "RevokeAdminKey", "%s", msg)
		}
		setCondition(&p.st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, false, v1alpha1.ReasonAdminKeyRevokeFailed, msg)
		rec := r.adminRecord(p, audit.AdminKeyRevokeFailed, prev.ID, prev.Prefix, f.Reason)
		rec.Message = f.Message
		p.audits = append(p.audits, rec)
		return ctrl.Result{RequeueAfter: d}, false, nil
	}
	_, value, f := r.adminSecret(ctx, p)
	if f != nil {
		return fail(f)
	}
	c, f := r.adminClient(p, value)
	if f != nil {
		return fail(f)
	}
	if err := c.RevokeKey(ctx, prev.ID, revokeIdempotencyKey(prev.ID)); err != nil {
		return fail(classifyReevit(err))
	}
	if err := r.crash("admin-after-revoke"); err != nil {
		// As if killed: status still names it; the revocation is repeated
		// (a 404 counts as revoked).
		return ctrl.Result{}, false, err
	}
	p.audits = append(p.audits, r.adminRecord(p, audit.AdminKeyRevoked, prev.ID, prev.Prefix, "Replaced"))
	r.Recorder.Eventf(p.obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonRevoked, "RevokeAdminKey", "previous admin key %s revoked", prev.ID)
	a.Previous = nil
	msg := "admin key " + a.ID + " is active"
	if a.NextRotationTime != nil {
		msg += "; next rotation at " + a.NextRotationTime.UTC().Format(time.RFC3339)
	}
	setCondition(&p.st.Conditions, p.obj.GetGeneration(), v1alpha1.ConditionAdminKeyRotation, true, v1alpha1.ReasonSucceeded, msg)
	return ctrl.Result{}, true, nil
}
