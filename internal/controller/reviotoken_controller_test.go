package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/revio/reviotest"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// These tests drive the RevioToken reconciler against the real API server
// and the Rev.io simulator. "Now" is the suite's fake clock while the
// workqueue waits in real time, so a scheduled refresh is made to happen by
// stepping the clock past status.nextRefreshTime and poking the object (an
// annotation change passes the controller's predicate). Exchange counts are
// deltas of the simulator's global counter: the tests run one at a time and
// each deletes its RevioTokens when it ends.

const (
	rtHost = "acme.psarev.io"
	// rtPokeAnnotation is a harmless annotation whose changes make the
	// controller reconcile now without asking for a refresh.
	rtPokeAnnotation = "test.keywarden.dev/poke"
	rtWait           = 30 * time.Second
	rtPoll           = 100 * time.Millisecond
	// rtQuiet is how long "nothing more happens" is watched.
	rtQuiet = 3 * time.Second
)

var rtPokeSeq atomic.Int64

// rtNamespace is a fresh namespace whose RevioTokens are deleted, and the
// simulator's faults and token settings restored, when the test ends.
func rtNamespace(t *testing.T) string {
	t.Helper()
	ns := newNamespace(t)
	t.Cleanup(func() {
		if t.Failed() {
			rtDiagnose(t, ns)
		}
		_ = k8s.DeleteAllOf(context.Background(), &v1alpha1.RevioToken{}, client.InNamespace(ns))
		revioSim.Faults().Reset()
		revioSim.SetTokenLifetime(0)
		revioSim.SetOmitExp(false)
	})
	return ns
}

// rtDiagnose logs what a failed test needs to be understood: statuses,
// events and the manager's log lines about the namespace.
func rtDiagnose(t *testing.T, ns string) {
	t.Helper()
	rts := &v1alpha1.RevioTokenList{}
	if err := k8s.List(context.Background(), rts, client.InNamespace(ns)); err == nil {
		for _, rt := range rts.Items {
			t.Logf("RevioToken %s: generation %d annotations %v status %+v", rt.Name, rt.Generation, rt.Annotations, rt.Status)
		}
	}
	for _, e := range eventsIn(t, ns) {
		t.Logf("event %s %s: %s", e.Type, e.Reason, e.Note)
	}
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(line, ns) {
			t.Log(line)
		}
	}
}

// rtExchanges is the simulator's total number of exchange calls so far.
func rtExchanges() int { return revioSim.Counts().Count(reviotest.EndpointExchange) }

// rtExpectExchanges waits until exactly n exchanges happened since base and
// then checks that no further one follows.
func rtExpectExchanges(t *testing.T, base, n int) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func() int { return rtExchanges() - base }).WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(n), "exchanges since the baseline")
	g.Consistently(func() int { return rtExchanges() - base }).WithTimeout(rtQuiet).WithPolling(rtPoll).Should(Equal(n), "no further exchange")
}

// rtAPIKeySecret creates the Secret holding the API key under data key "apiKey".
func rtAPIKeySecret(t *testing.T, ns, name, key string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       map[string][]byte{"apiKey": []byte(key)},
	}
	NewWithT(t).Expect(k8s.Create(context.Background(), s)).To(Succeed())
	return s
}

// rtSetAPIKey replaces the API key in an existing Secret.
func rtSetAPIKey(t *testing.T, ns, name, key string) {
	t.Helper()
	updateRetrying(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		func(s *corev1.Secret) { s.Data = map[string][]byte{"apiKey": []byte(key)} })
}

// rtNew is a RevioToken against the simulator reading its key from keySecret.
func rtNew(ns, name, keySecret string, mutate ...func(*v1alpha1.RevioToken)) *v1alpha1.RevioToken {
	rt := &v1alpha1.RevioToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.RevioTokenSpec{
			IssuerRef: v1alpha1.RevioIssuerReference{Name: keySecret},
		},
	}
	for _, m := range mutate {
		m(rt)
	}
	return rt
}

// rtCreate creates the RevioToken and, when missing, the RevioIssuer it
// names: the simulator, rtHost, and the API key in the Secret of the
// issuer's name.
func rtCreate(t *testing.T, rt *v1alpha1.RevioToken) {
	t.Helper()
	rtCreateIssuer(t, rt.Namespace, rt.Spec.IssuerRef.Name)
	NewWithT(t).Expect(k8s.Create(context.Background(), rt)).To(Succeed())
}

// rtReadyToken puts a new API key for rtHost in the Secret "rev-key",
// creates the RevioToken "tok" against it (mutated as given) and waits until
// it is Ready with its first token. It returns the API key and the
// RevioToken as rtWaitReady read it.
func rtReadyToken(t *testing.T, ns string, mutate ...func(*v1alpha1.RevioToken)) (string, *v1alpha1.RevioToken) {
	t.Helper()
	key := revioSim.GenerateAPIKey(rtHost)
	rtAPIKeySecret(t, ns, "rev-key", key)
	rtCreate(t, rtNew(ns, "tok", "rev-key", mutate...))
	return key, rtWaitReady(t, ns, "tok", 1)
}

// rtRefreshFailing has the simulator answer the next n exchanges with the
// HTTP status code, asks for a refresh of the RevioToken "tok"
// (keywarden.dev/refresh) and waits for Ready=False with reason.
func rtRefreshFailing(t *testing.T, ns string, n, code int, reason string) *v1alpha1.RevioToken {
	t.Helper()
	revioSim.Faults().FailNext(n, code)
	rtAnnotate(t, ns, "tok", v1alpha1.AnnotationRefresh, "1")
	return rtWaitReason(t, ns, "tok", reason)
}

// rtCreateIssuer creates, unless it exists, the RevioIssuer ns/name for the
// simulator and rtHost, reading the API key from the Secret of its name.
func rtCreateIssuer(t *testing.T, ns, name string, mutate ...func(*v1alpha1.RevioIssuerSpec)) {
	t.Helper()
	iss := &v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.RevioIssuerSpec{URL: revioSim.URL, Host: rtHost,
			APIKeySecretRef: v1alpha1.SecretKeyReference{Name: name, Key: "apiKey"}}}
	for _, m := range mutate {
		m(&iss.Spec)
	}
	if err := k8s.Create(context.Background(), iss); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create issuer: %v", err)
	}
}

// rtIssuerUpdate changes the RevioIssuer ns/name.
func rtIssuerUpdate(t *testing.T, ns, name string, mutate func(*v1alpha1.RevioIssuerSpec)) {
	t.Helper()
	updateRetrying(t, &v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		func(iss *v1alpha1.RevioIssuer) { mutate(&iss.Spec) })
}

func rtGet(t *testing.T, ns, name string) *v1alpha1.RevioToken {
	t.Helper()
	rt := &v1alpha1.RevioToken{}
	NewWithT(t).Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, rt)).To(Succeed())
	return rt
}

// rtUpdate changes a RevioToken, retrying on conflicts with status writes.
func rtUpdate(t *testing.T, ns, name string, mutate func(*v1alpha1.RevioToken)) {
	t.Helper()
	updateRetrying(t, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, mutate)
}

// rtAnnotate sets one annotation on a RevioToken with a merge patch of its
// metadata alone. (A typed read-modify-write Update would also rewrite the
// defaulted spec.refresh.interval "1h" as "1h0m0s", a spec change.)
func rtAnnotate(t *testing.T, ns, name, key, value string) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		t.Fatal(err)
	}
	rt := &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	NewWithT(t).Expect(k8s.Patch(context.Background(), rt, client.RawPatch(types.MergePatchType, raw))).To(Succeed())
}

// rtPoke makes the controller reconcile now without asking for a refresh.
func rtPoke(t *testing.T, ns, name string) {
	t.Helper()
	rtAnnotate(t, ns, name, rtPokeAnnotation, strconv.FormatInt(rtPokeSeq.Add(1), 10))
}

// rtStepAndPoke advances the fake clock by d and pokes the object.
func rtStepAndPoke(t *testing.T, ns, name string, d time.Duration) {
	t.Helper()
	clk.Step(d)
	rtPoke(t, ns, name)
}

// rtStepPastNextRefresh advances the fake clock one second past
// status.nextRefreshTime and pokes the object, so the scheduled refresh
// happens now.
func rtStepPastNextRefresh(t *testing.T, ns, name string) {
	t.Helper()
	rt := rtGet(t, ns, name)
	NewWithT(t).Expect(rt.Status.NextRefreshTime).NotTo(BeNil())
	if d := rt.Status.NextRefreshTime.Sub(clk.Now()) + time.Second; d > 0 {
		clk.Step(d)
	}
	rtPoke(t, ns, name)
}

// rtScheduledRefresh lets the scheduled refresh of "tok" happen
// (rtStepPastNextRefresh), waits until it is Ready with refreshes published
// tokens, and checks that exactly one exchange happened since base.
func rtScheduledRefresh(t *testing.T, ns string, base int, refreshes int64) {
	t.Helper()
	rtStepPastNextRefresh(t, ns, "tok")
	rtWaitReady(t, ns, "tok", refreshes)
	rtExpectExchanges(t, base, 1)
}

// rtSecret reads a Secret; nil when it does not exist.
func rtSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatalf("get secret %s/%s: %v", ns, name, err)
	}
	return s
}

// rtToken is the token currently in an output Secret ("" when absent).
func rtToken(t *testing.T, ns, name string) string {
	t.Helper()
	if s := rtSecret(t, ns, name); s != nil {
		return string(s.Data["token"])
	}
	return ""
}

// rtCond is a condition of the RevioToken, as read from the API server.
func rtCond(t *testing.T, ns, name, typ string) metav1.Condition {
	t.Helper()
	if c := meta.FindStatusCondition(rtGet(t, ns, name).Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// rtWaitReady waits for Ready=True, a status describing the current
// generation, and at least refreshes published tokens.
func rtWaitReady(t *testing.T, ns, name string, refreshes int64) *v1alpha1.RevioToken {
	t.Helper()
	var rt *v1alpha1.RevioToken
	NewWithT(t).Eventually(func(g Gomega) {
		rt = &v1alpha1.RevioToken{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, rt)).To(Succeed())
		g.Expect(rt.Status.ObservedGeneration).To(Equal(rt.Generation))
		g.Expect(rt.Status.Refreshes).To(BeNumerically(">=", refreshes))
		c := meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", c.Reason, c.Message)
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
	return rt
}

// rtWaitReason waits for Ready=False with reason.
func rtWaitReason(t *testing.T, ns, name, reason string) *v1alpha1.RevioToken {
	t.Helper()
	var rt *v1alpha1.RevioToken
	NewWithT(t).Eventually(func(g Gomega) {
		rt = &v1alpha1.RevioToken{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, rt)).To(Succeed())
		c := meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(reason), "Ready message: %s", c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(rt.Generation))
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
	return rt
}

// rtWaitEvent waits for an event of type and reason in ns.
func rtWaitEvent(t *testing.T, ns, typ, reason string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	NewWithT(t).Eventually(func() bool {
		for _, e := range eventsIn(t, ns) {
			if e.Type == typ && e.Reason == reason {
				found = e
				return true
			}
		}
		return false
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(BeTrue(), "a %s event with reason %s", typ, reason)
	return found
}

// rtGetCustomers calls the simulator's billing API the way a workload would,
// with the Secret's authorization and host values, and returns the status.
func rtGetCustomers(t *testing.T, s *corev1.Secret) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, revioSim.URL+reviotest.CustomersPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", string(s.Data["authorization"]))
	req.Header.Set("X-Revio-Host", string(s.Data["host"]))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET customers: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestRevioTokenPublishesSecret: the Secret carries every data key, the
// spec's labels and annotations, a controller owner reference and the
// "keywarden" apply manager, and works against the billing API; the status
// records the token's times.
func TestRevioTokenPublishesSecret(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	key := revioSim.GenerateAPIKey(rtHost)
	rtAPIKeySecret(t, ns, "rev-key", key)
	base := rtExchanges()
	now := clk.Now().Truncate(time.Second)

	rtCreate(t, rtNew(ns, "billing", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.Secret = v1alpha1.SecretTemplate{
			Name:        "billing-token",
			Labels:      map[string]string{"team": "billing"},
			Annotations: map[string]string{"example.com/owner": "billing-team"},
		}
	}))
	rt := rtWaitReady(t, ns, "billing", 1)
	rtExpectExchanges(t, base, 1)

	s := rtSecret(t, ns, "billing-token")
	g.Expect(s).NotTo(BeNil())
	tok := string(s.Data["token"])
	g.Expect(tok).NotTo(BeEmpty())
	g.Expect(revioSim.ValidToken(tok, rtHost)).To(BeTrue())
	g.Expect(s.Data).To(HaveLen(5))
	g.Expect(string(s.Data["authorization"])).To(Equal("Bearer " + tok))
	g.Expect(string(s.Data["host"])).To(Equal(rtHost))
	g.Expect(string(s.Data["url"])).To(Equal(revioSim.URL))
	exp, err := time.Parse(time.RFC3339, string(s.Data["expiresAt"]))
	g.Expect(err).NotTo(HaveOccurred(), "expiresAt is RFC 3339")
	g.Expect(exp).To(BeTemporally("==", now.Add(time.Hour)))

	g.Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
	g.Expect(s.Labels).To(HaveKeyWithValue("team", "billing"))
	g.Expect(s.Labels).To(HaveKeyWithValue(secretsync.LabelManagedBy, secretsync.ManagedByValue))
	g.Expect(s.Annotations).To(HaveKeyWithValue("example.com/owner", "billing-team"))
	g.Expect(s.Annotations).To(HaveKeyWithValue(secretsync.AnnotationDataHash, secretsync.Hash(s.Data)))
	owner := metav1.GetControllerOf(s)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(rt.UID))
	g.Expect(owner.Kind).To(Equal("RevioToken"))
	g.Expect(owner.APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
	var managers []string
	for _, mf := range s.ManagedFields {
		managers = append(managers, mf.Manager+"/"+string(mf.Operation))
	}
	g.Expect(managers).To(ConsistOf("keywarden/" + string(metav1.ManagedFieldsOperationApply)))

	g.Expect(rtGetCustomers(t, s)).To(Equal(http.StatusOK))

	st := rt.Status
	g.Expect(st.IssuedAt).NotTo(BeNil())
	g.Expect(st.IssuedAt.Time).To(BeTemporally("==", now))
	g.Expect(st.ExpiresAt).NotTo(BeNil())
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", exp))
	g.Expect(st.LastRefreshTime).NotTo(BeNil())
	g.Expect(st.LastRefreshTime.Time).To(BeTemporally("==", now))
	g.Expect(st.NextRefreshTime).NotTo(BeNil())
	g.Expect(st.NextRefreshTime.Time).To(BeTemporally("==", exp.Add(-20*time.Minute)), "default before is a third of the 1h lifetime, jitter 0")
	g.Expect(st.Refreshes).To(Equal(int64(1)))
	g.Expect(st.ObservedGeneration).To(Equal(rt.Generation))
	g.Expect(st.SecretName).To(Equal("billing-token"))
	g.Expect(st.FailedAttempts).To(BeZero())
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionIssued, v1alpha1.ConditionSecretSynced} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		g.Expect(c).NotTo(BeNil(), typ)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), typ)
		g.Expect(c.ObservedGeneration).To(Equal(rt.Generation), typ)
	}
	assertNoSecretsLeaked(t, ns, key, tok)
}

// TestRevioTokenScheduledRefresh: the refresh happens at the computed time
// and not before, with one exchange, and the Secret then holds a new token.
func TestRevioTokenScheduledRefresh(t *testing.T) {
	t.Run("DefaultBefore", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		revioSim.SetTokenLifetime(time.Hour)
		key, rt := rtReadyToken(t, ns)
		old := rtToken(t, ns, "tok")
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", rt.Status.ExpiresAt.Add(-20*time.Minute)))

		// A minute before the computed time nothing happens.
		base := rtExchanges()
		rtStepAndPoke(t, ns, "tok", rt.Status.NextRefreshTime.Sub(clk.Now())-time.Minute)
		rtExpectExchanges(t, base, 0)
		g.Expect(rtToken(t, ns, "tok")).To(Equal(old))
		g.Expect(rtGet(t, ns, "tok").Status.Refreshes).To(Equal(int64(1)))

		// Past it, one exchange and a new token.
		rtScheduledRefresh(t, ns, base, 2)
		rt = rtGet(t, ns, "tok")
		g.Expect(rt.Status.Refreshes).To(Equal(int64(2)))
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(old))
		g.Expect(revioSim.ValidToken(tok, rtHost)).To(BeTrue())
		now := clk.Now().Truncate(time.Second)
		g.Expect(rt.Status.LastRefreshTime.Time).To(BeTemporally("==", now))
		g.Expect(rt.Status.ExpiresAt.Time).To(BeTemporally("==", now.Add(time.Hour)))
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", now.Add(40*time.Minute)))
		g.Expect(rtGetCustomers(t, rtSecret(t, ns, "tok"))).To(Equal(http.StatusOK))
		assertNoSecretsLeaked(t, ns, key, old, tok)
	})

	t.Run("ExplicitBefore", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		revioSim.SetTokenLifetime(time.Hour)
		key, rt := rtReadyToken(t, ns, func(rt *v1alpha1.RevioToken) {
			rt.Spec.Refresh.Before = &metav1.Duration{Duration: 10 * time.Minute}
		})
		old := rtToken(t, ns, "tok")
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", rt.Status.ExpiresAt.Add(-10*time.Minute)))

		base := rtExchanges()
		rtStepAndPoke(t, ns, "tok", rt.Status.NextRefreshTime.Sub(clk.Now())-time.Minute)
		rtExpectExchanges(t, base, 0)

		rtScheduledRefresh(t, ns, base, 2)
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(old))
		rt = rtGet(t, ns, "tok")
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", rt.Status.ExpiresAt.Add(-10*time.Minute)))
		assertNoSecretsLeaked(t, ns, key, old, tok)
	})

	t.Run("NoExpUsesInterval", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		revioSim.SetOmitExp(true)
		key, rt := rtReadyToken(t, ns, func(rt *v1alpha1.RevioToken) {
			rt.Spec.Refresh.Interval = &metav1.Duration{Duration: 30 * time.Minute}
		})
		old := rtToken(t, ns, "tok")
		g.Expect(rt.Status.ExpiresAt).To(BeNil())
		g.Expect(string(rtSecret(t, ns, "tok").Data["expiresAt"])).To(BeEmpty())
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", rt.Status.LastRefreshTime.Add(30*time.Minute)))

		base := rtExchanges()
		rtStepAndPoke(t, ns, "tok", 29*time.Minute)
		rtExpectExchanges(t, base, 0)

		rtScheduledRefresh(t, ns, base, 2)
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(old))
		rt = rtGet(t, ns, "tok")
		g.Expect(rt.Status.NextRefreshTime.Time).To(BeTemporally("==", clk.Now().Truncate(time.Second).Add(30*time.Minute)))
		assertNoSecretsLeaked(t, ns, key, old, tok)
	})
}

// TestRevioTokenOneExchangePerRefreshAndQuietRestart: every refresh costs
// exactly one exchange, and a manager restart with nothing due costs none
// and writes nothing.
func TestRevioTokenOneExchangePerRefreshAndQuietRestart(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	key := revioSim.GenerateAPIKey(rtHost)
	rtAPIKeySecret(t, ns, "rev-key", key)
	base := rtExchanges()
	rtCreate(t, rtNew(ns, "tok", "rev-key"))
	rtWaitReady(t, ns, "tok", 1)
	rtExpectExchanges(t, base, 1)
	tokens := []string{rtToken(t, ns, "tok")}

	for i := int64(2); i <= 3; i++ {
		base = rtExchanges()
		rtScheduledRefresh(t, ns, base, i)
		g.Expect(rtGet(t, ns, "tok").Status.Refreshes).To(Equal(i))
		tokens = append(tokens, rtToken(t, ns, "tok"))
	}

	rtRV := rtGet(t, ns, "tok").ResourceVersion
	secRV := rtSecret(t, ns, "tok").ResourceVersion
	base = rtExchanges()
	restartManager(t)
	g.Consistently(func(g Gomega) {
		g.Expect(rtExchanges() - base).To(BeZero())
		g.Expect(rtGet(t, ns, "tok").ResourceVersion).To(Equal(rtRV), "no status write")
		g.Expect(rtSecret(t, ns, "tok").ResourceVersion).To(Equal(secRV), "no Secret write")
	}).WithTimeout(5 * time.Second).WithPolling(rtPoll).Should(Succeed())

	// The restarted manager still refreshes when due, once.
	rtScheduledRefresh(t, ns, base, 4)
	tokens = append(tokens, rtToken(t, ns, "tok"))
	assertNoSecretsLeaked(t, ns, append(tokens, key)...)
}

// TestRevioTokenFailures: each failure gives its condition and its retry
// behaviour, seen through the simulator's call counts.
func TestRevioTokenFailures(t *testing.T) {
	t.Run("SecretNotFoundThenCreated", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		base := rtExchanges()
		rtCreate(t, rtNew(ns, "tok", "rev-key"))
		rt := rtWaitReason(t, ns, "tok", v1alpha1.ReasonSecretNotFound)
		g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionIssued).Reason).To(Equal(v1alpha1.ReasonSecretNotFound))
		rtExpectExchanges(t, base, 0)
		g.Expect(rtSecret(t, ns, "tok")).To(BeNil())
		rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonSecretNotFound)

		// The Secret appearing is enough: no poke.
		key := revioSim.GenerateAPIKey(rtHost)
		rtAPIKeySecret(t, ns, "rev-key", key)
		rtWaitReady(t, ns, "tok", 1)
		rtExpectExchanges(t, base, 1)
		assertNoSecretsLeaked(t, ns, key, rtToken(t, ns, "tok"))
	})

	t.Run("WrongKeyName", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		key := revioSim.GenerateAPIKey(rtHost)
		rtAPIKeySecret(t, ns, "rev-key", key)
		base := rtExchanges()
		rtCreateIssuer(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.APIKeySecretRef.Key = "token" })
		rtCreate(t, rtNew(ns, "tok", "rev-key"))
		rt := rtWaitReason(t, ns, "tok", v1alpha1.ReasonSecretNotFound)
		g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring(`"token"`))
		rtExpectExchanges(t, base, 0)

		// Fixing the reference (a spec change) recovers.
		rtIssuerUpdate(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.APIKeySecretRef.Key = "apiKey" })
		rtWaitReady(t, ns, "tok", 1)
		rtExpectExchanges(t, base, 1)
		assertNoSecretsLeaked(t, ns, key, rtToken(t, ns, "tok"))
	})

	t.Run("InvalidAPIKey", func(t *testing.T) {
		ns := rtNamespace(t)
		bad := "rvk_unknown_to_the_simulator_" + ns
		rtAPIKeySecret(t, ns, "rev-key", bad)
		base := rtExchanges()
		rtCreate(t, rtNew(ns, "tok", "rev-key"))
		rtWaitReason(t, ns, "tok", v1alpha1.ReasonInvalidAPIKey)
		rtExpectExchanges(t, base, 1)
		rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonInvalidAPIKey)

		// Neither time nor an unrelated annotation change retries.
		rtStepAndPoke(t, ns, "tok", 10*time.Minute)
		rtExpectExchanges(t, base, 1)
		if rt := rtWaitReason(t, ns, "tok", v1alpha1.ReasonInvalidAPIKey); !rt.Status.NeedsAttention {
			t.Error("status.needsAttention is false for a rejected API key")
		}

		// A valid key in the Secret does, through the watch.
		key := revioSim.GenerateAPIKey(rtHost)
		rtSetAPIKey(t, ns, "rev-key", key)
		if rt := rtWaitReady(t, ns, "tok", 1); rt.Status.NeedsAttention {
			t.Error("status.needsAttention still true after a successful refresh")
		}
		rtExpectExchanges(t, base, 2)
		assertNoSecretsLeaked(t, ns, bad, key, rtToken(t, ns, "tok"))
	})

	t.Run("RateLimited", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		key, _ := rtReadyToken(t, ns)
		good := rtToken(t, ns, "tok")

		// The simulator answers 429 with retry_after 60 s.
		base := rtExchanges()
		rt := rtRefreshFailing(t, ns, 1, http.StatusTooManyRequests, v1alpha1.ReasonRateLimited)
		g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionIssued).Reason).To(Equal(v1alpha1.ReasonRateLimited))
		rtExpectExchanges(t, base, 1)
		g.Expect(revioSim.Counts().CountStatus(reviotest.EndpointExchange, http.StatusTooManyRequests)).To(BeNumerically(">=", 1))
		g.Expect(rtToken(t, ns, "tok")).To(Equal(good), "the last good token stays")

		// Half-way through retry_after, a reconcile does not retry yet, nor
		// does a restarted manager: the retry time lives in status.
		g.Expect(rtGet(t, ns, "tok").Status.NextRefreshTime.Time).To(BeTemporally("==", clk.Now().Truncate(time.Second).Add(time.Minute)))
		rtStepAndPoke(t, ns, "tok", 30*time.Second)
		rtExpectExchanges(t, base, 1)
		restartManager(t)
		rtExpectExchanges(t, base, 1)

		// After it, the retry comes and succeeds.
		rtStepAndPoke(t, ns, "tok", 31*time.Second)
		rtWaitReady(t, ns, "tok", 2)
		rtExpectExchanges(t, base, 2)
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(good))
		g.Expect(rtGet(t, ns, "tok").Status.FailedAttempts).To(BeZero())
		assertNoSecretsLeaked(t, ns, key, good, tok)
	})

	t.Run("ServerErrorsBackOff", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		key, _ := rtReadyToken(t, ns)
		good := rtToken(t, ns, "tok")

		base := rtExchanges()
		rtRefreshFailing(t, ns, 3, http.StatusInternalServerError, v1alpha1.ReasonAPIUnavailable)
		// Without time passing there is no second attempt: no hot loop.
		rtExpectExchanges(t, base, 1)
		g.Expect(rtGet(t, ns, "tok").Status.FailedAttempts).To(Equal(int32(1)))
		g.Expect(rtToken(t, ns, "tok")).To(Equal(good))

		// Exponential backoff: 5 s, 10 s, 20 s. Just before each retry is
		// due nothing happens; just after it, exactly one attempt.
		for i, d := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
			rtStepAndPoke(t, ns, "tok", d-2*time.Second)
			rtExpectExchanges(t, base, i+1)
			rtStepAndPoke(t, ns, "tok", 3*time.Second)
			rtExpectExchanges(t, base, i+2)
			if i < 2 {
				g.Expect(rtToken(t, ns, "tok")).To(Equal(good), "the last good token stays")
			}
		}
		// The fourth attempt (after three 500s) succeeded.
		rtWaitReady(t, ns, "tok", 2)
		g.Expect(revioSim.Counts().CountStatus(reviotest.EndpointExchange, http.StatusInternalServerError)).To(BeNumerically(">=", 3))
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(good))
		rt := rtGet(t, ns, "tok")
		g.Expect(rt.Status.FailedAttempts).To(BeZero())
		g.Expect(rt.Status.LastFailureTime).To(BeNil())
		assertNoSecretsLeaked(t, ns, key, good, tok)
	})

	t.Run("TokenExpiredDuringOutage", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		revioSim.SetTokenLifetime(time.Hour)
		key, rt := rtReadyToken(t, ns)
		good := rtToken(t, ns, "tok")
		exp := rt.Status.ExpiresAt.Time

		revioSim.Faults().SetOutage(true)
		base := rtExchanges()
		rtStepPastNextRefresh(t, ns, "tok")
		rtWaitReason(t, ns, "tok", v1alpha1.ReasonAPIUnavailable)
		rtExpectExchanges(t, base, 1)
		g.Expect(rtToken(t, ns, "tok")).To(Equal(good), "the last good token stays during the outage")

		// The token expires while refreshes keep failing.
		clk.Step(exp.Sub(clk.Now()) + time.Minute)
		rtPoke(t, ns, "tok")
		rt = rtWaitReason(t, ns, "tok", v1alpha1.ReasonTokenExpired)
		g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionIssued).Reason).To(Equal(v1alpha1.ReasonAPIUnavailable))
		rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonTokenExpired)
		g.Expect(rtToken(t, ns, "tok")).To(Equal(good))
		attempts := rtExchanges() - base
		g.Expect(attempts).To(BeNumerically("<=", 3), "bounded attempts")

		// The outage ends: the next retry publishes a new token.
		revioSim.Faults().SetOutage(false)
		rtStepAndPoke(t, ns, "tok", backoffCap)
		rtWaitReady(t, ns, "tok", 2)
		tok := rtToken(t, ns, "tok")
		g.Expect(tok).NotTo(Equal(good))
		g.Expect(revioSim.ValidToken(tok, rtHost)).To(BeTrue())
		assertNoSecretsLeaked(t, ns, key, good, tok)
	})
}

// TestRevioTokenForeignSecret: a Secret Keywarden did not create is left
// byte for byte as it was, and Keywarden takes the name once it is free.
func TestRevioTokenForeignSecret(t *testing.T) {
	foreign := func(t *testing.T, ns, name string) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				Labels:      map[string]string{"owner": "someone-else"},
				Annotations: map[string]string{"note": "hands off"}},
			Data: map[string][]byte{"token": []byte("theirs"), "other": []byte("data")},
		}
		NewWithT(t).Expect(k8s.Create(context.Background(), s)).To(Succeed())
		return s
	}
	untouched := func(t *testing.T, want *corev1.Secret) {
		NewWithT(t).Consistently(func(g Gomega) {
			got := rtSecret(t, want.Namespace, want.Name)
			g.Expect(got).NotTo(BeNil())
			g.Expect(got.ResourceVersion).To(Equal(want.ResourceVersion))
			g.Expect(got.Data).To(Equal(want.Data))
			g.Expect(got.Labels).To(Equal(want.Labels))
			g.Expect(got.Annotations).To(Equal(want.Annotations))
			g.Expect(got.OwnerReferences).To(BeEmpty())
		}).WithTimeout(rtQuiet).WithPolling(rtPoll).Should(Succeed())
	}

	t.Run("AtCreation", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		theirs := foreign(t, ns, "tok")
		key := revioSim.GenerateAPIKey(rtHost)
		rtAPIKeySecret(t, ns, "rev-key", key)
		base := rtExchanges()
		rtCreate(t, rtNew(ns, "tok", "rev-key"))
		rt := rtWaitReason(t, ns, "tok", v1alpha1.ReasonSecretConflict)
		g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionSecretSynced).Reason).To(Equal(v1alpha1.ReasonSecretConflict))
		untouched(t, theirs)
		rtExpectExchanges(t, base, 0)
		rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonSecretConflict)

		g.Expect(k8s.Delete(context.Background(), theirs)).To(Succeed())
		rt = rtWaitReady(t, ns, "tok", 1)
		s := rtSecret(t, ns, "tok")
		g.Expect(metav1.GetControllerOf(s).UID).To(Equal(rt.UID))
		rtExpectExchanges(t, base, 1)
		assertNoSecretsLeaked(t, ns, key, string(s.Data["token"]))
	})

	t.Run("AfterRename", func(t *testing.T) {
		g := NewWithT(t)
		ns := rtNamespace(t)
		key, _ := rtReadyToken(t, ns)
		first := rtToken(t, ns, "tok")

		theirs := foreign(t, ns, "taken")
		base := rtExchanges()
		rtUpdate(t, ns, "tok", func(rt *v1alpha1.RevioToken) { rt.Spec.Secret.Name = "taken" })
		rtWaitReason(t, ns, "tok", v1alpha1.ReasonSecretConflict)
		untouched(t, theirs)
		rtExpectExchanges(t, base, 0)

		g.Expect(k8s.Delete(context.Background(), theirs)).To(Succeed())
		rt := rtWaitReady(t, ns, "tok", 2)
		s := rtSecret(t, ns, "taken")
		g.Expect(s).NotTo(BeNil())
		g.Expect(metav1.GetControllerOf(s).UID).To(Equal(rt.UID))
		rtExpectExchanges(t, base, 1)
		assertNoSecretsLeaked(t, ns, key, first, string(s.Data["token"]))
	})
}

// TestRevioTokenExchangesOnChange: a new API key, a spec change and a new
// keywarden.dev/refresh value each cause exactly one exchange, without a poke.
func TestRevioTokenExchangesOnChange(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	key1, _ := rtReadyToken(t, ns)
	tokens := []string{rtToken(t, ns, "tok")}

	// New API key in the referenced Secret.
	base := rtExchanges()
	key2 := revioSim.GenerateAPIKey(rtHost)
	revioSim.RevokeAPIKey(key1)
	rtSetAPIKey(t, ns, "rev-key", key2)
	rtWaitReady(t, ns, "tok", 2)
	rtExpectExchanges(t, base, 1)
	tokens = append(tokens, rtToken(t, ns, "tok"))
	g.Expect(tokens[1]).NotTo(Equal(tokens[0]))

	// Spec change: new labels on the output Secret.
	base = rtExchanges()
	rtUpdate(t, ns, "tok", func(rt *v1alpha1.RevioToken) {
		rt.Spec.Secret.Labels = map[string]string{"tier": "gold"}
	})
	rtWaitReady(t, ns, "tok", 3)
	rtExpectExchanges(t, base, 1)
	g.Expect(rtSecret(t, ns, "tok").Labels).To(HaveKeyWithValue("tier", "gold"))
	tokens = append(tokens, rtToken(t, ns, "tok"))

	// A new keywarden.dev/refresh value: one exchange; the same value again
	// (alongside another annotation change) none.
	base = rtExchanges()
	rtAnnotate(t, ns, "tok", v1alpha1.AnnotationRefresh, "2026-03-02T10:00:00Z")
	rtWaitReady(t, ns, "tok", 4)
	rtExpectExchanges(t, base, 1)
	g.Expect(rtGet(t, ns, "tok").Status.LastRefreshRequest).To(Equal("2026-03-02T10:00:00Z"))
	tokens = append(tokens, rtToken(t, ns, "tok"))
	rtPoke(t, ns, "tok")
	rtExpectExchanges(t, base, 1)
	g.Expect(rtGet(t, ns, "tok").Status.Refreshes).To(Equal(int64(4)))
	assertNoSecretsLeaked(t, ns, append(tokens, key1, key2)...)
}

// TestRevioTokenRepairsSecret: a hand-deleted output Secret is recreated and
// hand-edited token data is repaired.
func TestRevioTokenRepairsSecret(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	key, _ := rtReadyToken(t, ns)
	orig := rtSecret(t, ns, "tok")
	tokens := []string{string(orig.Data["token"])}

	g.Expect(k8s.Delete(context.Background(), orig)).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := rtSecret(t, ns, "tok")
		g.Expect(s).NotTo(BeNil())
		g.Expect(s.UID).NotTo(Equal(orig.UID))
		g.Expect(revioSim.ValidToken(string(s.Data["token"]), rtHost)).To(BeTrue())
		g.Expect(secretsync.Intact(s)).To(BeTrue())
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
	rtWaitReady(t, ns, "tok", 2)
	tokens = append(tokens, rtToken(t, ns, "tok"))

	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := rtSecret(t, ns, "tok")
		s.Data["token"] = []byte("tampered")
		return k8s.Update(context.Background(), s)
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := rtSecret(t, ns, "tok")
		g.Expect(string(s.Data["token"])).NotTo(Equal("tampered"))
		g.Expect(secretsync.Intact(s)).To(BeTrue())
		g.Expect(string(s.Data["authorization"])).To(Equal("Bearer " + string(s.Data["token"])))
		g.Expect(revioSim.ValidToken(string(s.Data["token"]), rtHost)).To(BeTrue())
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Succeed())
	rtWaitReady(t, ns, "tok", 3)
	tokens = append(tokens, rtToken(t, ns, "tok"))
	assertNoSecretsLeaked(t, ns, append(tokens, key)...)
}

// TestRevioTokenVerify: with spec.verify.path only a token the API accepts
// is published; a rejected one leaves the previous token and is retried
// with backoff.
func TestRevioTokenVerify(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	key := revioSim.GenerateAPIKey("a.psarev.io")
	rtAPIKeySecret(t, ns, "rev-key", key)
	customers := func() int { return revioSim.Counts().Count(reviotest.EndpointCustomers) }
	baseEx, baseCu := rtExchanges(), customers()
	rtCreateIssuer(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.Host = "a.psarev.io" })
	rtCreate(t, rtNew(ns, "tok", "rev-key", func(rt *v1alpha1.RevioToken) {
		rt.Spec.Verify = &v1alpha1.Verify{Path: reviotest.CustomersPath}
	}))
	rtWaitReady(t, ns, "tok", 1)
	rtExpectExchanges(t, baseEx, 1)
	g.Expect(customers()-baseCu).To(Equal(1), "one verification call")
	good := rtSecret(t, ns, "tok")

	// The key is bound to a.psarev.io: with host b the exchange succeeds
	// but the billing API answers 401 to the new token.
	baseEx, baseCu = rtExchanges(), customers()
	rtIssuerUpdate(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.Host = "b.psarev.io" })
	rt := rtWaitReason(t, ns, "tok", v1alpha1.ReasonVerificationFailed)
	g.Expect(meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionIssued).Reason).To(Equal(v1alpha1.ReasonVerificationFailed))
	rtExpectExchanges(t, baseEx, 1)
	g.Expect(customers() - baseCu).To(Equal(1))
	g.Expect(revioSim.Counts().CountStatus(reviotest.EndpointCustomers, http.StatusUnauthorized)).To(BeNumerically(">=", 1))
	now := rtSecret(t, ns, "tok")
	g.Expect(now.Data).To(Equal(good.Data), "the previous token and host stay")
	rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonVerificationFailed)

	// Retried with backoff: one more attempt per elapsed backoff, no more.
	rtStepAndPoke(t, ns, "tok", 3*time.Second)
	rtExpectExchanges(t, baseEx, 1)
	rtStepAndPoke(t, ns, "tok", 3*time.Second)
	rtExpectExchanges(t, baseEx, 2)
	// The attempt exchanges, verifies, then records its failure: wait for
	// the status, the last of the three.
	g.Eventually(func() int32 { return rtGet(t, ns, "tok").Status.FailedAttempts }).
		WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(int32(2)))
	g.Expect(customers() - baseCu).To(Equal(2))
	g.Expect(rtSecret(t, ns, "tok").Data).To(Equal(good.Data))

	// Back to the right host: verified and published.
	rtIssuerUpdate(t, ns, "rev-key", func(s *v1alpha1.RevioIssuerSpec) { s.Host = "a.psarev.io" })
	rtWaitReady(t, ns, "tok", 2)
	rtExpectExchanges(t, baseEx, 3)
	s := rtSecret(t, ns, "tok")
	g.Expect(s.Data["token"]).NotTo(Equal(good.Data["token"]))
	g.Expect(rtGetCustomers(t, s)).To(Equal(http.StatusOK))
	assertNoSecretsLeaked(t, ns, key, string(good.Data["token"]), string(s.Data["token"]))
}

// TestRevioTokenRolloutRestart: listed workloads get the Secret's data hash
// on their pod template, only when the data changes; a missing one gives a
// Warning event and does not make the token unready.
func TestRevioTokenRolloutRestart(t *testing.T) {
	g := NewWithT(t)
	ns := rtNamespace(t)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.com/web:1",
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}}}}}}},
			},
		},
	}
	g.Expect(k8s.Create(context.Background(), dep)).To(Succeed())
	// A bystander that does not read the Secret: anyone who may create a
	// RevioToken must not be able to restart it.
	bystander := dep.DeepCopy()
	bystander.Name, bystander.ResourceVersion, bystander.UID = "bystander", "", ""
	bystander.Spec.Template.Spec.Containers[0].EnvFrom = nil
	g.Expect(k8s.Create(context.Background(), bystander)).To(Succeed())
	getDep := func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		NewWithT(t).Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(dep), d)).To(Succeed())
		return d
	}
	key, _ := rtReadyToken(t, ns, func(rt *v1alpha1.RevioToken) {
		rt.Spec.RolloutRestart = []v1alpha1.RolloutTarget{
			{Kind: "Deployment", Name: "web"},
			{Kind: "Deployment", Name: "ghost"},
			{Kind: "Deployment", Name: "bystander"},
		}
	})
	hash1 := rtSecret(t, ns, "tok").Annotations[secretsync.AnnotationDataHash]
	g.Expect(hash1).NotTo(BeEmpty())
	closeRestartWindow(t, ns, 1)
	g.Eventually(func() string {
		return getDep().Spec.Template.Annotations[secretsync.HashAnnotation("tok")]
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(hash1))
	rtWaitEvent(t, ns, corev1.EventTypeNormal, v1alpha1.ReasonRolloutRestarted)
	missing := rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetMissing)
	g.Expect(missing.Note).To(ContainSubstring("ghost"))
	refused := rtWaitEvent(t, ns, corev1.EventTypeWarning, v1alpha1.ReasonRolloutTargetRefused)
	g.Expect(refused.Note).To(ContainSubstring("bystander"))
	by := &appsv1.Deployment{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(bystander), by)).To(Succeed())
	g.Expect(by.Spec.Template.Annotations).NotTo(HaveKey(secretsync.HashAnnotation("tok")), "the bystander is not restarted")
	g.Expect(rtCond(t, ns, "tok", v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	tokens := []string{rtToken(t, ns, "tok")}

	// A refresh changes the data, so the hash and the template change.
	gen1 := getDep().Generation
	rtStepPastNextRefresh(t, ns, "tok")
	rtWaitReady(t, ns, "tok", 2)
	hash2 := rtSecret(t, ns, "tok").Annotations[secretsync.AnnotationDataHash]
	g.Expect(hash2).NotTo(Equal(hash1))
	closeRestartWindow(t, ns, 1)
	g.Eventually(func() string {
		return getDep().Spec.Template.Annotations[secretsync.HashAnnotation("tok")]
	}).WithTimeout(rtWait).WithPolling(rtPoll).Should(Equal(hash2))
	gen2 := getDep().Generation
	g.Expect(gen2).To(Equal(gen1 + 1))
	tokens = append(tokens, rtToken(t, ns, "tok"))

	// A reconcile without new data patches nothing.
	rtPoke(t, ns, "tok")
	g.Consistently(func() int64 { return getDep().Generation }).WithTimeout(rtQuiet).WithPolling(rtPoll).Should(Equal(gen2))
	g.Expect(rtCond(t, ns, "tok", v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	assertNoSecretsLeaked(t, ns, append(tokens, key)...)
}
