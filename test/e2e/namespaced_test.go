package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/keywarden/keywarden/internal/testenv"
)

// The names config/namespaced gives the manager's identity and rights, and
// the namespaces of its example.
const (
	nsdServiceAccount = "keywarden-controller-manager"
	nsdRole           = "keywarden-manager-role"
	nsdTeamA          = "team-a"
	nsdTeamB          = "team-b"
)

// nsdRenamed are the objects of the manager's identity and rights the test
// applies under names of its own, so the suite's manager keeps its own.
var nsdRenamed = map[string]bool{
	nsdServiceAccount:                       true,
	nsdRole:                                 true,
	"keywarden-manager-rolebinding":         true,
	"keywarden-leader-election-role":        true,
	"keywarden-leader-election-rolebinding": true,
}

// rbacRules decodes the rules of a Role or ClusterRole.
func rbacRules(g Gomega, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	var r rbacv1.ClusterRole
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r)).To(Succeed())
	return r.Rules
}

// ruleTriples flattens rules into group/resource:verb strings.
func ruleTriples(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, grp := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, grp+"/"+res+":"+v)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestNamespacedInstall renders config/namespaced (issue 15), checks that
// its RBAC holds exactly the generated rules of config/rbac/role.yaml with
// no cluster-wide grant on Secrets, dry-runs it against the API server,
// then runs a second manager under its rights (renamed, in namespaces of
// its own, in a shard of its own so the suite's manager leaves its objects
// alone): an ApiKey and a RevioToken in a watched namespace become Ready
// with their Secrets; an ApiKey in a namespace not watched is ignored, and
// the manager may not read Secrets there.
func TestNamespacedInstall(t *testing.T) {
	g := parallelCredentialTest(t)
	ctx := context.Background()
	minuteWaits(g)

	rendered, err := env.Kustomize(ctx, "config/namespaced")
	g.Expect(err).NotTo(HaveOccurred())
	objs, err := testenv.SplitDocuments(rendered)
	g.Expect(err).NotTo(HaveOccurred())
	defaults, err := env.RenderInstall(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	// No ClusterRole grants anything on Secrets.
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" {
			continue
		}
		for _, tr := range ruleTriples(rbacRules(g, o)) {
			g.Expect(tr).NotTo(Or(HavePrefix("/secrets:"), HavePrefix("*/"), HavePrefix("/*:")), "ClusterRole %s grants %s", o.GetName(), tr)
		}
	}

	// The ClusterRole and each watched namespace's Role together hold the
	// generated rules, no more and no fewer; the Role has only namespaced
	// ones, and each is bound to the manager's ServiceAccount.
	generated := testenv.Find(defaults, "ClusterRole", nsdRole)
	g.Expect(generated).NotTo(BeNil(), "config/default renders no ClusterRole %s", nsdRole)
	cr := testenv.Find(objs, "ClusterRole", nsdRole)
	g.Expect(cr).NotTo(BeNil(), "config/namespaced renders no ClusterRole %s", nsdRole)
	clusterTriples := ruleTriples(rbacRules(g, cr))
	var deploy *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deploy = o
		}
	}
	g.Expect(deploy).NotTo(BeNil())
	var args []string
	cs, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	g.Expect(cs).NotTo(BeEmpty())
	for _, a := range cs[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	var watched []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--namespaces="); ok {
			watched = strings.Split(v, ",")
		}
	}
	g.Expect(watched).To(ConsistOf(nsdTeamA, nsdTeamB), "the manager's --namespaces in %v", args)
	for _, ns := range append(slices.Clone(watched), testenv.ClusterResourceNamespace) {
		var role, binding *unstructured.Unstructured
		for _, o := range objs {
			if o.GetNamespace() == ns && o.GetName() == nsdRole && o.GetKind() == "Role" {
				role = o
			}
			if o.GetNamespace() == ns && o.GetName() == "keywarden-manager-rolebinding" && o.GetKind() == "RoleBinding" {
				binding = o
			}
		}
		g.Expect(role).NotTo(BeNil(), "no Role %s in %s", nsdRole, ns)
		g.Expect(binding).NotTo(BeNil(), "no RoleBinding in %s", ns)
		var rb rbacv1.RoleBinding
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(binding.Object, &rb)).To(Succeed())
		g.Expect(rb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nsdRole}))
		g.Expect(rb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: nsdServiceAccount, Namespace: testenv.ManagerNamespace}))
		roleTriples := ruleTriples(rbacRules(g, role))
		union := append(slices.Clone(clusterTriples), roleTriples...)
		slices.Sort(union)
		union = slices.Compact(union)
		g.Expect(union).To(Equal(ruleTriples(rbacRules(g, generated))), "ClusterRole + Role in %s against config/rbac/role.yaml", ns)
		for _, tr := range roleTriples {
			g.Expect(tr).NotTo(ContainSubstring("/cluster"), "Role in %s grants a cluster-scoped %s", ns, tr)
			g.Expect(tr).NotTo(ContainSubstring("/namespaces:"), "Role in %s grants %s", ns, tr)
		}
	}
	for _, tr := range clusterTriples {
		res := tr[strings.Index(tr, "/")+1 : strings.Index(tr, ":")]
		g.Expect(strings.HasPrefix(res, "cluster") || slices.Contains([]string{"namespaces", "tokenreviews", "subjectaccessreviews"}, res)).
			To(BeTrue(), "the ClusterRole grants %s, which is namespaced", tr)
	}

	// This run's copy: namespaces and names of its own.
	suffix := fmt.Sprintf("n%d", time.Now().UnixNano()%100000)
	nsMap := map[string]string{nsdTeamA: nsdTeamA + "-" + suffix, nsdTeamB: nsdTeamB + "-" + suffix}
	for _, ns := range nsMap {
		g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	var rbac []*unstructured.Unstructured
	for _, o := range objs {
		if to, ok := nsMap[o.GetNamespace()]; ok {
			o.SetNamespace(to)
		}
		switch o.GetKind() {
		case "Deployment":
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := cs[0].(map[string]any)
			as := c["args"].([]any)
			for i, a := range as {
				if strings.HasPrefix(a.(string), "--namespaces=") {
					as[i] = "--namespaces=" + nsMap[nsdTeamA] + "," + nsMap[nsdTeamB]
				}
			}
			g.Expect(unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")).To(Succeed())
		case "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
			if !nsdRenamed[o.GetName()] {
				continue
			}
			rbac = append(rbac, o)
		}
	}

	// The whole install passes the API server's checks (server-side dry
	// run: nothing changes, the suite's install stays as it is).
	all, err := testenv.JoinDocuments(objs)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = env.AdminKubectl(ctx, all, "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())

	// The manager's identity and rights, renamed, for real.
	for _, o := range rbac {
		o.SetName(o.GetName() + "-" + suffix)
		if o.GetKind() == "RoleBinding" || o.GetKind() == "ClusterRoleBinding" {
			ref, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
			g.Expect(unstructured.SetNestedField(o.Object, ref+"-"+suffix, "roleRef", "name")).To(Succeed())
			subs, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subs {
				if m := s.(map[string]any); m["name"] == nsdServiceAccount {
					m["name"] = nsdServiceAccount + "-" + suffix
				}
			}
			g.Expect(unstructured.SetNestedSlice(o.Object, subs, "subjects")).To(Succeed())
		}
	}
	b, err := testenv.JoinDocuments(rbac)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = env.AdminKubectl(ctx, b, "apply", "--server-side", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())
	sa := nsdServiceAccount + "-" + suffix
	kubeconfig, err := env.ServiceAccountKubeconfig(ctx, testenv.ManagerNamespace, sa)
	g.Expect(err).NotTo(HaveOccurred())
	canSA := func(verb, resource, ns string) string {
		a := []string{"auth", "can-i", verb, resource}
		if ns == "" {
			a = append(a, "--all-namespaces")
		} else {
			a = append(a, "-n", ns)
		}
		res, _ := env.Kubectl(ctx, kubeconfig, nil, a...)
		return strings.TrimSpace(string(res.Stdout))
	}
	third := newNamespace(t, "unwatched")
	// The API server's authorizer sees the bindings just applied through its
	// informers: wait until it grants them, then judge what it refuses.
	g.Eventually(func(g Gomega) {
		g.Expect(canSA("get", "secrets", nsMap[nsdTeamA])).To(Equal("yes"))
		g.Expect(canSA("create", "secrets", nsMap[nsdTeamB])).To(Equal("yes"))
		g.Expect(canSA("watch", "clusterreevitissuers.credentials.keywarden.dev", "")).To(Equal("yes"))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(canSA("get", "secrets", third)).To(Equal("no"), "the namespaced manager may read Secrets in a namespace it does not watch")
	g.Expect(canSA("list", "secrets", "")).To(Equal("no"), "the namespaced manager may list Secrets cluster-wide")

	shard := "namespaced-" + suffix
	m, err := env.StartManager(ctx, testenv.ManagerOptions{
		AllowedEndpoints:         sim.Endpoints(),
		Kubeconfig:               kubeconfig,
		ClusterResourceNamespace: testenv.ClusterResourceNamespace,
		Args: []string{
			"--namespaces=" + nsMap[nsdTeamA] + "," + nsMap[nsdTeamB],
			"--leader-election-id=keywarden-" + shard,
			"--watch-label-selector=keywarden.dev/shard in (" + shard + ")",
		},
	})
	if m != nil {
		t.Cleanup(func() {
			if err := m.Stop(10 * time.Second); err != nil {
				t.Errorf("stop the namespaced manager: %v", err)
			}
		})
	}
	g.Expect(err).NotTo(HaveOccurred())

	// shardManifest labels a manifest's ApiKey or RevioToken into this
	// run's shard, leaving its issuer as it is (issuers are not sharded).
	shardManifest := func(manifest []byte) []byte {
		issuer, obj := splitIssuer(t, manifest)
		b, err := testenv.JoinDocuments([]*unstructured.Unstructured{issuer, setShard(obj, shard)})
		g.Expect(err).NotTo(HaveOccurred())
		return b
	}

	// A watched namespace: an ApiKey and a RevioToken become Ready with
	// their Secrets, written by the namespaced manager.
	nsA := nsMap[nsdTeamA]
	createSecret(t, nsA, "reevit-admin", sim.Credentials.AdminKey)
	createSecret(t, nsA, "revio-api-key", sim.Credentials.RevioAPIKey)
	apply(t, nsA, shardManifest(apiKeyManifest("payments", time.Hour, time.Minute)))
	apply(t, nsA, shardManifest(revioTokenManifest("billing")))
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, nsA, "payments")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		data := secretWith(g, nsA, "payments", "apiKey")
		g.Expect(string(data["keyId"])).To(Equal(ak.Status.KeyID))
	}).Should(Succeed(), "namespaced manager log:\n%s", m.LogTail(30))
	g.Eventually(func(g Gomega) {
		rt := getRevioToken(g, nsA, "billing")
		expectReady(g, rt.Status.Conditions, rt.Generation)
		secretWith(g, nsA, "billing", "token")
	}).Should(Succeed(), "namespaced manager log:\n%s", m.LogTail(30))
	for _, x := range []struct{ kind, name string }{{"ReevitIssuer", reevitIssuerName}, {"RevioIssuer", revioIssuerName}} {
		g.Eventually(func(g Gomega) {
			conds, gen := issuerConditions(g, x.kind, nsA, x.name)
			expectReady(g, conds, gen)
		}).Should(Succeed())
	}

	// A namespace it does not watch: the ApiKey of its shard there gets no
	// status at all (and the suite's manager leaves it to the shard).
	createSecret(t, third, "reevit-admin", sim.Credentials.AdminKey)
	apply(t, third, shardManifest(apiKeyManifest("ignored", time.Hour, time.Minute)))
	g.Consistently(func(g Gomega) {
		ak := getApiKey(g, third, "ignored")
		g.Expect(ak.Status.Conditions).To(BeEmpty())
		g.Expect(ak.Status.KeyID).To(BeEmpty())
		g.Expect(ak.Finalizers).To(BeEmpty())
	}, 5*time.Second, 250*time.Millisecond).Should(Succeed(), "an ApiKey outside --namespaces was reconciled")
	data, err := secretData(ctx, third, "ignored")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(BeNil(), "a Secret was written in a namespace not watched")
	log, err := m.Log()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(log)).NotTo(ContainSubstring(third), "the namespaced manager saw the unwatched namespace's objects")

	// Its rights sufficed: nothing it did was forbidden, save the events
	// about cluster issuers (of other tests), which go to the default
	// namespace (see config/namespaced/kustomization.yaml).
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "forbidden") && !strings.Contains(l, `in the namespace \"default\"`) {
			t.Errorf("the namespaced manager was refused: %s", l)
		}
	}
}
