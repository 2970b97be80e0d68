package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// TestRolloutRestarts runs the built manager with its default 10 s
// coalescing window: an ApiKey selecting workloads by label and a
// RevioToken naming one of them publish together, and the workload both
// feed gets one new pod template (its generation moves by one); a selected
// workload reading neither Secret is refused; the previous key of a
// rotation waits for a selected workload that has not rolled out. The
// suite's control plane runs no Deployment controller: the test writes the
// rollout status the controller would.
func TestRolloutRestarts(t *testing.T) {
	g, ns := credentialTest(t, "rollout")
	ctx := context.Background()
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)
	createSecret(t, ns, "revio-api-key", sim.Credentials.RevioAPIKey)

	// shop reads both Secrets, slow the key only, stranger neither.
	for _, d := range []*appsv1.Deployment{consumer(ns, "shop", "rollout-key", "rollout-token"), consumer(ns, "slow", "rollout-key"), consumer(ns, "stranger")} {
		d.Labels = map[string]string{"tier": "shop"}
		g.Expect(k8s.Create(ctx, d)).To(Succeed())
	}
	get := func(g Gomega, name string) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
		return d
	}
	rolledOut := func(name string) {
		d := get(g, name)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	}

	// The issuers first, so that both credentials publish within the window.
	keyManifest := apiKeyManifest("rollout-key", 720*time.Hour, 20*time.Second)
	tokenManifest := revioTokenManifest("rollout-token")
	issuers, keyDoc, _ := bytes.Cut(keyManifest, []byte("---\n"))
	revioIssuer, tokenDoc, _ := bytes.Cut(tokenManifest, []byte("---\n"))
	sep := []byte("---\n")
	apply(t, ns, bytes.Join([][]byte{issuers, revioIssuer}, sep))
	g.Eventually(func(g Gomega) {
		for kind, name := range map[string]string{v1alpha1.KindReevitIssuer: reevitIssuerName, v1alpha1.KindRevioIssuer: revioIssuerName} {
			conds, gen := issuerConditions(g, kind, ns, name)
			expectReady(g, conds, gen)
		}
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	apply(t, ns, bytes.Join([][]byte{
		keyDoc, []byte("  rolloutRestart: [{kind: Deployment, selector: {matchLabels: {tier: shop}}}]\n"), sep,
		tokenDoc, []byte("  rolloutRestart: [{kind: Deployment, name: shop}]\n"),
	}, nil))

	restartHash := func(g Gomega, secret string) string {
		data, err := secretData(ctx, ns, secret)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).NotTo(BeNil(), "Secret %s not written", secret)
		return secretsync.RestartHash(data)
	}
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, "shop").Spec.Template.Annotations).To(Equal(map[string]string{
			secretsync.HashAnnotation("rollout-key"):   restartHash(g, "rollout-key"),
			secretsync.HashAnnotation("rollout-token"): restartHash(g, "rollout-token"),
		}))
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	// Longer than the window: no second patch follows.
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, "shop").Generation).To(BeEquivalentTo(2), "one pod-template patch for both credentials")
	}).WithTimeout(15 * time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(get(g, "stranger").Spec.Template.Annotations).To(BeEmpty(), "a workload reading neither Secret was restarted")
	g.Expect(get(g, "stranger").Generation).To(BeEquivalentTo(1))
	// slow has a window of its own, opened by the ApiKey alone: its patch is
	// another write than shop's.
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, "slow").Spec.Template.Annotations).To(HaveKeyWithValue(secretsync.HashAnnotation("rollout-key"), restartHash(g, "rollout-key")))
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(eventNotes(g, ns, "rollout-key", v1alpha1.ReasonRolloutTargetRefused)).To(ContainElement(ContainSubstring("Deployment stranger does not read Secret rollout-key")))
		g.Expect(eventNotes(g, ns, "rollout-token", v1alpha1.ReasonRolloutRestarted)).To(ContainElement(ContainSubstring("Deployment shop restarted to pick up the new credential (one restart for 2 changed Secrets")))
	}).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

	// A rotation: the previous key outlives its grace period while slow
	// has not rolled out (shop has), and is revoked once it has.
	ak := getApiKey(g, ns, "rollout-key")
	id1 := ak.Status.KeyID
	_, err := env.AdminKubectl(ctx, nil, "annotate", "apikey", "rollout-key", "-n", ns, v1alpha1.AnnotationRotate+"=1")
	g.Expect(err).NotTo(HaveOccurred())
	var revokeAfter time.Time
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "rollout-key")
		g.Expect(ak.Status.KeyID).NotTo(Equal(id1))
		g.Expect(ak.Status.PendingRevocations).To(HaveLen(1))
		revokeAfter = ak.Status.PendingRevocations[0].RevokeAfter.Time
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		for _, name := range []string{"shop", "slow"} {
			g.Expect(get(g, name).Spec.Template.Annotations).To(HaveKeyWithValue(secretsync.HashAnnotation("rollout-key"), restartHash(g, "rollout-key")))
		}
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	rolledOut("shop")
	time.Sleep(time.Until(revokeAfter) + 5*time.Second)
	g.Consistently(func(g Gomega) {
		g.Expect(getApiKey(g, ns, "rollout-key").Status.PendingRevocations).To(ContainElement(HaveField("KeyID", id1)))
	}).WithTimeout(20*time.Second).WithPolling(time.Second).Should(Succeed(), "revoked while a selected workload had not rolled out")

	rolledOut("slow")
	g.Eventually(func(g Gomega) {
		g.Expect(getApiKey(g, ns, "rollout-key").Status.PendingRevocations).To(BeEmpty())
	}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(eventNotes(g, ns, "rollout-key", v1alpha1.ReasonRolloutStuck)).To(BeEmpty())
	data, err := secretData(ctx, ns, "rollout-key")
	g.Expect(err).NotTo(HaveOccurred())
	seen.add("rollout test key", string(data["apiKey"]))
}

// eventNotes are the notes of the events of reason about one object.
func eventNotes(g Gomega, ns, name, reason string) []string {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, strings.TrimSpace(e.Note))
		}
	}
	return out
}
