package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func TestTrackCredential(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &v1alpha1.IssuerStatus{}
	trackCredential(st, "", t0)
	if st.Credential != nil {
		t.Fatalf("no fingerprint: nothing recorded, got %+v", st.Credential)
	}
	trackCredential(st, credentialFingerprint("one"), t0)
	trackCredential(st, credentialFingerprint("one"), t0.Add(time.Hour))
	if st.Credential == nil || !st.Credential.FirstSeen.Time.Equal(t0) {
		t.Fatalf("the same value keeps its first sighting: %+v", st.Credential)
	}
	trackCredential(st, "", t0.Add(2*time.Hour))
	if !st.Credential.FirstSeen.Time.Equal(t0) {
		t.Fatalf("an unread value keeps the record: %+v", st.Credential)
	}
	trackCredential(st, credentialFingerprint("two"), t0.Add(3*time.Hour))
	if st.Credential.Fingerprint != credentialFingerprint("two") || !st.Credential.FirstSeen.Time.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("a new value starts a new age: %+v", st.Credential)
	}
	if fp := credentialFingerprint("one"); len(fp) != len("sha256:")+16 || fp == credentialFingerprint("two") {
		t.Fatalf("fingerprint %q", fp)
	}
}

func TestJudgeKeyAge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cred := &v1alpha1.CredentialRecord{Fingerprint: "sha256:0123456789abcdef", FirstSeen: metav1.NewTime(t0)}
	day := 24 * time.Hour
	max := &metav1.Duration{Duration: 90 * day}
	for _, tc := range []struct {
		name string
		cred *v1alpha1.CredentialRecord
		max  *metav1.Duration
		now  time.Time
		want keyAgeVerdict
	}{
		{"no maxKeyAge", cred, nil, t0.Add(400 * day), keyAgeVerdict{}},
		{"zero maxKeyAge", cred, &metav1.Duration{}, t0.Add(400 * day), keyAgeVerdict{}},
		{"never seen", nil, max, t0, keyAgeVerdict{}},
		{"young", cred, max, t0.Add(10 * day), keyAgeVerdict{Applies: true, Age: 10 * day, Next: 80*day + time.Second}},
		{"exactly at the limit", cred, max, t0.Add(90 * day), keyAgeVerdict{Applies: true, Age: 90 * day, Next: time.Second}},
		{"past the limit", cred, max, t0.Add(91 * day), keyAgeVerdict{Applies: true, TooOld: true, Age: 91 * day}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeKeyAge(tc.cred, tc.max, tc.now); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSetKeyAge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &v1alpha1.IssuerStatus{Credential: &v1alpha1.CredentialRecord{Fingerprint: "sha256:0123456789abcdef", FirstSeen: metav1.NewTime(t0)}}
	max := &metav1.Duration{Duration: time.Hour}
	if setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(time.Minute)), max, "revio-key") {
		t.Fatal("young: not turned old")
	}
	if !setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(2*time.Hour)), max, "revio-key") {
		t.Fatal("old: turned old")
	}
	if setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(3*time.Hour)), max, "revio-key") {
		t.Fatal("told once")
	}
	if !hasReason(st.Conditions, v1alpha1.ConditionKeyAge, v1alpha1.ReasonKeyTooOld) {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	setKeyAge(st, 1, judgeKeyAge(st.Credential, nil, t0), nil, "revio-key")
	if len(st.Conditions) != 0 {
		t.Fatalf("no maxKeyAge: no condition, got %+v", st.Conditions)
	}
}

// An issuer records which credential its Secret holds (a fingerprint, never
// the value) and since when; a Rev.io issuer past spec.maxKeyAge turns
// KeyAge=False (KeyTooOld) with a Warning event while staying Ready, and a
// new key in the Secret starts a new age.
func TestIssuerCredentialAge(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := rtNamespace(t)
	key1, key2 := revioSim.GenerateAPIKey(rtHost), revioSim.GenerateAPIKey(rtHost)
	rtAPIKeySecret(t, ns, "rev-key", key1)
	start := clk.Now()
	rtCreateIssuer(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.MaxKeyAge = &metav1.Duration{Duration: 2 * time.Hour} })
	issuer := func(g Gomega) *v1alpha1.RevioIssuer {
		iss := &v1alpha1.RevioIssuer{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rev-key"}, iss)).To(Succeed())
		return iss
	}
	keyAge := func(g Gomega, iss *v1alpha1.RevioIssuer) *metav1.Condition {
		c := meta.FindStatusCondition(iss.Status.Conditions, v1alpha1.ConditionKeyAge)
		g.Expect(c).NotTo(BeNil())
		return c
	}
	g.Eventually(func(g Gomega) {
		iss := issuer(g)
		g.Expect(iss.Status.Credential).NotTo(BeNil())
		g.Expect(iss.Status.Credential.Fingerprint).To(Equal(credentialFingerprint(key1)))
		g.Expect(iss.Status.Credential.FirstSeen.Time).To(BeTemporally("~", start, time.Second))
		g.Expect(keyAge(g, iss).Status).To(Equal(metav1.ConditionTrue))
	}, rtWait, rtPoll).Should(Succeed())

	// Past maxKeyAge: a Warning, Ready untouched.
	clk.Step(3 * time.Hour)
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		iss := &v1alpha1.RevioIssuer{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rev-key"}, iss); err != nil {
			return err
		}
		iss.Annotations = map[string]string{"test.keywarden.dev/poke": "1"}
		return k8s.Update(ctx, iss)
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		iss := issuer(g)
		c := keyAge(g, iss)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonKeyTooOld))
		g.Expect(c.Message).To(ContainSubstring("make a new API key in Rev.io's UI"))
		g.Expect(meta.IsStatusConditionTrue(iss.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}, rtWait, rtPoll).Should(Succeed())
	rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonKeyTooOld)

	// A new key starts a new age.
	rtSetAPIKey(t, ns, "rev-key", key2)
	g.Eventually(func(g Gomega) {
		iss := issuer(g)
		g.Expect(iss.Status.Credential.Fingerprint).To(Equal(credentialFingerprint(key2)))
		g.Expect(iss.Status.Credential.FirstSeen.Time).To(BeTemporally("~", clk.Now(), time.Second))
		g.Expect(keyAge(g, iss).Status).To(Equal(metav1.ConditionTrue))
	}, rtWait, rtPoll).Should(Succeed())

	// A Reevit issuer records its admin key the same way, with no KeyAge.
	e := newAkt(t)
	g.Eventually(func(g Gomega) {
		ri := &v1alpha1.ReevitIssuer{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: aktIssuer}, ri)).To(Succeed())
		g.Expect(ri.Status.Credential).NotTo(BeNil())
		g.Expect(ri.Status.Credential.Fingerprint).To(Equal(credentialFingerprint(e.adminKey)))
		g.Expect(meta.FindStatusCondition(ri.Status.Conditions, v1alpha1.ConditionKeyAge)).To(BeNil())
	}, rtWait, rtPoll).Should(Succeed())

	// Never the value.
	for _, k := range []string{key1, key2} {
		b, err := json.Marshal(issuer(g).Status)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(b)).NotTo(ContainSubstring(k))
	}
}

// placeholderCredential catches the values samples and documentation put
// where a key goes, and none of the shapes real keys have.
func TestPlaceholderCredential(t *testing.T) {
	for _, v := range []string{
		"replace-me", "REPLACE-ME", " replace-me\n", "changeme", "change-me", "your-api-key-here",
		"<Rev.io API key>", "<Reevit admin key: api_keys:read, api_keys:write and every scope it grants>",
		"{{ .Values.apiKey }}", "${REVIO_API_KEY}", "xxx", "XXXXXXXX", "pfk_live_xxx", "pfk_test_XXXX",
		"pfk_live_a1b2c3d4e5f6g7h8i9j0...", "pfk_live_replace-me", "...", "****", "placeholder", "TODO",
	} {
		if !placeholderCredential(v) {
			t.Errorf("placeholderCredential(%q) = false, want true", v)
		}
	}
	for _, v := range []string{
		"", "pfk_live_a1b2c3d4e5f6g7h8", "pfk_test_9f8e7d6c5b4a3f2e1d0c", "rv_8cX2kq0P9wLx7mZt", "xkcd-4815162342",
		"replace-me-not-3f9a1c7e", "0123456789abcdef0123456789abcdef", "x.y.z", "pfk_live_x1x2x3x4",
	} {
		if placeholderCredential(v) {
			t.Errorf("placeholderCredential(%q) = true, want false", v)
		}
	}
}

// An issuer whose Secret still holds a sample value (replace-me, <...>)
// says so and sends nothing, for both APIs; the objects using it say the
// same; the real key put in the Secret makes it Ready without a nudge.
func TestIssuerRefusesPlaceholderCredential(t *testing.T) {
	e := newAktBare(t) // its ReevitIssuer names aktAdminSecret, made here
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: aktAdminSecret, Namespace: e.ns},
		Data: map[string][]byte{"apiKey": []byte("replace-me")}})).To(Succeed())
	before := callsNow()
	c := issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonPlaceholderCredential)
	e.g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	e.g.Expect(c.Message).To(ContainSubstring("Secret " + e.ns + "/" + aktAdminSecret + " key apiKey still holds a placeholder"))
	e.g.Expect(c.Message).NotTo(ContainSubstring("replace-me"), "the value is not repeated")
	e.create("key")
	e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonPlaceholderCredential)
	e.g.Consistently(callsNow, time.Second).Should(Equal(before), "nothing sent to Reevit")
	e.newAdmin()
	issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonSucceeded)
	e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonSucceeded)

	ns := rtNamespace(t)
	rtAPIKeySecret(t, ns, "revio", "<Rev.io API key>")
	base := rtExchanges()
	rtCreate(t, rtNew(ns, "token", "revio"))
	revioReady := func(g Gomega) *metav1.Condition {
		iss := &v1alpha1.RevioIssuer{}
		g.Expect(k8s.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: "revio"}, iss)).To(Succeed())
		c := meta.FindStatusCondition(iss.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return c
	}
	e.g.Eventually(func(g Gomega) {
		c := revioReady(g)
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonPlaceholderCredential), c.Message)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	}, rtWait, rtPoll).Should(Succeed())
	rtWaitReason(t, ns, "token", v1alpha1.ReasonPlaceholderCredential)
	rtExpectExchanges(t, base, 0)
	rtSetAPIKey(t, ns, "revio", revioSim.GenerateAPIKey(rtHost))
	e.g.Eventually(func(g Gomega) {
		g.Expect(revioReady(g).Reason).To(Equal(v1alpha1.ReasonSucceeded))
	}, rtWait, rtPoll).Should(Succeed())
	rtWaitReady(t, ns, "token", 1)
	e.hygiene()
}
