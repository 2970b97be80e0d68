package controller

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// rolloutVerdict is what the rollouts of an ApiKey's targets amount to.
type rolloutVerdict struct {
	// failed describes each workload whose rollout failed.
	failed []string
	// busy counts workloads still to restart or rolling out.
	busy int
}

// judgeRolloutOutcomes is the pure judgement of the targets' rollouts: a
// Deployment whose controller reports ProgressDeadlineExceeded has failed
// at once; a StatefulSet or DaemonSet that stopped progressing
// (secretsync.RolloutFailure) counts as failed only once graceOver (a
// previous key's grace period has ended), before which it may merely be
// slow. Missing, refused and skipped workloads have nothing to roll out.
func judgeRolloutOutcomes(outcomes []secretsync.RolloutOutcome, graceOver bool) rolloutVerdict {
	var v rolloutVerdict
	for _, o := range outcomes {
		switch {
		case o.Missing || o.Refused || o.Done:
		case o.Stale:
			v.busy++
		case o.Failed != "" && (graceOver || secretsync.DeadlineKnown(o.Workload)):
			v.failed = append(v.failed, fmt.Sprintf("%s %s: %s", o.Target.Kind, o.Name, o.Failed))
		default:
			v.busy++
		}
	}
	return v
}

// graceOver says whether a previous key (not a compromised one, which
// never waits) has passed its grace period and waits for the rollouts.
func graceOver(st *v1alpha1.ApiKeyStatus, now time.Time) bool {
	for _, p := range st.PendingRevocations {
		if p.Reason != createCompromised && !now.Before(p.RevokeAfter.Time) {
			return true
		}
	}
	return false
}

// judgeRollouts sets RolloutsComplete from the targets' rollouts, tells a
// new failure in a Warning event and keeps keywarden_rollouts_failed; it
// returns when to look again (while a previous key waits and a rollout is
// unfinished). A failed rollout keeps the previous key: the revoke step
// waits for the rollouts past the grace period, up to --rollout-wait-limit.
func (r *ApiKeyReconciler) judgeRollouts(ak *v1alpha1.ApiKey, outcomes []secretsync.RolloutOutcome, now time.Time) time.Duration {
	st := &ak.Status
	if len(ak.Spec.RolloutRestart) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionRolloutsComplete)
		metrics.RolloutsFailed.DeleteLabelValues(ak.Namespace, ak.Name)
		return 0
	}
	v := judgeRolloutOutcomes(outcomes, graceOver(st, now))
	metrics.RolloutsFailed.WithLabelValues(ak.Namespace, ak.Name).Set(float64(len(v.failed)))
	switch {
	case len(v.failed) > 0:
		msg := strings.Join(v.failed, "; ") + ". The previous key stays valid until its grace period ends and, while a rollout is unfinished, at most --rollout-wait-limit longer: fix the workload (kubectl rollout status) or roll it back"
		if !hasReason(st.Conditions, v1alpha1.ConditionRolloutsComplete, v1alpha1.ReasonRolloutFailed) {
			r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.ReasonRolloutFailed, "RolloutRestart", "%s", msg)
		}
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRolloutsComplete, false, v1alpha1.ReasonRolloutFailed, msg)
	case v.busy > 0:
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRolloutsComplete, false, v1alpha1.ReasonProgressing,
			fmt.Sprintf("%d workload(s) still restarting or rolling out the current Secret", v.busy))
	default:
		setCondition(&st.Conditions, ak.Generation, v1alpha1.ConditionRolloutsComplete, true, v1alpha1.ReasonSucceeded,
			"every rollout target that needs a restart runs the current Secret")
	}
	if (len(v.failed) > 0 || v.busy > 0) && len(st.PendingRevocations) > 0 {
		return rolloutPoll
	}
	return 0
}
