package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// Workloads are read (get, and list for selector targets) with the uncached
// reader and patched; they are never watched nor cached.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;patch

// workloadKey names one workload.
type workloadKey struct{ Namespace, Kind, Name string }

// restartWant is one credential's request: the version of its Secret the
// workload's pod template should record.
type restartWant struct {
	secret, hash string
	always       bool          // the target says when: Always
	by           client.Object // the credential, for its event
}

// restarter gathers restart requests per workload: the first request for a
// workload opens a window, and when it closes one merge patch of the pod
// template carries every version asked for meanwhile (one rollout, however
// many credentials changed). Requests live in memory only: a request lost
// with the process is asked again by the credential's next reconcile
// (resume), which a new process runs for every object at start.
type restarter struct {
	client client.Client
	reader client.Reader
	rec    recorder.EventRecorder
	window time.Duration
	// queue holds each workload with pending requests until its window
	// closes (then, under a budget, the poll of the rollouts in flight);
	// nil when window is 0 and no budget is set (requests are patched at once).
	queue workqueue.TypedDelayingInterface[workloadKey]

	// budget bounds the rollouts in flight (restart_budget.go); clock
	// times them, inflightLimit frees a slot a rollout held this long.
	budget        restartBudget
	clock         clock.PassiveClock
	inflightLimit time.Duration

	mu      sync.Mutex
	pending map[workloadKey]map[string]restartWant // by HashAnnotation
	perNS   map[string]int
	// waiting holds the workloads whose window closed and whose restart
	// waits for the budget, in order; inflight those rolling out.
	waiting    []*queuedRestart
	inflight   map[workloadKey]inFlight
	inflightNS map[string]int
}

// setupRestarts makes the manager's restarter (Options.RestartCoalesceWindow,
// Options.MaxConcurrentRestarts and MaxConcurrentRestartsPerNamespace) and
// runs it with the manager, under the leader's lease.
func setupRestarts(mgr ctrl.Manager, o Options) (*restarter, error) {
	r := &restarter{client: mgr.GetClient(), reader: mgr.GetAPIReader(), rec: mgr.GetEventRecorder("keywarden"),
		window: o.RestartCoalesceWindow, pending: map[workloadKey]map[string]restartWant{}, perNS: map[string]int{},
		budget: restartBudget{global: o.MaxConcurrentRestarts, perNS: o.MaxConcurrentRestartsPerNamespace},
		clock:  o.Clock, inflightLimit: o.RolloutWaitLimit,
		inflight: map[workloadKey]inFlight{}, inflightNS: map[string]int{}}
	if r.inflightLimit <= 0 {
		r.inflightLimit = 15 * time.Minute
	}
	if r.window > 0 || r.budget.enabled() {
		r.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[workloadKey]{Clock: o.Clock})
	}
	return r, mgr.Add(r)
}

// Start patches workloads as their windows close, until ctx ends.
func (r *restarter) Start(ctx context.Context) error {
	if r.queue == nil {
		<-ctx.Done()
		return nil
	}
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	if r.budget.enabled() {
		// Before anything is patched: the rollouts a previous process
		// started still hold their slots.
		r.discoverInFlight(ctx)
		r.queue.AddAfter(pollKey, budgetPoll)
	}
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			r.forgetAll()
			return nil
		}
		switch {
		case key == pollKey:
			r.poll(ctx)
			r.admit(ctx)
			r.queue.AddAfter(pollKey, budgetPoll)
		case r.budget.enabled():
			r.enqueue(key, r.take(key))
			r.admit(ctx)
		default:
			r.flush(ctx, key, r.take(key))
		}
		r.queue.Done(key)
	}
}

// request asks for the workloads targets pick to be restarted for version
// hash (secretsync.RestartHash) of Secret secretName, which credential obj
// writes. Missing and refused workloads get a Warning event on obj now; the
// others are patched when their window closes.
func (r *restarter) request(ctx context.Context, obj client.Object, secretName string, targets []v1alpha1.RolloutTarget, hash string) {
	if len(targets) == 0 {
		return
	}
	res, err := secretsync.Resolve(ctx, r.reader, obj.GetNamespace(), secretName, targets, hash)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "rollout restart failed")
		r.rec.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetMissing, "RolloutRestart", "restarting workloads failed: %v", err)
	}
	for _, p := range res.Problems {
		r.rec.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetMissing, "RolloutRestart", "%s; fix spec.rolloutRestart", p)
	}
	for _, o := range res.Outcomes {
		switch {
		case o.Missing:
			r.rec.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetMissing, "RolloutRestart",
				"%s %s not found: it was not restarted; fix spec.rolloutRestart or create it", o.Target.Kind, o.Name)
		case o.Refused:
			r.rec.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetRefused, "RolloutRestart",
				"%s %s does not read Secret %s (env, envFrom or a volume): not restarted; mount the Secret, or annotate the workload %s=%s to opt in",
				o.Target.Kind, o.Name, secretName, secretsync.AnnotationAllowRestart, secretName)
		case o.Skipped:
			r.rec.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonRolloutRestartNotNeeded, "RolloutRestart",
				"%s %s: %s", o.Target.Kind, o.Name, o.Why)
		case o.Stale:
			r.add(ctx, workloadKey{obj.GetNamespace(), o.Target.Kind, o.Name},
				restartWant{secret: secretName, hash: hash, always: o.Target.When == v1alpha1.RestartWhenAlways, by: obj})
		}
	}
}

// resume asks again, without events, for the restarts a lost request left
// undone: each workload the targets pick that consumes the output Secret
// existing and records another version of it. A workload recording only
// the annotation of an older release is left alone: that release restarted
// it for every change. The request is idempotent: one already pending for
// the same version changes nothing. It returns what the targets pick, for
// a judgement of their rollouts; ok is false when they could not be read.
func (r *restarter) resume(ctx context.Context, obj client.Object, targets []v1alpha1.RolloutTarget, existing *corev1.Secret) (outcomes []secretsync.RolloutOutcome, ok bool) {
	if len(targets) == 0 || existing == nil || !secretsync.Intact(existing) {
		return nil, false
	}
	hash := secretsync.RestartHash(existing.Data)
	res, err := secretsync.Resolve(ctx, r.reader, obj.GetNamespace(), existing.Name, targets, hash)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "check rollout targets")
		return nil, false
	}
	for _, o := range res.Outcomes {
		if !o.Stale {
			continue
		}
		if h, perSecret := secretsync.TemplateHash(o.Workload, existing.Name); !perSecret && h != "" {
			continue
		}
		r.add(ctx, workloadKey{obj.GetNamespace(), o.Target.Kind, o.Name},
			restartWant{secret: existing.Name, hash: hash, always: o.Target.When == v1alpha1.RestartWhenAlways, by: obj})
	}
	return res.Outcomes, true
}

// add records one want; the first for a workload opens its window. With
// no window the workload is patched at once.
func (r *restarter) add(ctx context.Context, key workloadKey, w restartWant) {
	w.by = w.by.DeepCopyObject().(client.Object)
	if r.queue == nil {
		r.flush(ctx, key, map[string]restartWant{secretsync.HashAnnotation(w.secret): w})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[key]
	if p == nil {
		p = map[string]restartWant{}
		r.pending[key] = p
		r.queue.AddAfter(key, r.window)
		r.perNS[key.Namespace]++
		metrics.RolloutsPending.WithLabelValues(key.Namespace).Set(float64(r.perNS[key.Namespace]))
	}
	p[secretsync.HashAnnotation(w.secret)] = w
}

// take removes and returns the wants of one workload.
func (r *restarter) take(key workloadKey) map[string]restartWant {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[key]
	if !ok {
		return nil
	}
	delete(r.pending, key)
	if r.perNS[key.Namespace]--; r.perNS[key.Namespace] <= 0 {
		delete(r.perNS, key.Namespace)
	}
	// A namespace's series stays, at 0, once it had a restart: a gauge
	// that vanished between scrapes would read as "no data", not "none".
	metrics.RolloutsPending.WithLabelValues(key.Namespace).Set(float64(r.perNS[key.Namespace]))
	return p
}

// forgetAll drops what a stopping process could not patch: the
// credentials' next reconciles ask again.
func (r *restarter) forgetAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ns := range r.perNS {
		metrics.RolloutsPending.WithLabelValues(ns).Set(0)
	}
	r.pending, r.perNS = map[workloadKey]map[string]restartWant{}, map[string]int{}
	// The queue and the rollouts in flight are derived again by the next
	// leader: from the credentials (resume) and the workloads (discoverInFlight).
	r.waiting, r.inflight, r.inflightNS = nil, map[workloadKey]inFlight{}, map[string]int{}
	metrics.RestartQueueLength.Set(0)
	metrics.RestartsInFlight.Set(0)
}

// flush reads the workload afresh and patches its pod template once with
// every wanted version it still lacks (it may have stopped reading a
// Secret, or been restarted meanwhile). A failed patch is tried again after
// another window. It reports whether it patched.
func (r *restarter) flush(ctx context.Context, key workloadKey, wants map[string]restartWant) bool {
	if len(wants) == 0 {
		return false
	}
	log := ctrl.LoggerFrom(ctx).WithValues("kind", key.Kind, "namespace", key.Namespace, "name", key.Name)
	obj, err := secretsync.NewWorkload(key.Kind)
	if err != nil {
		return false
	}
	if err := r.reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, obj); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Error(err, "read workload to restart")
			r.retry(key, wants)
		}
		return false
	}
	annotations := map[string]string{}
	var by []restartWant
	for _, k := range slices.Sorted(maps.Keys(wants)) {
		if w := wants[k]; secretsync.Stale(obj, w.secret, w.hash, w.always) {
			annotations[k] = w.hash
			by = append(by, w)
		}
	}
	if len(by) == 0 {
		return false
	}
	if err := secretsync.PatchTemplate(ctx, r.client, obj, annotations); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Error(err, "restart workload")
			r.retry(key, wants)
		}
		return false
	}
	metrics.RolloutPatches.WithLabelValues(key.Kind).Inc()
	note := ""
	if len(by) > 1 {
		names := make([]string, len(by))
		for i, w := range by {
			names[i] = w.secret
		}
		note = fmt.Sprintf(" (one restart for %d changed Secrets: %s)", len(by), strings.Join(names, ", "))
	}
	for _, w := range by {
		_, why := secretsync.RestartReason(obj, w.secret, w.always)
		r.rec.Eventf(w.by, nil, corev1.EventTypeNormal, v1alpha1.ReasonRolloutRestarted, "RolloutRestart",
			"%s %s restarted to pick up the new credential%s: %s", key.Kind, key.Name, note, why)
	}
	return true
}

// retry puts wants back for another window, unless a newer want for the
// same Secret arrived meanwhile.
func (r *restarter) retry(key workloadKey, wants map[string]restartWant) {
	if r.queue == nil {
		return // no window: the credential's next reconcile asks again
	}
	for _, w := range wants {
		r.mu.Lock()
		newer := r.pending[key] != nil && r.pending[key][secretsync.HashAnnotation(w.secret)].hash != ""
		r.mu.Unlock()
		if !newer {
			r.add(context.Background(), key, w)
		}
	}
}

// stepResumeRestarts asks again for the restarts a lost request left
// undone (restarter.resume), before the revocations look at the rollouts,
// and judges the rollouts (judgeRollouts, which owns RolloutsComplete).
func (r *ApiKeyReconciler) stepResumeRestarts(ctx context.Context, p *apiKeyPass) (stepResult, error) {
	if p.foreign {
		return next(0)
	}
	outcomes, ok := r.restarts.resume(ctx, p.ak, p.ak.Spec.RolloutRestart, p.existing)
	if !ok && len(p.ak.Spec.RolloutRestart) > 0 {
		return next(0) // no Secret, or unread: the condition stays as last judged
	}
	return next(r.judgeRollouts(p.ak, outcomes, p.now))
}
