package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// newInUseApiKey creates an ApiKey using the ReevitIssuer "reevit" in ns,
// which it creates (admin Secret "admin") if needed.
func newInUseApiKey(g Gomega, ns, name, org string, policy v1alpha1.DeletionPolicy) {
	iss := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "reevit", Namespace: ns}, Spec: v1alpha1.ReevitIssuerSpec{
		URL: reevitSim.URL, OrgID: org, AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "admin"}}}
	if err := k8s.Create(context.Background(), iss); err != nil {
		g.Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "create issuer: %v", err)
	}
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.ApiKeySpec{
		IssuerRef:      v1alpha1.ReevitIssuerReference{Name: "reevit"},
		Scopes:         []v1alpha1.Scope{"payments:read"},
		Environment:    "test",
		DeletionPolicy: policy,
	}}
	g.Expect(k8s.Create(context.Background(), ak)).To(Succeed())
}

// inUseOrg adds the organisation "org_<ns>" to the Reevit simulator with
// an admin key that may read and write keys, and stores that key under
// "apiKey" in each of the named Secrets of ns. It returns the organisation
// and the admin key's id.
func inUseOrg(g Gomega, ns string, secrets ...string) (org, adminID string) {
	org = "org_" + ns
	reevitSim.AddOrg(org)
	adminID, admin := reevitSim.SeedKey(org, "test", "admin", []string{"api_keys:read", "api_keys:write", "payments:read"})
	for _, name := range secrets {
		g.Expect(k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"apiKey": admin}})).To(Succeed())
	}
	return org, adminID
}

func waitApiKeyReady(g Gomega, ns, name string) {
	g.Eventually(func(g Gomega) {
		ak := &v1alpha1.ApiKey{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
}

func adminFinalizers(g Gomega, ns string) []string {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "admin"}, s)).To(Succeed())
	return s.Finalizers
}

// Deleting a whole namespace deletes its Secrets and ApiKeys at the same
// time. The admin-key Secret is held by keywarden.dev/in-use until every
// ApiKey has revoked its keys, then released, and the namespace goes.
func TestApiKeyNamespaceDeletionRevokesEveryKey(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	org, adminID := inUseOrg(g, ns, "admin")
	for i := range 3 {
		newInUseApiKey(g, ns, fmt.Sprintf("key-%d", i), org, v1alpha1.DeletionPolicyRevoke)
	}
	for i := range 3 {
		waitApiKeyReady(g, ns, fmt.Sprintf("key-%d", i))
	}
	g.Eventually(func(g Gomega) []string { return adminFinalizers(g, ns) }, 10*time.Second).Should(ContainElement(inUseFinalizer))
	g.Expect(reevitSim.ActiveKeys(org)).To(HaveLen(4), "the admin key and one key per ApiKey")

	g.Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Eventually(func() bool {
		err := k8s.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})
		return apierrors.IsNotFound(err)
	}, 90*time.Second, 250*time.Millisecond).Should(BeTrue(), "the namespace is gone")
	active := reevitSim.ActiveKeys(org)
	g.Expect(active).To(HaveLen(1), "zero live keys for the deleted ApiKeys")
	g.Expect(active[0].ID).To(Equal(adminID))
}

// The admin-key Secret is protected while its issuer exists; the issuer's
// deletion waits for the ApiKeys holding keys made through it (Retain ones
// included only until they are gone), then the Secret is released.
func TestIssuerDeletionWaitsForKeys(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	org, _ := inUseOrg(g, ns, "admin")

	newInUseApiKey(g, ns, "a", org, v1alpha1.DeletionPolicyRevoke)
	newInUseApiKey(g, ns, "b", org, v1alpha1.DeletionPolicyRevoke)
	waitApiKeyReady(g, ns, "a")
	waitApiKeyReady(g, ns, "b")
	g.Eventually(func(g Gomega) []string { return adminFinalizers(g, ns) }, 10*time.Second).Should(ContainElement(inUseFinalizer))

	iss := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "reevit", Namespace: ns}}
	g.Expect(k8s.Delete(ctx, iss)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(iss), iss)).To(Succeed())
		return meta.FindStatusCondition(iss.Status.Conditions, v1alpha1.ConditionReady).Reason
	}, 10*time.Second).Should(Equal(v1alpha1.ReasonIssuerInUse))

	g.Expect(k8s.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: ns}})).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "a"}, &v1alpha1.ApiKey{}))
	}, 30*time.Second).Should(BeTrue(), "a revoked its key through the deleting issuer")
	g.Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(iss), iss) }, 2*time.Second).Should(Succeed(), "b still needs the issuer")
	g.Expect(adminFinalizers(g, ns)).To(ContainElement(inUseFinalizer), "b still needs the Secret")

	g.Expect(k8s.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: ns}})).To(Succeed())
	g.Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(iss), iss)) }, 30*time.Second).Should(BeTrue())
	g.Eventually(func(g Gomega) bool {
		return slices.Contains(adminFinalizers(g, ns), inUseFinalizer)
	}, 30*time.Second).Should(BeFalse())
	g.Expect(reevitSim.ActiveKeys(org)).To(HaveLen(1), "only the admin key is left live")
}

// A change of spec.secret labels or annotations reaches the Secret without a
// new key.
func TestApiKeySecretMetadataFollowsSpec(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	org, _ := inUseOrg(g, ns, "admin")
	newInUseApiKey(g, ns, "key", org, v1alpha1.DeletionPolicyRevoke)
	waitApiKeyReady(g, ns, "key")
	ak := &v1alpha1.ApiKey{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "key"}, ak)).To(Succeed())
	keyID := ak.Status.KeyID

	// Status may still be written after Ready (the issuer protecting its
	// admin Secret changes the admin-key version the ApiKey records): a
	// stale read is retried, not a failure.
	updateRetrying(t, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key"}}, func(ak *v1alpha1.ApiKey) {
		ak.Spec.Secret.Labels = map[string]string{"team": "payments"}
		ak.Spec.Secret.Annotations = map[string]string{"example.com/owner": "payments"}
	})
	g.Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "key"}, s)).To(Succeed())
		g.Expect(s.Labels).To(HaveKeyWithValue("team", "payments"))
		g.Expect(s.Annotations).To(HaveKeyWithValue("example.com/owner", "payments"))
		g.Expect(string(s.Data["keyId"])).To(Equal(keyID))
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "key"}, ak)).To(Succeed())
	g.Expect(ak.Status.KeyID).To(Equal(keyID), "no new key for a metadata change")
	g.Expect(ak.Status.KeyGeneration).To(BeEquivalentTo(1))
}

// Moving an issuer to another admin-key Secret protects the new one and
// releases the old one.
func TestIssuerAdminSecretFinalizerFollowsReference(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	org, _ := inUseOrg(g, ns, "admin", "admin2")
	newInUseApiKey(g, ns, "key", org, v1alpha1.DeletionPolicyRevoke)
	waitApiKeyReady(g, ns, "key")
	g.Eventually(func(g Gomega) []string { return adminFinalizers(g, ns) }, 10*time.Second).Should(ContainElement(inUseFinalizer))

	updateReevitIssuer(t, ns, "reevit", func(s *v1alpha1.ReevitIssuerSpec) { s.AdminKeySecretRef.Name = "admin2" })
	g.Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "admin2"}, s)).To(Succeed())
		g.Expect(s.Finalizers).To(ContainElement(inUseFinalizer))
		g.Expect(adminFinalizers(g, ns)).NotTo(ContainElement(inUseFinalizer))
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
}
