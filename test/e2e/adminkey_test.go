package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
)

// TestAdminKeyRotation (issue 23): a ReevitIssuer with
// spec.adminKeyRotation (every 1m, the shortest the CRD allows, grace 5s)
// replaces its admin key on schedule: the Secret holds a new key with the
// same scopes, the old one is revoked at apisim once the grace period is
// over, and an ApiKey of the issuer still rotates through it. Then the
// plugin marks the issuer compromised: the admin key is replaced and the
// previous one revoked at once, and the ApiKey rotates again. The issuer's
// admin key is one of its own, seeded at apisim: the suite's admin key
// serves every other test and must stay.
func TestAdminKeyRotation(t *testing.T) {
	start := time.Now()
	g, ns := credentialTest(t, "adminkey")
	ctx := context.Background()
	since := func() time.Duration { return time.Since(start).Round(100 * time.Millisecond) }
	authenticates := func(key string) bool {
		_, ok, err := sim.Control.Authenticate(ctx, "", key)
		g.Expect(err).NotTo(HaveOccurred())
		return ok
	}

	// An admin key of this test, with the scopes of apisim's.
	var scopes []string
	keys, err := sim.Control.ReevitKeys(ctx, "")
	g.Expect(err).NotTo(HaveOccurred())
	for _, k := range keys {
		if k.ID == sim.Credentials.AdminKeyID {
			scopes = k.Scopes
		}
	}
	g.Expect(scopes).NotTo(BeEmpty(), "apisim's admin key not listed")
	id1, key1, err := sim.Control.SeedReevitKey(ctx, apisim.SeedKeyRequest{Env: adminEnvironment(), Name: "e2e admin " + ns, Scopes: scopes})
	g.Expect(err).NotTo(HaveOccurred())
	seen.add("TestAdminKeyRotation's first admin key", key1)
	createSecret(t, ns, "reevit-admin", key1)
	manifest := strings.Replace(string(apiKeyManifest("under-rotation", time.Hour, time.Minute)),
		"  adminKeySecretRef:\n    name: reevit-admin\n",
		"  adminKeySecretRef:\n    name: reevit-admin\n  adminKeyRotation:\n    every: 1m\n    gracePeriod: 5s\n", 1)
	g.Expect(manifest).To(ContainSubstring("adminKeyRotation"))
	apply(t, ns, []byte(manifest))

	issuer := func(g Gomega) *v1alpha1.ReevitIssuer {
		ri := &v1alpha1.ReevitIssuer{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: reevitIssuerName}, ri)).To(Succeed())
		return ri
	}
	adminKey := func(g Gomega) string {
		data, err := secretData(ctx, ns, "reevit-admin")
		g.Expect(err).NotTo(HaveOccurred())
		return string(data["apiKey"])
	}
	apiKeyWorks := func(g Gomega, notID string) string {
		ak := getApiKey(g, ns, "under-rotation")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		g.Expect(ak.Status.KeyID).NotTo(Equal(notID), "not rotated")
		data, err := secretData(ctx, ns, "under-rotation")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(data["keyId"])).To(Equal(ak.Status.KeyID))
		g.Expect(authenticates(string(data["apiKey"]))).To(BeTrue(), "the ApiKey's key does not authenticate")
		return ak.Status.KeyID
	}

	// The seeded key is identified, and the ApiKey made with it.
	g.Eventually(func(g Gomega) {
		ri := issuer(g)
		expectReady(g, ri.Status.Conditions, ri.Generation)
		a := ri.Status.AdminKey
		g.Expect(a).NotTo(BeNil())
		g.Expect(a.ID).To(Equal(id1))
		g.Expect(a.NextRotationTime).NotTo(BeNil())
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	var akID string
	g.Eventually(func(g Gomega) { akID = apiKeyWorks(g, "") }).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	t.Logf("%s: admin key %s identified; ApiKey key %s", since(), id1, akID)

	// On schedule: a new admin key in the Secret with the same scopes, the
	// old one kept through the grace period, then revoked.
	var key2, id2 string
	var prev v1alpha1.AdminKeyPrevious
	g.Eventually(func(g Gomega) {
		a := issuer(g).Status.AdminKey
		g.Expect(a).NotTo(BeNil())
		g.Expect(a.ID).NotTo(Equal(id1), "not rotated yet")
		g.Expect(a.Pending).To(BeNil())
		id2 = a.ID
		g.Expect(a.Scopes).To(ConsistOf(scopes))
		g.Expect(a.Previous).NotTo(BeNil(), "the previous key is not waiting for its revocation")
		prev = *a.Previous
		key2 = adminKey(g)
		g.Expect(key2).To(HavePrefix(a.Prefix))
	}).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Expect(prev.ID).To(Equal(id1))
	g.Expect(authenticates(key2)).To(BeTrue(), "the new admin key does not authenticate")
	t.Logf("%s: admin key rotated on schedule to %s; %s revoked after %s", since(), id2, id1, prev.RevokeAfter.UTC().Format(time.RFC3339))
	var old apisim.KeyInfo
	g.Eventually(func(g Gomega) {
		keys, err := sim.Control.ReevitKeys(ctx, "")
		g.Expect(err).NotTo(HaveOccurred())
		for _, k := range keys {
			if k.ID == id1 {
				old = k
			}
		}
		g.Expect(old.Revoked).To(BeTrue(), "the old admin key %s is still active", id1)
		g.Expect(issuer(g).Status.AdminKey.Previous).To(BeNil())
	}).WithTimeout(time.Until(prev.RevokeAfter.Time) + 60*time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(*old.RevokedAt).To(BeTemporally(">=", prev.RevokeAfter.Add(-time.Second)), "revoked before the grace period ended")
	g.Expect(authenticates(key1)).To(BeFalse(), "the revoked admin key still authenticates")
	expectEvents(t, ns, reevitIssuerName, v1alpha1.ReasonAdminKeyRotated, v1alpha1.ReasonRevoked)

	// The ApiKey rotates through the new admin key.
	p := &pluginRuns{}
	p.must(t, "", "rotate", "apikey/under-rotation", "-n", ns, "--wait", "--timeout=60s")
	g.Eventually(func(g Gomega) { akID = apiKeyWorks(g, akID) }).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	t.Logf("%s: ApiKey rotated to %s with the new admin key", since(), akID)

	// Compromised, with the plugin: replaced, and the previous key revoked
	// at once.
	out := p.must(t, "y\n", "compromised", "ri/"+reevitIssuerName, "-n", ns, "--wait", "--timeout=90s")
	g.Expect(out).To(ContainSubstring("reevitissuer/" + reevitIssuerName))
	var key3 string
	g.Eventually(func(g Gomega) {
		a := issuer(g).Status.AdminKey
		g.Expect(a.ID).NotTo(Equal(id2))
		g.Expect(a.Pending).To(BeNil())
		g.Expect(a.Previous).To(BeNil(), "the compromised key is still waiting for its revocation")
		key3 = adminKey(g)
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Expect(authenticates(key2)).To(BeFalse(), "the compromised admin key still authenticates")
	g.Expect(authenticates(key3)).To(BeTrue(), "the admin key that replaced the compromised one does not authenticate")
	p.must(t, "", "rotate", "apikey/under-rotation", "-n", ns, "--wait", "--timeout=60s")
	g.Eventually(func(g Gomega) { akID = apiKeyWorks(g, akID) }).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	t.Logf("%s: compromised admin key %s revoked; ApiKey rotated to %s", since(), id2, akID)

	// No admin key in any output of the plugin.
	for _, r := range p.runs {
		for i, k := range []string{key1, key2, key3} {
			if strings.Contains(r.stdout+r.stderr, k) || strings.Contains(r.stdout+r.stderr, k[13:]) {
				t.Errorf("kubectl keywarden %s printed admin key %d", strings.Join(r.args, " "), i+1)
			}
		}
	}
}
