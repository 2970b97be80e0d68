package controller

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// hostileReevit is a loopback proxy in front of the simulator whose create
// answers a test can spoil: fail them, or rewrite the key in them. It is
// served under its own path of hostileFront, which --allowed-endpoints
// lists (a new listener per test could not be listed).
type hostileReevit struct {
	URL         string
	failCreates atomic.Int32 // status to answer creates with (0: pass)
	keyAs       atomic.Value // string the created key is replaced with ("" : pass)
}

func newHostileReevit(t *testing.T) *hostileReevit {
	t.Helper()
	h := &hostileReevit{}
	h.keyAs.Store("")
	h.URL = mountReevitProxy(t, "h", func(resp *http.Response) error {
		repl := h.keyAs.Load().(string)
		if repl == "" {
			return nil
		}
		return rewriteCreateAnswer(resp, func(m map[string]any) { m["key"] = repl })
	}, func(w http.ResponseWriter, r *http.Request) bool {
		code := int(h.failCreates.Load())
		if code == 0 || r.Method != http.MethodPost {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"error":"forbidden","message":"not allowed"}`))
		return true
	})
	return h
}

// mountReevitProxy serves a reverse proxy to the Reevit simulator under a
// new path prefix ("/"+tag+<sequence>) of hostileFront until the test ends,
// and returns its URL. modify sees every answer on its way back; answer
// sees every request first and, by returning true, answers it itself.
func mountReevitProxy(t *testing.T, tag string, modify func(*http.Response) error, answer func(http.ResponseWriter, *http.Request) bool) string {
	t.Helper()
	target, err := url.Parse(reevitSim.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = modify
	prefix := "/" + tag + strconv.FormatInt(hostileSeq.Add(1), 10)
	hostileRoutes.Store(prefix, http.StripPrefix(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answer(w, r) {
			return
		}
		proxy.ServeHTTP(w, r)
	})))
	t.Cleanup(func() { hostileRoutes.Delete(prefix) })
	return hostileFront.URL + prefix
}

var (
	// hostileFront serves every test's hostileReevit, each under its own
	// path prefix (hostileRoutes).
	hostileFront  *httptest.Server
	hostileRoutes sync.Map // prefix -> http.Handler
	hostileSeq    atomic.Int64
)

// startHostileFront starts hostileFront; its URL is one of the suite
// manager's --allowed-endpoints.
func startHostileFront() *httptest.Server {
	hostileFront = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if h, ok := hostileRoutes.Load("/" + first); ok {
			h.(http.Handler).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	return hostileFront
}

// useIssuerAt points the test's issuer at u.
func (e *akt) useIssuerAt(u string) {
	e.t.Helper()
	updateReevitIssuer(e.t, e.ns, aktIssuer, func(s *v1alpha1.ReevitIssuerSpec) { s.URL = u })
}

// A failure that needs a person (MissingScope after a scope edit) does not
// stop the previous key's revocation at the end of its grace period.
// Before the fix the backoff returned before revocations ran.
func TestApiKeyRevokesDuringPermanentFailure(t *testing.T) {
	e := newAkt(t)
	e.create("ak", aktEvery(time.Hour, 10*time.Second))
	k1 := e.settled("ak").Status.KeyID
	k2 := e.rotateOnce("ak", "r1").Status.KeyID
	e.g.Expect(e.isActive(k1)).To(BeTrue(), "k1 in its grace period")

	// A scope the admin key lacks: the replacement cannot be made.
	e.update("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = append(ak.Spec.Scopes, "invoices:read") })
	e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonMissingScope)

	e.stepAndPoke("ak", 11*time.Second)
	e.g.Eventually(func() bool { return e.isActive(k1) }, aktWait).Should(BeFalse(), "k1 revoked although the create path needs a person")
	e.g.Expect(e.isActive(k2)).To(BeTrue(), "the current key stays")
	e.g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }, aktWait).Should(BeEmpty())
	e.hygiene()
}

// A compromised key is revoked at once and leaves the Secret even when no
// replacement can be made (creates answered 403), and the condition and
// an event say the workload now has no valid key.
func TestApiKeyCompromisedWithoutReplacement(t *testing.T) {
	e := newAkt(t)
	h := newHostileReevit(t)
	e.useIssuerAt(h.URL)
	e.create("ak", aktEvery(time.Hour, 30*time.Minute))
	k1 := e.settled("ak").Status.KeyID

	h.failCreates.Store(http.StatusForbidden)
	e.annotate("ak", v1alpha1.AnnotationCompromised, "incident-7")
	e.g.Eventually(func() bool { return e.isActive(k1) }, aktWait).Should(BeFalse(), "the compromised key is revoked")
	e.g.Eventually(func() []byte { return e.secret("ak").Data["apiKey"] }, aktWait).Should(BeEmpty(), "and removed from the Secret")
	ev := e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonCompromised)
	e.g.Expect(ev.Note).To(ContainSubstring("no valid key"))
	e.condition("ak", v1alpha1.ConditionIssued, v1alpha1.ReasonMissingScope)
	c := e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonRevoked)
	e.g.Expect(c.Message).To(ContainSubstring("no valid key"))

	// Once creates work again, a replacement arrives.
	h.failCreates.Store(0)
	e.update("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.DisplayName = "after the incident" })
	ak := e.settled("ak")
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// A create answered with a key shorter than its prefix ("pfk_t") used to
// panic the reconciler (slice out of range) and loop. Now: a condition,
// the created key revoked, nothing of the value in status, backoff.
func TestApiKeyMalformedKeyAnswer(t *testing.T) {
	e := newAkt(t)
	h := newHostileReevit(t)
	e.useIssuerAt(h.URL)
	h.keyAs.Store("pfk_t")
	base := callsNow()
	e.create("ak")
	c := e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonMalformedKey)
	e.g.Expect(c.Message).To(ContainSubstring("revoked"))
	ak := e.get("ak")
	e.g.Expect(ak.Status.KeyID).To(BeEmpty())
	e.g.Expect(ak.Status.KeyPrefix).To(BeEmpty())
	e.g.Expect(e.secret("ak")).To(BeNil(), "nothing published")
	e.g.Eventually(func() []reevittest.KeyInfo { return e.activeKeysOf(string(ak.UID)) }, aktWait).Should(BeEmpty(), "the key made is revoked")
	// Backoff, not a loop: a handful of creates in the quiet period.
	e.g.Consistently(func() int { return callsNow()[0] - base[0] }, aktQuiet).Should(BeNumerically("<=", 3))

	h.keyAs.Store("")
	e.stepAndPoke("ak", time.Minute) // past the backoff
	ak = e.settled("ak")
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// deletionPolicy Retain keeps the key live and its Secret in place: the
// owner reference goes, so the garbage collector (kube-controller-manager
// runs in this suite) does not delete the only copy of a live key.
func TestApiKeyRetainKeepsSecret(t *testing.T) {
	e := newAkt(t)
	e.create("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain })
	ak := e.settled("ak")
	e.g.Expect(k8s.Delete(e.ctx, ak)).To(Succeed())
	e.g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(e.ctx, client.ObjectKeyFromObject(ak), &v1alpha1.ApiKey{}))
	}, aktWait).Should(BeTrue())
	e.g.Consistently(func() []metav1.OwnerReference {
		s := e.secret("ak")
		if s == nil {
			return []metav1.OwnerReference{{Name: "the Secret is gone"}}
		}
		return s.OwnerReferences
	}, 5*time.Second).Should(BeEmpty())
	e.g.Expect(e.isActive(ak.Status.KeyID)).To(BeTrue())
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	e.event("ak", corev1.EventTypeNormal, v1alpha1.ReasonRetained)
	e.hygiene()
}

// A compromised key is revoked even while the issuer refuses new keys (a
// policy tightened since): the gate stops creates, never revocations.
func TestApiKeyCompromisedUnderPolicyViolation(t *testing.T) {
	e := newAkt(t)
	e.create("ak")
	k1 := e.settled("ak").Status.KeyID
	updateReevitIssuer(e.t, e.ns, aktIssuer, func(s *v1alpha1.ReevitIssuerSpec) { s.Policy.Environments = []v1alpha1.Environment{"test"} })
	e.condition("ak", v1alpha1.ConditionIssued, v1alpha1.ReasonPolicyViolation)
	e.g.Expect(e.isActive(k1)).To(BeTrue(), "a policy change alone revokes nothing")

	e.annotate("ak", v1alpha1.AnnotationCompromised, "leak")
	e.g.Eventually(func() bool { return e.isActive(k1) }, aktWait).Should(BeFalse(), "revoked despite the policy gate")
	e.g.Eventually(func() []byte { return e.secret("ak").Data["apiKey"] }, aktWait).Should(BeEmpty())
	// The pass scrubs the Secret first and patches status after it: wait
	// for the status that no longer names the revoked key.
	e.g.Eventually(func() string { return e.get("ak").Status.KeyID }, aktWait).Should(BeEmpty())
	e.hygiene()
}

// A replay Reevit refuses (here 403, as after a scope edit or a changed
// admin key) used to clear the record and leave the key the first attempt
// made live and untracked. Now the key is found by its marker name and
// revoked before the record goes.
func TestApiKeyRefusedReplayRevokesFirstAttempt(t *testing.T) {
	e := newAkt(t)
	h := newHostileReevit(t)
	e.useIssuerAt(h.URL)
	reevitSim.Faults().DropAfterCommit(1)
	e.create("ak")
	// The POST committed at Reevit; its answer was lost (transient).
	e.g.Eventually(func() int { return reevitSim.Counts().CountStatus(reevittest.EndpointCreate, 0) }, aktWait).Should(BeNumerically(">=", 1))
	e.condition("ak", v1alpha1.ConditionIssued, v1alpha1.ReasonAPIUnavailable)
	uid := string(e.get("ak").UID)
	e.g.Expect(e.activeKeysOf(uid)).To(HaveLen(1), "the first attempt made a key")

	h.failCreates.Store(http.StatusForbidden)
	e.stepAndPoke("ak", time.Minute) // past the backoff: the replay is refused
	e.condition("ak", v1alpha1.ConditionIssued, v1alpha1.ReasonMissingScope)
	e.g.Eventually(func() []reevittest.KeyInfo { return e.activeKeysOf(uid) }, aktWait).Should(BeEmpty(), "the orphan is revoked")
	e.g.Expect(e.get("ak").Status.PendingCreate).To(BeNil())
	e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked)
	e.hygiene()
}

// rewriteCreateAnswer lets mutate edit the JSON answer of a successful
// POST (a key creation) on its way back from the simulator: a hostile or
// broken server, played by a reverse proxy.
func rewriteCreateAnswer(resp *http.Response, mutate func(map[string]any)) error {
	if resp.Request.Method != http.MethodPost || resp.StatusCode/100 != 2 {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		mutate(m)
		body, _ = json.Marshal(m)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}
