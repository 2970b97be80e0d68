package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// chartDir is the Helm chart, relative to the repository root.
const chartDir = "charts/keywarden"

// helmBin is the Helm binary the suite runs; see helmBinary.
var helmBin struct {
	once sync.Once
	path string
	err  error
}

// helmBinary returns Helm, the Go tool of hack/tools (no downloaded binary):
// $KEYWARDEN_HELM, which make test builds once (bin/tools/helm, the Makefile's
// tools target), or else one built here into the suite's directory. Only go
// build's exit status is judged: on a machine that never fetched Helm's
// modules, Go prints "go: downloading ..." on stderr, which is not Helm's
// answer. The stderr helm judges is Helm's own.
func helmBinary(ctx context.Context, e *testenv.Env) (string, error) {
	helmBin.once.Do(func() {
		if p := os.Getenv("KEYWARDEN_HELM"); p != "" {
			helmBin.path = p
			return
		}
		path := filepath.Join(e.Dir, "bin", "helm")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "helm.sh/helm/v4/cmd/helm")
		cmd.Dir = filepath.Join(e.RepoRoot, "hack", "tools")
		out, err := cmd.CombinedOutput()
		if err != nil {
			helmBin.err = fmt.Errorf("go build helm: %w\n%s", err, out)
			return
		}
		helmBin.path = path
	})
	return helmBin.path, helmBin.err
}

// helm runs Helm from the repository root, with its configuration, cache and
// data under e's directory and no kubeconfig but the one args name.
func helm(ctx context.Context, e *testenv.Env, args ...string) ([]byte, error) {
	bin, err := helmBinary(ctx, e)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	home := filepath.Join(e.Dir, "helm")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = e.RepoRoot
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "KUBECONFIG" && !strings.HasPrefix(k, "HELM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	if s := strings.TrimSpace(errb.String()); s != "" {
		return out.Bytes(), fmt.Errorf("helm %s wrote to stderr:\n%s", strings.Join(args, " "), s)
	}
	return out.Bytes(), nil
}

// helmTemplate renders the chart as release name in namespace with values
// (YAML), CRDs included.
func helmTemplate(t *testing.T, name, namespace, values string) []*unstructured.Unstructured {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := helm(context.Background(), env, "template", name, chartDir, "--namespace", namespace, "--values", f)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.SplitDocuments(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomizeOverlay renders a kustomization written into a temporary
// directory; base in it stands for the relative path to config/<base>.
func kustomizeOverlay(t *testing.T, kustomization, base string) []*unstructured.Unstructured {
	t.Helper()
	dir, err := os.MkdirTemp(env.Dir, "overlay-")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, filepath.Join(env.RepoRoot, "config", base))
	if err != nil {
		t.Fatal(err)
	}
	k := strings.ReplaceAll(kustomization, "$BASE", rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := env.AdminKubectl(context.Background(), nil, "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.SplitDocuments(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestHelmLint: helm lint --strict passes with the default values and with
// every optional object on, and values.schema.json refuses bad values.
func TestHelmLint(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	for _, set := range []string{"",
		"prometheus.serviceMonitor.enabled=true,prometheus.prometheusRule.enabled=true,metrics.secure=false,logLevel=debug",
		"allowedEndpoints[0]=https://api.reevit.com,allowedEndpoints[1]=https://reevit.example.com/v1,clusterResourceNamespace=platform,watchLabelSelector=!keywarden.dev/shard",
	} {
		args := []string{"lint", "--strict", chartDir}
		if set != "" {
			args = append(args, "--set", set)
		}
		out, err := helm(ctx, env, args...)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(out)).To(ContainSubstring("0 chart(s) failed"))
	}
	for set, want := range map[string]string{
		"logLevel=loud":               "/logLevel",
		"replicaCount=-1":             "/replicaCount",
		"image.pullPolicy=Sometimes":  "/image/pullPolicy",
		"namespaces[0]=Not_A_Name":    "/namespaces/0",
		"leaderElection.enabled=nope": "/leaderElection/enabled",
		"metircs.port=8443":           "metircs",
		// An endpoint is a base URL, and the namespace a namespace name.
		"allowedEndpoints[0]=api.reevit.com":  "/allowedEndpoints/0",
		"clusterResourceNamespace=Platform_1": "/clusterResourceNamespace",
		"watchLabelSelector=true":             "/watchLabelSelector",
	} {
		_, err := helm(ctx, env, "template", "keywarden", chartDir, "--set", set)
		g.Expect(err).To(MatchError(ContainSubstring(want)), "values.schema.json accepts %s", set)
	}
}

// TestHelmTemplateMatchesKustomize renders the chart and config/ (kustomize)
// with the same settings and compares them object by object: the same
// objects with the same names, identical CRDs, identical RBAC rules,
// bindings and aggregation labels, the same pod spec (args, image, probes,
// security context, resources) and the same Service ports.
func TestHelmTemplateMatchesKustomize(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		kust, err := env.RenderInstall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// kustomize's image is a placeholder that make deploy replaces.
		chart := helmTemplate(t, "keywarden", testenv.ManagerNamespace, "image: {repository: controller, tag: latest}\n")
		compareRenders(t, kust, chart)
	})
	t.Run("settings", func(t *testing.T) {
		kust := kustomizeOverlay(t, `resources:
- $BASE
images:
- name: controller
  newName: registry.example.com/keywarden
  newTag: v0.1.0
patches:
- target: {kind: Deployment, name: keywarden-controller-manager}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 2
    - op: replace
      path: /spec/template/spec/containers/0/args
      value:
      - --health-probe-bind-address=:8081
      - --metrics-bind-address=:8443
      - --leader-election-lease-duration=30s
      - --namespaces=team-a,team-b
      - --watch-label-selector=keywarden.dev/shard in (shard1)
      - --allowed-endpoints=https://api.reevit.com,https://reevit.example.com
      - --cluster-resource-namespace=platform-credentials
      - --zap-log-level=debug
      - --drift-check-interval=5m
    - op: replace
      path: /spec/template/spec/containers/0/resources
      value: {requests: {cpu: 50m, memory: 128Mi}, limits: {cpu: "1", memory: 512Mi}}
`, "default")
		chart := helmTemplate(t, "keywarden", testenv.ManagerNamespace, `image: {repository: registry.example.com/keywarden, tag: v0.1.0}
replicaCount: 2
leaderElection: {enabled: false, leaseDuration: 30s}
namespaces: [team-a, team-b]
watchLabelSelector: keywarden.dev/shard in (shard1)
allowedEndpoints: [https://api.reevit.com, https://reevit.example.com]
clusterResourceNamespace: platform-credentials
logLevel: debug
extraArgs: [--drift-check-interval=5m]
resources: {requests: {cpu: 50m, memory: 128Mi}, limits: {cpu: "1", memory: 512Mi}}
`)
		compareRenders(t, kust, chart)
	})
	t.Run("prometheus", func(t *testing.T) {
		kust := kustomizeOverlay(t, "resources:\n- $BASE\n", "prometheus")
		chart := helmTemplate(t, "keywarden", testenv.ManagerNamespace,
			"prometheus: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}}\n")
		g := NewWithT(t)
		for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
			var k, c []*unstructured.Unstructured
			for _, o := range kust {
				if o.GetKind() == kind {
					k = append(k, o)
				}
			}
			for _, o := range chart {
				if o.GetKind() == kind {
					c = append(c, o)
				}
			}
			g.Expect(k).To(HaveLen(1), "config/prometheus renders one %s", kind)
			g.Expect(c).To(HaveLen(1), "the chart renders one %s", kind)
			g.Expect(c[0].GetNamespace()).To(Equal(k[0].GetNamespace()))
			if kind == "PrometheusRule" {
				g.Expect(c[0].Object["spec"]).To(Equal(k[0].Object["spec"]), "the chart's alerts differ from config/prometheus/alerts.yaml")
				continue
			}
			g.Expect(c[0].GetName()).To(Equal(k[0].GetName()))
			endpoints, _, _ := unstructured.NestedSlice(c[0].Object, "spec", "endpoints")
			want, _, _ := unstructured.NestedSlice(k[0].Object, "spec", "endpoints")
			g.Expect(endpoints).To(Equal(want))
			sel, _, _ := unstructured.NestedStringMap(c[0].Object, "spec", "selector", "matchLabels")
			wantSel, _, _ := unstructured.NestedStringMap(k[0].Object, "spec", "selector", "matchLabels")
			expectSuperset(g, sel, wantSel, "ServiceMonitor selector")
		}
		// Off by default, as config/default leaves config/prometheus out.
		for _, o := range helmTemplate(t, "keywarden", testenv.ManagerNamespace, "{}\n") {
			g.Expect(o.GetKind()).NotTo(BeElementOf("ServiceMonitor", "PrometheusRule"))
		}
	})
	t.Run("release name", func(t *testing.T) {
		// Another release in another namespace: every name follows the
		// release, and every reference resolves within the render.
		g := NewWithT(t)
		objs := helmTemplate(t, "creds", "ops", "{}\n")
		sa := ""
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				continue
			}
			g.Expect(o.GetName()).To(HavePrefix("creds-keywarden-"), "%s %s", o.GetKind(), o.GetName())
			if o.GetKind() == "ServiceAccount" {
				sa = o.GetName()
			}
			switch o.GetKind() {
			case "Role", "RoleBinding", "ServiceAccount", "Service", "Deployment":
				g.Expect(o.GetNamespace()).To(Equal("ops"), "%s %s", o.GetKind(), o.GetName())
			}
		}
		g.Expect(sa).NotTo(BeEmpty())
		manager := rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: "ops"}
		// Everyone may see the cluster issuers (config/rbac binds their
		// viewer role to system:authenticated); every other binding is
		// the manager's.
		authenticated := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"}
		var bindings []string
		for _, o := range objs {
			switch o.GetKind() {
			case "RoleBinding", "ClusterRoleBinding":
				var rb rbacv1.RoleBinding
				g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &rb)).To(Succeed())
				g.Expect(testenv.Find(objs, rb.RoleRef.Kind, rb.RoleRef.Name)).NotTo(BeNil(), "%s %s refers to %s %s, which the chart does not render", o.GetKind(), o.GetName(), rb.RoleRef.Kind, rb.RoleRef.Name)
				want := manager
				if rb.RoleRef.Name == "creds-keywarden-cluster-issuer-viewer-role" {
					want = authenticated
				}
				g.Expect(rb.Subjects).To(ConsistOf(want), "%s %s", o.GetKind(), o.GetName())
				bindings = append(bindings, o.GetKind()+" "+o.GetName())
			case "Deployment":
				var d appsv1.Deployment
				g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d)).To(Succeed())
				g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(sa))
				// No --cluster-resource-namespace by default: the manager
				// takes its own namespace, the release's (ops), for the
				// cluster issuers' Secrets.
				g.Expect(d.Spec.Template.Spec.Containers[0].Args).NotTo(ContainElement(HavePrefix("--cluster-resource-namespace")))
			}
		}
		g.Expect(bindings).To(ConsistOf("ClusterRoleBinding creds-keywarden-manager-rolebinding", "RoleBinding creds-keywarden-leader-election-rolebinding",
			"ClusterRoleBinding creds-keywarden-cluster-issuer-viewer"))
	})
}

// compareRenders fails t unless chart renders what kust renders (the
// Namespace aside: Helm installs into a namespace that exists, or that
// --create-namespace makes).
func compareRenders(t *testing.T, kust, chart []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	key := func(o *unstructured.Unstructured) string {
		return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
	}
	var want, got []string
	for _, o := range kust {
		if o.GetKind() != "Namespace" {
			want = append(want, key(o))
		}
	}
	for _, o := range chart {
		got = append(got, key(o))
	}
	g.Expect(got).To(ConsistOf(want), "the chart and config/default render different objects")
	for _, k := range kust {
		if k.GetKind() == "Namespace" {
			continue
		}
		var c *unstructured.Unstructured
		for _, o := range chart {
			if key(o) == key(k) {
				c = o
			}
		}
		if c == nil {
			continue // reported above
		}
		where := key(k)
		field := func(o *unstructured.Unstructured, path ...string) any {
			v, _, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
			return v
		}
		switch k.GetKind() {
		case "CustomResourceDefinition":
			g.Expect(field(c, "spec")).To(Equal(field(k, "spec")), "%s: the chart's CRD differs from config/crd/bases", where)
			g.Expect(c.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), where)
			g.Expect(c.GetAnnotations()).To(HaveKeyWithValue("controller-gen.kubebuilder.io/version", k.GetAnnotations()["controller-gen.kubebuilder.io/version"]), where)
		case "ClusterRole", "Role":
			g.Expect(field(c, "rules")).To(Equal(field(k, "rules")), "%s: RBAC rules differ", where)
			if want := field(k, "aggregationRule"); want != nil {
				g.Expect(field(c, "aggregationRule")).To(Equal(want), where)
			} else {
				g.Expect(field(c, "aggregationRule")).To(BeNil(), where)
			}
			g.Expect(ownLabels(c)).To(Equal(ownLabels(k)), "%s: aggregation labels differ", where)
		case "ClusterRoleBinding", "RoleBinding":
			g.Expect(field(c, "roleRef")).To(Equal(field(k, "roleRef")), where)
			g.Expect(field(c, "subjects")).To(Equal(field(k, "subjects")), where)
		case "ServiceAccount":
		case "Service":
			g.Expect(field(c, "spec", "ports")).To(Equal(field(k, "spec", "ports")), where)
			sel, _, _ := unstructured.NestedStringMap(c.Object, "spec", "selector")
			wantSel, _, _ := unstructured.NestedStringMap(k.Object, "spec", "selector")
			expectSuperset(g, sel, wantSel, where+" selector")
		case "Deployment":
			var kd, cd appsv1.Deployment
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(k.Object, &kd)).To(Succeed())
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(c.Object, &cd)).To(Succeed())
			g.Expect(cd.Spec.Replicas).To(Equal(kd.Spec.Replicas), where)
			g.Expect(cd.Spec.Template.Spec.Containers).To(HaveLen(1))
			g.Expect(cd.Spec.Template.Spec.Containers[0].Args).To(Equal(kd.Spec.Template.Spec.Containers[0].Args), "%s: manager args differ", where)
			g.Expect(cd.Spec.Template.Spec).To(Equal(kd.Spec.Template.Spec), "%s: pod specs differ", where)
			g.Expect(cd.Spec.Template.Annotations).To(Equal(kd.Spec.Template.Annotations), where)
			expectSuperset(g, cd.Spec.Selector.MatchLabels, kd.Spec.Selector.MatchLabels, where+" selector")
			expectSuperset(g, cd.Spec.Template.Labels, cd.Spec.Selector.MatchLabels, where+" pod labels")
		default:
			t.Errorf("%s: config/default renders a kind this test does not compare; add it here", where)
		}
	}
}

// ownLabels are an object's labels but the app.kubernetes.io/ ones, which
// kustomize and Helm set differently (managed-by, instance, version).
func ownLabels(o *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for k, v := range o.GetLabels() {
		if !strings.HasPrefix(k, "app.kubernetes.io/") && k != "helm.sh/chart" {
			out[k] = v
		}
	}
	return out
}

func expectSuperset(g Gomega, got, want map[string]string, what string) {
	for k, v := range want {
		g.Expect(got).To(HaveKeyWithValue(k, v), "%s lacks %s=%s", what, k, v)
	}
}

// tLog sends an Env's progress lines to the test log.
type tLog struct{ t *testing.T }

func (l tLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// The release TestHelmInstall installs, under names other than
// config/default's, so that nothing of the kustomize install stands in.
const (
	helmRelease   = "kw"
	helmNamespace = "credentials-system"
	// helmWatched is the one namespace the release's --namespaces names.
	helmWatched = "apps"
)

// TestHelmInstall installs the chart with helm into a control plane of its
// own (the suite's manager watches every namespace of the shared one) and
// runs the manager binary with the release's Deployment args, as the
// release's ServiceAccount (a token from the API server): only the RBAC the
// chart installed. The platform's ClusterReevitIssuer, its admin-key Secret in
// the release namespace (the cluster-resource namespace by default), and a
// team's RevioIssuer become Ready; the manager converges an ApiKey naming the
// cluster issuer and a RevioToken naming the team's issuer in the namespace
// the values name, refuses an ApiKey outside the issuer's policy and an
// issuer naming an endpoint outside the values' allowedEndpoints, and leaves
// another namespace alone; the
// Dashboard subtest then scrapes it, authenticated as a Prometheus bound to
// the chart's metrics-reader role, and checks the dashboard's queries.
func TestHelmInstall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := NewWithT(t)
	start := time.Now()

	// envtest logs through controller-runtime's logger, which this test
	// process never sets: say so, rather than have it complain.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	e, err := testenv.Start(ctx, testenv.Options{RepoRoot: env.RepoRoot, Log: tLog{t}})
	if e != nil {
		t.Cleanup(func() {
			if err := e.Stop(); err != nil {
				t.Errorf("stop the second control plane: %v", err)
			}
		})
	}
	g.Expect(err).NotTo(HaveOccurred())
	// The suite's binaries: built once, in its directory.
	e.ManagerBin, e.ApisimBin = env.ManagerBin, env.ApisimBin
	apis, err := e.StartApisim(ctx, testenv.ApisimOptions{TokenLifetime: time.Hour})
	g.Expect(err).NotTo(HaveOccurred())

	// The namespace as the README says to make it: restricted Pod Security.
	_, err = e.AdminKubectl(ctx, []byte(`apiVersion: v1
kind: Namespace
metadata:
  name: `+helmNamespace+`
  labels: {pod-security.kubernetes.io/enforce: restricted}
`), "apply", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())
	values := filepath.Join(e.Dir, "values.yaml")
	g.Expect(os.WriteFile(values, []byte(`namespaces: [`+helmWatched+`]
# apisim's two endpoints only: the official hosts (the manager's default)
# are then refused.
allowedEndpoints: [`+apis.Credentials.ReevitURL+`, `+apis.Credentials.RevioURL+`]
logLevel: debug
# The drift check (and with it keywarden_live_keys) within the test's time.
extraArgs: [--drift-check-interval=5s]
# The restart budget subtest: a small budget, and restarts patched a
# second after they are asked for.
restartBudget: {global: `+strconv.Itoa(helmBudget)+`}
restartCoalesceWindow: 1s
prometheus: {serviceMonitor: {enabled: false}}
`), 0o600)).To(Succeed())
	out, err := helm(ctx, e, "install", helmRelease, chartDir, "--namespace", helmNamespace, "--values", values, "--kubeconfig", e.AdminKubeconfig)
	g.Expect(err).NotTo(HaveOccurred(), "helm install (a Pod Security or other warning fails it too)")
	t.Logf("helm install: %s", firstLine(out))
	manifest, err := helm(ctx, e, "get", "manifest", helmRelease, "--namespace", helmNamespace, "--kubeconfig", e.AdminKubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	release, err := testenv.SplitDocuments(manifest)
	g.Expect(err).NotTo(HaveOccurred())
	var crds []string
	for _, o := range release {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, "crd/"+o.GetName())
		}
	}
	// ApiKey, RevioToken and the four issuer kinds.
	g.Expect(crds).To(ConsistOf("crd/apikeys.credentials.keywarden.dev", "crd/reviotokens.credentials.keywarden.dev",
		"crd/reevitissuers.credentials.keywarden.dev", "crd/clusterreevitissuers.credentials.keywarden.dev",
		"crd/revioissuers.credentials.keywarden.dev", "crd/clusterrevioissuers.credentials.keywarden.dev"))
	_, err = e.AdminKubectl(ctx, nil, append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, crds...)...)
	g.Expect(err).NotTo(HaveOccurred())

	// The installed Deployment says how the manager runs and as whom. No
	// kubelet runs its pod: the binary runs as a process with its args,
	// less the bind addresses (loopback ports here) and with the Lease and
	// the cluster issuers' Secrets in the release namespace (a pod's own
	// namespace, which the manager takes by default: the chart passes no
	// --cluster-resource-namespace unless the values set one).
	var d appsv1.Deployment
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmNamespace, Name: helmRelease + "-keywarden-controller-manager"}, &d)).To(Succeed())
	sa := d.Spec.Template.Spec.ServiceAccountName
	g.Expect(sa).To(Equal(helmRelease + "-keywarden-controller-manager"))
	var args []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if !strings.HasPrefix(a, "--metrics-bind-address=") && !strings.HasPrefix(a, "--health-probe-bind-address=") {
			args = append(args, a)
		}
	}
	g.Expect(args).To(ContainElements("--leader-elect", "--namespaces="+helmWatched, "--zap-log-level=debug",
		"--allowed-endpoints="+apis.Credentials.ReevitURL+","+apis.Credentials.RevioURL,
		"--max-concurrent-restarts="+strconv.Itoa(helmBudget), "--restart-coalesce-window=1s"))
	g.Expect(args).NotTo(ContainElement(HavePrefix("--cluster-resource-namespace")))
	args = append(args, "--leader-election-namespace="+helmNamespace)
	kubeconfig, err := e.ServiceAccountKubeconfig(ctx, helmNamespace, sa)
	g.Expect(err).NotTo(HaveOccurred())
	mgr, err := e.StartManager(ctx, testenv.ManagerOptions{Kubeconfig: kubeconfig, NoLeaderElection: true, Args: args, ClusterResourceNamespace: helmNamespace})
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("installed with helm and manager ready after %s", time.Since(start).Round(100*time.Millisecond))

	t.Run("RBAC is the chart's", func(t *testing.T) {
		g := NewWithT(t)
		generated, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "role.yaml"))
		g.Expect(err).NotTo(HaveOccurred())
		docs, err := testenv.SplitDocuments(generated)
		g.Expect(err).NotTo(HaveOccurred())
		var installedRole rbacv1.ClusterRole
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: helmRelease + "-keywarden-manager-role"}, &installedRole)).To(Succeed())
		g.Expect(installedRole.Rules).To(Equal(rulesOf(t, docs[0])), "the installed ClusterRole is not the one generated from the markers")
		for _, c := range []permission{
			{"create", "secrets", helmWatched, true},
			{"get", "secrets", helmNamespace, true},
			{"watch", "apikeys.credentials.keywarden.dev", "", true},
			{"watch", "clusterreevitissuers.credentials.keywarden.dev", "", true},
			{"patch", "clusterreevitissuers.credentials.keywarden.dev/status", "", true},
			{"patch", "revioissuers.credentials.keywarden.dev/status", helmWatched, true},
			{"create", "clusterreevitissuers.credentials.keywarden.dev", "", false},
			{"create", "revioissuers.credentials.keywarden.dev", helmWatched, false},
			{"patch", "reviotokens.credentials.keywarden.dev/status", helmWatched, true},
			{"patch", "reviotokens.credentials.keywarden.dev", helmWatched, false},
			{"create", "leases.coordination.k8s.io", helmNamespace, true},
			{"create", "leases.coordination.k8s.io", testenv.ManagerNamespace, false},
			{"delete", "secrets", helmWatched, false},
			{"create", "apikeys.credentials.keywarden.dev", helmWatched, false},
			{"list", "pods", "", false},
			{"*", "*", "", false},
		} {
			resource, sub, _ := strings.Cut(c.resource, "/")
			args := []string{"auth", "can-i", c.verb, resource}
			if sub != "" {
				args = append(args, "--subresource="+sub)
			}
			if c.ns != "" {
				args = append(args, "-n", c.ns)
			} else {
				args = append(args, "--all-namespaces")
			}
			res, _ := e.Kubectl(ctx, kubeconfig, nil, args...)
			g.Expect(strings.TrimSpace(string(res.Stdout))).To(Equal(map[bool]string{true: "yes", false: "no"}[c.want]),
				"can the release's ServiceAccount %s %s (namespace %q)?", c.verb, c.resource, c.ns)
		}
		// Any authenticated user sees the cluster issuers (the chart's
		// binding to system:authenticated), and nothing more of them.
		for _, c := range []permission{
			{"list", "clusterreevitissuers.credentials.keywarden.dev", "", true},
			{"get", "clusterrevioissuers.credentials.keywarden.dev", "", true},
			{"create", "clusterreevitissuers.credentials.keywarden.dev", "", false},
			{"get", "secrets", helmNamespace, false},
		} {
			args := []string{"auth", "can-i", c.verb, c.resource, "--as=jane", "--as-group=system:authenticated"}
			if c.ns != "" {
				args = append(args, "-n", c.ns)
			}
			res, _ := e.AdminKubectl(ctx, nil, args...)
			g.Expect(strings.TrimSpace(string(res.Stdout))).To(Equal(map[bool]string{true: "yes", false: "no"}[c.want]),
				"can an authenticated user %s %s (namespace %q)?", c.verb, c.resource, c.ns)
		}
		// The manager holds the Lease in the release namespace, as itself.
		g.Eventually(func(g Gomega) {
			var l coordinationv1.Lease
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmNamespace, Name: testenv.LeaderElectionID}, &l)).To(Succeed())
			g.Expect(l.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))
		}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	})

	t.Run("converges", func(t *testing.T) {
		g := NewWithT(t)
		c := apis.Credentials
		// Reevit issues keys in the environment of the key that asks.
		environment := "test"
		if strings.HasPrefix(c.AdminKey, "pfk_live_") {
			environment = "live"
		}
		// The platform's: the admin key in the cluster-resource namespace
		// (the release's), and a ClusterReevitIssuer whose policy allows
		// payments:read only.
		g.Expect(e.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: helmNamespace, Name: "reevit-admin"},
			StringData: map[string]string{"apiKey": c.AdminKey},
		})).To(Succeed())
		_, err := e.AdminKubectl(ctx, []byte(fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ClusterReevitIssuer
metadata:
  name: platform
spec:
  url: %s
  orgId: %s
  adminKeySecretRef: {name: reevit-admin}
  policy: {allowedScopes: [payments:read]}
`, c.ReevitURL, c.OrgID)), "apply", "-f", "-")
		g.Expect(err).NotTo(HaveOccurred())
		// A team's: the Rev.io API key and a RevioIssuer in its namespace,
		// and the ApiKey and RevioToken naming the issuers; in the watched
		// namespace and in one the values leave out.
		for _, ns := range []string{helmWatched, "elsewhere"} {
			g.Expect(e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			g.Expect(e.Client.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "revio-api-key"},
				StringData: map[string]string{"apiKey": c.RevioAPIKey},
			})).To(Succeed())
			manifest := fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioIssuer
metadata:
  name: revio
spec:
  url: %s
  host: %s
  apiKeySecretRef: {name: revio-api-key}
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: payments
spec:
  issuerRef: {kind: ClusterReevitIssuer, name: platform}
  scopes: [payments:read]
  environment: %s
  rotation: {every: 1h}
  rolloutRestart: [{kind: Deployment, name: payments-api}]
---
# A consumer reading the key from env: restarted when it changes (and the
# rollout series the dashboard queries are exported).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
spec:
  replicas: 1
  selector: {matchLabels: {app: payments-api}}
  template:
    metadata: {labels: {app: payments-api}}
    spec:
      containers:
      - name: app
        image: registry.invalid/payments-api:1
        env:
        - name: REEVIT_API_KEY
          valueFrom: {secretKeyRef: {name: payments, key: apiKey}}
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioToken
metadata:
  name: billing
spec:
  issuerRef: {name: revio}
`, c.RevioURL, c.RevioHost, environment)
			_, err := e.AdminKubectl(ctx, []byte(manifest), "apply", "-n", ns, "-f", "-")
			g.Expect(err).NotTo(HaveOccurred())
		}
		// What the manager must refuse: an ApiKey asking for more than the
		// issuer's policy allows, and an issuer naming the official Rev.io
		// host, which the values' allowedEndpoints leave out.
		_, err = e.AdminKubectl(ctx, []byte(fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: too-broad
spec:
  issuerRef: {kind: ClusterReevitIssuer, name: platform}
  scopes: [payments:read, payments:write]
  environment: %s
  rotation: {every: 1h}
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioIssuer
metadata:
  name: official
spec:
  url: https://api.psarev.io
  host: %s
  apiKeySecretRef: {name: revio-api-key}
`, environment, c.RevioHost)), "apply", "-n", helmWatched, "-f", "-")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			var ci v1alpha1.ClusterReevitIssuer
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "platform"}, &ci)).To(Succeed())
			expectReady(g, ci.Status.Conditions, ci.Generation)
			var ri v1alpha1.RevioIssuer
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "revio"}, &ri)).To(Succeed())
			expectReady(g, ri.Status.Conditions, ri.Generation)
			var ak v1alpha1.ApiKey
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "payments"}, &ak)).To(Succeed())
			expectReady(g, ak.Status.Conditions, ak.Generation)
			var rt v1alpha1.RevioToken
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "billing"}, &rt)).To(Succeed())
			expectReady(g, rt.Status.Conditions, rt.Generation)
			for name, key := range map[string]string{"payments": "apiKey", "billing": "token"} {
				var s corev1.Secret
				g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: name}, &s)).To(Succeed())
				g.Expect(s.Data[key]).NotTo(BeEmpty())
			}
			var refused v1alpha1.ApiKey
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "too-broad"}, &refused)).To(Succeed())
			ready := condition(refused.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonPolicyViolation), ready.Message)
			var official v1alpha1.RevioIssuer
			g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "official"}, &official)).To(Succeed())
			ready = condition(official.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonEndpointNotAllowed), ready.Message)
		}).WithTimeout(90 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		// Nothing was issued for the ApiKey the policy refuses.
		err = e.Client.Get(ctx, client.ObjectKey{Namespace: helmWatched, Name: "too-broad"}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a Secret for the ApiKey the policy refuses: %v", err)
		t.Logf("issuers, ApiKey and RevioToken Ready under the chart's RBAC %s after the install", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("restart budget", func(t *testing.T) {
		environment := "test"
		if strings.HasPrefix(apis.Credentials.AdminKey, "pfk_live_") {
			environment = "live"
		}
		restartBudgetAgainst(t, e, helmWatched, "platform", environment)
	})

	t.Run("DashboardQueriesNameExportedSeries", func(t *testing.T) {
		dashboardAgainst(t, e, mgr)
	})

	t.Run("namespaces outside the values untouched", func(t *testing.T) {
		// --namespaces from the values: seconds after the watched namespace
		// converged (the dashboard check ran meanwhile), the same objects
		// elsewhere are still as created.
		g := NewWithT(t)
		var ak v1alpha1.ApiKey
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: "elsewhere", Name: "payments"}, &ak)).To(Succeed())
		g.Expect(ak.Status.Conditions).To(BeEmpty(), "the manager reconciled a namespace the chart's values do not name")
		g.Expect(ak.Finalizers).To(BeEmpty())
		var rt v1alpha1.RevioToken
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: "elsewhere", Name: "billing"}, &rt)).To(Succeed())
		g.Expect(rt.Status.Conditions).To(BeEmpty(), "the manager reconciled a namespace the chart's values do not name")
		var ri v1alpha1.RevioIssuer
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: "elsewhere", Name: "revio"}, &ri)).To(Succeed())
		g.Expect(ri.Status.Conditions).To(BeEmpty(), "the manager checked an issuer in a namespace the chart's values do not name")
		g.Expect(time.Since(ak.CreationTimestamp.Time)).To(BeNumerically(">", 3*time.Second), "too soon to tell")
	})

	t.Run("manager log holds no credential", func(t *testing.T) {
		g := NewWithT(t)
		log, err := mgr.Log()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(log)).To(ContainSubstring("starting manager"))
		var secrets corev1.SecretList
		g.Expect(e.Client.List(ctx, &secrets, client.InNamespace(helmWatched))).To(Succeed())
		needles := []string{apis.Credentials.AdminKey, apis.Credentials.RevioAPIKey}
		for _, s := range secrets.Items {
			for _, k := range []string{"apiKey", "token"} {
				if v := string(s.Data[k]); v != "" {
					needles = append(needles, v)
				}
			}
		}
		g.Expect(len(needles)).To(BeNumerically(">=", 4))
		for i, n := range needles {
			g.Expect(strings.Contains(string(log), n)).To(BeFalse(), "the manager log holds credential #%d", i)
		}
	})

	// helm uninstall keeps the CRDs (helm.sh/resource-policy: keep), and so
	// every ApiKey, RevioToken and issuer, and removes the rest.
	g.Expect(mgr.Stop(10 * time.Second)).To(Succeed())
	_, err = helm(ctx, e, "uninstall", helmRelease, "--namespace", helmNamespace, "--kubeconfig", e.AdminKubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = e.AdminKubectl(ctx, nil, append([]string{"get"}, crds...)...)
	g.Expect(err).NotTo(HaveOccurred(), "helm uninstall removed the CRDs")
	var ci v1alpha1.ClusterReevitIssuer
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "platform"}, &ci)).To(Succeed(), "helm uninstall removed a ClusterReevitIssuer")
	var left rbacv1.ClusterRoleList
	g.Expect(e.Client.List(ctx, &left)).To(Succeed())
	g.Expect(slices.ContainsFunc(left.Items, func(r rbacv1.ClusterRole) bool { return strings.HasPrefix(r.Name, helmRelease+"-keywarden-") })).
		To(BeFalse(), "helm uninstall left the release's ClusterRoles")
	var leftBindings rbacv1.ClusterRoleBindingList
	g.Expect(e.Client.List(ctx, &leftBindings)).To(Succeed())
	g.Expect(slices.ContainsFunc(leftBindings.Items, func(b rbacv1.ClusterRoleBinding) bool { return strings.HasPrefix(b.Name, helmRelease+"-keywarden-") })).
		To(BeFalse(), "helm uninstall left the release's ClusterRoleBindings (the one to system:authenticated among them)")
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// TestHelmNextToKustomize: the suite's cluster holds config/default as
// kubectl applied it from the kustomize output (as make demo and make
// deploy do). helm install, against the cluster, refuses before writing
// anything and says why and what to do: first for the CRDs, then, with
// crds.enabled=false, for the manager Deployment config/default makes.
// Without that Deployment a release that shares the CRDs renders.
func TestHelmNextToKustomize(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	install := func(release string, set ...string) error {
		args := []string{"install", release, chartDir, "--namespace", "keywarden-system", "--dry-run=server", "--kubeconfig", env.AdminKubeconfig}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		_, err := helm(ctx, env, args...)
		return err
	}
	err := install("keywarden")
	g.Expect(err).To(MatchError(ContainSubstring("The Keywarden CRDs are already installed, by no Helm release (kubectl or kustomize")))
	g.Expect(err).To(MatchError(ContainSubstring("--set crds.enabled=false")))
	g.Expect(err.Error()).NotTo(ContainSubstring("invalid ownership metadata"), "the pre-flight speaks first")

	// The manager Deployment of config/default; no kubelet runs it here.
	objs, err := env.RenderInstall(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	var d *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d = o
		}
	}
	g.Expect(d).NotTo(BeNil(), "config/default renders the manager Deployment")
	d.SetNamespace(newNamespace(t, "kustomized"))
	g.Expect(unstructured.SetNestedField(d.Object, int64(0), "spec", "replicas")).To(Succeed())
	g.Expect(k8s.Create(ctx, d)).To(Succeed())
	err = install("shard", "crds.enabled=false")
	g.Expect(err).To(MatchError(ContainSubstring("Keywarden is already installed in this cluster without Helm: Deployment " + d.GetNamespace() + "/" + d.GetName())))
	g.Expect(err).To(MatchError(ContainSubstring("managed-by: kustomize")))
	g.Expect(err).To(MatchError(ContainSubstring("make undeploy")))

	g.Expect(k8s.Delete(ctx, d)).To(Succeed())
	g.Expect(install("shard", "crds.enabled=false", "watchLabelSelector=keywarden.dev/shard=b")).To(Succeed())
}
