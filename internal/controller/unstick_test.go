package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// unstickWorld is an ApiKey and a RevioToken, in a fresh namespace, served
// by a ClusterReevitIssuer and a ClusterRevioIssuer named after it: the
// cluster kinds, whose credential Secrets live in the cluster-resource
// namespace, away from the consumers.
type unstickWorld struct {
	e               *akt
	issuer          string
	admin, revioKey string
}

// newUnstickWorld makes the world with good credentials in Secrets
// "<kind>-good-<ns>"; broken changes the issuers' specs before they are
// created. The consumers are created last.
func newUnstickWorld(t *testing.T, broken func(*v1alpha1.ReevitIssuerSpec, *v1alpha1.RevioIssuerSpec)) *unstickWorld {
	t.Helper()
	ctx := context.Background()
	e := newAktBare(t)
	w := &unstickWorld{e: e, issuer: "unstick-" + e.ns, revioKey: revioSim.GenerateAPIKey(rtHost)}
	_, w.admin = reevitSim.SeedKey(e.org, "live", "platform admin", aktAdminScopes)
	e.seen = append(e.seen, w.admin, w.revioKey)
	for name, key := range map[string]string{"reevit-good-" + e.ns: w.admin, "revio-good-" + e.ns: w.revioKey} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: clusterNS}, Data: map[string][]byte{"apiKey": []byte(key)}}
		e.g.Expect(k8s.Create(ctx, s)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(ctx, s) })
	}
	rs := v1alpha1.ReevitIssuerSpec{URL: reevitSim.URL, OrgID: e.org, AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-good-" + e.ns}}
	vs := v1alpha1.RevioIssuerSpec{URL: revioSim.URL, Host: rtHost, APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio-good-" + e.ns, Key: "apiKey"}}
	broken(&rs, &vs)
	ci := &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: w.issuer}, Spec: rs}
	cri := &v1alpha1.ClusterRevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: w.issuer}, Spec: vs}
	e.g.Expect(k8s.Create(ctx, ci)).To(Succeed())
	e.g.Expect(k8s.Create(ctx, cri)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, ci); _ = k8s.Delete(ctx, cri) })
	e.create("key", func(ak *v1alpha1.ApiKey) {
		ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: w.issuer}
	})
	e.g.Expect(k8s.Create(ctx, rtNew(e.ns, "token", "unused", func(rt *v1alpha1.RevioToken) {
		rt.Spec.IssuerRef = v1alpha1.RevioIssuerReference{Kind: v1alpha1.KindClusterRevioIssuer, Name: w.issuer}
	}))).To(Succeed())
	t.Cleanup(func() { _ = k8s.DeleteAllOf(ctx, &v1alpha1.RevioToken{}, client.InNamespace(e.ns)) })
	return w
}

// fixIssuers changes both cluster issuers' specs, retrying on conflicts
// with their status writes.
func (w *unstickWorld) fixIssuers(fix func(*v1alpha1.ReevitIssuerSpec, *v1alpha1.RevioIssuerSpec)) {
	ctx := context.Background()
	w.e.g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ci := &v1alpha1.ClusterReevitIssuer{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: w.issuer}, ci); err != nil {
			return err
		}
		fix(&ci.Spec, &v1alpha1.RevioIssuerSpec{})
		return k8s.Update(ctx, ci)
	})).To(Succeed())
	w.e.g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cri := &v1alpha1.ClusterRevioIssuer{}
		if err := k8s.Get(ctx, types.NamespacedName{Name: w.issuer}, cri); err != nil {
			return err
		}
		fix(&v1alpha1.ReevitIssuerSpec{}, &cri.Spec)
		return k8s.Update(ctx, cri)
	})).To(Succeed())
}

// putClusterSecret creates or replaces a credential Secret of the cluster
// issuers.
func putClusterSecret(t *testing.T, name, key string) {
	t.Helper()
	ctx := context.Background()
	NewWithT(t).Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		err := k8s.Get(ctx, types.NamespacedName{Namespace: clusterNS, Name: name}, s)
		if err != nil {
			s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: clusterNS}, Data: map[string][]byte{"apiKey": []byte(key)}}
			return k8s.Create(ctx, s)
		}
		s.Data = map[string][]byte{"apiKey": []byte(key)}
		return k8s.Update(ctx, s)
	})).To(Succeed())
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: clusterNS}})
	})
}

// ready waits for both consumers to turn Ready, with no nudge: no spec or
// annotation change of theirs and no step of the injected clock.
func (w *unstickWorld) ready(t *testing.T) {
	t.Helper()
	e := w.e
	ak := e.settled("key")
	e.authenticates(e.secret("key").Data["apiKey"], ak.Status.KeyID)
	rt := rtWaitReady(t, e.ns, "token", 1)
	e.g.Expect(revioSim.ValidToken(rtToken(t, e.ns, "token"), rtHost)).To(BeTrue())
	e.g.Expect(rt.Status.FailedAttempts).To(BeZero())
	e.g.Expect(rt.Status.NeedsAttention).To(BeFalse())
	// The Issuer column of kubectl get shows the kind with the name.
	e.g.Expect(ak.Status.ResolvedIssuer).To(Equal(v1alpha1.KindClusterReevitIssuer + "/" + w.issuer))
	e.g.Expect(rt.Status.ResolvedIssuer).To(Equal(v1alpha1.KindClusterRevioIssuer + "/" + w.issuer))
	e.hygiene()
	assertNoSecretsLeaked(t, e.ns, w.admin, w.revioKey, rtToken(t, e.ns, "token"))
}

// A consumer waiting on a broken issuer turns Ready when the platform team
// fixes the issuer (its spec) or its credential Secret, with no other
// trigger: the issuer's Ready change re-enqueues the consumers of the
// cluster kinds, whose credential Secrets live in another namespace.
func TestConsumersUnstickWhenIssuerFixed(t *testing.T) {
	t.Run("IssuerSpecFixed", func(t *testing.T) {
		// The issuers name Secrets that do not exist.
		w := newUnstickWorld(t, func(rs *v1alpha1.ReevitIssuerSpec, vs *v1alpha1.RevioIssuerSpec) {
			rs.AdminKeySecretRef.Name, vs.APIKeySecretRef.Name = "reevit-typo", "revio-typo"
		})
		w.e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonSecretNotFound)
		rtWaitReason(t, w.e.ns, "token", v1alpha1.ReasonSecretNotFound)
		w.fixIssuers(func(rs *v1alpha1.ReevitIssuerSpec, vs *v1alpha1.RevioIssuerSpec) {
			rs.AdminKeySecretRef.Name, vs.APIKeySecretRef.Name = "reevit-good-"+w.e.ns, "revio-good-"+w.e.ns
		})
		w.ready(t)
	})

	// Credential Secrets of other names than the good ones: created (first
	// nothing, then the good keys) or corrected (first keys of nobody:
	// Reevit answers 401, Rev.io refuses the exchange).
	for _, c := range []struct {
		name, suffix             string
		badAdmin, badRevio       string
		adminReason, revioReason string
	}{
		{"CredentialSecretCreated", "-later", "", "", v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonSecretNotFound},
		{"CredentialSecretCorrected", "-wrong", "pfk_live_not_a_key_of_this_org_", "rvk_unknown_to_the_simulator_",
			v1alpha1.ReasonUnauthorized, v1alpha1.ReasonInvalidAPIKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			var reevitSecret, revioSecret string
			w := newUnstickWorld(t, func(rs *v1alpha1.ReevitIssuerSpec, vs *v1alpha1.RevioIssuerSpec) {
				reevitSecret, revioSecret = rs.AdminKeySecretRef.Name+c.suffix, vs.APIKeySecretRef.Name+c.suffix
				rs.AdminKeySecretRef.Name, vs.APIKeySecretRef.Name = reevitSecret, revioSecret
			})
			var bad []string
			if c.badAdmin != "" {
				bad = []string{c.badAdmin + w.e.ns, c.badRevio + w.e.ns}
				w.e.seen = append(w.e.seen, bad...)
				putClusterSecret(t, reevitSecret, bad[0])
				putClusterSecret(t, revioSecret, bad[1])
			}
			w.e.condition("key", v1alpha1.ConditionReady, c.adminReason)
			rtWaitReason(t, w.e.ns, "token", c.revioReason)
			putClusterSecret(t, reevitSecret, w.admin)
			putClusterSecret(t, revioSecret, w.revioKey)
			w.ready(t)
			assertNoSecretsLeaked(t, w.e.ns, bad...)
		})
	}
}

// An ApiKey backing off from a failure its issuer shared (Reevit down) is
// tried again as soon as the issuer's own retry finds Reevit back, not only
// when its own, longer backoff ends; and exactly once, not in a loop.
func TestApiKeyBackoffLiftedWhenIssuerRecovers(t *testing.T) {
	e := newAkt(t)
	g := e.g
	reevitSim.Faults().SetOutage(true)
	// The issuer checks again (its Secret changed) and finds Reevit down:
	// its own retry is due backoff(1) later.
	g.Expect(k8s.Patch(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: aktAdminSecret}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"test.keywarden.dev/touch":"1"}}}`)))).To(Succeed())
	issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonAPIUnavailable)
	waitIssuerChecked(t, e.ns, aktIssuer, aktAdminSecret)

	// Two seconds later the ApiKey fails too: its retry is due after the
	// issuer's.
	clk.Step(2 * time.Second)
	c0 := calls(reevittest.EndpointCreate)
	e.create("ak")
	e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonAPIUnavailable)
	g.Expect(e.get("ak").Status.FailedAttempts).To(BeEquivalentTo(1))
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))

	// Reevit is back. The clock passes the issuer's retry but not the
	// ApiKey's; nothing touches the ApiKey.
	reevitSim.Faults().SetOutage(false)
	clk.Step(backoff(1) - time.Second)
	issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonSucceeded)
	ak := e.settled("ak")
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	g.Expect(ak.Status.FailedAttempts).To(BeZero())
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0 + 2))
	e.hygiene()
}
