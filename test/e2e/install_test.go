package e2e

import (
	"context"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/internal/testenv"
)

// TestInstallDryRun applies the complete config/default, Deployment
// included, with --dry-run=server: the API server validates and admits
// every object (the namespace enforces the restricted Pod Security level,
// so a pod template that breaks it draws a warning, which fails the test).
func TestInstallDryRun(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	rendered, out, stderr := serverDryRun(ctx, g, "config/default")
	g.Expect(out).To(ContainSubstring("deployment.apps/keywarden-controller-manager serverside-applied (server dry run)"))
	g.Expect(stderr).NotTo(ContainSubstring("PodSecurity"), "the Deployment's pod template breaks the restricted Pod Security level")
	g.Expect(stderr).NotTo(ContainSubstring("Warning"))
	objs, err := testenv.SplitDocuments(rendered)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Count(out, "(server dry run)")).To(Equal(len(objs)), "kubectl did not report every object:\n%s", out)
	// A dry run creates nothing.
	err = k8s.Get(ctx, client.ObjectKey{Namespace: testenv.ManagerNamespace, Name: "keywarden-controller-manager"}, &appsv1.Deployment{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the dry run created the Deployment (err %v)", err)
}

// serverDryRun renders the kustomize overlay dir and applies it as the
// cluster admin with a server-side dry run, so that the API server
// validates and admits every object and nothing changes; it fails unless
// kubectl succeeds, and returns the rendered manifests and what kubectl
// wrote to stdout and stderr.
func serverDryRun(ctx context.Context, g Gomega, dir string) (rendered []byte, stdout, stderr string) {
	rendered, err := env.Kustomize(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())
	res, err := env.AdminKubectl(ctx, rendered, "apply", "--server-side", "--dry-run=server", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())
	return rendered, string(res.Stdout), string(res.Stderr)
}

// TestInstallComplete checks config/default renders a complete install:
// namespace, CRDs, RBAC, ServiceAccount, a Deployment with probes, a
// non-root read-only security context, resources and leader election, and
// a metrics Service.
func TestInstallComplete(t *testing.T) {
	g := NewWithT(t)
	objs, err := env.RenderInstall(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	for _, want := range [][2]string{
		{"Namespace", testenv.ManagerNamespace},
		{"CustomResourceDefinition", "apikeys.credentials.keywarden.dev"},
		{"CustomResourceDefinition", "reviotokens.credentials.keywarden.dev"},
		{"CustomResourceDefinition", "reevitissuers.credentials.keywarden.dev"},
		{"CustomResourceDefinition", "clusterreevitissuers.credentials.keywarden.dev"},
		{"CustomResourceDefinition", "revioissuers.credentials.keywarden.dev"},
		{"CustomResourceDefinition", "clusterrevioissuers.credentials.keywarden.dev"},
		{"ServiceAccount", testenv.ManagerServiceAccount},
		{"ClusterRole", testenv.ManagerRole},
		{"ClusterRoleBinding", "keywarden-manager-rolebinding"},
		{"Role", "keywarden-leader-election-role"},
		{"RoleBinding", "keywarden-leader-election-rolebinding"},
		{"Service", "keywarden-controller-manager-metrics-service"},
		{"Deployment", "keywarden-controller-manager"},
	} {
		g.Expect(testenv.Find(objs, want[0], want[1])).NotTo(BeNil(), "config/default renders no %s %s", want[0], want[1])
	}
	var d appsv1.Deployment
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(testenv.Find(objs, "Deployment", "keywarden-controller-manager").Object, &d)).To(Succeed())
	g.Expect(d.Namespace).To(Equal(testenv.ManagerNamespace))
	pod := d.Spec.Template.Spec
	g.Expect(pod.ServiceAccountName).To(Equal(testenv.ManagerServiceAccount))
	g.Expect(pod.SecurityContext).NotTo(BeNil())
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(pod.Containers).To(HaveLen(1))
	c := pod.Containers[0]
	g.Expect(c.LivenessProbe).NotTo(BeNil())
	g.Expect(c.ReadinessProbe).NotTo(BeNil())
	g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
	g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
	g.Expect(c.SecurityContext).NotTo(BeNil())
	g.Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(c.SecurityContext.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
	g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
	g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
	g.Expect(c.Args).To(ContainElement("--leader-elect"))
}

// TestDockerfileBuildFlags: the Dockerfile builds the manager with the
// Makefile's GO_BUILD_FLAGS and CGO_ENABLED=0, testenv builds the binaries
// under test with the same, and the binary under test is what those flags
// make: static, stripped, trimmed.
func TestDockerfileBuildFlags(t *testing.T) {
	g := NewWithT(t)
	makefile, err := os.ReadFile(filepath.Join(env.RepoRoot, "Makefile"))
	g.Expect(err).NotTo(HaveOccurred())
	dockerfile, err := os.ReadFile(filepath.Join(env.RepoRoot, "Dockerfile"))
	g.Expect(err).NotTo(HaveOccurred())

	m := regexp.MustCompile(`(?m)^GO_BUILD_FLAGS \?= (.+)$`).FindSubmatch(makefile)
	g.Expect(m).NotTo(BeNil(), "the Makefile sets no GO_BUILD_FLAGS")
	makeFlags := shellWords(string(m[1]))
	g.Expect(regexp.MustCompile(`(?m)^export CGO_ENABLED \?= 0$`).Match(makefile)).To(BeTrue(), "the Makefile does not export CGO_ENABLED ?= 0")
	g.Expect(regexp.MustCompile(`(?m)^\tgo build \$\(GO_BUILD_FLAGS\) -o bin/manager \./cmd/manager$`).Match(makefile)).To(BeTrue(),
		"make build does not build the manager with $(GO_BUILD_FLAGS)")

	var run string
	for _, l := range strings.Split(string(dockerfile), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			g.Expect(run).To(BeEmpty(), "more than one go build in the Dockerfile")
			run = strings.TrimPrefix(l, "RUN ")
		}
	}
	g.Expect(run).NotTo(BeEmpty(), "no RUN ... go build in the Dockerfile")
	words := shellWords(run)
	i := slices.Index(words, "go")
	g.Expect(i).To(BeNumerically(">=", 0))
	g.Expect(words[:i]).To(ContainElement("CGO_ENABLED=0"), "the Dockerfile's go build runs without CGO_ENABLED=0")
	g.Expect(words[i+1]).To(Equal("build"))
	var dockerFlags []string
	for j := i + 2; j < len(words); j++ {
		switch {
		case words[j] == "-o":
			j++ // the output path
		case strings.HasPrefix(words[j], "-"):
			dockerFlags = append(dockerFlags, words[j])
		default:
			g.Expect(words[j]).To(Equal("./cmd/manager"))
		}
	}
	g.Expect(dockerFlags).To(Equal(makeFlags), "Dockerfile and Makefile build flags differ")
	g.Expect(testenv.BuildFlags).To(Equal(makeFlags), "the e2e binaries are not built like make build")

	// The manager under test carries these settings (go omits -ldflags from
	// the build info under -trimpath: the ELF checks below stand for it).
	info, err := buildinfo.ReadFile(env.ManagerBin)
	g.Expect(err).NotTo(HaveOccurred())
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	g.Expect(settings).To(HaveKeyWithValue("CGO_ENABLED", "0"))
	g.Expect(settings).To(HaveKeyWithValue("-trimpath", "true"))
	f, err := elf.Open(env.ManagerBin)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "the manager is dynamically linked")
	}
	for _, s := range f.Sections {
		g.Expect(s.Name).NotTo(Or(Equal(".symtab"), HavePrefix(".debug_"), HavePrefix(".zdebug_")), "the manager is not stripped")
	}
}

// shellWords splits a shell command line into words, honouring backslash
// escapes and quotes (enough for a Makefile variable and a RUN line).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// rbacAllowList is every right the manager may hold cluster-wide:
// apiGroup -> resource -> verbs. A rule beyond it fails the suite, as a
// missing rule fails the positive tests (the manager runs with nothing else).
var rbacAllowList = map[string]map[string][]string{
	"": {
		"secrets": {"get", "list", "watch", "create", "patch"},
		"events":  {"create", "patch"},
		// Namespace labels, for the cluster issuers' namespaceSelector.
		"namespaces": {"get", "list", "watch"},
	},
	"events.k8s.io": {"events": {"create", "patch"}},
	// Rollout targets: read (list for selector targets) and patch their
	// pod template; never watch, never create or delete.
	"apps": {
		"deployments":  {"get", "list", "patch"},
		"statefulsets": {"get", "list", "patch"},
		"daemonsets":   {"get", "list", "patch"},
	},
	"credentials.keywarden.dev": {
		"apikeys":            {"get", "list", "watch", "patch"},
		"apikeys/status":     {"get", "patch"},
		"apikeys/finalizers": {"update"},
		"reviotokens":        {"get", "list", "watch"},
		"reviotokens/status": {"get", "patch"},
		// The owner reference (blockOwnerDeletion) of a RevioToken's Secret.
		"reviotokens/finalizers": {"update"},
		// Issuers: read them, hold the Reevit ones with a finalizer while
		// keys made through them live (patch, and update of /finalizers),
		// and write their status. Rev.io issuers hold no key, so no
		// finalizer. Never create, update or delete one: people do.
		"reevitissuers":                   {"get", "list", "watch", "patch"},
		"clusterreevitissuers":            {"get", "list", "watch", "patch"},
		"revioissuers":                    {"get", "list", "watch"},
		"clusterrevioissuers":             {"get", "list", "watch"},
		"reevitissuers/status":            {"get", "patch"},
		"clusterreevitissuers/status":     {"get", "patch"},
		"revioissuers/status":             {"get", "patch"},
		"clusterrevioissuers/status":      {"get", "patch"},
		"reevitissuers/finalizers":        {"update"},
		"clusterreevitissuers/finalizers": {"update"},
	},
	// The metrics endpoint checks its callers.
	"authentication.k8s.io": {"tokenreviews": {"create"}},
	"authorization.k8s.io":  {"subjectaccessreviews": {"create"}},
}

// leaderElectionAllowList is what the Role in keywarden-system may grant.
var leaderElectionAllowList = map[string]map[string][]string{
	"coordination.k8s.io": {"leases": {"get", "list", "watch", "create", "update", "patch", "delete"}},
	"":                    {"events": {"create", "patch"}},
	"events.k8s.io":       {"events": {"create", "patch"}},
}

// TestRBACLeastPrivilege fails on excessive RBAC: config/rbac/role.yaml and
// every role config/default binds to the manager's ServiceAccount grant
// nothing beyond the allow-lists; and the API server, asked as the manager,
// agrees.
func TestRBACLeastPrivilege(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()

	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	docs, err := testenv.SplitDocuments(b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(docs).To(HaveLen(1))
	var generated rbacv1.ClusterRole
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(docs[0].Object, &generated)).To(Succeed())
	g.Expect(generated.Name).To(Equal(testenv.ManagerRole))
	g.Expect(generated.Rules).NotTo(BeEmpty(), "config/rbac/role.yaml is empty: run make manifests")
	checkRules(t, "config/rbac/role.yaml", generated.Rules, rbacAllowList)

	// Every binding of the ServiceAccount in the install, and its role.
	bound := 0
	for _, o := range installed {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		var rb rbacv1.RoleBinding // same shape as a ClusterRoleBinding
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &rb)).To(Succeed())
		if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == testenv.ManagerServiceAccount && s.Namespace == testenv.ManagerNamespace
		}) {
			continue
		}
		bound++
		role := testenv.Find(installed, rb.RoleRef.Kind, rb.RoleRef.Name)
		g.Expect(role).NotTo(BeNil(), "%s %s binds the manager to %s %s, which config/default does not define", o.GetKind(), o.GetName(), rb.RoleRef.Kind, rb.RoleRef.Name)
		rules := rulesOf(t, role)
		where := rb.RoleRef.Kind + " " + rb.RoleRef.Name + " (bound by " + o.GetName() + ")"
		switch {
		case rb.RoleRef.Kind == "ClusterRole" && rb.RoleRef.Name == testenv.ManagerRole:
			g.Expect(rules).To(Equal(generated.Rules), "config/default changes the generated role's rules")
			checkRules(t, where, rules, rbacAllowList)
		case o.GetKind() == "RoleBinding" && rb.RoleRef.Kind == "Role" && o.GetNamespace() == testenv.ManagerNamespace:
			checkRules(t, where, rules, leaderElectionAllowList)
		default:
			t.Errorf("config/default also binds the manager to %s", where)
		}
	}
	g.Expect(bound).To(Equal(2), "the manager should be bound to its ClusterRole and its leader-election Role only")

	// The API server's view of the manager's identity.
	for _, c := range []permission{
		{"create", "secrets", "", true},
		{"patch", "secrets", "", true},
		{"watch", "apikeys.credentials.keywarden.dev", "", true},
		{"watch", "clusterreevitissuers.credentials.keywarden.dev", "", true},
		{"patch", "reevitissuers.credentials.keywarden.dev", "", true},
		{"list", "namespaces", "", true},
		{"create", "leases.coordination.k8s.io", testenv.ManagerNamespace, true},
		{"delete", "secrets", "", false},
		{"deletecollection", "secrets", "", false},
		{"create", "apikeys.credentials.keywarden.dev", "", false},
		{"delete", "apikeys.credentials.keywarden.dev", "", false},
		// The manager never makes or removes an issuer: people do.
		{"create", "clusterreevitissuers.credentials.keywarden.dev", "", false},
		{"create", "reevitissuers.credentials.keywarden.dev", "", false},
		{"update", "clusterrevioissuers.credentials.keywarden.dev", "", false},
		{"delete", "revioissuers.credentials.keywarden.dev", "", false},
		{"patch", "namespaces", "", false},
		{"create", "leases.coordination.k8s.io", "default", false},
		{"list", "pods", "", false},
		{"list", "configmaps", "", false},
		{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", false},
		{"impersonate", "users", "", false},
		{"*", "*", "", false},
	} {
		got, err := canI(ctx, c.verb, c.resource, c.ns)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(c.want), "can the manager %s %s (namespace %q)? got %v", c.verb, c.resource, c.ns, got)
	}
}

func rulesOf(t *testing.T, u *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var r rbacv1.ClusterRole // a Role's rules have the same shape
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return r.Rules
}

// checkRules reports every right in rules that allow does not list.
func checkRules(t *testing.T, where string, rules []rbacv1.PolicyRule, allow map[string]map[string][]string) {
	t.Helper()
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("%s grants non-resource URLs %v", where, r.NonResourceURLs)
		}
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				for _, verb := range r.Verbs {
					if !slices.Contains(allow[group][res], verb) {
						t.Errorf("%s grants %q on %q in API group %q, which the manager does not need", where, verb, res, group)
					}
				}
			}
		}
	}
}
