package controller

import (
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
)

// One rule holds every kind back after a failure: "wait until the inputs
// change or the backoff ends". The retry record (v1alpha1.RetryStatus) is
// the same in the three status types; each kind says only what its inputs
// are (inputs*, below) and the step that fails calls fail, which records the
// failure into the condition the step owns, the retry record and one event.

// held reports whether the last failure recorded in r still holds the
// object back, and for how long. waitedOn is the version of the inputs the
// failure was met with, inputs the version now: a change lifts any hold. A
// failure that needs a person holds until then (wait 0: no timer, a watch
// brings the object back); any other until its retry time.
func held(r v1alpha1.RetryStatus, waitedOn, inputs string, now time.Time) (wait time.Duration, isHeld bool) {
	if r.FailedAttempts == 0 || waitedOn != inputs {
		return 0, false
	}
	if r.NeedsAttention {
		return 0, true
	}
	var retry time.Time
	switch {
	case r.NextRetryTime != nil:
		retry = r.NextRetryTime.Time
	case r.LastFailureTime != nil:
		retry = r.LastFailureTime.Add(backoff(r.FailedAttempts))
	default:
		return 0, false
	}
	if now.Before(retry) {
		return retry.Sub(now), true
	}
	return 0, false
}

// recordRetry counts one more failure in r and returns the delay to its
// retry: 0 when none is scheduled (a failure that needs a person, or one a
// watch brings back). expiresAt is when the credential in the Secret expires
// (zero: never, or unknown): a retry always comes well before it.
func recordRetry(r *v1alpha1.RetryStatus, f *failure, needsAttention bool, now, expiresAt time.Time) time.Duration {
	r.FailedAttempts++
	r.LastFailureTime = mtime(now)
	r.NeedsAttention = needsAttention
	r.NextRetryTime = nil
	if !f.Transient {
		return 0
	}
	d := retryDelay(r.FailedAttempts, f.RetryAfter, now, expiresAt)
	r.NextRetryTime = mtime(now.Add(d))
	return d
}

// liftHold ends the hold of a failure whose cause is gone (a conflicting
// Secret deleted, an issuer created, a namespace labelled): the next attempt
// is due now. The count of attempts stays until one succeeds.
func liftHold(r *v1alpha1.RetryStatus) {
	r.NeedsAttention, r.LastFailureTime, r.NextRetryTime = false, nil, nil
}

// liftResolved ends the hold of a failure whose cause this pass found gone:
// a SecretConflict (getting past the ownership step means no foreign Secret
// holds the output name any more; SecretSynced then says so), an issuer
// gate (gateLifted: the issuer created, the namespace labelled, the policy
// widened), or an issuer that proved itself since the failure
// (issuerRecovered). Called once those steps have passed.
func liftResolved(conds *[]metav1.Condition, generation int64, r *v1alpha1.RetryStatus, issuerRecovered bool) {
	if issuerRecovered {
		liftHold(r)
	}
	if hasReason(*conds, v1alpha1.ConditionSecretSynced, v1alpha1.ReasonSecretConflict) {
		setCondition(conds, generation, v1alpha1.ConditionSecretSynced, false, v1alpha1.ReasonProgressing, "the conflicting Secret is gone")
		liftHold(r)
	}
	if gateLifted(*conds) {
		liftHold(r)
	}
}

// fail records a failure into condition condType (the failing step's, see
// runSteps): that condition, the retry record, whether it needs a person,
// the failure counter and one Warning event. It ends the pass's main path,
// asking for the retry when the failure is transient. The last good
// credential stays in its Secret. Every ApiKey and RevioToken pass, the
// finalizer's too, fails through it.
func (r *credentialReconciler) fail(obj client.Object, now time.Time, condType string, f *failure) stepResult {
	t := retryOf(obj)
	setCondition(t.conds, obj.GetGeneration(), condType, false, f.Reason, f.Message)
	d := recordRetry(t.retry, f, needsPerson(f), now, t.expiresAt)
	metrics.Renewals.WithLabelValues(t.kind, "failure").Inc()
	r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, f.Reason, t.action, "%s", f.Message)
	return stepResult{RequeueAfter: d, Stop: true}
}

// retryTarget is what fail needs of an object: its conditions and retry
// record, its kind, and when its credential expires.
type retryTarget struct {
	kind, action string
	conds        *[]metav1.Condition
	retry        *v1alpha1.RetryStatus
	expiresAt    time.Time
}

func retryOf(obj client.Object) retryTarget {
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		return retryTarget{kind: kindApiKey, action: "Reconcile", conds: &o.Status.Conditions, retry: &o.Status.RetryStatus}
	case *v1alpha1.RevioToken:
		t := retryTarget{kind: kindRevioToken, action: "Refresh", conds: &o.Status.Conditions, retry: &o.Status.RetryStatus}
		if o.Status.ExpiresAt != nil {
			t.expiresAt = o.Status.ExpiresAt.Time
		}
		return t
	}
	panic(fmt.Sprintf("no retry record in %T", obj))
}

// apiKeyWaitedOn is the version of an ApiKey's inputs its last attempt
// answered: generation, issuer and admin-key Secret, trigger annotations.
func apiKeyWaitedOn(ak *v1alpha1.ApiKey) string {
	st := &ak.Status
	return inputsVersion(st.ObservedGeneration, st.AdminKeySecretVersion, st.LastRotateRequest, st.LastCompromisedRequest)
}

// apiKeyInputs is the version of an ApiKey's inputs now (adminVersion ""
// when its issuer is not known). A trigger annotation not acted on yet
// counts only when no creation is recorded: a recorded one is the attempt
// that failed (or will act on the trigger), and must keep its backoff.
func apiKeyInputs(ak *v1alpha1.ApiKey, adminVersion string) string {
	st := &ak.Status
	if adminVersion == "" {
		adminVersion = st.AdminKeySecretVersion
	}
	rotate, compromised := st.LastRotateRequest, st.LastCompromisedRequest
	if st.PendingCreate == nil {
		rotate = triggerVersion(ak.Annotations[v1alpha1.AnnotationRotate], rotate)
		compromised = triggerVersion(ak.Annotations[v1alpha1.AnnotationCompromised], compromised)
	}
	return inputsVersion(ak.Generation, adminVersion, rotate, compromised)
}

// revioTokenWaitedOn is the version of a RevioToken's inputs its last
// attempt answered: generation, issuer and API-key Secret, refresh annotation.
func revioTokenWaitedOn(rt *v1alpha1.RevioToken) string {
	st := &rt.Status
	return inputsVersion(st.ObservedGeneration, st.APIKeySecretVersion, st.LastRefreshRequest)
}

// revioTokenInputs is the version of a RevioToken's inputs now
// (inputVersion "" when its issuer is not known).
func revioTokenInputs(rt *v1alpha1.RevioToken, inputVersion string) string {
	st := &rt.Status
	if inputVersion == "" {
		inputVersion = st.APIKeySecretVersion
	}
	return inputsVersion(rt.Generation, inputVersion, triggerVersion(rt.Annotations[v1alpha1.AnnotationRefresh], st.LastRefreshRequest))
}

// triggerVersion is the trigger annotation value that counts: a new value,
// or the last one acted on (a removed annotation triggers nothing).
func triggerVersion(value, last string) string {
	if newTrigger(value, last) {
		return value
	}
	return last
}

// inputsVersion joins a generation and input versions into one string.
func inputsVersion(generation int64, versions ...string) string {
	s := fmt.Sprint(generation)
	for _, v := range versions {
		s += "\x00" + v
	}
	return s
}

// needsPerson reports whether a failure is one no retry fixes: the object
// waits for a change of its spec, its issuer, the credential Secret or an
// annotation (status.needsAttention).
func needsPerson(f *failure) bool {
	if f.Transient {
		return false
	}
	switch f.Reason {
	case v1alpha1.ReasonInvalidAPIKey, v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonInsecureEndpoint,
		v1alpha1.ReasonSecretConflict, v1alpha1.ReasonUnauthorized, v1alpha1.ReasonMissingScope,
		v1alpha1.ReasonBadRequest, v1alpha1.ReasonEnvironmentMismatch, v1alpha1.ReasonEndpointNotAllowed,
		v1alpha1.ReasonSecretTypeNotAllowed:
		return true
	}
	return false
}

// expiredRetryCap bounds retries while the token in the Secret has expired.
const expiredRetryCap = 10 * time.Second

// retryDelay is the wait after a transient failure: retryAfter when the API
// asked for one, else exponential backoff, and in both cases no later than a
// third of the time the current token has left, so a retry always comes well
// before it expires.
func retryDelay(attempts int32, retryAfter time.Duration, failedAt, expiresAt time.Time) time.Duration {
	d := backoff(attempts)
	if retryAfter > 0 {
		d = retryAfter
	}
	if !expiresAt.IsZero() {
		left := expiresAt.Sub(failedAt)
		switch {
		case left > 0 && d > left/3:
			d = max(left/3, time.Second)
		case left <= 0 && retryAfter == 0:
			// The Secret holds an expired token: every minute without a
			// new one is an outage for its workloads.
			d = min(d, expiredRetryCap)
		}
	}
	return d
}

const (
	// backoffBase is the first retry delay after a transient failure.
	backoffBase = 5 * time.Second
	// backoffCap bounds the retry delay for transient failures. It is far
	// below the workqueue's default 1000 s: a fixed cause (an API back, an
	// RBAC rule restored) produces no event, so the next retry is what
	// notices it.
	backoffCap = time.Minute
)

// backoff is the delay before retry number attempts (1-based) after a
// transient failure: exponential from backoffBase, capped at backoffCap.
func backoff(attempts int32) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := float64(backoffBase) * math.Pow(2, float64(attempts-1))
	return time.Duration(min(d, float64(backoffCap)))
}

// maxRetryAfter bounds any delay a server dictates: a 429 never parks an
// object for more than an hour, whatever retry_after says.
const maxRetryAfter = time.Hour

// capRetryAfter clamps a server's retry delay to (0, maxRetryAfter]; a
// negative or overflowed value becomes the backoff base.
func capRetryAfter(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return backoffBase
	case d > maxRetryAfter:
		return maxRetryAfter
	}
	return d
}

// gateToldAlready handles an object its issuer cannot serve (missing, or a
// policy violation): it sets keywarden_policy_violation for a violation and
// reports whether Issued already tells this failure. A failure that needs no
// retry is told once: the issuer and spec watches bring the object back.
func gateToldAlready(kind string, obj client.Object, conds []metav1.Condition, f *failure) bool {
	if f.Reason == v1alpha1.ReasonPolicyViolation {
		metrics.PolicyViolations.WithLabelValues(kind, obj.GetNamespace(), obj.GetName()).Set(1)
	}
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionIssued)
	return c != nil && c.Reason == f.Reason && c.Message == f.Message && !f.Transient
}

// gateLifted reports whether the last failure recorded was the issuer
// gate's: no issuer, a policy violation (a namespace not selected, scopes
// or environment refused) or an issuer being deleted. Asked once the gate
// has passed, it means the cause was fixed (the issuer created, the
// namespace labelled, the policy widened): a change to act on at once, not
// a backoff to sit out.
func gateLifted(conds []metav1.Condition) bool {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionIssued)
	if c == nil || c.Status != metav1.ConditionFalse {
		return false
	}
	switch c.Reason {
	case v1alpha1.ReasonIssuerNotFound, v1alpha1.ReasonPolicyViolation, v1alpha1.ReasonIssuerInUse:
		return true
	}
	return false
}
