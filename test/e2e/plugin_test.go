package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// pluginRun is one run of the built kubectl-keywarden.
type pluginRun struct {
	args           []string
	stdout, stderr string
	err            error
}

// pluginRuns keeps every output of the plugin, for the check that no
// credential ever appears in one.
type pluginRuns struct {
	mu   sync.Mutex
	runs []pluginRun
}

// run runs the built plugin as the cluster administrator, with a kubeconfig
// given by flag, a HOME of its own (no ~/.kube/config of the machine) and
// stdin as its input.
func (p *pluginRuns) run(t *testing.T, stdin string, args ...string) pluginRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig=" + env.AdminKubeconfig}, args...)
	cmd := exec.CommandContext(ctx, env.PluginBin, full...)
	cmd.Env = pluginEnviron(t)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := pluginRun{args: args, err: cmd.Run(), stdout: out.String(), stderr: errb.String()}
	p.mu.Lock()
	p.runs = append(p.runs, r)
	p.mu.Unlock()
	t.Logf("kubectl keywarden %s: exit %v\n%s%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	return r
}

// must runs the plugin and fails the test unless it exits 0.
func (p *pluginRuns) must(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := p.run(t, stdin, args...)
	if r.err != nil {
		t.Fatalf("kubectl keywarden %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

// pluginEnviron is the environment the plugin runs in: the test's, without
// what would point it at another cluster, and a HOME of its own.
func pluginEnviron(t *testing.T) []string {
	return testenv.EnvironWithout([]string{"KUBECONFIG", "HOME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}, "HOME="+t.TempDir())
}

// sha16 is the plugin's fingerprint, computed independently.
func sha16(v []byte) string {
	sum := sha256.Sum256(v)
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// withLabels adds labels to a manifest made by apiKeyManifest.
func withLabels(manifest []byte, name string, labels string) []byte {
	return bytes.Replace(manifest, []byte("  name: "+name+"\n"), []byte("  name: "+name+"\n  labels: "+labels+"\n"), 1)
}

// TestPlugin runs the built kubectl-keywarden against the real control plane
// and the running manager: status shows the key and the issuer that made it,
// status of the issuers shows whether their credential works, rotate (by
// name, -l, -A, --all) leads to new keys, compromised does nothing without
// confirmation and revokes at once with it, inspect secret shows
// fingerprints and JWT claims and, for an issuer's credential Secret (a
// namespace's or, in the cluster-resource namespace, a cluster issuer's),
// which issuers name it; refresh brings a new token, and no output ever
// holds a key or a token.
func TestPlugin(t *testing.T) {
	g, ns := credentialTest(t, "plugin")
	ctx := context.Background()
	p := &pluginRuns{}
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)
	createSecret(t, ns, "revio-api-key", sim.Credentials.RevioAPIKey)
	seen.add("apisim's admin key", sim.Credentials.AdminKey)
	seen.add("apisim's Rev.io API key", sim.Credentials.RevioAPIKey)
	const grace = 30 * time.Second
	apply(t, ns, withLabels(apiKeyManifest("plugin-a", 720*time.Hour, grace), "plugin-a", "{team: a, plugin-test: "+ns+"}"))
	// plugin-b restarts a workload reading its Secret (no kubelet runs it:
	// the pod template annotation is what counts); the manager restarts
	// only workloads that read the output Secret.
	g.Expect(k8s.Create(ctx, consumer(ns, "plugin-b-app", "plugin-b"))).To(Succeed())
	manifestB := withLabels(apiKeyManifest("plugin-b", 720*time.Hour, grace), "plugin-b", "{team: b, plugin-test: "+ns+"}")
	apply(t, ns, append(manifestB, "  rolloutRestart: [{kind: Deployment, name: plugin-b-app}]\n"...))
	apply(t, ns, revioTokenManifest("plugin-rt"))
	// A cluster issuer of this test only (named after the namespace), its
	// Secret in the manager's cluster-resource namespace.
	clusterIssuer, clusterSecret := ns, ns+"-revio"
	createSecret(t, testenv.ClusterResourceNamespace, clusterSecret, sim.Credentials.RevioAPIKey)
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plugin-crt"}})
		_ = k8s.Delete(ctx, &v1alpha1.ClusterRevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: clusterIssuer}})
		_ = k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.ClusterResourceNamespace, Name: clusterSecret}})
	})
	apply(t, "", revioManifest(clusterIssuer, clusterSecret, ns, "plugin-crt"))

	// The issuers are checked by their own reconciler, beside the ApiKeys'
	// and RevioToken's: status shows their Ready too, so wait for it.
	ready := func(g Gomega, names ...string) {
		g.Eventually(func(g Gomega) {
			for _, n := range names {
				ak := getApiKey(g, ns, n)
				expectReady(g, ak.Status.Conditions, ak.Generation)
				g.Expect(ak.Status.PendingCreate).To(BeNil())
			}
			rt := getRevioToken(g, ns, "plugin-rt")
			expectReady(g, rt.Status.Conditions, rt.Generation)
			for kind, name := range map[string]string{v1alpha1.KindReevitIssuer: reevitIssuerName, v1alpha1.KindRevioIssuer: revioIssuerName} {
				conds, gen := issuerConditions(g, kind, ns, name)
				expectReady(g, conds, gen)
			}
		}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	}
	ready(g, "plugin-a", "plugin-b")
	rotations := func(g Gomega, name string) int64 { return getApiKey(g, ns, name).Status.Rotations }
	keyID := func(g Gomega, name string) string { return getApiKey(g, ns, name).Status.KeyID }

	t.Run("report", func(t *testing.T) {
		g := NewWithT(t)
		a, b := getApiKey(g, ns, "plugin-a"), getApiKey(g, ns, "plugin-b")
		table := p.must(t, "", "report", "-n", ns)
		g.Expect(table).To(HavePrefix("NAMESPACE"))
		for _, ak := range []*v1alpha1.ApiKey{a, b} {
			g.Expect(table).To(MatchRegexp(regexp.QuoteMeta(ns+"  apikey/"+ak.Name) + `\s+active\s+reevitissuer/` + reevitIssuerName +
				`\s+` + regexp.QuoteMeta(sim.Credentials.OrgID) + `\s+` + ak.Status.KeyID + `\s+` + regexp.QuoteMeta(ak.Status.KeyPrefix)))
		}
		var all, rows []map[string]any
		g.Expect(json.Unmarshal([]byte(p.must(t, "", "report", "-n", ns, "-o", "json")), &all)).To(Succeed())
		issuers := map[string]map[string]any{}
		for _, r := range all {
			if r["kind"] == "ApiKey" {
				rows = append(rows, r)
			} else {
				issuers[r["kind"].(string)] = r
			}
		}
		g.Expect(rows).To(HaveLen(2), "one active key per ApiKey, none pending")
		for i, ak := range []*v1alpha1.ApiKey{a, b} {
			g.Expect(rows[i]).To(HaveKeyWithValue("name", ak.Name))
			g.Expect(rows[i]).To(HaveKeyWithValue("keyId", ak.Status.KeyID))
			g.Expect(rows[i]).To(HaveKeyWithValue("orgId", sim.Credentials.OrgID))
			g.Expect(rows[i]).To(HaveKeyWithValue("state", "active"))
			g.Expect(rows[i]).To(HaveKeyWithValue("overAge", false))
		}
		// The issuers' own credentials, by fingerprint and age.
		g.Expect(issuers).To(HaveKey(v1alpha1.KindReevitIssuer))
		g.Expect(issuers[v1alpha1.KindReevitIssuer]).To(HaveKeyWithValue("state", "admin-key"))
		g.Expect(issuers[v1alpha1.KindReevitIssuer]).To(HaveKeyWithValue("fingerprint", sha16([]byte(sim.Credentials.AdminKey))))
		g.Expect(issuers).To(HaveKey(v1alpha1.KindRevioIssuer))
		g.Expect(issuers[v1alpha1.KindRevioIssuer]).To(HaveKeyWithValue("state", "api-key"))
		recs, err := csv.NewReader(strings.NewReader(p.must(t, "", "report", "-n", ns, "-o", "csv"))).ReadAll()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(recs).To(HaveLen(1 + len(all)))
		var akRecs [][]string
		for _, r := range recs[1:] {
			if r[1] == "ApiKey" {
				akRecs = append(akRecs, r)
			}
		}
		g.Expect(akRecs).To(HaveLen(2))
		g.Expect(akRecs[0][2]).To(Equal("plugin-a"))
		g.Expect(akRecs[0][7]).To(Equal(a.Status.KeyID))
		// Across the cluster (no -n), this namespace's keys are among them.
		g.Expect(p.must(t, "", "report", "-o", "csv")).To(ContainSubstring(ns + ",ApiKey,plugin-b,active"))
		g.Expect(p.must(t, "", "report", "-n", ns, "--over-age")).NotTo(ContainSubstring("apikey/"), "no maxKeyAge: nothing over age")
	})

	t.Run("status", func(t *testing.T) {
		g := NewWithT(t)
		ak := getApiKey(g, ns, "plugin-a")
		out := p.must(t, "", "status", "apikey/plugin-a", "-n", ns)
		g.Expect(out).To(ContainSubstring("ApiKey " + ns + "/plugin-a"))
		g.Expect(out).To(ContainSubstring(ak.Status.KeyPrefix))
		g.Expect(out).To(ContainSubstring(ak.Status.KeyID))
		g.Expect(out).To(ContainSubstring("True (Succeeded)"))
		g.Expect(out).To(MatchRegexp(`Next rotation:\s+` + ak.Status.NextRotationTime.UTC().Format(time.RFC3339) + ` \(in 29d\)`))
		g.Expect(out).To(MatchRegexp(`Active since:\s+\S+Z \((\S+ ago|now)\)`))
		g.Expect(out).To(MatchRegexp(`Previous keys \(valid until revoked\):\n  none`))
		g.Expect(out).To(MatchRegexp(`Last failure:\n  none`))
		// The issuer spec.issuerRef names, and the one status.issuer records.
		g.Expect(out).To(MatchRegexp(`Issuer:\s+ReevitIssuer ` + reevitIssuerName + ` \(Ready True\)`))
		g.Expect(ak.Status.Issuer).NotTo(BeNil())
		g.Expect(out).To(MatchRegexp(`Key made by:\s+ReevitIssuer ` + reevitIssuerName + `, org ` + regexp.QuoteMeta(sim.Credentials.OrgID+", "+ak.Status.Issuer.URL) + ` \(status.issuer\)\n`))

		// The other spellings kubectl users know, and --context.
		cfg, err := clientcmd.LoadFromFile(env.AdminKubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.must(t, "", "status", "ak", "plugin-a", "--namespace="+ns, "--context="+cfg.CurrentContext)).To(ContainSubstring(ak.Status.KeyPrefix))
		r := p.run(t, "", "status", "ak/plugin-a", "-n", ns, "--context=no-such-context")
		g.Expect(r.err).To(HaveOccurred())

		rt := getRevioToken(g, ns, "plugin-rt")
		out = p.must(t, "", "status", "rt/plugin-rt", "-n", ns)
		g.Expect(out).To(MatchRegexp(`Token expires:\s+` + rt.Status.ExpiresAt.UTC().Format(time.RFC3339) + ` \(in \d+m\)`))
		g.Expect(out).To(MatchRegexp(`Next refresh:\s+` + rt.Status.NextRefreshTime.UTC().Format(time.RFC3339) + ` \(in `))
		// The host is the RevioIssuer's.
		g.Expect(out).To(MatchRegexp(`Issuer:\s+RevioIssuer ` + revioIssuerName + ` \(Ready True\)`))
		g.Expect(out).To(MatchRegexp(`Host:\s+` + regexp.QuoteMeta(sim.Credentials.RevioHost) + ` \(spec.host of the issuer\)`))

		r = p.run(t, "", "status", "apikey/absent", "-n", ns)
		g.Expect(r.err).To(HaveOccurred())
		g.Expect(r.stderr).To(ContainSubstring("apikey/absent not found in namespace " + ns))
	})

	t.Run("status of issuers", func(t *testing.T) {
		g := NewWithT(t)
		ri := &v1alpha1.ReevitIssuer{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: reevitIssuerName}, ri)).To(Succeed())
		expectReady(g, ri.Status.Conditions, ri.Generation)
		g.Expect(ri.Status.CheckedVersion).NotTo(BeEmpty())
		g.Expect(ri.Status.LastCheckTime).NotTo(BeNil())
		out := p.must(t, "", "status", "ri/"+reevitIssuerName, "-n", ns)
		g.Expect(out).To(ContainSubstring("ReevitIssuer " + ns + "/" + reevitIssuerName + "\n"))
		g.Expect(out).To(MatchRegexp(`Ready:\s+True \(Succeeded\) since `))
		g.Expect(out).To(MatchRegexp(`Reason:\s+Succeeded\n`))
		g.Expect(out).To(MatchRegexp(`Message:\s+\S`))
		g.Expect(out).To(MatchRegexp(`Checked version:\s+` + regexp.QuoteMeta(ri.Status.CheckedVersion) + `\n`))
		g.Expect(out).To(MatchRegexp(`Last check:\s+` + ri.Status.LastCheckTime.UTC().Format(time.RFC3339) + ` \((\S+ ago|now)\)`))
		g.Expect(out).To(MatchRegexp(`Org:\s+` + regexp.QuoteMeta(sim.Credentials.OrgID) + `\n`))
		g.Expect(out).To(ContainSubstring("Secret " + ns + "/reevit-admin, data key apiKey (spec.adminKeySecretRef)\n"))
		g.Expect(out).To(MatchRegexp(`Used by \(ApiKeys\):\n  apikey/plugin-a\n  apikey/plugin-b\n`))

		out = p.must(t, "", "status", "revioissuer", revioIssuerName, "-n", ns)
		g.Expect(out).To(ContainSubstring("RevioIssuer " + ns + "/" + revioIssuerName + "\n"))
		g.Expect(out).To(MatchRegexp(`Ready:\s+True \(Succeeded\)`))
		g.Expect(out).To(MatchRegexp(`Host:\s+` + regexp.QuoteMeta(sim.Credentials.RevioHost) + `\n`))
		g.Expect(out).To(MatchRegexp(`Used by \(RevioTokens\):\n  reviotoken/plugin-rt\n`))

		// The cluster issuer takes no namespace; its Secret is in the
		// cluster-resource namespace; its users are named with theirs.
		g.Eventually(func(g Gomega) {
			conds, gen := issuerConditions(g, v1alpha1.KindClusterRevioIssuer, "", clusterIssuer)
			expectReady(g, conds, gen)
			rt := getRevioToken(g, ns, "plugin-crt")
			expectReady(g, rt.Status.Conditions, rt.Generation)
		}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		out = p.must(t, "", "status", "crvi/"+clusterIssuer)
		g.Expect(out).To(ContainSubstring("ClusterRevioIssuer " + clusterIssuer + "\n"))
		g.Expect(out).To(MatchRegexp(`Ready:\s+True \(Succeeded\)`))
		g.Expect(out).To(MatchRegexp(`Checked version:\s+\S+\n`))
		g.Expect(out).To(ContainSubstring("Secret " + testenv.ClusterResourceNamespace + "/" + clusterSecret + ", data key apiKey (spec.apiKeySecretRef)\n"))
		g.Expect(out).To(ContainSubstring("those matching kubernetes.io/metadata.name=" + ns))
		g.Expect(out).To(MatchRegexp(`Used by \(RevioTokens\):\n  ` + ns + `/reviotoken/plugin-crt\n`))
		out = p.must(t, "", "status", "rt/plugin-crt", "-n", ns)
		g.Expect(out).To(MatchRegexp(`Issuer:\s+ClusterRevioIssuer ` + clusterIssuer + ` \(Ready True\)`))
		g.Expect(out).To(ContainSubstring(sim.Credentials.RevioHost + " (spec.host of the issuer)"))

		r := p.run(t, "", "status", "cri/absent-"+ns)
		g.Expect(r.err).To(HaveOccurred())
		g.Expect(r.stderr).To(ContainSubstring("clusterreevitissuer/absent-" + ns + " not found"))
	})

	t.Run("rotate by name", func(t *testing.T) {
		g := NewWithT(t)
		before, id1 := rotations(g, "plugin-a"), keyID(g, "plugin-a")
		otherBefore := rotations(g, "plugin-b")
		out := p.must(t, "", "rotate", "apikey/plugin-a", "-n", ns, "--wait", "--timeout=60s")
		g.Expect(out).To(ContainSubstring("apikey/plugin-a: rotate requested (keywarden.dev/rotate="))
		g.Expect(out).To(ContainSubstring("apikey/plugin-a: done: key " + id1))
		g.Expect(rotations(g, "plugin-a")).To(Equal(before+1), "status.rotations")
		g.Expect(keyID(g, "plugin-a")).NotTo(Equal(id1))
		g.Expect(rotations(g, "plugin-b")).To(Equal(otherBefore), "rotate plugin-a rotated plugin-b")
		// The previous key waits for its grace period, and status says until when.
		ak := getApiKey(g, ns, "plugin-a")
		g.Expect(ak.Status.PendingRevocations).To(ContainElement(HaveField("KeyID", id1)))
		out = p.must(t, "", "status", "ak/plugin-a", "-n", ns)
		g.Expect(out).To(MatchRegexp(id1 + `\s+pfk_\S+\s+` + ak.Status.PendingRevocations[0].RevokeAfter.UTC().Format(time.RFC3339) + ` \((in \d+s|now|\d+s ago)\)\s+\S*Rotation`))
		g.Expect(out).To(MatchRegexp(`Last failure:\n  none`), "a revocation waiting for its grace period is no failure")
	})

	t.Run("rotate -l and -A", func(t *testing.T) {
		g := NewWithT(t)
		a := rotations(g, "plugin-a")
		b, idB := rotations(g, "plugin-b"), keyID(g, "plugin-b")
		out := p.must(t, "", "rotate", "-l", "team=b", "-n", ns, "--wait", "--timeout=60s")
		g.Expect(out).To(ContainSubstring("apikey/plugin-b: done: key " + idB))
		g.Expect(out).NotTo(ContainSubstring("plugin-a"))
		g.Expect(rotations(g, "plugin-b")).To(Equal(b + 1))
		g.Expect(rotations(g, "plugin-a")).To(Equal(a), "-l team=b rotated plugin-a")
		// The restart is patched when the manager's coalescing window closes.
		g.Eventually(func(g Gomega) {
			out := p.must(t, "", "status", "ak/plugin-b", "-n", ns)
			g.Expect(out).To(MatchRegexp(`Rollout restarts:\n  Deployment plugin-b-app: restarted for the current Secret \(\d+/1 updated, \d+ available\)`))
			g.Expect(out).To(MatchRegexp(`Recent events:\n(.*\n)*.*RolloutRestarted\s+Deployment plugin-b-app restarted`))
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

		out = p.must(t, "", "rotate", "-A", "-l", "team=b,plugin-test="+ns, "--wait", "--timeout=60s")
		g.Expect(out).To(ContainSubstring(ns + "/apikey/plugin-b: done"))
		g.Expect(rotations(g, "plugin-b")).To(Equal(b + 2))

		r := p.run(t, "", "rotate", "-l", "team=nobody", "-n", ns)
		g.Expect(r.err).To(HaveOccurred())
		g.Expect(r.stderr).To(ContainSubstring("no ApiKey in namespace " + ns + " matching team=nobody"))
	})

	t.Run("compromised needs a yes", func(t *testing.T) {
		g := NewWithT(t)
		id := keyID(g, "plugin-a")
		for _, answer := range []string{"n\n", ""} {
			r := p.run(t, answer, "compromised", "apikey/plugin-a", "-n", ns)
			g.Expect(r.err).To(HaveOccurred(), "compromised without a yes exited 0")
			g.Expect(r.stderr).To(ContainSubstring("Revoke now? [y/N]"))
			g.Expect(r.stderr).To(ContainSubstring("not confirmed: nothing changed"))
		}
		g.Consistently(func(g Gomega) {
			ak := getApiKey(g, ns, "plugin-a")
			g.Expect(ak.Annotations).NotTo(HaveKey(v1alpha1.AnnotationCompromised))
			g.Expect(ak.Status.KeyID).To(Equal(id))
			g.Expect(ak.Status.LastCompromisedRequest).To(BeEmpty())
		}).WithTimeout(3 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

		// With a yes, the key is replaced and revoked at once.
		uid := string(getApiKey(g, ns, "plugin-a").UID)
		out := p.must(t, "y\n", "compromised", "plugin-a", "-n", ns, "--wait", "--timeout=60s")
		g.Expect(out).To(ContainSubstring("apikey/plugin-a: done: key " + id))
		g.Expect(keyID(g, "plugin-a")).NotTo(Equal(id))
		g.Eventually(func(g Gomega) {
			var revoked bool
			for _, k := range keysOf(t, uid) {
				if k.ID == id {
					revoked = k.Revoked
				}
			}
			g.Expect(revoked).To(BeTrue(), "the compromised key %s is still active", id)
		}).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	})

	t.Run("inspect secret", func(t *testing.T) {
		g := NewWithT(t)
		ready(g, "plugin-a")
		ak := getApiKey(g, ns, "plugin-a")
		data, err := secretData(ctx, ns, "plugin-a")
		g.Expect(err).NotTo(HaveOccurred())
		out := p.must(t, "", "inspect", "secret", "plugin-a", "-n", ns)
		g.Expect(out).To(ContainSubstring("Keywarden, for ApiKey plugin-a"))
		g.Expect(out).To(ContainSubstring("the active key " + ak.Status.KeyID + " (" + ak.Status.KeyPrefix + ")"))
		g.Expect(out).To(MatchRegexp(`apiKey\s+\d+\s+` + sha16(data["apiKey"]) + `\s+Reevit key, prefix ` + ak.Status.KeyPrefix + ` \(status.keyPrefix\)`))
		if prev := data["previousApiKey"]; prev != nil {
			g.Expect(out).To(ContainSubstring(sha16(prev)))
		}

		rt := getRevioToken(g, ns, "plugin-rt")
		data, err = secretData(ctx, ns, "plugin-rt")
		g.Expect(err).NotTo(HaveOccurred())
		out = p.must(t, "", "inspect", "secret", "plugin-rt", "-n", ns)
		g.Expect(out).To(ContainSubstring("Keywarden, for RevioToken plugin-rt"))
		g.Expect(out).To(MatchRegexp(`token\s+\d+\s+` + sha16(data["token"]) + `\s+JWT, iat ` + rt.Status.IssuedAt.UTC().Format(time.RFC3339) +
			` \((\S+ ago|now)\), exp ` + rt.Status.ExpiresAt.UTC().Format(time.RFC3339) + ` \(in \S+\) \(status.expiresAt\)`))
		g.Expect(out).To(ContainSubstring(sha16(data["authorization"])))

		// An issuer's credential Secret: which issuers name it, and whom
		// they serve.
		out = p.must(t, "", "inspect", "secret", "reevit-admin", "-n", ns)
		g.Expect(out).To(ContainSubstring("not Keywarden"))
		g.Expect(out).To(ContainSubstring("reevitissuer/" + reevitIssuerName + " (spec.adminKeySecretRef, data key apiKey; used by apikey/plugin-a, apikey/plugin-b)"))
		g.Expect(out).To(ContainSubstring(sha16([]byte(sim.Credentials.AdminKey))))
		out = p.must(t, "", "inspect", "secret", "revio-api-key", "-n", ns)
		g.Expect(out).To(ContainSubstring("revioissuer/" + revioIssuerName + " (spec.apiKeySecretRef, data key apiKey; used by reviotoken/plugin-rt)"))
		g.Expect(out).To(ContainSubstring(sha16([]byte(sim.Credentials.RevioAPIKey))))
		out = p.must(t, "", "inspect", "secret", clusterSecret, "-n", testenv.ClusterResourceNamespace)
		g.Expect(out).To(ContainSubstring("clusterrevioissuer/" + clusterIssuer + " (spec.apiKeySecretRef, data key apiKey; used by " + ns + "/reviotoken/plugin-crt)"))
		g.Expect(out).To(ContainSubstring(sha16([]byte(sim.Credentials.RevioAPIKey))))
		// Told another cluster-resource namespace, the plugin finds no
		// cluster issuer naming it.
		out = p.must(t, "", "inspect", "secret", clusterSecret, "-n", testenv.ClusterResourceNamespace, "--cluster-resource-namespace=elsewhere")
		g.Expect(out).NotTo(ContainSubstring("clusterrevioissuer/"))
	})

	t.Run("refresh", func(t *testing.T) {
		g := NewWithT(t)
		before := getRevioToken(g, ns, "plugin-rt").Status.Refreshes
		data, err := secretData(ctx, ns, "plugin-rt")
		g.Expect(err).NotTo(HaveOccurred())
		token1 := string(data["token"])
		out := p.must(t, "", "refresh", "reviotoken/plugin-rt", "-n", ns, "--wait", "--timeout=60s")
		g.Expect(out).To(ContainSubstring("reviotoken/plugin-rt: done: new token issued"))
		rt := getRevioToken(g, ns, "plugin-rt")
		g.Expect(rt.Status.Refreshes).To(BeNumerically(">", before))
		g.Expect(rt.Status.LastRefreshRequest).To(Equal(rt.Annotations[v1alpha1.AnnotationRefresh]))
		data, err = secretData(ctx, ns, "plugin-rt")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(data["token"]) != token1).To(BeTrue(), "the Secret holds the same token after refresh")
		ok, err := sim.Control.ValidateToken(ctx, string(data["token"]))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue(), "the refreshed token is not valid at apisim")
	})

	t.Run("rotate --all", func(t *testing.T) {
		g := NewWithT(t)
		ready(g, "plugin-a", "plugin-b")
		a, b := rotations(g, "plugin-a"), rotations(g, "plugin-b")
		p.must(t, "", "rotate", "--all", "-n", ns, "--wait", "--timeout=60s")
		g.Expect(rotations(g, "plugin-a")).To(Equal(a + 1))
		g.Expect(rotations(g, "plugin-b")).To(Equal(b + 1))
	})

	t.Run("as a kubectl plugin", func(t *testing.T) {
		g := NewWithT(t)
		path := filepath.Dir(env.PluginBin) + string(os.PathListSeparator) + os.Getenv("PATH")
		cmd := exec.Command("kubectl", "keywarden", "version")
		cmd.Env = append(pluginEnviron(t), "PATH="+path)
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "%s", out)
		g.Expect(string(out)).To(ContainSubstring("kubectl-keywarden "))
		g.Expect(string(out)).To(ContainSubstring("API credentials.keywarden.dev/v1alpha1"))
	})

	// Every credential the test saw, and every other the suite saw so far:
	// none in any output of the plugin.
	for _, n := range []string{"plugin-a", "plugin-b", "plugin-rt", "plugin-crt"} {
		_, _ = secretData(ctx, ns, n)
	}
	needles := seen.needles()
	g.Expect(len(needles)).To(BeNumerically(">=", 6))
	for _, r := range p.runs {
		for needle, where := range needles {
			if strings.Contains(r.stdout, needle) || strings.Contains(r.stderr, needle) {
				t.Errorf("kubectl keywarden %s printed a credential: %s", strings.Join(r.args, " "), where)
			}
		}
	}
	t.Logf("%d plugin runs checked against %d credential values", len(p.runs), len(needles))
}
