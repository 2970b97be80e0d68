package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// adminKeyEvents are the audit events about issuers' admin keys, which
// TestAuditStream (ApiKeys only) leaves to TestAdminKeyAudit.
var adminKeyEvents = map[audit.Event]bool{audit.AdminKeyRotated: true, audit.AdminKeyRevoked: true, audit.AdminKeyRevokeFailed: true}

// --- pure decisions ------------------------------------------------------------

func TestIdentifyAdminKey(t *testing.T) {
	value := "pfk_live_abcdEFGH12345678abcdEFGH12345678"
	keys := func(prefixes ...string) []reevit.Key {
		var out []reevit.Key
		for i, p := range prefixes {
			out = append(out, reevit.Key{ID: "key_" + strconv.Itoa(i), Prefix: p})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		keys  []reevit.Key
		value string
		want  string // id, or "" for unidentified
	}{
		{"exactly one", keys("pfk_live_zzzz", value[:13]), value, "key_1"},
		{"none", keys("pfk_live_zzzz"), value, ""},
		{"several", keys(value[:13], value[:13]), value, ""},
		{"no prefixes listed", keys("", ""), value, ""},
		{"not a key", keys("pfk_live_abcd"), "hunter2", ""},
		{"longer prefix is no match", keys(value[:14]), value, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, f := identifyAdminKey(tc.keys, tc.value, "s")
			if tc.want == "" {
				if f == nil || f.Reason != v1alpha1.ReasonAdminKeyUnidentified {
					t.Fatalf("want AdminKeyUnidentified, got %v %v", k.ID, f)
				}
				if bytes.Contains([]byte(f.Message), []byte(tc.value)) {
					t.Fatalf("message carries the key: %s", f.Message)
				}
				return
			}
			if f != nil || k.ID != tc.want {
				t.Fatalf("got %q %v, want %q", k.ID, f, tc.want)
			}
		})
	}
}

func TestAdminRotationDue(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	rot := &v1alpha1.AdminKeyRotation{Every: &metav1.Duration{Duration: time.Hour}}
	at := func(d time.Duration) *metav1.Time { return mtime(now.Add(d)) }
	for _, tc := range []struct {
		name   string
		rot    *v1alpha1.AdminKeyRotation
		a      *v1alpha1.AdminKeyStatus
		annos  map[string]string
		reason string
		wait   time.Duration
	}{
		{"no rotation", nil, &v1alpha1.AdminKeyStatus{NextRotationTime: at(-time.Hour)}, nil, "", 0},
		{"not identified", rot, nil, nil, "", 0},
		{"not yet", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(time.Minute)}, nil, "", time.Minute},
		{"due", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(0)}, nil, adminRotateSchedule, 0},
		{"manual", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(time.Hour)}, map[string]string{v1alpha1.AnnotationRotate: "1"}, adminRotateManual, 0},
		{"manual acted on", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(time.Hour), LastRotateRequest: "1"}, map[string]string{v1alpha1.AnnotationRotate: "1"}, "", time.Hour},
		{"compromised first", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(0)}, map[string]string{v1alpha1.AnnotationRotate: "1", v1alpha1.AnnotationCompromised: "x"}, adminRotateCompromised, 0},
		{"compromised acted on", rot, &v1alpha1.AdminKeyStatus{NextRotationTime: at(time.Hour), LastCompromisedRequest: "x"}, map[string]string{v1alpha1.AnnotationCompromised: "x"}, "", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, wait := adminRotationDue(tc.rot, tc.a, tc.annos, now)
			if reason != tc.reason || wait != tc.wait {
				t.Fatalf("got %q %s, want %q %s", reason, wait, tc.reason, tc.wait)
			}
		})
	}
}

func TestRefuseAdminKey(t *testing.T) {
	p := &v1alpha1.AdminKeyPending{Environment: "live", Scopes: []string{"api_keys:read", "api_keys:write", "payments:read"}}
	good := "pfk_live_abcdEFGH12345678abcdEFGH12345678"
	for _, tc := range []struct {
		name   string
		key    reevit.Key
		refuse bool
	}{
		{"same scopes, other order", reevit.Key{Key: good, Scopes: []string{"payments:read", "api_keys:write", "api_keys:read"}}, false},
		{"fewer scopes", reevit.Key{Key: good, Scopes: []string{"api_keys:read", "api_keys:write"}}, true},
		{"more scopes", reevit.Key{Key: good, Scopes: append(slices.Clone(p.Scopes), "fraud:write")}, true},
		{"no scopes", reevit.Key{Key: good}, true},
		{"test environment", reevit.Key{Key: "pfk_test_abcdEFGH12345678abcdEFGH12345678", Scopes: p.Scopes}, true},
		{"malformed", reevit.Key{Key: "pfk_live_short", Scopes: p.Scopes}, true},
		{"odd characters", reevit.Key{Key: "pfk_live_abcd/EFGH12345678abcdEFGH1234567", Scopes: p.Scopes}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why := refuseAdminKey(&tc.key, p)
			if (why != "") != tc.refuse {
				t.Fatalf("refuse=%q, want refused %v", why, tc.refuse)
			}
		})
	}
}

func TestManagedElsewhere(t *testing.T) {
	for _, tc := range []struct {
		name    string
		meta    metav1.ObjectMeta
		foreign bool
	}{
		{"plain", metav1.ObjectMeta{}, false},
		{"managed by keywarden", metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/managed-by": "keywarden"}}, false},
		{"unrelated annotation", metav1.ObjectMeta{Annotations: map[string]string{"team": "payments"}}, false},
		{"owner", metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{APIVersion: "external-secrets.io/v1", Kind: "ExternalSecret", Name: "x", UID: "u"}}}, true},
		{"managed-by helm", metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}}, true},
		{"external-secrets label", metav1.ObjectMeta{Labels: map[string]string{"reconcile.external-secrets.io/managed": "true"}}, true},
		{"vault annotation", metav1.ObjectMeta{Annotations: map[string]string{"secrets.hashicorp.com/vso-managed": "true"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := managedElsewhere(&corev1.Secret{ObjectMeta: tc.meta}); (got != "") != tc.foreign {
				t.Fatalf("managedElsewhere=%q, want foreign %v", got, tc.foreign)
			}
		})
	}
}

func TestAdminGrace(t *testing.T) {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	for _, tc := range []struct {
		rot  *v1alpha1.AdminKeyRotation
		want time.Duration
	}{
		{nil, 10 * time.Minute},
		{&v1alpha1.AdminKeyRotation{Every: d(time.Hour)}, 10 * time.Minute},
		{&v1alpha1.AdminKeyRotation{Every: d(5 * time.Minute)}, 5 * time.Minute},
		{&v1alpha1.AdminKeyRotation{Every: d(time.Hour), GracePeriod: d(time.Minute)}, time.Minute},
	} {
		if got := adminGrace(tc.rot); got != tc.want {
			t.Errorf("adminGrace(%+v) = %s, want %s", tc.rot, got, tc.want)
		}
	}
}

// --- envtest ------------------------------------------------------------------

// adminWorld is an akt whose issuer rotates its admin key.
type adminWorld struct{ *akt }

// newAdminWorld sets up an akt and turns on spec.adminKeyRotation.
func newAdminWorld(t *testing.T, every, grace time.Duration) *adminWorld {
	e := newAkt(t)
	w := &adminWorld{e}
	w.setRotation(every, grace)
	w.identified(e.adminID)
	return w
}

func (w *adminWorld) setRotation(every, grace time.Duration) {
	updateReevitIssuer(w.t, w.ns, aktIssuer, func(s *v1alpha1.ReevitIssuerSpec) {
		s.AdminKeyRotation = &v1alpha1.AdminKeyRotation{Every: &metav1.Duration{Duration: every}}
		if grace > 0 {
			s.AdminKeyRotation.GracePeriod = &metav1.Duration{Duration: grace}
		}
	})
}

func (w *adminWorld) issuer() *v1alpha1.ReevitIssuer {
	w.t.Helper()
	iss := &v1alpha1.ReevitIssuer{}
	w.g.Expect(k8s.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: aktIssuer}, iss)).To(Succeed())
	return iss
}

// identified waits until status.adminKey names id, with nothing in flight.
func (w *adminWorld) identified(id string) *v1alpha1.AdminKeyStatus {
	w.t.Helper()
	return w.settledOn(Equal(id))
}

// rotatedFrom waits until status.adminKey names another key than from,
// with nothing in flight.
func (w *adminWorld) rotatedFrom(from string) *v1alpha1.AdminKeyStatus {
	w.t.Helper()
	return w.settledOn(Not(Or(Equal(from), BeEmpty())))
}

// settledOn waits until status.adminKey's id matches, with nothing in flight.
func (w *adminWorld) settledOn(id types.GomegaMatcher) *v1alpha1.AdminKeyStatus {
	w.t.Helper()
	var out *v1alpha1.AdminKeyStatus
	w.g.Eventually(func(g Gomega) {
		a := w.issuer().Status.AdminKey
		g.Expect(a).NotTo(BeNil())
		g.Expect(a.ID).To(id)
		g.Expect(a.Pending).To(BeNil())
		out = a
	}).Should(Succeed())
	return out
}

func (w *adminWorld) annotateIssuer(key, value string) {
	w.t.Helper()
	iss := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: aktIssuer, Namespace: w.ns}}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value))
	w.g.Expect(k8s.Patch(w.ctx, iss, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
}

// pokeIssuer steps the clock by d and makes the issuer reconcile now.
func (w *adminWorld) pokeIssuer(d time.Duration) {
	w.t.Helper()
	clk.Step(d)
	w.pokes++
	w.annotateIssuer(aktPokeAnno, strconv.Itoa(w.pokes))
}

// adminSecretValue is what the admin Secret holds.
func (w *adminWorld) adminSecretValue() string {
	w.t.Helper()
	s := &corev1.Secret{}
	w.g.Expect(k8s.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: aktAdminSecret}, s)).To(Succeed())
	v := string(s.Data["apiKey"])
	if !slices.Contains(w.seen, v) {
		w.seen = append(w.seen, v)
	}
	return v
}

// adminCondition waits until AdminKeyRotation has reason.
func (w *adminWorld) adminCondition(reason string) metav1.Condition {
	w.t.Helper()
	var out metav1.Condition
	w.g.Eventually(func(g Gomega) {
		c := meta.FindStatusCondition(w.issuer().Status.Conditions, v1alpha1.ConditionAdminKeyRotation)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason), c.Message)
		out = *c
	}).Should(Succeed())
	return out
}

// assertAccounted is the invariant of every admin-key test once nothing is
// in flight: the Secret's key authenticates as status.adminKey.id, and every
// active key of the organisation is that key, the previous one waiting for
// revocation, or a key of an ApiKey (its marker): nothing untracked.
func (w *adminWorld) assertAccounted() *v1alpha1.AdminKeyStatus {
	w.t.Helper()
	var out *v1alpha1.AdminKeyStatus
	w.g.Eventually(func(g Gomega) {
		a := w.issuer().Status.AdminKey
		g.Expect(a).NotTo(BeNil())
		g.Expect(a.Pending).To(BeNil(), "a rotation is in flight")
		id, ok := reevitSim.Authenticate(w.org, w.adminSecretValue())
		g.Expect(ok).To(BeTrue(), "the admin key in the Secret does not authenticate: lost")
		g.Expect(id).To(Equal(a.ID))
		tracked := map[string]bool{a.ID: true}
		if a.Previous != nil {
			tracked[a.Previous.ID] = true
		}
		aks := &v1alpha1.ApiKeyList{}
		g.Expect(k8s.List(w.ctx, aks, client.InNamespace(w.ns))).To(Succeed())
		uids := map[string]bool{}
		for _, ak := range aks.Items {
			uids[string(ak.UID)] = true
		}
		for _, k := range reevitSim.ActiveKeys(w.org) {
			if uid, _, ok := reevit.ParseMarker(k.Name); ok && uids[uid] {
				continue
			}
			g.Expect(tracked).To(HaveKey(k.ID), "active key %s (%s) is tracked by nothing", k.ID, k.Name)
		}
		out = a
	}).Should(Succeed())
	return out
}

// Rotation on schedule: a new admin key with the same scopes, the Secret
// holds it, the old key works through its grace period and is then revoked
// with the new one; ApiKeys keep converging through the issuer.
func TestAdminKeyRotationOnSchedule(t *testing.T) {
	w := newAdminWorld(t, time.Hour, 10*time.Minute)
	oldID, oldKey := w.adminID, w.adminKey
	a := w.identified(oldID)
	w.g.Expect(a.Prefix).To(Equal(oldKey[:13]))
	w.g.Expect(a.Scopes).To(ConsistOf(aktAdminScopes))
	w.g.Expect(a.Environment).To(Equal("live"))
	w.g.Expect(a.NextRotationTime).NotTo(BeNil())
	w.create("ak", aktEvery(24*time.Hour, time.Minute))
	k1 := w.settled("ak").Status.KeyID

	// Steady state: no call at all while nothing is due.
	before := callsNow()
	w.pokeIssuer(time.Minute)
	w.g.Consistently(callsNow).Should(Equal(before))

	w.pokeIssuer(time.Hour)
	a = w.rotatedFrom(oldID)
	w.adminCondition(v1alpha1.ReasonAdminKeyRotated)
	newKey := w.adminSecretValue()
	w.g.Expect(newKey).NotTo(Equal(oldKey))
	w.authenticates([]byte(newKey), a.ID)
	w.g.Expect(a.Scopes).To(ConsistOf(aktAdminScopes))
	w.g.Expect(a.Previous).NotTo(BeNil())
	w.g.Expect(a.Previous.ID).To(Equal(oldID))
	w.g.Expect(w.isActive(oldID)).To(BeTrue(), "old admin key revoked before its grace period ended")
	w.assertAccounted()
	w.event(aktIssuer, corev1.EventTypeNormal, v1alpha1.ReasonAdminKeyRotated)
	// The age and its limit (every plus grace) are exported for the alert.
	w.g.Eventually(func(g Gomega) {
		body := scrape(g)
		_, ok := seriesValue(body, "keywarden_issuer_admin_key_age_seconds", `namespace="`+w.ns+`"`, `name="`+aktIssuer+`"`)
		g.Expect(ok).To(BeTrue(), "no admin-key age series")
		v, ok := seriesValue(body, "keywarden_issuer_admin_key_max_age_seconds", `namespace="`+w.ns+`"`, `name="`+aktIssuer+`"`)
		g.Expect(ok).To(BeTrue(), "no admin-key limit series")
		g.Expect(asFloat(v)).To(Equal((70 * time.Minute).Seconds()))
	}).Should(Succeed())

	// After the grace period the old key is revoked (with the new one).
	w.pokeIssuer(11 * time.Minute)
	w.g.Eventually(func() bool { return w.isActive(oldID) }).Should(BeFalse())
	w.g.Eventually(func() *v1alpha1.AdminKeyPrevious { return w.issuer().Status.AdminKey.Previous }).Should(BeNil())
	w.adminCondition(v1alpha1.ReasonSucceeded)
	w.assertAccounted()

	// ApiKeys converge through the issuer with its new admin key.
	w.annotate("ak", v1alpha1.AnnotationRotate, "after-admin")
	w.rotated("ak", k1)
	issuerCondition(t, w.ns, aktIssuer, v1alpha1.ReasonSucceeded)
	w.hygiene()
	assertNoSecretsLeaked(t, w.ns, oldKey, newKey)
}

// A compromised admin key is replaced and revoked at once.
func TestAdminKeyCompromised(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Hour)
	oldID := w.adminID
	w.annotateIssuer(v1alpha1.AnnotationCompromised, "leak-1")
	a := w.rotatedFrom(oldID)
	w.g.Eventually(func() bool { return w.isActive(oldID) }).Should(BeFalse(), "compromised admin key not revoked at once")
	w.g.Eventually(func() *v1alpha1.AdminKeyPrevious { return w.issuer().Status.AdminKey.Previous }).Should(BeNil())
	w.g.Expect(w.issuer().Status.AdminKey.LastCompromisedRequest).To(Equal("leak-1"))
	w.assertAccounted()
	// The same value is not acted on twice.
	w.notActedOnTwice(a.ID)
	w.hygiene()
}

// A manual rotation (keywarden.dev/rotate) rotates once per value.
func TestAdminKeyManualRotation(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Minute)
	w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
	a := w.rotatedFrom(w.adminID)
	w.g.Expect(w.isActive(w.adminID)).To(BeTrue(), "a manual rotation keeps the old key for its grace period")
	w.assertAccounted()
	w.notActedOnTwice(a.ID)
	w.hygiene()
}

// An admin Secret managed elsewhere is never written: nothing is created.
func TestAdminKeySecretManagedElsewhere(t *testing.T) {
	for name, mut := range map[string]func(*corev1.Secret){
		"label": func(s *corev1.Secret) {
			s.Labels = map[string]string{"app.kubernetes.io/managed-by": "external-secrets"}
		},
		"annotation": func(s *corev1.Secret) {
			s.Annotations = map[string]string{"reconcile.external-secrets.io/data-hash": "abc"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := newAdminWorld(t, time.Hour, time.Minute)
			s := &corev1.Secret{}
			w.g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := k8s.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: aktAdminSecret}, s); err != nil {
					return err
				}
				mut(s)
				return k8s.Update(w.ctx, s)
			})).To(Succeed())
			waitIssuerChecked(t, w.ns, aktIssuer, aktAdminSecret)
			creates := calls(reevittest.EndpointCreate)
			w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
			c := w.adminCondition(v1alpha1.ReasonAdminKeyManagedElsewhere)
			w.g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			w.event(aktIssuer, corev1.EventTypeWarning, v1alpha1.ReasonAdminKeyManagedElsewhere)
			w.g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(creates))
			w.g.Expect(w.adminSecretValue()).To(Equal(w.adminKey), "the Secret was written")
			w.g.Expect(w.issuer().Status.AdminKey.ID).To(Equal(w.adminID))
			w.assertAccounted()
		})
	}
}

// adminProxy is a loopback proxy in front of the simulator whose create
// answers a test rewrites (served under hostileFront, which the suite's
// --allowed-endpoints lists).
type adminProxy struct {
	URL    string
	mu     sync.Mutex
	mutate func(m map[string]any)
	// failDeletes answers this many revocations (DELETE) with 503.
	failDeletes atomic.Int32
	// deletesFailed counts the revocations answered so.
	deletesFailed atomic.Int32
}

func newAdminProxy(t *testing.T) *adminProxy {
	t.Helper()
	h := &adminProxy{}
	h.URL = mountReevitProxy(t, "a", func(resp *http.Response) error {
		h.mu.Lock()
		mutate := h.mutate
		h.mu.Unlock()
		if mutate == nil {
			return nil
		}
		return rewriteCreateAnswer(resp, mutate)
	}, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodDelete || h.failDeletes.Add(-1) < 0 {
			return false
		}
		h.deletesFailed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"unavailable","message":"try later"}`))
		return true
	})
	return h
}

func (h *adminProxy) set(f func(map[string]any)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mutate = f
}

// Answers that cannot replace the admin key (fewer scopes, the other
// environment, an unknown shape) are revoked with the old key, which stays.
func TestAdminKeyRefusedAnswers(t *testing.T) {
	for name, mutate := range map[string]func(map[string]any){
		"fewer scopes": func(m map[string]any) { m["scopes"] = []string{"api_keys:read", "api_keys:write"} },
		"wrong env":    func(m map[string]any) { m["key"] = "pfk_test_" + m["key"].(string)[9:] },
		"malformed":    func(m map[string]any) { m["key"] = "pfk_live_x" },
		"unknown charset": func(m map[string]any) {
			m["key"] = "pfk_live_" + m["key"].(string)[9:20] + "/../" + m["key"].(string)[20:]
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newAkt(t)
			h := newAdminProxy(t)
			e.useIssuerAt(h.URL)
			w := &adminWorld{e}
			w.setRotation(time.Hour, time.Minute)
			w.identified(e.adminID)
			h.set(mutate)
			w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
			c := w.adminCondition(v1alpha1.ReasonAdminKeyRefused)
			w.g.Expect(c.Message).NotTo(ContainSubstring(e.adminKey))
			w.event(aktIssuer, corev1.EventTypeWarning, v1alpha1.ReasonAdminKeyRefused)
			h.set(nil)
			// The old key stays: in the Secret, active, in status; the
			// refused key was revoked.
			w.g.Expect(w.adminSecretValue()).To(Equal(e.adminKey))
			w.g.Expect(w.isActive(e.adminID)).To(BeTrue())
			a := w.assertAccounted()
			w.g.Expect(a.ID).To(Equal(e.adminID))
			var minted int
			for _, k := range reevitSim.Keys(e.org) {
				if k.ID != e.adminID {
					minted++
					w.g.Expect(k.Revoked).To(BeTrue(), "refused key %s still active", k.ID)
				}
			}
			w.g.Expect(minted).To(BeNumerically(">=", 1))
			w.hygiene()
		})
	}
}

// ApiKey revocations queued with the old issuer record before the admin
// key changed are made with the current admin key afterwards.
func TestAdminKeyQueuedApiKeyRevocations(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Minute)
	w.create("ak", aktEvery(24*time.Hour, 30*time.Minute))
	k1 := w.settled("ak").Status.KeyID
	k2 := w.rotateOnce("ak", "r1").Status.KeyID
	ak := w.get("ak")
	w.g.Expect(pending(ak, k1)).NotTo(BeNil(), "k1 waits for revocation")
	oldAdmin := w.adminID

	w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
	w.rotatedFrom(oldAdmin)
	w.pokeIssuer(2 * time.Minute)
	w.g.Eventually(func() bool { return w.isActive(oldAdmin) }).Should(BeFalse(), "old admin key not revoked after grace")

	// The ApiKey's revocation of k1 is due: it goes with the new admin key.
	w.stepAndPoke("ak", 31*time.Minute)
	w.g.Eventually(func() bool { return w.isActive(k1) }).Should(BeFalse(), "k1 not revoked after the admin key changed")
	w.g.Eventually(func() []v1alpha1.PendingRevocation { return w.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	w.g.Expect(w.isActive(k2)).To(BeTrue())
	w.assertAccounted()
	w.hygiene()
}

// stopAfterRotationPost asks for an admin-key rotation ("r1"), stops the
// manager once the rotation's creation request has been sent (every pass
// crashing at "admin-after-post") and clears the crash hook: the rotation
// is left in flight with no manager running.
func (w *adminWorld) stopAfterRotationPost() {
	w.t.Helper()
	hits := crashAt("admin-after-post", -1)
	w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
	w.g.Eventually(hits.Load).Should(BeNumerically(">=", 1))
	aktStopManager()
	setCrash(nil)
}

// A person's edit of the Secret during a rotation wins: the key the
// rotation made is revoked, the person's key is kept.
func TestAdminKeySecretEditedDuringRotation(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Minute)
	w.stopAfterRotationPost()
	// The person puts another valid admin key in while no manager runs.
	personID, personKey := reevitSim.SeedKey(w.org, "live", "made by a person", aktAdminScopes)
	w.putAdmin(personKey)
	aktStartManager(t)
	w.adminCondition(v1alpha1.ReasonAdminKeySecretEdited)
	w.g.Expect(w.adminSecretValue()).To(Equal(personKey))
	w.identified(personID)
	// The key the person replaced is theirs to retire, as without rotation.
	reevitSim.Revoke(w.org, w.adminID)
	a := w.assertAccounted()
	w.g.Expect(a.ID).To(Equal(personID))
	// The minted key is revoked; the old one is the person's to retire.
	for _, k := range reevitSim.Keys(w.org) {
		if _, _, ok := reevit.ParseMarker(k.Name); ok {
			w.g.Expect(k.Revoked).To(BeTrue(), "minted key %s left live", k.ID)
		}
	}
	w.hygiene()
}

// A failed revocation of the old admin key retries with backoff and shows
// on the issuer.
func TestAdminKeyRevokeRetries(t *testing.T) {
	e := newAkt(t)
	h := newAdminProxy(t)
	e.useIssuerAt(h.URL)
	w := &adminWorld{e}
	w.setRotation(720*time.Hour, time.Minute)
	w.identified(e.adminID)
	oldID := w.adminID
	w.annotateIssuer(v1alpha1.AnnotationRotate, "r1")
	w.rotatedFrom(oldID)
	// Only revocations fail (a listing of the issuer's check must not
	// take the fault).
	h.failDeletes.Store(1)
	w.pokeIssuer(2 * time.Minute)
	w.adminCondition(v1alpha1.ReasonAdminKeyRevokeFailed)
	w.event(aktIssuer, corev1.EventTypeWarning, v1alpha1.ReasonAdminKeyRevokeFailed)
	prev := w.issuer().Status.AdminKey.Previous
	w.g.Expect(prev).NotTo(BeNil())
	w.g.Expect(prev.Attempts).To(BeEquivalentTo(1))
	w.g.Expect(prev.LastError).To(Equal(v1alpha1.ReasonAPIUnavailable))
	w.g.Expect(h.deletesFailed.Load()).To(BeEquivalentTo(1))
	w.g.Expect(w.isActive(oldID)).To(BeTrue())
	w.pokeIssuer(time.Minute)
	w.g.Eventually(func() bool { return w.isActive(oldID) }).Should(BeFalse())
	w.adminCondition(v1alpha1.ReasonSucceeded)
	w.assertAccounted()
}

// An admin key the listing cannot identify: Ready=False, nothing rotated.
func TestAdminKeyUnidentified(t *testing.T) {
	e := newAkt(t)
	w := &adminWorld{e}
	// A second key sharing nothing: identification works; then a listing
	// without prefixes (through the proxy) identifies nothing.
	h := newAdminProxy(t)
	e.useIssuerAt(h.URL)
	waitIssuerChecked(t, e.ns, aktIssuer, aktAdminSecret)
	proxyStripPrefixes(h)
	creates := calls(reevittest.EndpointCreate)
	w.setRotation(time.Minute, 0)
	c := issuerCondition(t, e.ns, aktIssuer, v1alpha1.ReasonAdminKeyUnidentified)
	w.g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	w.pokeIssuer(time.Hour)
	w.g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(creates))
}

// proxyStripPrefixes makes the proxy's listings carry no prefixes.
func proxyStripPrefixes(h *adminProxy) {
	// Listings are GETs: a route of their own rewrites them.
	target, _ := url.Parse(reevitSim.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		var m struct {
			Data []map[string]any `json:"data"`
		}
		if json.Unmarshal(body, &m) == nil {
			for _, k := range m.Data {
				delete(k, "prefix")
			}
			body, _ = json.Marshal(m)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	u, _ := url.Parse(h.URL)
	hostileRoutes.Store(u.Path, http.StripPrefix(u.Path, proxy))
}

// A process killed at each point of a rotation, then restarted, loses no
// admin key and leaves none untracked.
func TestAdminKeyCrash(t *testing.T) {
	for _, step := range []string{"admin-intent", "admin-after-post", "admin-after-secret", "admin-before-revoke", "admin-after-revoke"} {
		for _, mode := range aktCrashModes {
			t.Run(step+"/"+mode, func(t *testing.T) {
				w := newAdminWorld(t, 720*time.Hour, time.Minute)
				oldID := w.adminID
				times := int32(1)
				if mode == "restart" {
					times = -1
				}
				hits := crashAt(step, times)
				// Compromised: the old key goes at once, so the revoke
				// steps are reached in the same pass.
				w.annotateIssuer(v1alpha1.AnnotationCompromised, "c1")
				w.g.Eventually(hits.Load).Should(BeNumerically(">=", 1), "never reached %s", step)
				if mode == "restart" {
					aktStopManager()
					setCrash(nil)
					aktStartManager(t)
				}
				setCrash(nil)
				w.pokeIssuer(time.Second)
				a := w.rotatedFrom(oldID)
				w.g.Eventually(func() bool { return w.isActive(oldID) }).Should(BeFalse())
				w.g.Eventually(func() *v1alpha1.AdminKeyPrevious { return w.issuer().Status.AdminKey.Previous }).Should(BeNil())
				w.assertAccounted()
				// Replays used the recorded request: one key was minted.
				var minted []string
				for _, k := range reevitSim.Keys(w.org) {
					if _, _, ok := reevit.ParseMarker(k.Name); ok {
						minted = append(minted, k.ID)
					}
				}
				w.g.Expect(minted).To(ConsistOf(a.ID))
				w.g.Expect(a.Rotations).To(BeEquivalentTo(1))
				w.hygiene()
			})
		}
	}
}

// The audit stream tells admin-key rotations and revocations, without keys.
func TestAdminKeyAudit(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Minute)
	oldKey := w.adminKey
	w.annotateIssuer(v1alpha1.AnnotationCompromised, "c1")
	a := w.rotatedFrom(w.adminID)
	w.g.Eventually(func() bool { return w.isActive(w.adminID) }).Should(BeFalse())
	newKey := w.adminSecretValue()
	var rotated, revoked *audit.Record
	w.g.Eventually(func() bool {
		for _, r := range auditLog.of(t, w.ns) {
			switch r.Event {
			case audit.AdminKeyRotated:
				rotated = &r
			case audit.AdminKeyRevoked:
				revoked = &r
			}
		}
		return rotated != nil && revoked != nil
	}).Should(BeTrue())
	w.g.Expect(rotated.Object.Kind).To(Equal(v1alpha1.KindReevitIssuer))
	w.g.Expect(rotated.KeyID).To(Equal(a.ID))
	w.g.Expect(rotated.Reason).To(Equal(adminRotateCompromised))
	w.g.Expect(rotated.Issuer.OrgID).To(Equal(w.org))
	w.g.Expect(revoked.KeyID).To(Equal(w.adminID))
	for _, l := range auditLog.linesOf(w.ns) {
		w.g.Expect(l).NotTo(ContainSubstring(oldKey))
		w.g.Expect(l).NotTo(ContainSubstring(newKey))
	}
}

// Invalid spec.adminKeyRotation is refused at admission, naming the field.
func TestAdminKeyRotationAdmission(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	d := func(x string) *metav1.Duration {
		v, err := time.ParseDuration(x)
		g.Expect(err).NotTo(HaveOccurred())
		return &metav1.Duration{Duration: v}
	}
	for i, tc := range []struct {
		rot  v1alpha1.AdminKeyRotation
		want string
	}{
		{v1alpha1.AdminKeyRotation{Every: d("30s")}, "adminKeyRotation.every must be at least 1m"},
		{v1alpha1.AdminKeyRotation{Every: d("1h"), GracePeriod: d("2h")}, "adminKeyRotation.gracePeriod must not be longer than adminKeyRotation.every"},
		{v1alpha1.AdminKeyRotation{Every: d("2000h"), GracePeriod: d("721h")}, "adminKeyRotation.gracePeriod must be at most 720h"},
	} {
		rot := tc.rot
		iss := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + strconv.Itoa(i), Namespace: ns},
			Spec: v1alpha1.ReevitIssuerSpec{URL: reevitSim.URL, OrgID: "org", AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "s"}, AdminKeyRotation: &rot}}
		err := k8s.Create(context.Background(), iss)
		g.Expect(err).To(HaveOccurred(), "case %d admitted", i)
		g.Expect(err.Error()).To(ContainSubstring(tc.want))
	}
	// A raw "1d" (no days in Go durations) is refused too.
	raw := []byte(`{"apiVersion":"credentials.keywarden.dev/v1alpha1","kind":"ReevitIssuer","metadata":{"name":"days","namespace":"` + ns +
		`"},"spec":{"orgId":"org","adminKeySecretRef":{"name":"s"},"adminKeyRotation":{"every":"1d"}}}`)
	u := &unstructured.Unstructured{}
	g.Expect(u.UnmarshalJSON(raw)).To(Succeed())
	err := k8s.Create(context.Background(), u)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("adminKeyRotation.every must be a Go duration"))
}

// A rotation whose creation was sent and never finished, found after
// Reevit's replay window, is abandoned: the key it made is found by its
// marker name and revoked, the old admin key stays. Nothing is left
// untracked.
func TestAdminKeyReplayWindowPassed(t *testing.T) {
	w := newAdminWorld(t, 720*time.Hour, time.Minute)
	w.stopAfterRotationPost()
	var minted []string
	for _, k := range reevitSim.ActiveKeys(w.org) {
		if _, _, ok := reevit.ParseMarker(k.Name); ok {
			minted = append(minted, k.ID)
		}
	}
	w.g.Expect(minted).To(HaveLen(1), "the crash came after the POST")
	clk.Step(24 * time.Hour)
	aktStartManager(t)
	w.pokeIssuer(time.Second)
	c := w.adminCondition(v1alpha1.ReasonAdminKeyRotationFailed)
	w.g.Expect(c.Message).To(ContainSubstring("no longer replays"))
	w.g.Eventually(func() bool { return w.isActive(minted[0]) }).Should(BeFalse(), "the orphan was not revoked")
	w.g.Expect(w.adminSecretValue()).To(Equal(w.adminKey))
	a := w.assertAccounted()
	w.g.Expect(a.ID).To(Equal(w.adminID))
	w.hygiene()
}

// notActedOnTwice pokes the issuer and checks the annotation value already
// acted on mints no other key: the admin key stays id.
func (w *adminWorld) notActedOnTwice(id string) {
	w.t.Helper()
	creates := calls(reevittest.EndpointCreate)
	w.pokeIssuer(time.Second)
	w.g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(creates))
	w.g.Expect(w.issuer().Status.AdminKey.ID).To(Equal(id))
}
