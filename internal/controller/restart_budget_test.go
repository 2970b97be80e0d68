package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// settleAllRestarts writes a finished rollout on every workload of the
// cluster that records a Keywarden restart (earlier tests leave some
// unfinished: the suite runs no workload controllers), so a budget starts
// from an empty slate.
func settleAllRestarts(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	list := &appsv1.DeploymentList{}
	g.Expect(k8s.List(ctx, list)).To(Succeed())
	for i := range list.Items {
		if d := &list.Items[i]; secretsync.RecordsRestart(d) && !secretsync.RolledOut(d) {
			markRolledOut(t, d.Namespace, d.Name)
		}
	}
	sts := &appsv1.StatefulSetList{}
	g.Expect(k8s.List(ctx, sts)).To(Succeed())
	for i := range sts.Items {
		if s := &sts.Items[i]; secretsync.RecordsRestart(s) && !secretsync.RolledOut(s) {
			s.Status = appsv1.StatefulSetStatus{ObservedGeneration: s.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1}
			g.Expect(k8s.Status().Update(ctx, s)).To(Succeed())
		}
	}
	dss := &appsv1.DaemonSetList{}
	g.Expect(k8s.List(ctx, dss)).To(Succeed())
	for i := range dss.Items {
		if d := &dss.Items[i]; secretsync.RecordsRestart(d) && !secretsync.RolledOut(d) {
			d.Status = appsv1.DaemonSetStatus{ObservedGeneration: d.Generation}
			g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
		}
	}
}

// budgetView is what the cluster shows of the restarts for Secret tok in
// each namespace: restarted and rolling out (in flight), rolled out (done).
type budgetView struct {
	inflight map[string][]string // namespace -> names
	total    int
	done     int
	doneIn   map[string]int
}

func viewBudget(t *testing.T, nss []string) budgetView {
	t.Helper()
	v := budgetView{inflight: map[string][]string{}, doneIn: map[string]int{}}
	for _, ns := range nss {
		want := secretsync.RestartHash(rtSecret(t, ns, "tok").Data)
		list := &appsv1.DeploymentList{}
		NewWithT(t).Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
		for i := range list.Items {
			d := &list.Items[i]
			if d.Spec.Template.Annotations[secretsync.HashAnnotation("tok")] != want {
				continue
			}
			if secretsync.RolledOut(d) {
				v.done++
				v.doneIn[ns]++
				continue
			}
			v.inflight[ns] = append(v.inflight[ns], d.Name)
			v.total++
		}
	}
	return v
}

// TestRestartBudget: 50 workloads in 5 namespaces restarted at once under
// a budget of 10 in the cluster and 3 per namespace roll out at most that
// many at a time, the rest queued; a manager restart in the middle keeps
// the budget (the new manager finds the rollouts in flight and asks again
// for the queued restarts); all 50 end restarted.
func TestRestartBudget(t *testing.T) {
	const global, perNS, perNSWorkloads = 10, 3, 10
	settleAllRestarts(t)
	optionsHook = func(o *Options) { o.MaxConcurrentRestarts, o.MaxConcurrentRestartsPerNamespace = global, perNS }
	restartManager(t)
	t.Cleanup(func() {
		optionsHook = nil
		restartManager(t)
	})
	g := NewWithT(t)
	ctx := context.Background()
	finished0 := metricValue("keywarden_restarts_finished_total", "result", "done")

	var nss []string
	for range 5 {
		ns := rtNamespace(t)
		nss = append(nss, ns)
		for i := range perNSWorkloads {
			g.Expect(k8s.Create(ctx, rolloutDeployment(ns, fmt.Sprintf("w%02d", i), map[string]string{"app": "budget"}, "tok"))).To(Succeed())
		}
		rtAPIKeySecret(t, ns, "rev-key", revioSim.GenerateAPIKey(rtHost))
		rtCreate(t, rtNew(ns, "tok", "rev-key", func(rt *v1alpha1.RevioToken) {
			rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "budget"}}}}
		}))
	}
	for _, ns := range nss {
		rtWaitReady(t, ns, "tok", 1)
		g.Eventually(func() float64 { return metricValue("keywarden_rollouts_pending", "namespace", ns) }).
			WithTimeout(rtWait).WithPolling(20 * time.Millisecond).Should(BeEquivalentTo(perNSWorkloads))
	}
	clk.Step(restartWindow)

	// holds checks the budget: never more than global in flight, nor more
	// than perNS in one namespace.
	holds := func(g Gomega) budgetView {
		v := viewBudget(t, nss)
		g.Expect(v.total).To(BeNumerically("<=", global), "in flight: %v", v.inflight)
		for ns, names := range v.inflight {
			g.Expect(len(names)).To(BeNumerically("<=", perNS), "in flight in %s: %v", ns, names)
		}
		return v
	}
	// round waits until the budget is full (as full as the work left in
	// each namespace allows), checks it stays so, then finishes those
	// rollouts and lets the restarter look.
	round := func() int {
		t.Helper()
		before := viewBudget(t, nss)
		want := 0
		for _, ns := range nss {
			want += min(perNS, perNSWorkloads-before.doneIn[ns])
		}
		want = min(global, want)
		var v budgetView
		g.Eventually(func(g Gomega) {
			v = holds(g)
			g.Expect(v.total).To(Equal(want), "in flight: %v", v.inflight)
		}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
		g.Consistently(func(g Gomega) { holds(g) }).WithTimeout(time.Second).WithPolling(rtPoll).Should(Succeed())
		g.Expect(v.done).To(Equal(before.done))
		for ns, names := range v.inflight {
			for _, name := range names {
				markRolledOut(t, ns, name)
			}
		}
		clk.Step(budgetPoll)
		return v.done + v.total
	}
	done := 0
	for range 2 {
		done = round()
	}
	g.Expect(done).To(Equal(2 * global))

	// A new manager: the 10 in flight still count, the 20 queued are asked
	// for again when it reconciles the RevioTokens.
	g.Eventually(func(g Gomega) { g.Expect(holds(g).total).To(Equal(global)) }).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
	stopManager()
	startAndReconcile(t, nss)
	stale := 0
	for _, ns := range nss {
		v := viewBudget(t, []string{ns})
		n := perNSWorkloads - v.total - v.done
		stale += n
		if n > 0 {
			g.Eventually(func() float64 { return metricValue("keywarden_rollouts_pending", "namespace", ns) }).
				WithTimeout(rtWait).WithPolling(20*time.Millisecond).Should(BeEquivalentTo(n), "queued restarts asked again in %s", ns)
		}
	}
	g.Expect(stale).To(Equal(50 - done - global))
	clk.Step(restartWindow)
	g.Consistently(func(g Gomega) { g.Expect(holds(g).total).To(Equal(global)) }).WithTimeout(2*time.Second).WithPolling(rtPoll).Should(Succeed(),
		"the new manager patched past the budget: it lost the rollouts in flight")
	for i := 0; done < 50; i++ {
		g.Expect(i).To(BeNumerically("<", 10), "the queue does not drain")
		done = round()
	}
	v := viewBudget(t, nss)
	g.Expect(v.done).To(Equal(50))
	g.Expect(v.total).To(BeZero())
	g.Eventually(func() float64 { return metricValue("keywarden_restarts_finished_total", "result", "done") }).
		WithTimeout(rtWait).Should(BeNumerically(">=", finished0+30), "rollouts seen done by the restarter since the restart")
	g.Eventually(func() float64 { return plainMetric("keywarden_restart_queue_length") }).WithTimeout(rtWait).Should(BeZero())
	g.Expect(plainMetric("keywarden_restarts_queued_total")).To(BeNumerically(">", 0), "restarts waited for the budget")
}

// startAndReconcile starts a manager and waits until it has reconciled the
// RevioToken tok of each namespace.
func startAndReconcile(t *testing.T, nss []string) {
	t.Helper()
	for _, ns := range nss {
		metrics.NextRenewal.DeleteLabelValues(kindRevioToken, ns, "tok")
	}
	if err := startManager(); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	for _, ns := range nss {
		NewWithT(t).Eventually(func() bool {
			return hasSeries("keywarden_credential_next_renewal_timestamp_seconds", map[string]string{"kind": kindRevioToken, "namespace": ns, "name": "tok"})
		}).WithTimeout(rtWait).WithPolling(20*time.Millisecond).Should(BeTrue(), "the new manager reconciled %s/tok", ns)
	}
}

// plainMetric reads a series without labels of the manager's registry.
func plainMetric(name string) float64 {
	mfs, _ := ctrlmetrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			if m := mf.GetMetric()[0]; m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			} else if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
