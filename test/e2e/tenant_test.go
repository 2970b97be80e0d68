package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// boundServiceAccount makes a ServiceAccount sa in ns, binds it there
// (RoleBinding binding) to the built-in ClusterRole clusterRole, into which
// Keywarden's roles aggregate through kube-controller-manager's aggregation
// controller, and returns a kubeconfig acting as it: the rights of that
// role in ns, nothing more.
func boundServiceAccount(t *testing.T, ns, sa, binding, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: binding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	})).To(Succeed())
	kc, err := env.ServiceAccountKubeconfig(ctx, ns, sa)
	g.Expect(err).NotTo(HaveOccurred())
	return kc
}

// teamMember is a ServiceAccount of ns holding the built-in "edit"
// ClusterRole there: the rights an app team has.
func teamMember(t *testing.T, ns string) string {
	t.Helper()
	return boundServiceAccount(t, ns, "dev", "dev-edit", "edit")
}

// asTeam runs kubectl as the team member; it returns the combined output
// and whether kubectl succeeded.
func asTeam(kubeconfig string, stdin []byte, args ...string) (string, bool) {
	res, err := env.Kubectl(context.Background(), kubeconfig, stdin, args...)
	return string(res.Stdout) + string(res.Stderr), err == nil
}

// TestTenantsUnderIssuers plays two app teams holding only the aggregated
// edit role, against a ClusterReevitIssuer that selects team A's namespace
// and allows payments:read. Team A gets a working key without ever seeing
// the admin key; team B's namespace is refused; a scope outside the policy
// is refused; neither team can create issuers, read the admin Secret, or
// make the manager send a credential to a URL of its choosing.
func TestTenantsUnderIssuers(t *testing.T) {
	g := parallelCredentialTest(t)
	ctx := context.Background()
	minuteWaits(g)

	// A listener standing for a host an attacker controls.
	var stolen atomic.Int32
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	defer trap.Close()

	// The platform team: the admin key in the cluster-resource namespace,
	// one ClusterReevitIssuer selecting team A.
	suffix := fmt.Sprintf("t%d", time.Now().UnixNano()%100000)
	adminSecret := "tenant-admin-" + suffix
	createSecret(t, testenv.ManagerNamespace, adminSecret, sim.Credentials.AdminKey)
	issuer := "platform-" + suffix
	apply(t, "", fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: ClusterReevitIssuer
metadata:
  name: %s
spec:
  url: %s
  orgId: %s
  adminKeySecretRef: {name: %s}
  policy:
    allowedScopes: [payments:read]
    namespaceSelector:
      matchLabels: {keywarden.dev/tenant: %s}
`, issuer, sim.Credentials.ReevitURL, sim.Credentials.OrgID, adminSecret, suffix))
	g.Eventually(func(g Gomega) {
		conds, gen := issuerConditions(g, v1alpha1.KindClusterReevitIssuer, "", issuer)
		expectReady(g, conds, gen)
	}).Should(Succeed())

	nsA, nsB := newNamespace(t, "team-a"), newNamespace(t, "team-b")
	nsObj := &corev1.Namespace{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: nsA}, nsObj)).To(Succeed())
	nsObj.Labels["keywarden.dev/tenant"] = suffix
	g.Expect(k8s.Update(ctx, nsObj)).To(Succeed())
	devA, devB := teamMember(t, nsA), teamMember(t, nsB)

	apiKey := func(name, scope string) []byte {
		return fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: %s
spec:
  issuerRef: {kind: ClusterReevitIssuer, name: %s}
  scopes: [%s]
  environment: %s
`, name, issuer, scope, adminEnvironment())
	}

	// The aggregation controller gives edit the Keywarden rules: wait for it.
	g.Eventually(func() string {
		out, _ := asTeam(devA, nil, "auth", "can-i", "create", "apikeys.credentials.keywarden.dev", "-n", nsA)
		return strings.TrimSpace(out)
	}).Should(Equal("yes"), "the aggregated edit role lets a team create ApiKeys")

	// Team A: a working key, and the Secret readable by the team.
	out, ok := asTeam(devA, apiKey("payments", "payments:read"), "apply", "-n", nsA, "-f", "-")
	g.Expect(ok).To(BeTrue(), out)
	var keyID string
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, nsA, "payments")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		keyID = ak.Status.KeyID
		g.Expect(ak.Status.Issuer).NotTo(BeNil())
		g.Expect(ak.Status.Issuer.Kind).To(Equal(v1alpha1.KindClusterReevitIssuer))
	}).Should(Succeed())
	data, err := secretData(ctx, nsA, "payments")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data["keyId"])).To(Equal(keyID))
	out, ok = asTeam(devA, nil, "get", "secret", "payments", "-n", nsA, "-o", "jsonpath={.data.keyId}")
	g.Expect(ok).To(BeTrue(), "team A reads its own output Secret: %s", out)

	// violates applies, as the team member dev, an ApiKey that the
	// issuer's policy refuses and waits for its PolicyViolation, whose
	// message names why.
	violates := func(dev, ns, name, scope, why string) {
		t.Helper()
		out, ok := asTeam(dev, apiKey(name, scope), "apply", "-n", ns, "-f", "-")
		g.Expect(ok).To(BeTrue(), out)
		g.Eventually(func(g Gomega) {
			c := condition(getApiKey(g, ns, name).Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonPolicyViolation), c.Message)
			g.Expect(c.Message).To(ContainSubstring(why))
		}).Should(Succeed())
	}
	// Team A, a scope outside the policy: PolicyViolation, nothing created.
	violates(devA, nsA, "greedy", "payments:write", "payments:write")
	// Team B, a namespace the issuer does not select: PolicyViolation.
	violates(devB, nsB, "payments", "payments:read", "not selected")
	g.Consistently(func(g Gomega) string {
		return getApiKey(g, nsB, "payments").Status.KeyID
	}, 3*time.Second, 250*time.Millisecond).Should(BeEmpty(), "no key for a namespace not selected")

	// What a team cannot do: make or change issuers, read the admin key.
	for _, c := range []struct{ verb, resource, ns string }{
		{"create", "reevitissuers.credentials.keywarden.dev", nsA},
		{"create", "revioissuers.credentials.keywarden.dev", nsA},
		{"create", "clusterreevitissuers.credentials.keywarden.dev", ""},
		{"patch", "clusterreevitissuers.credentials.keywarden.dev", ""},
		{"get", "secrets", testenv.ManagerNamespace},
		{"list", "secrets", testenv.ManagerNamespace},
		{"patch", "apikeys.credentials.keywarden.dev", nsA + "/status"},
	} {
		args := []string{"auth", "can-i", c.verb, c.resource}
		ns, sub, _ := strings.Cut(c.ns, "/")
		if ns != "" {
			args = append(args, "-n", ns)
		}
		if sub != "" {
			args = append(args, "--subresource="+sub)
		}
		out, _ := asTeam(devA, nil, args...)
		answer := strings.Fields(out + " ?")[0] // kubectl may add a warning line
		g.Expect(answer).To(Equal("no"), "team A may not %s %s in %q: %s", c.verb, c.resource, c.ns, out)
	}
	out, ok = asTeam(devA, nil, "get", "secret", adminSecret, "-n", testenv.ManagerNamespace)
	g.Expect(ok).To(BeFalse(), "team A read the admin Secret: %s", out)
	g.Expect(out).To(ContainSubstring("forbidden"))

	// The test control plane enforces OwnerReferencesPermissionEnforcement:
	// an owner reference with blockOwnerDeletion needs the right to update
	// the owner's finalizers, which the team lacks and the manager holds
	// (every output Secret the manager wrote above carries one).
	owner := getApiKey(g, nsA, "payments")
	out, ok = asTeam(devA, fmt.Appendf(nil, `apiVersion: v1
kind: Secret
metadata:
  name: blocking
  ownerReferences:
  - {apiVersion: credentials.keywarden.dev/v1alpha1, kind: ApiKey, name: payments, uid: %s, controller: true, blockOwnerDeletion: true}
stringData: {x: "z"}
`, owner.UID), "apply", "-n", nsA, "-f", "-")
	g.Expect(ok).To(BeFalse(), "blockOwnerDeletion without the finalizers right was admitted: %s", out)
	g.Expect(out).To(ContainSubstring("blockOwnerDeletion"))

	// The confused deputy: a team points an issuer at its listener (refused
	// by RBAC), or names an issuer that is not there (IssuerNotFound): no
	// spec it can write makes the manager send anything to its host.
	out, ok = asTeam(devA, fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: ReevitIssuer
metadata: {name: mine}
spec:
  url: %s
  orgId: org_x
  adminKeySecretRef: {name: payments, key: apiKey}
`, trap.URL), "apply", "-n", nsA, "-f", "-")
	g.Expect(ok).To(BeFalse(), "a team created an issuer: %s", out)
	out, ok = asTeam(devA, fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata: {name: deputy}
spec:
  issuerRef: {name: mine}
  scopes: [payments:read]
  environment: %s
`, adminEnvironment()), "apply", "-n", nsA, "-f", "-")
	g.Expect(ok).To(BeTrue(), out)
	g.Eventually(func(g Gomega) string {
		return condition(getApiKey(g, nsA, "deputy").Status.Conditions, v1alpha1.ConditionReady).Reason
	}).Should(Equal(v1alpha1.ReasonIssuerNotFound))
	g.Consistently(stolen.Load, 2*time.Second, 250*time.Millisecond).Should(BeZero(), "nothing reached the team's listener")
}
