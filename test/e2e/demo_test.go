package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// TestNewcomerOnTheDemo walks a newcomer's first hour on the demo's setup
// (testenv.DemoManifest, what make demo applies: cluster issuers, their
// credential Secrets reevit-admin and revio-api-key, an ApiKey and a
// RevioToken): the plugin's status shows it green; config/samples applied
// as they ship (platform and team) leave the demo working, its Secrets,
// issuers, key and token untouched; an ApiKey naming the cluster issuer
// without its kind is seen through the plugin's advice, fixed, and all is
// green.
//
// Not parallel, and before TestSamples (file order): the samples' cluster
// issuers, as they ship, name endpoints the suite's manager refuses;
// TestSamples applies them pointed at apisim afterwards, and cleanup puts
// back any it found.
func TestNewcomerOnTheDemo(t *testing.T) {
	credentialTests.Add(1)
	t.Cleanup(credentialTests.Done)
	ctx := context.Background()
	g := NewWithT(t)
	p := &pluginRuns{}
	suffix := rand.String(5)
	setup := testenv.DemoSetup{Namespace: "demo-" + suffix, Issuer: "demo-" + suffix, Every: time.Hour, Grace: 5 * time.Minute}
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: setup.Namespace}})
	})
	if _, err := env.AdminKubectl(ctx, testenv.DemoManifest(sim.Credentials, setup), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: setup.Issuer}})
		_ = k8s.Delete(ctx, &v1alpha1.ClusterRevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: setup.Issuer}})
	})
	ns := setup.Namespace

	// The demo, green.
	var keyID string
	var key, token []byte
	demoGreen := func(what string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			for _, kind := range []string{v1alpha1.KindClusterReevitIssuer, v1alpha1.KindClusterRevioIssuer} {
				conds, gen := issuerConditions(g, kind, "", setup.Issuer)
				expectReady(g, conds, gen)
			}
			ak := getApiKey(g, ns, "payments")
			expectReady(g, ak.Status.Conditions, ak.Generation)
			rt := getRevioToken(g, ns, "billing")
			expectReady(g, rt.Status.Conditions, rt.Generation)
			data, err := secretData(ctx, ns, "payments")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(data["keyId"])).To(Equal(ak.Status.KeyID))
			if keyID == "" {
				keyID, key = ak.Status.KeyID, data["apiKey"]
			}
			g.Expect(ak.Status.KeyID).To(Equal(keyID), "%s: the demo's key was replaced", what)
			id, ok, err := sim.Control.Authenticate(ctx, "", string(key))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeTrue(), "%s: the demo's key no longer authenticates", what)
			g.Expect(id).To(Equal(keyID))
			data, err = secretData(ctx, ns, "billing")
			g.Expect(err).NotTo(HaveOccurred())
			if token == nil {
				token = data["token"]
			}
			ok, err = sim.Control.ValidateTokenForHost(ctx, string(token), sim.Credentials.RevioHost)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ok).To(BeTrue(), "%s: the demo's token is no longer valid", what)
			// The credentials the Quickstart makes hold what the demo put there.
			for name, want := range map[string]string{"reevit-admin": sim.Credentials.AdminKey, "revio-api-key": sim.Credentials.RevioAPIKey} {
				data, err := secretData(ctx, testenv.ClusterResourceNamespace, name)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(string(data["apiKey"])).To(Equal(want), "%s: Secret %s was overwritten", what, name)
			}
		}).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
	}
	demoGreen("demo up")
	readyTrue := regexp.MustCompile(`(?m)^  Ready:\s+True \(Succeeded\)`)
	out := p.must(t, "", "status", "ak/payments", "rt/billing", "-n", ns)
	g.Expect(readyTrue.FindAllString(out, -1)).To(HaveLen(2), "plugin status on the demo")

	// config/samples, as they ship: the platform's cluster issuers and a
	// team's objects in a namespace of its own.
	previous := map[string]*unstructured.Unstructured{}
	for _, kind := range []string{v1alpha1.KindClusterReevitIssuer, v1alpha1.KindClusterRevioIssuer} {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
		if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, u); err == nil {
			previous[kind] = u
		} else if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	team := newNamespace(t, "samples-team")
	t.Cleanup(func() {
		// The team's ApiKeys name issuers this manager may not call: they
		// could never revoke, so they go with Retain (they made no key).
		aks := &v1alpha1.ApiKeyList{}
		if err := k8s.List(ctx, aks, client.InNamespace(team)); err == nil {
			for i := range aks.Items {
				_ = k8s.Patch(ctx, &aks.Items[i], client.RawPatch(types.MergePatchType, []byte(`{"spec":{"deletionPolicy":"Retain"}}`)))
			}
		}
		_ = k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})
		for _, kind := range []string{v1alpha1.KindClusterReevitIssuer, v1alpha1.KindClusterRevioIssuer} {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
			u.SetName("acme")
			if prev := previous[kind]; prev != nil {
				spec, _, _ := unstructured.NestedMap(prev.Object, "spec")
				if err := k8s.Get(ctx, client.ObjectKey{Name: "acme"}, u); err == nil {
					_ = unstructured.SetNestedMap(u.Object, spec, "spec")
					_ = k8s.Update(ctx, u)
				}
				continue
			}
			_ = k8s.Delete(ctx, u)
			// Gone before the next test applies the samples again.
			NewWithT(t).Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "acme"}, u))
			}).WithTimeout(90*time.Second).WithPolling(time.Second).Should(BeTrue(), "%s acme deleted", kind)
		}
	})
	for _, args := range [][]string{{"apply", "-k", "config/samples/platform"}, {"apply", "-k", "config/samples", "-n", team}} {
		if _, err := env.AdminKubectl(ctx, nil, args...); err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
	}
	// The samples' own issuers name the real APIs, which this manager
	// refuses: they say so, and touch nothing of the demo's.
	g.Eventually(func(g Gomega) {
		conds, _ := issuerConditions(g, v1alpha1.KindClusterReevitIssuer, "", "acme")
		g.Expect(condition(conds, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonEndpointNotAllowed))
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	demoGreen("after config/samples")

	// A newcomer's mistake: issuerRef {name} means the namespaced kind.
	apply(t, ns, []byte(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: newcomer
spec:
  issuerRef: {name: `+setup.Issuer+`}
  scopes: [payments:read]
  environment: `+adminEnvironment()+`
`))
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "newcomer")
		g.Expect(condition(ak.Status.Conditions, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonIssuerNotFound))
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	out = p.must(t, "", "status", "ak/newcomer", "-n", ns)
	g.Expect(out).To(ContainSubstring("IssuerNotFound"))
	g.Expect(out).To(ContainSubstring("a ClusterReevitIssuer named " + setup.Issuer + " exists: set spec.issuerRef.kind: ClusterReevitIssuer"))
	g.Expect(out).To(ContainSubstring("what to do: create the issuer, or fix spec.issuerRef"))

	// The fix the advice names, and nothing else.
	if _, err := env.AdminKubectl(ctx, nil, "patch", "apikey", "newcomer", "-n", ns, "--type=merge",
		"-p", `{"spec":{"issuerRef":{"kind":"ClusterReevitIssuer"}}}`); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "newcomer")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		g.Expect(ak.Status.ResolvedIssuer).To(Equal(v1alpha1.KindClusterReevitIssuer + "/" + setup.Issuer))
		data, err := secretData(ctx, ns, "newcomer")
		g.Expect(err).NotTo(HaveOccurred())
		_, ok, err := sim.Control.Authenticate(ctx, "", string(data["apiKey"]))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue())
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	demoGreen("after the fix")
	out = p.must(t, "", "status", "ak/payments", "ak/newcomer", "rt/billing", "-n", ns)
	g.Expect(readyTrue.FindAllString(out, -1)).To(HaveLen(3), "all green")
}
