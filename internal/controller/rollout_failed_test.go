package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// markDeadlineExceeded writes the status the Deployment controller writes
// when the new template's pods never become available.
func markDeadlineExceeded(t *testing.T, ns, name string) {
	t.Helper()
	d := getDeployment(t, ns, name)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		UnavailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
			Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "api-2" has timed out progressing.`,
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
	NewWithT(t).Expect(k8s.Status().Update(t.Context(), d)).To(Succeed())
}

// TestRolloutFailedKeepsPreviousKey: a Deployment whose rollout of the new
// key fails (ProgressDeadlineExceeded) is told at once (RolloutsComplete
// False RolloutFailed, a Warning event, keywarden_rollouts_failed for the
// alert); its previous key is not revoked when the grace period ends. Once
// the workload is fixed the key goes and the condition clears.
func TestRolloutFailedKeepsPreviousKey(t *testing.T) {
	e := newAkt(t)
	g := e.g
	g.Expect(k8s.Create(e.ctx, rolloutDeployment(e.ns, "api", nil, "ak"))).To(Succeed())
	e.create("ak", aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) {
		ak.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "api"}}
	})
	k1 := e.settled("ak").Status.KeyID
	closeRestartWindow(t, e.ns, 1)
	recorded := func() string {
		return getDeployment(t, e.ns, "api").Spec.Template.Annotations[secretsync.HashAnnotation("ak")]
	}
	g.Eventually(recorded).Should(Equal(secretsync.RestartHash(e.secret("ak").Data)))
	markRolledOut(t, e.ns, "api")
	e.poke("ak")
	e.condition("ak", v1alpha1.ConditionRolloutsComplete, v1alpha1.ReasonSucceeded)

	e.stepAndPoke("ak", time.Hour)
	e.rotated("ak", k1)
	closeRestartWindow(t, e.ns, 1)
	g.Eventually(recorded).Should(Equal(secretsync.RestartHash(e.secret("ak").Data)))
	markDeadlineExceeded(t, e.ns, "api")
	e.poke("ak")
	c := e.condition("ak", v1alpha1.ConditionRolloutsComplete, v1alpha1.ReasonRolloutFailed)
	g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(c.Message).To(ContainSubstring("Deployment api: its rollout exceeded its progress deadline"))
	g.Expect(e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonRolloutFailed).Note).To(ContainSubstring("Deployment api"))
	g.Eventually(func() float64 { return metricValue("keywarden_rollouts_failed", "namespace", e.ns) }).Should(BeEquivalentTo(1))
	g.Expect(e.isActive(k1)).To(BeTrue())

	// The grace period ends: the previous key stays while the rollout is failed.
	e.stepAndPoke("ak", 5*time.Minute)
	g.Consistently(func() *v1alpha1.PendingRevocation { return pending(e.get("ak"), k1) }).ShouldNot(BeNil())
	g.Expect(e.isActive(k1)).To(BeTrue())
	g.Expect(eventsAbout(t, e.ns, "ak", v1alpha1.ReasonRolloutFailed)).To(HaveLen(1), "one event per failure, not one per pass")

	// Fixed (rolled back or repaired): the previous key goes.
	markRolledOut(t, e.ns, "api")
	e.poke("ak")
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	g.Expect(e.isActive(k1)).To(BeFalse())
	e.condition("ak", v1alpha1.ConditionRolloutsComplete, v1alpha1.ReasonSucceeded)
	g.Eventually(func() float64 { return metricValue("keywarden_rollouts_failed", "namespace", e.ns) }).Should(BeZero())
	g.Expect(eventsAbout(t, e.ns, "ak", v1alpha1.ReasonRolloutStuck)).To(BeEmpty())
	e.hygiene()
}

// TestJudgeRolloutOutcomes: a Deployment's reported failure counts at once;
// a StatefulSet or DaemonSet stall only after a grace period has ended.
func TestJudgeRolloutOutcomes(t *testing.T) {
	g := NewWithT(t)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Generation: 2}, Status: appsv1.DeploymentStatus{ObservedGeneration: 2,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "s", Generation: 3}, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: 3, UpdatedReplicas: 1, ReadyReplicas: 2}}
	out := func(kind string, obj interface{ GetName() string }) secretsync.RolloutOutcome {
		o := secretsync.RolloutOutcome{Target: v1alpha1.RolloutTarget{Kind: kind}, Name: obj.GetName()}
		switch w := obj.(type) {
		case *appsv1.Deployment:
			o.Workload, o.Failed = w, secretsync.RolloutFailure(w)
		case *appsv1.StatefulSet:
			o.Workload, o.Failed = w, secretsync.RolloutFailure(w)
		}
		return o
	}
	outcomes := []secretsync.RolloutOutcome{out("Deployment", dep), out("StatefulSet", sts),
		{Name: "gone", Missing: true}, {Name: "vol", Skipped: true, Done: true}, {Name: "new", Stale: true}}
	v := judgeRolloutOutcomes(outcomes, false)
	g.Expect(v.failed).To(ConsistOf(ContainSubstring("Deployment d: its rollout exceeded its progress deadline")))
	g.Expect(v.busy).To(Equal(2), "the stalled StatefulSet may be slow; the stale one waits for its restart")
	v = judgeRolloutOutcomes(outcomes, true)
	g.Expect(v.failed).To(ConsistOf(ContainSubstring("Deployment d"), Equal("StatefulSet s: its rollout stopped progressing: 1 of 3 pods updated, 2 ready")))
	g.Expect(v.busy).To(Equal(1))
	g.Expect(judgeRolloutOutcomes(outcomes[2:4], true)).To(Equal(rolloutVerdict{}), "missing and skipped workloads have nothing to roll out")
}
