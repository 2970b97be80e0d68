package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// updateReevitIssuer changes an issuer's spec, retrying on conflicts with
// the issuer reconciler's status writes.
func updateReevitIssuer(t *testing.T, ns, name string, mut func(*v1alpha1.ReevitIssuerSpec)) {
	t.Helper()
	updateRetrying(t, &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		func(iss *v1alpha1.ReevitIssuer) { mut(&iss.Spec) })
}

// issuerCondition waits until the ReevitIssuer's Ready has reason.
func issuerCondition(t *testing.T, ns, name, reason string) metav1.Condition {
	t.Helper()
	return issuerReadyReason(t, v1alpha1.KindReevitIssuer, ns, name, reason)
}

// issuerReadyReason waits until the Ready condition of the issuer of kind
// (v1alpha1.IssuerKinds) ns/name has reason and returns it.
func issuerReadyReason(t *testing.T, kind, ns, name, reason string) metav1.Condition {
	t.Helper()
	var out metav1.Condition
	NewWithT(t).Eventually(func(g Gomega) {
		iss := v1alpha1.NewIssuer(kind)
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, iss)).To(Succeed())
		c := meta.FindStatusCondition(iss.IssuerStatus().Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason), c.Message)
		out = *c
	}, aktWait, 20*time.Millisecond).Should(Succeed())
	return out
}

// An issuer is Ready once a key listing with its admin key succeeds, and
// says why not otherwise.
func TestIssuerReadyOnceCredentialProven(t *testing.T) {
	e := newAkt(t)
	c := issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonSucceeded)
	e.g.Expect(c.Status).To(Equal(metav1.ConditionTrue))

	// A revoked admin key: Unauthorized, checked once for the new version.
	lists := calls(reevittest.EndpointList)
	e.putAdmin("pfk_live_not_a_key_of_this_org_at_all")
	issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonUnauthorized)
	e.g.Consistently(func() int { return calls(reevittest.EndpointList) - lists }, time.Second).Should(Equal(1), "one check per Secret version")

	// Fixed: Ready again.
	e.newAdmin()
	issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonSucceeded)

	// A missing Secret.
	createReevitIssuer(t, e.ns, "missing", e.org, "nope")
	issuerCondition(t, e.ns, "missing", v1alpha1.ReasonSecretNotFound)
}

// An issuer credential must be an Opaque Secret: a Secret of another type
// (a service-account token, basic-auth, TLS) is refused before anything is
// sent, on the issuer and on the ApiKeys using it.
func TestIssuerRefusesNonOpaqueSecret(t *testing.T) {
	e := newAktBare(t)
	_, admin := reevitSim.SeedKey(e.org, "live", "admin", aktAdminScopes)
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "basic", Namespace: e.ns}, Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"username": []byte("u"), "password": []byte("p"), "apiKey": []byte(admin)},
	})).To(Succeed())
	e.seen = append(e.seen, admin)
	createReevitIssuer(t, e.ns, "typed", e.org, "basic")
	before := callsNow()
	c := issuerCondition(t, e.ns, "typed", v1alpha1.ReasonSecretTypeNotAllowed)
	e.g.Expect(c.Message).To(ContainSubstring("kubernetes.io/basic-auth"))
	e.create("key", func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "typed" })
	e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonSecretTypeNotAllowed)
	e.g.Consistently(callsNow, time.Second).Should(Equal(before), "nothing sent to Reevit")
	e.hygiene()
}

// An issuer naming a URL outside --allowed-endpoints gets
// EndpointNotAllowed and the manager sends nothing there.
func TestIssuerEndpointNotAllowed(t *testing.T) {
	e := newAkt(t)
	createReevitIssuer(t, e.ns, "elsewhere", e.org, aktAdminSecret, func(s *v1alpha1.ReevitIssuerSpec) {
		s.URL = "https://collector.attacker.example/steal"
	})
	c := issuerCondition(t, e.ns, "elsewhere", v1alpha1.ReasonEndpointNotAllowed)
	e.g.Expect(c.Message).To(ContainSubstring("--allowed-endpoints"))
	e.create("key", func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "elsewhere" })
	c = e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonEndpointNotAllowed)
	e.g.Expect(c.Message).To(ContainSubstring("collector.attacker.example"))
	e.g.Expect(e.get("key").Status.KeyID).To(BeEmpty())
	e.hygiene()

}

// endpointAllowed compares a URL with the list as written: nothing passes
// for being loopback, and a URL that differs from an allowed one only by
// scheme, port, user info, a trailing dot, case, IPv6 form or path
// traversal (plain or percent-encoded) is refused.
func TestEndpointAllowedLookalikes(t *testing.T) {
	allowed := []string{"https://api.reevit.com", "https://eu.example.com/reevit/v1/", "http://127.0.0.1:8080", "http://[::1]:9090/sim"}
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://api.reevit.com", true},
		{"https://api.reevit.com/", true},
		{"https://api.reevit.com/v1", true},
		{"https://eu.example.com/reevit/v1", true},
		{"https://eu.example.com/reevit/v1/keys", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8080/v1", true},
		{"http://[::1]:9090/sim", true},
		{"http://[::1]:9090/sim/x", true},

		// scheme
		{"http://api.reevit.com", false},
		{"https://127.0.0.1:8080", false},
		{"ftp://api.reevit.com", false},
		{"HTTPS://api.reevit.com", false},
		// port
		{"https://api.reevit.com:443", false},
		{"https://api.reevit.com:8443", false},
		{"http://127.0.0.1:8081", false},
		{"http://127.0.0.1", false},
		{"http://127.0.0.1:08080", false},
		// user info
		{"https://user:pw@api.reevit.com", false},
		{"https://user@api.reevit.com", false},
		{"https://api.reevit.com@evil.example", false},
		{"http://127.0.0.1:8080@127.0.0.2:8080", false},
		// trailing dot
		{"https://api.reevit.com.", false},
		{"https://api.reevit.com./v1", false},
		// case
		{"https://API.reevit.com", false},
		{"https://api.Reevit.com/v1", false},
		{"https://eu.example.com/Reevit/v1", false},
		{"https://eu.example.com/reevit/V1", false},
		// IPv6 form, other loopback spellings
		{"http://[0:0:0:0:0:0:0:1]:9090/sim", false},
		{"http://[::0001]:9090/sim", false},
		{"http://[::ffff:127.0.0.1]:8080", false},
		{"http://[::1]:8080", false},
		{"http://[::1%25lo]:9090/sim", false},
		{"http://localhost:8080", false},
		{"http://127.0.0.2:8080", false},
		{"http://2130706433:8080", false},
		{"http://0x7f.0.0.1:8080", false},
		// path traversal, plain and percent-encoded
		{"https://eu.example.com/reevit/v1/../x", false},
		{"https://eu.example.com/reevit/v1/..", false},
		{"https://eu.example.com/reevit/v1/./keys", false},
		{"https://eu.example.com/reevit/v1/%2e%2e/x", false},
		{"https://eu.example.com/reevit/v1/%2E%2E/x", false},
		{"https://eu.example.com/reevit/v1/.%2e/x", false},
		{"https://eu.example.com/reevit/v1/%2e./x", false},
		{"https://eu.example.com/reevit/v1%2f..%2fx", false},
		{"https://eu.example.com/reevit/v1/..%2fx", false},
		{"https://eu.example.com/reevit/v1/..%5cx", false},
		{"https://eu.example.com/reevit/v1/..\\x", false},
		{"http://127.0.0.1:8080/v1/../x", false},
		{"http://[::1]:9090/sim/../x", false},
		{"http://[::1]:9090/sim/%2e%2e/x", false},
		// elsewhere
		{"https://api.reevit.com.evil.example", false},
		{"https://eu.example.com", false},
		{"https://eu.example.com/reevit", false},
		{"https://eu.example.com/reevit/v1x", false},
		{"https://api.re%65vit.com", false},
		{"https://10.0.0.1", false},
		{"https:api.reevit.com", false},
		{"//api.reevit.com", false},
		{"", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if got := endpointAllowed(tc.url, allowed); got != tc.want {
				t.Errorf("endpointAllowed(%q) = %v, want %v", tc.url, got, tc.want)
			}
		})
	}
	// The flag does not widen the list: loopback passes only when listed.
	if endpointAllowed("http://127.0.0.1:8080", DefaultAllowedEndpoints()) {
		t.Error("a loopback URL passed a list that does not name it")
	}
}

// A spec outside the issuer's policy gets PolicyViolation with the field
// and the allowed values, and nothing is created; a policy tightened later
// flags the existing key without changing it.
func TestApiKeyPolicyViolation(t *testing.T) {
	e := newAktBare(t)
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "live", "keywarden admin", aktAdminScopes)
	createReevitIssuer(t, e.ns, "bounded", e.org, aktAdminSecret, func(s *v1alpha1.ReevitIssuerSpec) {
		s.Policy.AllowedScopes = []v1alpha1.Scope{"payments:read"}
		s.Policy.MaxGracePeriod = &metav1.Duration{Duration: time.Hour}
	})
	e.putAdminFor("bounded")
	before := callsNow()
	e.create("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.IssuerRef.Name = "bounded"
		ak.Spec.Scopes = []v1alpha1.Scope{"payments:read", "payments:write"}
	})
	c := e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonPolicyViolation)
	e.g.Expect(c.Message).To(And(ContainSubstring("spec.scopes"), ContainSubstring("payments:write"), ContainSubstring("allowed scopes payments:read")))
	e.event("key", corev1.EventTypeWarning, v1alpha1.ReasonPolicyViolation)
	e.g.Consistently(func() int { return callsNow()[0] - before[0] }, time.Second).Should(BeZero(), "no create for a violating spec")

	// A grace period above the maximum.
	e.update("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.Scopes = []v1alpha1.Scope{"payments:read"}
		ak.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: &metav1.Duration{Duration: 2 * time.Hour}}
	})
	e.g.Eventually(func() string {
		return meta.FindStatusCondition(e.get("key").Status.Conditions, v1alpha1.ConditionReady).Message
	}, aktWait).Should(ContainSubstring("gracePeriod is 2h0m0s, longer than the allowed maximum 1h0m0s"))

	// Within the policy: a key.
	e.update("key", func(ak *v1alpha1.ApiKey) { ak.Spec.Rotation = nil })
	ak := e.settled("key")
	id := ak.Status.KeyID
	e.g.Expect(ak.Status.Issuer).NotTo(BeNil())
	e.g.Expect(ak.Status.Issuer.Kind).To(Equal(v1alpha1.KindReevitIssuer))
	e.g.Expect(ak.Status.Issuer.Name).To(Equal("bounded"))
	e.g.Expect(ak.Status.Issuer.OrgID).To(Equal(e.org))
	e.g.Expect(string(ak.Status.Issuer.UID)).NotTo(BeEmpty())

	// Tightened later: flagged, not silently changed or revoked.
	updateReevitIssuer(t, e.ns, "bounded", func(s *v1alpha1.ReevitIssuerSpec) { s.Policy.Environments = []v1alpha1.Environment{"test"} })
	c = e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonPolicyViolation)
	e.g.Expect(c.Message).To(ContainSubstring(`spec.environment "live" is not allowed: allowed test`))
	e.g.Expect(e.isActive(id)).To(BeTrue(), "the existing key is not revoked by a policy change")
	e.g.Expect(string(e.secret("key").Data["keyId"])).To(Equal(id))
	e.hygiene()
}

// putAdminFor creates the admin Secret and waits for issuer name's check.
func (e *akt) putAdminFor(name string) {
	e.t.Helper()
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: aktAdminSecret, Namespace: e.ns},
		Data: map[string][]byte{"apiKey": []byte(e.adminKey)}})).To(Succeed())
	e.seen = append(e.seen, e.adminKey)
	waitIssuerChecked(e.t, e.ns, name, aktAdminSecret)
}

// newClusterReevitIssuer adds the organisation orgPrefix+<a new namespace>
// to the Reevit simulator with a live admin key, kept in a Secret of the
// cluster-resource namespace, and creates for it the ClusterReevitIssuer
// namePrefix+<the org's last five characters>, serving the namespaces
// selector picks; the issuer is deleted when the test ends. It returns the
// organisation, the issuer's name and the admin key.
func newClusterReevitIssuer(t *testing.T, orgPrefix, namePrefix string, selector *metav1.LabelSelector) (org, name, admin string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	org = orgPrefix + newNamespace(t)
	reevitSim.AddOrg(org)
	_, admin = reevitSim.SeedKey(org, "live", "platform admin", aktAdminScopes)
	secretName := "reevit-admin-" + org[len(org)-5:]
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: clusterNS},
		Data: map[string][]byte{"apiKey": []byte(admin)}})).To(Succeed())
	name = namePrefix + org[len(org)-5:]
	ci := &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ReevitIssuerSpec{
		URL: reevitSim.URL, OrgID: org, AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: secretName},
		Policy: v1alpha1.ReevitIssuerPolicy{NamespaceSelector: selector}}}
	g.Expect(k8s.Create(ctx, ci)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, ci) })
	return org, name, admin
}

// A ClusterReevitIssuer serves the namespaces its selector picks; its admin
// key lives in the cluster-resource namespace, out of the teams' reach.
func TestClusterIssuerNamespaceSelector(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	org, name, admin := newClusterReevitIssuer(t, "org_cluster_", "platform-",
		&metav1.LabelSelector{MatchLabels: map[string]string{"keywarden.dev/team": "payments"}})

	selected := newAktBare(t)
	selected.org = org
	nsObj := &corev1.Namespace{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: selected.ns}, nsObj)).To(Succeed())
	nsObj.Labels["keywarden.dev/team"] = "payments"
	g.Expect(k8s.Update(ctx, nsObj)).To(Succeed())
	selected.create("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: name}
	})
	ak := selected.settled("key")
	selected.authenticates(selected.secret("key").Data["apiKey"], ak.Status.KeyID)

	other := newAktBare(t)
	before := callsNow()
	other.create("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: name}
	})
	c := other.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonPolicyViolation)
	g.Expect(c.Message).To(ContainSubstring("namespace " + other.ns + " is not selected"))
	g.Consistently(func() int { return callsNow()[0] - before[0] }, time.Second).Should(BeZero(), "no create for a namespace not selected")
	selected.seen = append(selected.seen, admin)
	selected.hygiene()

	// Deleting the selected namespace revokes its key through the cluster
	// issuer, whose Secret is elsewhere.
	g.Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: selected.ns}})).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Name: selected.ns}, &corev1.Namespace{}))
	}, 90*time.Second, 250*time.Millisecond).Should(BeTrue(), "the namespace is gone")
	g.Expect(reevitSim.ActiveKeys(org)).To(HaveLen(1), "only the platform admin key is left live")
}

// Moving an ApiKey to an issuer of another organisation creates the new key
// there and revokes the old one at the old organisation, with the old
// issuer's credential.
func TestApiKeyIssuerChangeRevokesAtOldOrg(t *testing.T) {
	e := newAkt(t)
	e.create("key", aktGrace(time.Minute))
	old := e.settled("key")
	oldOrg := e.org

	newOrg := "org2_" + e.ns
	reevitSim.AddOrg(newOrg)
	_, admin2 := reevitSim.SeedKey(newOrg, "live", "admin 2", aktAdminScopes)
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admin2", Namespace: e.ns},
		Data: map[string][]byte{"apiKey": []byte(admin2)}})).To(Succeed())
	e.seen = append(e.seen, admin2)
	createReevitIssuer(t, e.ns, "second", newOrg, "admin2")
	waitIssuerChecked(t, e.ns, "second", "admin2")

	e.update("key", func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "second" })
	now := e.rotated("key", old.Status.KeyID)
	e.g.Expect(now.Status.Issuer.OrgID).To(Equal(newOrg))
	e.g.Expect(now.Status.PendingRevocations).To(HaveLen(1))
	e.g.Expect(now.Status.PendingRevocations[0].Issuer.OrgID).To(Equal(oldOrg))
	e.g.Expect(string(e.secret("key").Data["orgId"])).To(Equal(newOrg))

	e.stepAndPoke("key", 61*time.Second)
	e.g.Eventually(func() int { return len(e.get("key").Status.PendingRevocations) }, aktWait).Should(BeZero())
	e.g.Expect(e.isActive(old.Status.KeyID)).To(BeFalse(), "the old key is revoked at the old organisation")
	e.g.Expect(reevitSim.ActiveKeys(oldOrg)).To(HaveLen(1), "only the old org's admin key")
	e.g.Expect(reevitSim.ActiveKeys(newOrg)).To(HaveLen(2), "the new org's admin key and the new key")
	e.hygiene()
}

// A namespace the platform team labels after the fact lifts PolicyViolation
// on the ApiKeys and RevioTokens waiting in it, with no other trigger: no
// spec change, no annotation, no time step of the injected clock.
func TestNamespaceLabelLiftsPolicyViolation(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"keywarden.dev/team": "late"}}

	// A ClusterReevitIssuer for the ApiKey.
	org, reevitName, admin := newClusterReevitIssuer(t, "org_late_", "late-", selector)

	// A ClusterRevioIssuer for the RevioToken.
	revioSecret := "revio-key-" + org[len(org)-5:]
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: revioSecret, Namespace: clusterNS},
		Data: map[string][]byte{"apiKey": []byte(revioSim.GenerateAPIKey(rtHost))}})).To(Succeed())
	cri := &v1alpha1.ClusterRevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: reevitName}, Spec: v1alpha1.RevioIssuerSpec{
		URL: revioSim.URL, Host: rtHost, APIKeySecretRef: v1alpha1.SecretKeyReference{Name: revioSecret, Key: "apiKey"},
		NamespaceSelector: selector}}
	g.Expect(k8s.Create(ctx, cri)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, cri) })

	e := newAktBare(t)
	e.org = org
	e.seen = append(e.seen, admin)
	e.create("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: reevitName}
	})
	g.Expect(k8s.Create(ctx, rtNew(e.ns, "token", "unused", func(rt *v1alpha1.RevioToken) {
		rt.Spec.IssuerRef = v1alpha1.RevioIssuerReference{Kind: v1alpha1.KindClusterRevioIssuer, Name: reevitName}
	}))).To(Succeed())
	t.Cleanup(func() { _ = k8s.DeleteAllOf(ctx, &v1alpha1.RevioToken{}, client.InNamespace(e.ns)) })
	e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonPolicyViolation)
	rtWaitReason(t, e.ns, "token", v1alpha1.ReasonPolicyViolation)

	// The platform team labels the namespace; nothing else happens.
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		nsObj := &corev1.Namespace{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: e.ns}, nsObj); err != nil {
			return err
		}
		if nsObj.Labels == nil {
			nsObj.Labels = map[string]string{}
		}
		nsObj.Labels["keywarden.dev/team"] = "late"
		return k8s.Update(ctx, nsObj)
	})).To(Succeed())

	ak := e.settled("key")
	e.authenticates(e.secret("key").Data["apiKey"], ak.Status.KeyID)
	rt := rtWaitReady(t, e.ns, "token", 1)
	g.Expect(revioSim.ValidToken(rtToken(t, e.ns, "token"), rtHost)).To(BeTrue())
	g.Expect(rt.Status.FailedAttempts).To(BeZero())
	e.hygiene()
}

// issuerRef {name: X} defaults to the namespaced kind; when only a cluster
// issuer X exists, IssuerNotFound says so and what to set.
func TestIssuerNotFoundNamesTheOtherKind(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	e := newAkt(t)
	name := "only-cluster-" + e.ns
	ci := &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.ReevitIssuerSpec{
		URL: reevitSim.URL, OrgID: e.org, AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "absent"}}}
	g.Expect(k8s.Create(ctx, ci)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, ci) })
	e.create("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Name: name} })
	c := e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonIssuerNotFound)
	g.Expect(c.Message).To(ContainSubstring("ReevitIssuer " + name + " not found in namespace " + e.ns))
	g.Expect(c.Message).To(ContainSubstring("a ClusterReevitIssuer named " + name + " exists: set spec.issuerRef.kind: ClusterReevitIssuer"))
}
