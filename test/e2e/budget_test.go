package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/internal/secretsync"
	"github.com/keywarden/keywarden/internal/testenv"
)

// helmBudget is the restart budget TestHelmInstall's values set
// (restartBudget.global).
const helmBudget = 2

// restartBudgetAgainst checks the restart budget of a manager installed
// with restartBudget.global = helmBudget, watching namespace ns, whose
// ClusterReevitIssuer issuer is Ready: an ApiKey publishes a Secret that
// several Deployments read through envFrom, all selected by its
// rolloutRestart, and each needs a restart at once. The test plays the
// Deployment controller (no kubelet runs pods): it writes a Deployment's
// rollout status a few seconds after seeing its pod template patched, so
// a manager that ignored the budget would have more than helmBudget
// patched and unfinished at one time. Every Deployment reading the key
// must end with the Secret's current version, and the budget must have
// been used in full (helmBudget at once). Any other Deployment of ns the
// manager restarts is rolled out the same way, and counted.
func restartBudgetAgainst(t *testing.T, e *testenv.Env, ns, issuer, environment string) {
	ctx := context.Background()
	g := NewWithT(t)
	const fleet = 6
	// hold is how long a patched Deployment stays unfinished: longer than
	// the manager takes to patch every Deployment at once.
	const hold = 3 * time.Second

	deployments := func(g Gomega) []appsv1.Deployment {
		var l appsv1.DeploymentList
		g.Expect(e.Client.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		return l.Items
	}
	inFlight := func(d *appsv1.Deployment) bool {
		return secretsync.RecordsRestart(d) && d.Status.ObservedGeneration < d.Generation
	}
	rollOut := func(g Gomega, d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		g.Expect(e.Client.Status().Update(ctx, d)).To(Succeed())
	}
	for i := range fleet {
		d := consumer(ns, fmt.Sprintf("fleet-%d", i), "fleet")
		d.Labels = map[string]string{"fleet": "budget"}
		g.Expect(e.Client.Create(ctx, d)).To(Succeed())
	}
	_, err := e.AdminKubectl(ctx, []byte(fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: fleet
spec:
  issuerRef: {kind: ClusterReevitIssuer, name: %s}
  scopes: [payments:read]
  environment: %s
  rolloutRestart: [{kind: Deployment, selector: {matchLabels: {fleet: budget}}}]
`, issuer, environment)), "apply", "-n", ns, "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())

	var most int
	seenAt := map[string]time.Time{}
	g.Eventually(func(g Gomega) {
		var s corev1.Secret
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fleet"}, &s)).To(Succeed())
		hash := secretsync.RestartHash(s.Data)
		n, done := 0, 0
		// Every Deployment of the namespace counts and rolls out: the
		// converge subtest's, restarted for its ApiKey, holds a slot too.
		for _, d := range deployments(g) {
			if inFlight(&d) {
				n++
				key := fmt.Sprintf("%s/%d", d.Name, d.Generation)
				if _, ok := seenAt[key]; !ok {
					seenAt[key] = time.Now()
				} else if time.Since(seenAt[key]) >= hold {
					rollOut(g, &d)
				}
			} else if d.Labels["fleet"] == "budget" && d.Spec.Template.Annotations[secretsync.HashAnnotation("fleet")] == hash {
				done++
			}
		}
		most = max(most, n)
		g.Expect(done).To(Equal(fleet), "Deployments restarted for the current Secret and rolled out (%d rolling out)", n)
	}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Expect(most).To(BeNumerically("<=", helmBudget), "more Deployments rolled out a restart at once than the budget allows")
	g.Expect(most).To(Equal(helmBudget), "the budget was never used in full")
}
