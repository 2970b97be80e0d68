package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/secretsync"
)

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

// failure is a classified runtime failure: the condition reason, a message
// that tells a person what to do, and when to try again.
type failure struct {
	Reason  string
	Message string
	// RetryAfter > 0 asks for a retry at that delay (429).
	RetryAfter time.Duration
	// Transient failures back off exponentially and retry by themselves.
	Transient bool
	// Err is the underlying error, never containing a secret.
	Err error
}

func (f *failure) Error() string { return f.Reason + ": " + f.Message }

// secretNotFound builds the failure for a missing input Secret or key.
func secretNotFound(kind, ns string, ref v1alpha1.SecretKeyReference, keyMissing bool) *failure {
	if keyMissing {
		return &failure{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
			"Secret %s/%s has no data key %q: add it, or set %s.key to the key that holds the credential", ns, ref.Name, ref.Key, kind)}
	}
	return &failure{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
		"Secret %s/%s not found: create it there with the credential under data key %q", ns, ref.Name, ref.Key)}
}

// classifyReevit turns a Reevit client error into a failure.
func classifyReevit(err error) *failure {
	var (
		unauth  *reevit.UnauthorizedError
		forbid  *reevit.ForbiddenError
		limited *reevit.RateLimitedError
		server  *reevit.ServerError
		network *reevit.NetworkError
		bad     *reevit.BadRequestError
		insec   *reevit.InsecureURLError
		config  *reevit.ConfigError
	)
	switch {
	case errors.As(err, &config):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "the Reevit request cannot be sent: " + config.Error() + "; fix the issuer (orgId, actorId) or the admin-key Secret (one key, no line breaks)"}
	case errors.As(err, &unauth):
		return &failure{Reason: v1alpha1.ReasonUnauthorized, Err: err, Message: "Reevit rejected the admin key (401): put a valid, unrevoked key of this organisation into the admin-key Secret"}
	case errors.As(err, &forbid):
		scope := forbid.Scope
		if scope == "" {
			scope = "api_keys:read, api_keys:write or a scope in spec.scopes"
		}
		return &failure{Reason: v1alpha1.ReasonMissingScope, Err: err, Message: fmt.Sprintf("the admin key lacks the scope %s (403): issue an admin key that holds it, or drop it from spec.scopes", scope)}
	case errors.As(err, &limited):
		d := capRetryAfter(limited.RetryAfter)
		return &failure{Reason: v1alpha1.ReasonRateLimited, Err: err, RetryAfter: d, Transient: true, Message: fmt.Sprintf("Reevit rate limit reached (429): retrying after %s", d)}
	case errors.As(err, &server):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: fmt.Sprintf("Reevit answered %d: retrying with backoff", server.StatusCode)}
	case errors.As(err, &network):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Reevit could not be reached (" + network.Error() + "): retrying with backoff"}
	case errors.As(err, &bad):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "Reevit refused the request: " + bad.Error() + "; check spec.scopes and spec.displayName"}
	case errors.As(err, &insec):
		return &failure{Reason: v1alpha1.ReasonInsecureEndpoint, Err: err, Message: "the issuer's spec.url uses http://, which this manager refuses: use https:// (http:// needs the --allow-http-endpoints flag, meant for local simulators)"}
	}
	return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Reevit request failed: " + err.Error()}
}

// classifyRevio turns a Rev.io client error into a failure.
func classifyRevio(err error) *failure {
	var (
		invalid *revio.InvalidAPIKeyError
		unauth  *revio.UnauthorizedError
		limited *revio.RateLimitedError
		server  *revio.ServerError
		network *revio.NetworkError
		insec   *revio.InsecureURLError
		config  *revio.ConfigError
	)
	switch {
	case errors.As(err, &config):
		return &failure{Reason: v1alpha1.ReasonBadRequest, Err: err, Message: "the Rev.io request cannot be sent: " + config.Error() + "; fix the issuer (url, host)"}
	case errors.As(err, &invalid):
		return &failure{Reason: v1alpha1.ReasonInvalidAPIKey, Err: err, Message: fmt.Sprintf("Rev.io rejected the API key (%d): put a valid key into the API-key Secret; Keywarden retries when the Secret or the spec changes", invalid.StatusCode)}
	case errors.As(err, &unauth):
		return &failure{Reason: v1alpha1.ReasonVerificationFailed, Err: err, Transient: true, Message: "Rev.io answered 401 to the new token on spec.verify.path: exchanging again with backoff; the previous token stays in place"}
	case errors.As(err, &limited):
		d := capRetryAfter(limited.RetryAfter)
		return &failure{Reason: v1alpha1.ReasonRateLimited, Err: err, RetryAfter: d, Transient: true, Message: fmt.Sprintf("Rev.io rate limit reached (429): retrying after %s", d)}
	case errors.As(err, &server):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: fmt.Sprintf("Rev.io answered %d: retrying with backoff", server.StatusCode)}
	case errors.As(err, &network):
		return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Rev.io could not be reached (" + network.Error() + "): retrying with backoff"}
	case errors.As(err, &insec):
		return &failure{Reason: v1alpha1.ReasonInsecureEndpoint, Err: err, Message: "the issuer's spec.url uses http://, which this manager refuses: use https:// (http:// needs the --allow-http-endpoints flag, meant for local simulators)"}
	}
	return &failure{Reason: v1alpha1.ReasonAPIUnavailable, Err: err, Transient: true, Message: "Rev.io request failed: " + err.Error()}
}

// classifySecretWrite turns an output-Secret write error into a failure.
func classifySecretWrite(err error) *failure {
	var conflict *secretsync.ConflictError
	if errors.As(err, &conflict) {
		return &failure{Reason: v1alpha1.ReasonSecretConflict, Err: err, Message: conflict.Error()}
	}
	return &failure{Reason: v1alpha1.ReasonSecretWriteFailed, Err: err, Transient: true, Message: "writing the output Secret failed: " + err.Error() + "; check the manager's RBAC for secrets"}
}

// failureRecord points at the fields of a status that record consecutive
// failures.
type failureRecord struct {
	conds    *[]metav1.Condition
	attempts *int32
	last     **metav1.Time
	needs    *bool
}

// recordFailure sets the failing step's condition, counts the attempt,
// says whether it needs a person, and tells it in a Warning event.
func recordFailure(rec recorder.EventRecorder, obj client.Object, kind, action string, fr failureRecord, now time.Time, f *failure, condType string) {
	setCondition(fr.conds, obj.GetGeneration(), condType, false, f.Reason, f.Message)
	*fr.attempts++
	*fr.last = mtime(now)
	*fr.needs = needsPerson(f)
	metrics.Renewals.WithLabelValues(kind, "failure").Inc()
	rec.Eventf(obj, nil, corev1.EventTypeWarning, f.Reason, action, "%s", f.Message)
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

// setCondition sets one condition with the object's generation.
func setCondition(conds *[]metav1.Condition, gen int64, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// writeStatus writes obj's status if it differs from orig's, with
// optimistic locking so a stale read can never overwrite newer state. It
// is the one status write of every kind, with one conflict policy:
//   - a conflict caused by metadata alone (an annotation, a label, a
//     finalizer: the generation and the status the pass started from are
//     still the server's) is not a stale read, so the same status is written
//     once more onto the new version: what the pass did (a failed call, a
//     revocation) is recorded, not done again;
//   - any other conflict means the pass worked from a stale copy: nothing is
//     an error, and again asks for a pass shortly (staleRequeue) on the
//     newer object;
//   - an object already gone needs nothing more.
func writeStatus(ctx context.Context, c client.Client, sup *supersededSet, obj, orig client.Object, status, origStatus any) (again bool, err error) {
	if equality.Semantic.DeepEqual(status, origStatus) {
		return false, nil
	}
	for try := 0; ; try++ {
		before := orig.GetResourceVersion()
		err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case err == nil:
			sup.add(obj.GetUID(), before)
			return false, nil
		case apierrors.IsNotFound(err):
			return false, nil
		case !apierrors.IsConflict(err):
			return false, err
		case try > 0:
			return true, nil
		}
		fresh, ok := metadataMoved(ctx, c, orig)
		if !ok {
			return true, nil
		}
		if err := withStatusOf(obj, fresh, obj); err != nil {
			return false, err
		}
		orig = fresh
	}
}

// statusWritten turns writeStatus's answer into the pass's result: ok when
// the status is stored (or needed no write); otherwise the result to return
// (a stale read looks again shortly).
func statusWritten(again bool, err error) (res ctrl.Result, ok bool, werr error) {
	switch {
	case err != nil:
		return ctrl.Result{}, false, fmt.Errorf("patch status: %w", err)
	case again:
		return ctrl.Result{RequeueAfter: staleRequeue}, false, nil
	}
	return ctrl.Result{}, true, nil
}

// metadataMoved reads obj's current version and reports whether only its
// metadata moved since orig: same generation, same status.
func metadataMoved(ctx context.Context, c client.Client, orig client.Object) (client.Object, bool) {
	fresh := orig.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(orig), fresh); err != nil ||
		fresh.GetResourceVersion() == orig.GetResourceVersion() || fresh.GetGeneration() != orig.GetGeneration() {
		return nil, false
	}
	a, err1 := runtime.DefaultUnstructuredConverter.ToUnstructured(fresh)
	b, err2 := runtime.DefaultUnstructuredConverter.ToUnstructured(orig)
	if err1 != nil || err2 != nil || !equality.Semantic.DeepEqual(a["status"], b["status"]) {
		return nil, false
	}
	return fresh, true
}

// withStatusOf sets out to base with the status of src (objects of one type).
func withStatusOf(src, base, out client.Object) error {
	s, err := runtime.DefaultUnstructuredConverter.ToUnstructured(src)
	if err != nil {
		return err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(base)
	if err != nil {
		return err
	}
	u["status"] = s["status"]
	merged := reflect.New(reflect.TypeOf(base).Elem()).Interface().(client.Object)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, merged); err != nil {
		return err
	}
	reflect.ValueOf(out).Elem().Set(reflect.ValueOf(merged).Elem())
	return nil
}

// staleRequeue is how soon a reconcile that read a superseded object looks again.
const staleRequeue = 200 * time.Millisecond

// superseded remembers, per object, the last few resourceVersions this
// process replaced with its own writes. A reconcile started by an event (our
// own Secret write, say) can read the object from the cache before the cache
// has seen our status write; acting on that stale status would repeat an
// exchange or replay a create. Such a read is recognised and retried shortly
// instead. Status writes are filtered from the watch, hence the short requeue.
//
// One set per manager (Options.superseded, made by Setup), shared by its
// reconcilers: a restarted manager starts with none, as a new process does.
func newSupersededSet() *supersededSet { return &supersededSet{m: map[types.UID][]string{}} }

type supersededSet struct {
	mu sync.Mutex
	m  map[types.UID][]string
}

func (s *supersededSet) add(uid types.UID, rv string) {
	if rv == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append(s.m[uid], rv)
	if len(l) > 8 {
		l = l[len(l)-8:]
	}
	s.m[uid] = l
}

// stale reports whether obj is a version this process has already replaced.
func (s *supersededSet) stale(obj client.Object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.m[obj.GetUID()], obj.GetResourceVersion())
}

// forget drops an object's entries once it is deleted.
func (s *supersededSet) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, uid)
}

// mtime truncates to seconds, the precision status keeps (see cert-manager PR 4399).
func mtime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t.Truncate(time.Second))
	return &m
}

// until is the delay from now to t, at least one second.
func until(now, t time.Time) time.Duration {
	return max(t.Sub(now), time.Second)
}

// readSecretKey reads one data key of a referenced Secret (same namespace)
// through the secretReader (the API server, or its remembered copy of the
// version the metadata cache shows). It returns the value and the Secret's
// resourceVersion (also when the key is missing), or a failure: SecretNotFound
// for a missing Secret or key (the Secret watch brings the object back),
// SecretReadFailed for any other error (retried with backoff). field names
// the spec field for the message.
func readSecretKey(ctx context.Context, r *secretReader, ns string, ref v1alpha1.SecretKeyReference, field string) (value, version string, f *failure) {
	if ref.Key == "" {
		ref.Key = "apiKey"
	}
	s, err := r.getInput(ctx, ns, ref.Name, ref.Key)
	if err != nil {
		return "", "", &failure{Reason: v1alpha1.ReasonSecretReadFailed, Transient: true, Err: err, Message: "reading Secret " + ref.Name + " failed: " + err.Error() + "; check the manager's RBAC for secrets; retrying with backoff"}
	}
	if s == nil {
		return "", "", secretNotFound(field, ns, ref, false)
	}
	if len(s.Data[ref.Key]) == 0 {
		return "", s.ResourceVersion, secretNotFound(field, ns, ref, true)
	}
	return string(s.Data[ref.Key]), s.ResourceVersion, nil
}

// secretVersion is the resourceVersion of a Secret in the metadata cache
// ("" when absent or not cached yet).
func secretVersion(ctx context.Context, cache client.Reader, ns, name string) string {
	m := secretMetadata()
	if err := cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		return ""
	}
	return m.ResourceVersion
}

// jitter is a fraction in [0,1) that spreads work scheduled together
// (refreshes, drift checks); tests fix it through Options.Jitter.
func (o Options) jitter() float64 {
	if o.Jitter != nil {
		return o.Jitter()
	}
	return rand.Float64()
}

func optTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return mtime(t)
}

// hasReason reports whether a condition of the type has the reason.
func hasReason(conds []metav1.Condition, typ, reason string) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Reason == reason
}
