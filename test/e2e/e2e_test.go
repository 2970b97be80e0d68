// Package e2e runs Keywarden as a user does: the built manager binary as a
// separate process under its ServiceAccount's identity and only the RBAC
// config/default installs, the CRDs and RBAC applied with kubectl from the
// kustomize output, the samples applied with kubectl, apisim as its own
// process, and a real kube-apiserver, etcd and kube-controller-manager.
// Time is real: the manager runs with the wall clock.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/secretsync"
	"github.com/keywarden/keywarden/internal/testenv"
)

var (
	env *testenv.Env
	sim *testenv.Apisim
	mgr *testenv.Manager
	k8s client.Client
	// installed is what testenv.Install applied from config/default.
	installed []*unstructured.Unstructured
	// credentialTests are the tests whose keys and tokens the log check
	// waits for: they Add before t.Parallel and are Done at cleanup.
	credentialTests sync.WaitGroup
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	ctx := context.Background()
	start := time.Now()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e: setup failed: %v\n", err)
		return 1
	}
	var err error
	env, err = testenv.Start(ctx, testenv.Options{Log: os.Stderr})
	if env != nil {
		defer func() {
			if err := env.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stop: %v\n", err)
			}
		}()
	}
	if err != nil {
		return fail(err)
	}
	k8s = env.Client
	if err := env.Build(ctx); err != nil {
		return fail(err)
	}
	// Tokens live an hour unless a test shortens them (control API).
	if sim, err = env.StartApisim(ctx, testenv.ApisimOptions{TokenLifetime: time.Hour}); err != nil {
		return fail(err)
	}
	if installed, err = env.Install(ctx); err != nil {
		return fail(err)
	}
	// Debug logging: the log check should see everything the manager says.
	// It is the main instance of a sharded install (shard_test.go), under
	// the default Lease name, given explicitly.
	if mgr, err = env.StartManager(ctx, testenv.ManagerOptions{AllowedEndpoints: sim.Endpoints(), Args: []string{"--zap-log-level=debug",
		"--watch-label-selector=" + mainSelector, "--leader-election-id=" + testenv.LeaderElectionID}}); err != nil {
		return fail(err)
	}
	holder, err := env.WaitLeader(ctx, time.Minute)
	if err != nil {
		return fail(fmt.Errorf("%w\nmanager log:\n%s", err, mgr.LogTail(30)))
	}
	fmt.Fprintf(os.Stderr, "e2e: setup took %s; leader %s\n", time.Since(start).Round(100*time.Millisecond), holder)

	code := m.Run()

	// The manager leaves on SIGTERM, releasing its Lease, well within the
	// Deployment's terminationGracePeriodSeconds (10).
	stopStart := time.Now()
	if err := mgr.Signal(syscall.SIGTERM); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: SIGTERM manager: %v\n", err)
	}
	if exited, werr := mgr.Wait(10 * time.Second); !exited {
		fmt.Fprintln(os.Stderr, "e2e: FAIL: the manager did not exit within 10s of SIGTERM")
		code = 1
	} else if werr != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the manager exited with %v after SIGTERM\n", werr)
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "e2e: manager stopped cleanly in %s\n", time.Since(stopStart).Round(10*time.Millisecond))
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: last lines of the manager log:\n%s\n", mgr.LogTail(80))
	}
	fmt.Fprintf(os.Stderr, "e2e: total %s\n", time.Since(start).Round(100*time.Millisecond))
	return code
}

// TestSamples applies config/samples with kubectl as a user would: the
// credential Secrets made first, as the Quickstart says (the samples ship
// none, so applying them never overwrites a real credential), holding
// apisim's keys; then the platform's cluster issuers (config/samples/platform,
// naming Secrets in the manager's cluster-resource namespace) as a platform
// admin, then the team samples into a namespace of their own, with the
// issuers' URLs pointing at apisim. Every issuer must become Ready, and every
// ApiKey and RevioToken Ready with its Secret.
func TestSamples(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	start := time.Now()
	ns := newNamespace(t, "samples")
	c := sim.Credentials

	var platform, team []*unstructured.Unstructured
	for _, x := range []struct {
		dir  string
		objs *[]*unstructured.Unstructured
	}{{"config/samples/platform", &platform}, {"config/samples", &team}} {
		rendered, err := env.Kustomize(ctx, x.dir)
		g.Expect(err).NotTo(HaveOccurred())
		objs, err := testenv.SplitDocuments(rendered)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(objs).NotTo(BeEmpty(), "%s renders nothing", x.dir)
		*x.objs = objs
	}
	var apiKeys, tokens, issuers []*unstructured.Unstructured
	var targets []string
	// reads: the output Secrets each rollout target reads.
	reads := map[string][]string{}
	// issuerKeys are the issuers the samples define, as kind/name.
	issuerKeys := map[string]bool{}
	// credentials are the Secrets the issuers name (namespace/name), and
	// the key each must hold.
	credentials := map[string]string{}
	for _, o := range append(append([]*unstructured.Unstructured{}, platform...), team...) {
		set := func(v string, path ...string) {
			g.Expect(unstructured.SetNestedField(o.Object, v, path...)).To(Succeed())
		}
		// issuer records o as an issuer the samples define, and the
		// Secret it names at spec.<ref> as a credential, in the namespace
		// the manager reads it from, with apisim's key (value).
		issuer := func(value, ref string) {
			name, _, _ := unstructured.NestedString(o.Object, "spec", ref, "name")
			g.Expect(name).NotTo(BeEmpty(), "%s %s names no credential Secret", o.GetKind(), o.GetName())
			where := ns
			if strings.HasPrefix(o.GetKind(), "Cluster") {
				where = testenv.ClusterResourceNamespace
			}
			credentials[where+"/"+name] = value
			issuers = append(issuers, o)
			issuerKeys[o.GetKind()+"/"+o.GetName()] = true
		}
		switch o.GetKind() {
		case "Secret":
			t.Fatalf("sample Secret %s: the samples ship no Secret, so that applying them never overwrites a credential the Quickstart made", o.GetName())
		case v1alpha1.KindReevitIssuer, v1alpha1.KindClusterReevitIssuer:
			set(c.ReevitURL, "spec", "url")
			set(c.OrgID, "spec", "orgId")
			issuer(c.AdminKey, "adminKeySecretRef")
		case v1alpha1.KindRevioIssuer, v1alpha1.KindClusterRevioIssuer:
			set(c.RevioURL, "spec", "url")
			set(c.RevioHost, "spec", "host")
			issuer(c.RevioAPIKey, "apiKeySecretRef")
		case "ApiKey":
			apiKeys = append(apiKeys, o)
		case "RevioToken":
			tokens = append(tokens, o)
		default:
			t.Fatalf("sample %s %s: unexpected kind", o.GetKind(), o.GetName())
		}
		ts, _, _ := unstructured.NestedSlice(o.Object, "spec", "rolloutRestart")
		out := o.GetName()
		if s, ok, _ := unstructured.NestedString(o.Object, "spec", "secret", "name"); ok && s != "" {
			out = s
		}
		for _, x := range ts {
			m := x.(map[string]any)
			g.Expect(m["kind"]).To(Equal("Deployment"), "sample rollout target kind")
			name := m["name"].(string)
			if _, ok := reads[name]; !ok {
				targets = append(targets, name)
			}
			reads[name] = append(reads[name], out)
		}
	}
	g.Expect(apiKeys).NotTo(BeEmpty())
	g.Expect(tokens).NotTo(BeEmpty())
	// The platform samples are cluster issuers and their Secrets, in the
	// namespace the manager reads cluster issuers' Secrets from; the team
	// samples name no namespace (kubectl apply -n picks it).
	for _, o := range platform {
		switch o.GetKind() {
		case v1alpha1.KindClusterReevitIssuer, v1alpha1.KindClusterRevioIssuer:
		default:
			t.Fatalf("platform sample %s %s: not a cluster issuer", o.GetKind(), o.GetName())
		}
	}
	for _, o := range team {
		g.Expect(o.GetNamespace()).To(BeEmpty(), "team sample %s %s names a namespace", o.GetKind(), o.GetName())
	}
	// Every ApiKey and RevioToken names an issuer the samples define.
	for _, o := range append(append([]*unstructured.Unstructured{}, apiKeys...), tokens...) {
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "kind")
		name, _, _ := unstructured.NestedString(o.Object, "spec", "issuerRef", "name")
		if kind == "" {
			kind = map[string]string{"ApiKey": v1alpha1.KindReevitIssuer, "RevioToken": v1alpha1.KindRevioIssuer}[o.GetKind()]
		}
		g.Expect(issuerKeys).To(HaveKey(kind+"/"+name), "sample %s %s names %s %s, which no sample defines", o.GetKind(), o.GetName(), kind, name)
	}

	// The workloads the samples restart, as the user would have them, reading
	// their Secret (no kubelet runs their pods; the pod template annotation
	// is what counts).
	for _, name := range targets {
		g.Expect(k8s.Create(ctx, consumer(ns, name, reads[name]...))).To(Succeed())
	}
	// The credential Secrets, as the Quickstart makes them (the keys go
	// through stdin only).
	var secrets []string
	for _, where := range slices.Sorted(maps.Keys(credentials)) {
		namespace, name, _ := strings.Cut(where, "/")
		secrets = append(secrets, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\ntype: Opaque\nstringData: {apiKey: %q}\n",
			name, namespace, credentials[where]))
	}
	apply(t, "", []byte(strings.Join(secrets, "---\n")))
	manifest, err := testenv.JoinDocuments(platform)
	g.Expect(err).NotTo(HaveOccurred())
	apply(t, "", manifest)
	manifest, err = testenv.JoinDocuments(team)
	g.Expect(err).NotTo(HaveOccurred())
	apply(t, ns, manifest)

	for _, o := range issuers {
		kind, name, where := o.GetKind(), o.GetName(), ""
		if !strings.HasPrefix(kind, "Cluster") {
			where = ns
		}
		t.Run(kind+" "+name, func(t *testing.T) {
			NewWithT(t).Eventually(func(g Gomega) {
				conds, gen := issuerConditions(g, kind, where, name)
				expectReady(g, conds, gen)
			}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
		})
	}
	for _, o := range apiKeys {
		name := o.GetName()
		environment, _, _ := unstructured.NestedString(o.Object, "spec", "environment")
		secretName := o.GetName()
		if s, ok, _ := unstructured.NestedString(o.Object, "spec", "secret", "name"); ok && s != "" {
			secretName = s
		}
		t.Run("ApiKey "+name, func(t *testing.T) {
			g := NewWithT(t)
			if environment != adminEnvironment() {
				// Every issuer holds apisim's admin key, and Reevit issues keys in
				// the admin key's environment: the sample of the other
				// environment must fail visibly, leak nothing, and recover once
				// its spec is fixed (the issuers' policies allow both).
				expectEnvironmentMismatch(t, ns, name, secretName)
				patch := fmt.Sprintf(`{"spec":{"environment":%q}}`, adminEnvironment())
				if _, err := env.AdminKubectl(ctx, nil, "patch", "apikey", name, "-n", ns, "--type=merge", "-p", patch); err != nil {
					t.Fatal(err)
				}
			}
			g.Eventually(func(g Gomega) {
				ak := getApiKey(g, ns, name)
				expectReady(g, ak.Status.Conditions, ak.Generation)
				data, err := secretData(ctx, ns, secretName)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(data).NotTo(BeNil(), "Secret %s not written", secretName)
				g.Expect(string(data["keyId"])).To(Equal(ak.Status.KeyID))
				g.Expect(strings.HasPrefix(string(data["apiKey"]), ak.Status.KeyPrefix)).To(BeTrue(), "apiKey does not start with status.keyPrefix")
				id, ok, err := sim.Control.Authenticate(ctx, "", string(data["apiKey"]))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ok).To(BeTrue(), "the key in Secret %s does not authenticate at apisim", secretName)
				g.Expect(id).To(Equal(ak.Status.KeyID))
			}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
		})
	}
	for _, o := range tokens {
		name := o.GetName()
		// Every Rev.io issuer of the samples now names apisim's host.
		host := c.RevioHost
		secretName := name
		if s, ok, _ := unstructured.NestedString(o.Object, "spec", "secret", "name"); ok && s != "" {
			secretName = s
		}
		t.Run("RevioToken "+name, func(t *testing.T) {
			NewWithT(t).Eventually(func(g Gomega) {
				rt := getRevioToken(g, ns, name)
				expectReady(g, rt.Status.Conditions, rt.Generation)
				data, err := secretData(ctx, ns, secretName)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(data).NotTo(BeNil(), "Secret %s not written", secretName)
				ok, err := sim.Control.ValidateTokenForHost(ctx, string(data["token"]), host)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ok).To(BeTrue(), "the token in Secret %s is not valid at apisim", secretName)
			}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
		})
	}
	for _, name := range targets {
		t.Run("restarted Deployment "+name, func(t *testing.T) {
			NewWithT(t).Eventually(func(g Gomega) {
				var d appsv1.Deployment
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d)).To(Succeed())
				for _, secret := range reads[name] {
					g.Expect(d.Spec.Template.Annotations).To(HaveKey(secretsync.HashAnnotation(secret)))
				}
			}).WithTimeout(30 * time.Second).WithPolling(time.Second).Should(Succeed())
		})
	}
	t.Logf("samples Ready in %s", time.Since(start).Round(100*time.Millisecond))
}

// expectEnvironmentMismatch waits for an ApiKey to report that Reevit
// issued a key of the wrong environment, and checks the key was revoked and
// never written to a Secret.
func expectEnvironmentMismatch(t *testing.T, ns, name, secretName string) {
	t.Helper()
	ctx := context.Background()
	g := NewWithT(t)
	var uid string
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, name)
		uid = string(ak.UID)
		c := condition(ak.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonEnvironmentMismatch))
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	data, err := secretData(ctx, ns, secretName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(BeNil(), "a key of the wrong environment reached Secret %s", secretName)
	keys := keysOf(t, uid)
	g.Expect(keys).NotTo(BeEmpty(), "no key was created for %s", name)
	for _, k := range keys {
		g.Expect(k.Revoked).To(BeTrue(), "key %s of the wrong environment is still active", k.ID)
	}
	t.Logf("%s: EnvironmentMismatch reported, %d key(s) revoked; fixing spec.environment", name, len(keys))
}

// keysOf lists apisim's keys created for the ApiKey with uid (their names
// carry the marker [kw:<uid>:<generation>]).
func keysOf(t *testing.T, uid string) []apisim.KeyInfo {
	t.Helper()
	all, err := sim.Control.ReevitKeys(context.Background(), "")
	if err != nil {
		t.Fatalf("list apisim keys: %v", err)
	}
	var out []apisim.KeyInfo
	for _, k := range all {
		if strings.Contains(k.Name, "[kw:"+uid+":") {
			out = append(out, k)
		}
	}
	return out
}

// consumer is a Deployment standing for a workload that reads the given
// Secrets (envFrom): Keywarden restarts only workloads that read its output
// Secret.
func consumer(ns, name string, secrets ...string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	var from []corev1.EnvFromSource
	for _, s := range secrets {
		from = append(from, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: s}}})
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/" + name + ":1", EnvFrom: from}}},
			},
		},
	}
}

// TestRBACNegative takes the secrets write verbs out of the manager's
// ClusterRole: a new RevioToken must fail visibly (condition and log), and
// recover by itself once the rule is back.
func TestRBACNegative(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	start := time.Now()
	original := testenv.Find(installed, "ClusterRole", testenv.ManagerRole)
	g.Expect(original).NotTo(BeNil(), "config/default renders no ClusterRole %s", testenv.ManagerRole)
	reduced := original.DeepCopy()
	rules, _, _ := unstructured.NestedSlice(reduced.Object, "rules")
	removed := false
	for _, r := range rules {
		rule := r.(map[string]any)
		groups, _, _ := unstructured.NestedStringSlice(rule, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
		if slices.Equal(groups, []string{""}) && slices.Contains(resources, "secrets") {
			g.Expect(resources).To(Equal([]string{"secrets"}), "the secrets rule also covers other resources; adjust this test")
			rule["verbs"] = []any{"get", "list", "watch"}
			removed = true
		}
	}
	g.Expect(removed).To(BeTrue(), "no rule for secrets in %s", testenv.ManagerRole)
	g.Expect(unstructured.SetNestedSlice(reduced.Object, rules, "rules")).To(Succeed())

	applyRole := func(u *unstructured.Unstructured) {
		b, err := testenv.JoinDocuments([]*unstructured.Unstructured{u})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = env.AdminKubectl(ctx, b, "apply", "--server-side", "--force-conflicts", "-f", "-")
		g.Expect(err).NotTo(HaveOccurred())
	}
	waitCan := func(want bool) {
		g.Eventually(func() (bool, error) { return canI(ctx, "create", "secrets", "default") }).
			WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(want))
	}
	applyRole(reduced)
	restored := false
	t.Cleanup(func() {
		if !restored {
			applyRole(original)
		}
	})
	waitCan(false)
	logBefore := len(managerLog(t))

	ns := newNamespace(t, "rbac")
	createSecret(t, ns, "revio-api-key", sim.Credentials.RevioAPIKey)
	apply(t, ns, revioTokenManifest("rbac-probe"))
	g.Eventually(func(g Gomega) {
		rt := getRevioToken(g, ns, "rbac-probe")
		synced := condition(rt.Status.Conditions, v1alpha1.ConditionSecretSynced)
		g.Expect(synced.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(synced.Reason).To(Equal(v1alpha1.ReasonSecretWriteFailed))
		g.Expect(synced.Message).To(ContainSubstring("RBAC"), "the message should tell a person what to check")
		g.Expect(condition(rt.Status.Conditions, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	// The log line is the manager's event log, written by its recorder in
	// the background: it may come after the status write seen above.
	var forbidden string
	g.Eventually(func() string {
		for _, l := range strings.Split(managerLog(t)[logBefore:], "\n") {
			if strings.Contains(l, "forbidden") {
				forbidden = l
				break
			}
		}
		return forbidden
	}).WithTimeout(30*time.Second).WithPolling(500*time.Millisecond).ShouldNot(BeEmpty(), "the manager log does not mention the forbidden Secret write")
	t.Logf("manager log: %.400s", forbidden)
	data, err := secretData(ctx, ns, "rbac-probe")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(BeNil())
	t.Logf("failed visibly (SecretWriteFailed, forbidden in the log) after %s", time.Since(start).Round(100*time.Millisecond))

	applyRole(original)
	restored = true
	waitCan(true)
	restoredAt := time.Now()
	g.Eventually(func(g Gomega) {
		rt := getRevioToken(g, ns, "rbac-probe")
		expectReady(g, rt.Status.Conditions, rt.Generation)
		secretWith(g, ns, "rbac-probe", "token")
	}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
	t.Logf("recovered %s after the rule was restored", time.Since(restoredAt).Round(100*time.Millisecond))
}

// TestRotationAndRevocation: an ApiKey rotating every minute with a 20 s
// grace period, in real time. The Secret's key authenticates; it rotates;
// the previous key stays valid during the grace period and is revoked
// after it; deleting the ApiKey revokes every key it made.
func TestRotationAndRevocation(t *testing.T) {
	g, ns := credentialTest(t, "rotation")
	ctx := context.Background()
	const every, grace = time.Minute, 20 * time.Second
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)
	start := time.Now()
	apply(t, ns, apiKeyManifest("rotating", every, grace))
	since := func() time.Duration { return time.Since(start).Round(100 * time.Millisecond) }
	authenticates := func(key string) bool {
		_, ok, err := sim.Control.Authenticate(ctx, "", key)
		g.Expect(err).NotTo(HaveOccurred())
		return ok
	}

	// The first key.
	var key1, id1, uid string
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "rotating")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		uid = string(ak.UID)
		data, err := secretData(ctx, ns, "rotating")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).NotTo(BeNil(), "Secret not written")
		key1, id1 = string(data["apiKey"]), string(data["keyId"])
		g.Expect(id1).To(Equal(ak.Status.KeyID))
		g.Expect(strings.HasPrefix(key1, ak.Status.KeyPrefix)).To(BeTrue(), "apiKey does not start with status.keyPrefix")
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(authenticates(key1)).To(BeTrue(), "the first key does not authenticate")
	t.Logf("%s: key %s active", since(), id1)

	// The rotation: the Secret holds a new key and, during the grace
	// period, the previous one.
	var key2, id2 string
	g.Eventually(func(g Gomega) {
		data, err := secretData(ctx, ns, "rotating")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).NotTo(BeNil())
		g.Expect(string(data["keyId"])).NotTo(Equal(id1), "not rotated yet")
		key2, id2 = string(data["apiKey"]), string(data["keyId"])
		g.Expect(string(data["previousKeyId"])).To(Equal(id1))
		g.Expect(string(data["previousApiKey"]) == key1).To(BeTrue(), "previousApiKey is not the first key")
	}).WithTimeout(every + 60*time.Second).WithPolling(time.Second).Should(Succeed())
	t.Logf("%s: rotated to key %s", since(), id2)
	var pending v1alpha1.PendingRevocation
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "rotating")
		g.Expect(ak.Status.KeyID).To(Equal(id2))
		g.Expect(ak.Status.Rotations).To(BeNumerically(">=", 1))
		g.Expect(ak.Status.PendingRevocations).To(ContainElement(HaveField("KeyID", id1)))
		for _, p := range ak.Status.PendingRevocations {
			if p.KeyID == id1 {
				pending = p
			}
		}
		g.Expect(ak.Status.ActiveSince).NotTo(BeNil())
		g.Expect(pending.RevokeAfter.Sub(ak.Status.ActiveSince.Time)).To(BeNumerically("~", grace, 2*time.Second))
	}).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Expect(authenticates(key2)).To(BeTrue(), "the new key does not authenticate")
	if time.Until(pending.RevokeAfter.Time) > 2*time.Second {
		g.Expect(authenticates(key1)).To(BeTrue(), "the previous key was revoked before the grace period ended")
	}

	// The previous key is revoked once the grace period is over, not before.
	var revoked apisim.KeyInfo
	g.Eventually(func(g Gomega) {
		for _, k := range keysOf(t, uid) {
			if k.ID == id1 {
				revoked = k
			}
		}
		g.Expect(revoked.Revoked).To(BeTrue(), "key %s not revoked yet", id1)
	}).WithTimeout(time.Until(pending.RevokeAfter.Time) + 45*time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(*revoked.RevokedAt).To(BeTemporally(">=", pending.RevokeAfter.Add(-time.Second)), "revoked before revokeAfter")
	g.Expect(authenticates(key1)).To(BeFalse(), "the revoked key still authenticates")
	g.Expect(authenticates(key2)).To(BeTrue(), "the current key stopped authenticating")
	t.Logf("%s: key %s revoked %s after revokeAfter", since(), id1, revoked.RevokedAt.Sub(pending.RevokeAfter.Time).Round(100*time.Millisecond))
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "rotating")
		g.Expect(ak.Status.PendingRevocations).To(BeEmpty())
		g.Expect(ak.Status.History).To(ContainElement(And(HaveField("KeyID", id1), HaveField("RevokedAt", Not(BeNil())))))
		data, err := secretData(ctx, ns, "rotating")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).NotTo(HaveKey("previousApiKey"))
		g.Expect(data).NotTo(HaveKey("previousKeyId"))
	}).WithTimeout(15 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	expectEvents(t, ns, "rotating", v1alpha1.ReasonRotated, v1alpha1.ReasonRevoked)

	// Deleting the ApiKey revokes every key it made; the garbage collector
	// removes its Secret.
	if _, err := env.AdminKubectl(ctx, nil, "delete", "apikey", "rotating", "-n", ns, "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	keys := keysOf(t, uid)
	g.Expect(len(keys)).To(BeNumerically(">=", 2))
	for _, k := range keys {
		g.Expect(k.Revoked).To(BeTrue(), "key %s still active after the ApiKey was deleted", k.ID)
	}
	g.Expect(authenticates(key2)).To(BeFalse(), "the last key still authenticates after deletion")
	g.Eventually(func() (map[string][]byte, error) { return secretData(ctx, ns, "rotating") }).
		WithTimeout(60*time.Second).WithPolling(time.Second).Should(BeNil(), "the Secret outlived its ApiKey")
	t.Logf("%s: deleted; all %d keys revoked, Secret gone", since(), len(keys))
}

// expectEvents waits until events with each reason are recorded for the
// object (events.k8s.io, as the manager records them). The manager's
// recorder sends them in the background: an event the reconcile recorded
// before the status write a test has seen may reach the API server after it.
func expectEvents(t *testing.T, ns, name string, reasons ...string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(k8s.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
		got := map[string]bool{}
		for _, e := range evs.Items {
			if e.Regarding.Name == name {
				got[e.Reason] = true
			}
		}
		for _, r := range reasons {
			g.Expect(got).To(HaveKey(r), "no %s event for %s/%s", r, ns, name)
		}
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// TestRevioTokenRefresh: with tokens living 45 s, the RevioToken's token
// is replaced before it expires, without anyone asking.
//
// It is not parallel: apisim's token lifetime is one setting for every
// Rev.io token it issues, and the tests running beside it would get 45 s
// tokens, refreshed under their feet (a new token, expiry, Secret hash and
// restart between what they read and what they check).
func TestRevioTokenRefresh(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	const lifetime = 45 * time.Second
	g.Expect(sim.Control.SetTokenLifetime(ctx, lifetime)).To(Succeed())
	t.Cleanup(func() { _ = sim.Control.SetTokenLifetime(context.Background(), time.Hour) })
	ns := newNamespace(t, "refresh")
	createSecret(t, ns, "revio-api-key", sim.Credentials.RevioAPIKey)
	start := time.Now()
	apply(t, ns, revioTokenManifest("refreshing"))

	var token1 string
	var first v1alpha1.RevioTokenStatus
	g.Eventually(func(g Gomega) {
		rt := getRevioToken(g, ns, "refreshing")
		expectReady(g, rt.Status.Conditions, rt.Generation)
		token1 = string(secretWith(g, ns, "refreshing", "token")["token"])
		first = rt.Status
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Expect(first.ExpiresAt).NotTo(BeNil())
	g.Expect(first.IssuedAt).NotTo(BeNil())
	g.Expect(first.ExpiresAt.Sub(first.IssuedAt.Time)).To(Equal(lifetime))
	g.Expect(first.NextRefreshTime.Time).To(BeTemporally("<", first.ExpiresAt.Time))
	ok, err := sim.Control.ValidateToken(ctx, token1)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeTrue(), "the first token is not valid at apisim")
	t.Logf("%s: token issued, expires %s, next refresh %s", time.Since(start).Round(100*time.Millisecond),
		first.ExpiresAt.Format(time.TimeOnly), first.NextRefreshTime.Format(time.TimeOnly))

	g.Eventually(func(g Gomega) {
		rt := getRevioToken(g, ns, "refreshing")
		data, err := secretData(ctx, ns, "refreshing")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).NotTo(BeNil())
		g.Expect(string(data["token"]) != token1).To(BeTrue(), "token not refreshed yet")
		g.Expect(rt.Status.Refreshes).To(BeNumerically(">", first.Refreshes))
		g.Expect(rt.Status.LastRefreshTime.Time).To(BeTemporally("<", first.ExpiresAt.Time), "refreshed only after the token expired")
		g.Expect(rt.Annotations).NotTo(HaveKey(v1alpha1.AnnotationRefresh))
		ok, err := sim.Control.ValidateToken(ctx, string(data["token"]))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue(), "the refreshed token is not valid at apisim")
		expectReady(g, rt.Status.Conditions, rt.Generation)
	}).WithTimeout(lifetime + 30*time.Second).WithPolling(time.Second).Should(Succeed())
	expectEvents(t, ns, "refreshing", v1alpha1.ReasonRefreshed)
	t.Logf("%s: token refreshed by itself", time.Since(start).Round(100*time.Millisecond))
}

// TestManagerLogHasNoSecrets runs last: no key or token the suite saw (the
// admin key, the Rev.io API key, every key and token read from a Secret)
// appears in the manager's log, in an event or in a resource's status.
func TestManagerLogHasNoSecrets(t *testing.T) {
	t.Parallel()
	credentialTests.Wait()
	ctx := context.Background()
	seen.add("apisim's admin key", sim.Credentials.AdminKey)
	seen.add("apisim's Rev.io API key", sim.Credentials.RevioAPIKey)
	var secrets corev1.SecretList
	if err := k8s.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		_, _ = secretData(ctx, s.Namespace, s.Name)
	}
	needles := seen.needles()
	if len(needles) < 8 {
		t.Fatalf("only %d credentials seen: run this test with the whole suite, whose tests make the keys and tokens it looks for", len(needles))
	}

	haystacks := map[string]string{"the manager log": managerLog(t)}
	if !strings.Contains(haystacks["the manager log"], "starting manager") {
		t.Fatalf("the manager log looks empty")
	}
	var evs eventsv1.EventList
	if err := k8s.List(ctx, &evs); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		haystacks["event "+e.Namespace+"/"+e.Name] = e.Note
	}
	var aks v1alpha1.ApiKeyList
	var rts v1alpha1.RevioTokenList
	issuers := 0
	if err := k8s.List(ctx, &aks); err != nil {
		t.Fatal(err)
	}
	if err := k8s.List(ctx, &rts); err != nil {
		t.Fatal(err)
	}
	for _, o := range aks.Items {
		b, _ := json.Marshal(o)
		haystacks["ApiKey "+o.Namespace+"/"+o.Name] = string(b)
	}
	for _, o := range rts.Items {
		b, _ := json.Marshal(o)
		haystacks["RevioToken "+o.Namespace+"/"+o.Name] = string(b)
	}
	// The issuers: their status says whether a credential works, never what it is.
	for kind, l := range map[string]client.ObjectList{
		v1alpha1.KindReevitIssuer: &v1alpha1.ReevitIssuerList{}, v1alpha1.KindClusterReevitIssuer: &v1alpha1.ClusterReevitIssuerList{},
		v1alpha1.KindRevioIssuer: &v1alpha1.RevioIssuerList{}, v1alpha1.KindClusterRevioIssuer: &v1alpha1.ClusterRevioIssuerList{},
	} {
		if err := k8s.List(ctx, l); err != nil {
			t.Fatal(err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			o := it.(client.Object)
			b, _ := json.Marshal(o)
			haystacks[kind+" "+o.GetNamespace()+"/"+o.GetName()] = string(b)
			issuers++
		}
	}
	for hay, text := range haystacks {
		for needle, where := range needles {
			if strings.Contains(text, needle) {
				t.Errorf("%s contains a credential: %s", hay, where)
			}
		}
	}
	if issuers == 0 {
		t.Errorf("no issuer to check: run this test with the whole suite")
	}
	t.Logf("checked %d credential values against the manager log (%d bytes), %d events and %d resources (%d of them issuers)",
		len(needles), len(haystacks["the manager log"]), len(evs.Items), len(aks.Items)+len(rts.Items)+issuers, issuers)
}
