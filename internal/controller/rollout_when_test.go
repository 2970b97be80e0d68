package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// volumeDeployment is a Deployment reading Secret secret only through a
// secret volume mounted whole (subPath "" ) or one file of it (subPath set).
func volumeDeployment(ns, name, secret, subPath string) *appsv1.Deployment {
	d := rolloutDeployment(ns, name, nil)
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}
	d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "creds", MountPath: "/var/run/creds", SubPath: subPath}}
	return d
}

// TestRolloutRestartsOnlyWhatNeedsIt: with the default when: Needed a
// workload reading the Secret only through a volume is not restarted (the
// kubelet updates the files) and says so in an event; env and subPath
// readers are restarted, each event saying why; when: Always restarts a
// volume reader.
func TestRolloutRestartsOnlyWhatNeedsIt(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	env := rolloutDeployment(ns, "env", nil)
	env.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "API_KEY", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "apiKey"}}}}
	for _, d := range []*appsv1.Deployment{env, volumeDeployment(ns, "vol", "creds", ""), volumeDeployment(ns, "sub", "creds", "apiKey"),
		volumeDeployment(ns, "vol-always", "creds", "")} {
		g.Expect(k8s.Create(ctx, d)).To(Succeed())
	}
	rec := &fakeRecorder{}
	r := &restarter{client: k8s, reader: k8s, rec: rec, pending: map[workloadKey]map[string]restartWant{}, perNS: map[string]int{}}
	owner := &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}}
	targets := []v1alpha1.RolloutTarget{
		{Kind: "Deployment", Name: "env"}, {Kind: "Deployment", Name: "vol"}, {Kind: "Deployment", Name: "sub"},
		{Kind: "Deployment", Name: "vol-always", When: v1alpha1.RestartWhenAlways},
	}
	r.request(ctx, owner, "creds", targets, "h1")

	restarted := map[string]string{secretsync.HashAnnotation("creds"): "h1"}
	g.Expect(getDeployment(t, ns, "env").Spec.Template.Annotations).To(Equal(restarted))
	g.Expect(getDeployment(t, ns, "sub").Spec.Template.Annotations).To(Equal(restarted))
	g.Expect(getDeployment(t, ns, "vol-always").Spec.Template.Annotations).To(Equal(restarted))
	g.Expect(getDeployment(t, ns, "vol").Spec.Template.Annotations).To(BeEmpty(), "a volume-only reader was restarted")
	g.Expect(getDeployment(t, ns, "vol").Generation).To(BeEquivalentTo(1))
	g.Expect(rec.notes).To(ConsistOf(
		Equal("RolloutRestarted: Deployment env restarted to pick up the new credential: container app reads the Secret through env API_KEY, set only when a container starts"),
		Equal("RolloutRestarted: Deployment sub restarted to pick up the new credential: container app mounts the Secret with subPath at /var/run/creds, which the kubelet never updates"),
		Equal("RolloutRestarted: Deployment vol-always restarted to pick up the new credential: the rollout target says when: Always"),
		And(HavePrefix("RolloutRestartNotNeeded: Deployment vol: it reads the Secret only through volumes, which the kubelet updates in place"),
			ContainSubstring("when: Always")),
	))

	// The API server defaults when to Needed; a value outside the enum is refused.
	rt := rtNew(ns, "defaults", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "vol"}}
	})
	g.Expect(k8s.Create(ctx, rt, client.DryRunAll)).To(Succeed())
	g.Expect(rt.Spec.RolloutRestart[0].When).To(Equal(v1alpha1.RestartWhenNeeded))
	bad := rtNew(ns, "bad", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "vol", When: "Sometimes"}}
	})
	g.Expect(k8s.Create(ctx, bad, client.DryRunAll)).To(MatchError(ContainSubstring(`spec.rolloutRestart[0].when: Unsupported value: "Sometimes"`)))
}

// TestRolloutVolumeReaderDoesNotHoldRevocation: a rotation does not restart
// a volume-only reader, and its previous key is revoked when the grace
// period ends without waiting for a rollout that never comes.
func TestRolloutVolumeReaderDoesNotHoldRevocation(t *testing.T) {
	e := newAkt(t)
	g := e.g
	g.Expect(k8s.Create(e.ctx, volumeDeployment(e.ns, "api", "ak", ""))).To(Succeed())
	e.create("ak", aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) {
		ak.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "api"}}
	})
	k1 := e.settled("ak").Status.KeyID
	g.Eventually(func() []string { return eventsAbout(t, e.ns, "ak", v1alpha1.ReasonRolloutRestartNotNeeded) }).
		ShouldNot(BeEmpty())
	e.stepAndPoke("ak", time.Hour)
	e.rotated("ak", k1)
	g.Expect(pending(e.get("ak"), k1)).NotTo(BeNil())
	e.stepAndPoke("ak", 5*time.Minute)
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	g.Expect(e.isActive(k1)).To(BeFalse())
	g.Expect(getDeployment(t, e.ns, "api").Generation).To(BeEquivalentTo(1), "a volume-only reader was restarted")
	g.Expect(metricValue("keywarden_rollouts_pending", "namespace", e.ns)).To(BeZero())
	e.hygiene()
}
