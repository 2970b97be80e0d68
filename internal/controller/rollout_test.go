package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// restartWindow is the suite manager's --restart-coalesce-window: restarts
// are patched when a test steps the fake clock past it (closeRestartWindow).
const restartWindow = 10 * time.Second

// metricValue reads one series of the manager's registry (0 when absent).
func metricValue(name, label, value string) float64 {
	mfs, _ := ctrlmetrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// closeRestartWindow waits until n workloads of ns wait for their restart,
// then steps the fake clock past the coalescing window.
func closeRestartWindow(t *testing.T, ns string, n int) {
	t.Helper()
	NewWithT(t).Eventually(func() float64 { return metricValue("keywarden_rollouts_pending", "namespace", ns) }).
		WithTimeout(rtWait).WithPolling(20*time.Millisecond).Should(BeEquivalentTo(n), "workloads waiting for their restart in %s", ns)
	clk.Step(restartWindow)
}

// restartManagerReconciled restarts the manager and waits until the new
// one has reconciled each named RevioToken of ns. A pass with nothing due
// writes nothing to the API server, but it sets the object's next-renewal
// series after it has asked again for its restarts (restarter.resume): the
// series are dropped while no manager runs, and each comes back once its
// RevioToken has been reconciled.
func restartManagerReconciled(t *testing.T, ns string, names ...string) {
	t.Helper()
	stopManager()
	for _, name := range names {
		metrics.NextRenewal.DeleteLabelValues(kindRevioToken, ns, name)
	}
	if err := startManager(); err != nil {
		t.Fatalf("restart manager: %v", err)
	}
	NewWithT(t).Eventually(func() []string {
		var missing []string
		for _, name := range names {
			if !hasSeries("keywarden_credential_next_renewal_timestamp_seconds", map[string]string{"kind": kindRevioToken, "namespace": ns, "name": name}) {
				missing = append(missing, name)
			}
		}
		return missing
	}).WithTimeout(rtWait).WithPolling(20*time.Millisecond).Should(BeEmpty(), "RevioTokens the new manager has not reconciled yet")
}

// hasSeries reports whether the manager's registry holds a series of name
// with exactly these labels.
func hasSeries(name string, labels map[string]string) bool {
	mfs, _ := ctrlmetrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return true
		}
	}
	return false
}

// rolloutDeployment is a Deployment with labels reading the Secrets reads
// (envFrom).
func rolloutDeployment(ns, name string, labels map[string]string, reads ...string) *appsv1.Deployment {
	sel := map[string]string{"rollout-test": name}
	var from []corev1.EnvFromSource
	for _, s := range reads {
		from = append(from, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: s}}})
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1", EnvFrom: from}}},
			},
		},
	}
}

func getDeployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	NewWithT(t).Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
	return d
}

// markRolledOut writes the status the Deployment controller would once the
// current template runs everywhere (the suite runs no Deployment controller).
func markRolledOut(t *testing.T, ns, name string) {
	t.Helper()
	d := getDeployment(t, ns, name)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	NewWithT(t).Expect(k8s.Status().Update(context.Background(), d)).To(Succeed())
}

// eventsAbout returns the events of ns about one object with reason.
func eventsAbout(t *testing.T, ns, name, reason string) []string {
	var out []string
	for _, e := range eventsIn(t, ns) {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

// TestRolloutTargetSchema: a rollout target names a workload or selects
// them, never both, never neither.
func TestRolloutTargetSchema(t *testing.T) {
	ns := newNamespace(t)
	sel := map[string]any{"matchLabels": map[string]any{"app": "shop"}}
	cases := []schemaCase{
		akCase("name and selector", wantMsg(`spec.rolloutRestart[0]`, `exactly one of name or selector must be set`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment", "name": "shop", "selector": sel}})),
		akCase("neither name nor selector", wantMsg(`spec.rolloutRestart[0]`, `exactly one of name or selector must be set`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment"}})),
		rtCase("name and selector", wantMsg(`spec.rolloutRestart[1]`, `exactly one of name or selector must be set`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "StatefulSet", "name": "db"}, map[string]any{"kind": "DaemonSet", "name": "x", "selector": map[string]any{}}})),
		akCase("selector of an unknown kind", wantMsg(`spec.rolloutRestart[0].kind`, `Unsupported value: "Job"`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "Job", "selector": sel}})),
		akCase("name accepted", nil, specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment", "name": "shop"}})),
		akCase("selector accepted", nil, specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment", "selector": sel}})),
		rtCase("expression selector accepted", nil, specSet("rolloutRestart", []any{map[string]any{"kind": "StatefulSet",
			"selector": map[string]any{"matchExpressions": []any{map[string]any{"key": "tier", "operator": "In", "values": []any{"api"}}}}}})),
		rtCase("empty selector accepted", nil, specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment", "selector": map[string]any{}}})),
	}
	runSchemaCases(t, ns, cases, nil)
}

// TestRolloutCoalescesCredentials: two credentials whose Secrets change
// together restart the workload both read once, one selecting it by labels
// and one naming it; a selected workload that reads neither is refused. A
// manager that dies inside the window loses no restart: the next one asks
// again when it reconciles the credentials at start.
func TestRolloutCoalescesCredentials(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := rtNamespace(t)
	shop := map[string]string{"app": "shop"}
	g.Expect(k8s.Create(ctx, rolloutDeployment(ns, "shop", shop, "tok-a", "tok-b"))).To(Succeed())
	g.Expect(k8s.Create(ctx, rolloutDeployment(ns, "bystander", shop))).To(Succeed())
	rtAPIKeySecret(t, ns, "rev-key", revioSim.GenerateAPIKey(rtHost))
	patches0 := metricValue("keywarden_rollout_patches_total", "kind", "Deployment")

	rtCreate(t, rtNew(ns, "tok-a", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: shop}}}
	}))
	rtCreate(t, rtNew(ns, "tok-b", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "shop"}}
	}))
	rtWaitReady(t, ns, "tok-a", 1)
	rtWaitReady(t, ns, "tok-b", 1)
	gen0 := getDeployment(t, ns, "shop").Generation
	g.Expect(getDeployment(t, ns, "shop").Spec.Template.Annotations).To(BeEmpty(), "restarted before the window closed")

	// want is what shop's template must record: each Secret's version.
	want := func() map[string]string {
		return map[string]string{
			secretsync.HashAnnotation("tok-a"): secretsync.RestartHash(rtSecret(t, ns, "tok-a").Data),
			secretsync.HashAnnotation("tok-b"): secretsync.RestartHash(rtSecret(t, ns, "tok-b").Data),
		}
	}
	closeRestartWindow(t, ns, 1)
	g.Eventually(func() map[string]string { return getDeployment(t, ns, "shop").Spec.Template.Annotations }).
		WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(want()))
	g.Expect(getDeployment(t, ns, "shop").Generation).To(Equal(gen0+1), "one pod-template patch for both credentials")
	// The restarter counts its patch once the API server has answered it.
	g.Eventually(func() float64 { return metricValue("keywarden_rollout_patches_total", "kind", "Deployment") }).
		WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(patches0 + 1))
	for _, name := range []string{"tok-a", "tok-b"} {
		g.Eventually(func() []string { return eventsAbout(t, ns, name, v1alpha1.ReasonRolloutRestarted) }).WithTimeout(rtWait).
			Should(ConsistOf(ContainSubstring("Deployment shop restarted to pick up the new credential (one restart for 2 changed Secrets")))
	}
	g.Eventually(func() []string { return eventsAbout(t, ns, "tok-a", v1alpha1.ReasonRolloutTargetRefused) }).WithTimeout(rtWait).
		Should(ConsistOf(ContainSubstring("Deployment bystander does not read Secret tok-a")))
	g.Expect(getDeployment(t, ns, "bystander").Spec.Template.Annotations).To(BeEmpty(), "the bystander is not restarted")
	rtPoke(t, ns, "tok-a")
	rtPoke(t, ns, "tok-b")
	g.Consistently(func() int64 { return getDeployment(t, ns, "shop").Generation }).WithTimeout(rtQuiet).WithPolling(rtPoll).Should(Equal(gen0 + 1))

	// Both refresh together; the manager stops before the window closes.
	gen1 := gen0 + 1
	before := want()
	rtStepPastNextRefresh(t, ns, "tok-a")
	rtPoke(t, ns, "tok-b")
	rtWaitReady(t, ns, "tok-a", 2)
	rtWaitReady(t, ns, "tok-b", 2)
	g.Expect(want()).NotTo(Equal(before))
	g.Eventually(func() float64 { return metricValue("keywarden_rollouts_pending", "namespace", ns) }).
		WithTimeout(rtWait).Should(BeEquivalentTo(1))
	// The new manager reconciles both at start and asks again, one
	// credential after the other. The pending gauge counts workloads, so
	// it says 1 as soon as the first has asked: the window is closed only
	// once both have, or the first would be patched alone and the second
	// would open a window nothing closes.
	restartManagerReconciled(t, ns, "tok-a", "tok-b")
	g.Expect(getDeployment(t, ns, "shop").Generation).To(Equal(gen1), "the stopped manager patched")
	closeRestartWindow(t, ns, 1)
	g.Eventually(func() map[string]string { return getDeployment(t, ns, "shop").Spec.Template.Annotations }).
		WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(want()))
	g.Expect(getDeployment(t, ns, "shop").Generation).To(Equal(gen1 + 1))
	g.Consistently(func() int64 { return getDeployment(t, ns, "shop").Generation }).WithTimeout(rtQuiet).WithPolling(rtPoll).Should(Equal(gen1 + 1))
	assertNoSecretsLeaked(t, ns, rtToken(t, ns, "tok-a"), rtToken(t, ns, "tok-b"))
}

// TestRolloutRevocationWaitsForSelectedWorkloads: the previous key of a
// rotation is revoked only once the workloads a selector picks run the new
// template; dropping it from the Secret restarts nobody.
func TestRolloutRevocationWaitsForSelectedWorkloads(t *testing.T) {
	e := newAkt(t)
	g := e.g
	g.Expect(k8s.Create(e.ctx, rolloutDeployment(e.ns, "api", map[string]string{"tier": "api"}, "ak"))).To(Succeed())
	e.create("ak", aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) {
		ak.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}}}
	})
	k1 := e.settled("ak").Status.KeyID
	closeRestartWindow(t, e.ns, 1)
	recorded := func() string {
		return getDeployment(t, e.ns, "api").Spec.Template.Annotations[secretsync.HashAnnotation("ak")]
	}
	g.Eventually(recorded).Should(Equal(secretsync.RestartHash(e.secret("ak").Data)))
	markRolledOut(t, e.ns, "api")

	e.stepAndPoke("ak", time.Hour)
	e.rotated("ak", k1)
	s2 := e.secret("ak")
	g.Expect(s2.Annotations[secretsync.AnnotationRestartHash]).To(Equal(secretsync.RestartHash(s2.Data)))
	// The grace period ends (and the window with it): the selected
	// Deployment has the new template but runs the old one.
	closeRestartWindow(t, e.ns, 1)
	g.Eventually(recorded).Should(Equal(secretsync.RestartHash(s2.Data)))
	e.stepAndPoke("ak", 5*time.Minute)
	g.Consistently(func() *v1alpha1.PendingRevocation { return pending(e.get("ak"), k1) }).ShouldNot(BeNil())
	g.Expect(e.isActive(k1)).To(BeTrue())

	markRolledOut(t, e.ns, "api")
	gen := getDeployment(t, e.ns, "api").Generation
	e.poke("ak")
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	g.Expect(e.isActive(k1)).To(BeFalse())
	g.Eventually(func() map[string][]byte { return e.secret("ak").Data }).ShouldNot(HaveKey("previousApiKey"))
	e.poke("ak")
	g.Consistently(func() int64 { return getDeployment(t, e.ns, "api").Generation }).Should(Equal(gen), "dropping the previous key restarted the workload")
	g.Expect(eventsAbout(t, e.ns, "ak", v1alpha1.ReasonRolloutStuck)).To(BeEmpty())
	e.hygiene()
}

// fakeRecorder keeps event notes.
type fakeRecorder struct{ notes []string }

func (f *fakeRecorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, note string, args ...any) {
	f.notes = append(f.notes, reason+": "+fmt.Sprintf(note, args...))
}

func (f *fakeRecorder) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, typ, reason, action, note string, args ...any) {
	f.Eventf(regarding, related, typ, reason, action, note, args...)
}

// TestRolloutWindowZero: without a window a request patches at once.
func TestRolloutWindowZero(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(k8s.Create(ctx, rolloutDeployment(ns, "w", nil, "creds"))).To(Succeed())
	rec := &fakeRecorder{}
	r := &restarter{client: k8s, reader: k8s, rec: rec, pending: map[workloadKey]map[string]restartWant{}, perNS: map[string]int{}}
	owner := &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}}
	targets := []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "w"}, {Kind: "StatefulSet", Name: "gone"}}
	r.request(ctx, owner, "creds", targets, "h1")
	d := getDeployment(t, ns, "w")
	g.Expect(d.Spec.Template.Annotations).To(Equal(map[string]string{secretsync.HashAnnotation("creds"): "h1"}))
	g.Expect(rec.notes).To(ConsistOf(
		ContainSubstring("RolloutTargetMissing: StatefulSet gone not found"),
		Equal("RolloutRestarted: Deployment w restarted to pick up the new credential: container app reads the Secret through envFrom, set only when a container starts")))
	r.request(ctx, owner, "creds", targets, "h1")
	g.Expect(getDeployment(t, ns, "w").Generation).To(Equal(d.Generation), "the same version restarted twice")
}
