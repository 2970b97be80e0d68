package controller

import (
	"context"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// restartBudget bounds the workloads rolling out at once for Keywarden's
// restarts: in the whole cluster and in each namespace; 0 is no bound.
type restartBudget struct{ global, perNS int }

func (b restartBudget) enabled() bool { return b.global > 0 || b.perNS > 0 }

// pollKey is the restarter queue's item for a look at the rollouts in
// flight; no workload has its kind.
var pollKey = workloadKey{Kind: "(poll)"}

// budgetPoll is how often the rollouts in flight are looked at.
const budgetPoll = 5 * time.Second

// queuedRestart is a workload whose restart waits for the budget.
type queuedRestart struct {
	key   workloadKey
	wants map[string]restartWant
	// told: counted in keywarden_restarts_queued_total already.
	told bool
}

// inFlight is a workload Keywarden restarted whose rollout is unfinished.
type inFlight struct {
	since time.Time
	// discovered: found rolling out at start, not patched by this process
	// (its rollout duration is unknown).
	discovered bool
}

// discoverInFlight derives the rollouts in flight from the cluster when
// the restarter starts: every workload whose pod template carries a
// Keywarden restart annotation and whose rollout is unfinished counts
// against the budget, as the process that patched it counted it. A
// workload rolling out for another reason with an old annotation counts
// too: the budget errs on the side of fewer restarts.
func (r *restarter) discoverInFlight(ctx context.Context) {
	now := r.clock.Now()
	for _, kind := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		err := secretsync.ListWorkloads(ctx, r.reader, kind, func(o client.Object) {
			if !secretsync.RecordsRestart(o) || secretsync.RolledOut(o) || failedFinal(o) {
				return
			}
			r.mu.Lock()
			r.markInFlight(workloadKey{o.GetNamespace(), kind, o.GetName()}, inFlight{since: now, discovered: true})
			r.mu.Unlock()
		})
		if err != nil {
			// The budget then counts this process's own restarts only.
			ctrl.LoggerFrom(ctx).Error(err, "find the rollouts in flight at start: the restart budget counts only the restarts of this process", "kind", kind)
		}
	}
	r.setBudgetGauges()
}

// failedFinal says whether a workload's controller reports its rollout
// failed (a Deployment past its progress deadline): it holds no slot.
func failedFinal(o client.Object) bool {
	return secretsync.DeadlineKnown(o) && secretsync.RolloutFailure(o) != ""
}

// markInFlight records a rollout in flight; r.mu is held.
func (r *restarter) markInFlight(key workloadKey, f inFlight) {
	if _, ok := r.inflight[key]; ok {
		return
	}
	r.inflight[key] = f
	r.inflightNS[key.Namespace]++
}

// enqueue puts a workload whose window closed at the end of the queue, or
// merges its wants into its place there.
func (r *restarter) enqueue(key workloadKey, wants map[string]restartWant) {
	if len(wants) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	metrics.RestartsRequested.Inc()
	if i := slices.IndexFunc(r.waiting, func(q *queuedRestart) bool { return q.key == key }); i >= 0 {
		for k, w := range wants {
			r.waiting[i].wants[k] = w
		}
		return
	}
	r.waiting = append(r.waiting, &queuedRestart{key: key, wants: wants})
}

// nextAdmissible removes and returns the first queued workload the budget
// lets roll out now: its namespace has room, the cluster has room, and it
// is not rolling out already (it waits for that rollout to finish). nil
// when none may go. r.mu is held.
func (r *restarter) nextAdmissible() *queuedRestart {
	if r.budget.global > 0 && len(r.inflight) >= r.budget.global {
		return nil
	}
	for i, q := range r.waiting {
		if _, busy := r.inflight[q.key]; busy {
			continue
		}
		if r.budget.perNS > 0 && r.inflightNS[q.key.Namespace] >= r.budget.perNS {
			continue
		}
		r.waiting = slices.Delete(r.waiting, i, i+1)
		return q
	}
	return nil
}

// admit patches queued workloads, in queue order, while the budget has
// room; the others stay queued, in order (keywarden_restarts_queued_total
// counts each once).
func (r *restarter) admit(ctx context.Context) {
	for {
		r.mu.Lock()
		q := r.nextAdmissible()
		r.mu.Unlock()
		if q == nil {
			break
		}
		if r.flush(ctx, q.key, q.wants) {
			r.mu.Lock()
			r.markInFlight(q.key, inFlight{since: r.clock.Now()})
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	for _, q := range r.waiting {
		if !q.told {
			q.told = true
			metrics.RestartsQueued.Inc()
		}
	}
	r.mu.Unlock()
	r.setBudgetGauges()
}

// poll looks at each rollout in flight: rolled out (done), failed by its
// controller's account, gone, or in flight longer than inflightLimit
// (failed: it holds its slot no longer) frees its slot.
func (r *restarter) poll(ctx context.Context) {
	r.mu.Lock()
	keys := make([]workloadKey, 0, len(r.inflight))
	for k := range r.inflight {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	now := r.clock.Now()
	for _, key := range keys {
		obj, err := secretsync.NewWorkload(key.Kind)
		if err != nil {
			continue
		}
		result := ""
		err = r.reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, obj)
		switch {
		case apierrors.IsNotFound(err):
			result = "done"
		case err != nil:
			ctrl.LoggerFrom(ctx).Error(err, "read a workload rolling out", "kind", key.Kind, "namespace", key.Namespace, "name", key.Name)
		case secretsync.RolledOut(obj):
			result = "done"
		case failedFinal(obj):
			result = "failed"
		}
		r.mu.Lock()
		f, ok := r.inflight[key]
		if ok && result == "" && now.Sub(f.since) >= r.inflightLimit {
			result = "failed" // stuck: it holds its slot no longer
		}
		if ok && result != "" {
			delete(r.inflight, key)
			if r.inflightNS[key.Namespace]--; r.inflightNS[key.Namespace] <= 0 {
				delete(r.inflightNS, key.Namespace)
			}
			metrics.RestartsFinished.WithLabelValues(result).Inc()
			if result == "done" && !f.discovered {
				metrics.RestartRolloutDuration.Observe(now.Sub(f.since).Seconds())
			}
		}
		r.mu.Unlock()
	}
	r.setBudgetGauges()
}

// setBudgetGauges publishes the queue length and the rollouts in flight.
func (r *restarter) setBudgetGauges() {
	r.mu.Lock()
	defer r.mu.Unlock()
	metrics.RestartQueueLength.Set(float64(len(r.waiting)))
	metrics.RestartsInFlight.Set(float64(len(r.inflight)))
}
