package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// The ApiKey tests drive the real manager (envtest) against reevittest with
// the suite's fake clock. Scheduled work is made to happen by stepping the
// fake clock past it and then poking the object with a harmless annotation,
// since RequeueAfter waits in real time. Every helper here is prefixed akt
// so it cannot collide with other tests of the package.

const (
	aktAdminSecret = "reevit-admin"
	aktPokeAnno    = "test.keywarden.dev/poke"
	aktWait        = 30 * time.Second
	aktQuiet       = 3 * time.Second
)

// aktAdminScopes are the admin key's scopes in most tests: everything the
// ApiKeys below ask for, plus the key-management scopes.
var aktAdminScopes = []string{"api_keys:read", "api_keys:write", "payments:read", "payments:write"}

// akt is one test's world: a namespace, its own Reevit organisation with an
// admin key, and a record of every key value seen, for the hygiene check.
type akt struct {
	t        *testing.T
	g        *WithT
	ctx      context.Context
	ns, org  string
	adminID  string
	adminKey string
	seen     []string
	pokes    int
}

// newAkt sets up a namespace and an organisation whose admin key (env live,
// aktAdminScopes) is in the Secret aktAdminSecret.
func newAkt(t *testing.T) *akt {
	e := newAktBare(t)
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "live", "keywarden admin", aktAdminScopes)
	e.putAdmin(e.adminKey)
	return e
}

// newAktBare sets up a namespace and an empty organisation, without admin key.
func newAktBare(t *testing.T) *akt {
	t.Helper()
	e := &akt{t: t, g: NewWithT(t), ctx: context.Background(), ns: newNamespace(t)}
	e.g.SetDefaultEventuallyTimeout(aktWait)
	e.g.SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	e.g.SetDefaultConsistentlyDuration(aktQuiet)
	e.g.SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)
	e.org = "org_" + e.ns
	reevitSim.AddOrg(e.org)
	createReevitIssuer(t, e.ns, aktIssuer, e.org, aktAdminSecret)
	t.Cleanup(e.cleanup)
	return e
}

// aktIssuer is the ReevitIssuer of each test's namespace.
const aktIssuer = "reevit"

// createReevitIssuer makes a ReevitIssuer for the simulator's org.
func createReevitIssuer(t *testing.T, ns, name, org, secret string, mut ...func(*v1alpha1.ReevitIssuerSpec)) {
	t.Helper()
	iss := &v1alpha1.ReevitIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.ReevitIssuerSpec{URL: reevitSim.URL, OrgID: org,
			AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: secret}},
	}
	for _, m := range mut {
		m(&iss.Spec)
	}
	NewWithT(t).Expect(k8s.Create(context.Background(), iss)).To(Succeed())
}

// waitIssuerChecked waits until the issuer's check answers its current
// generation and Secret version, so that the check's own listing is done
// before a test counts calls or injects faults.
func waitIssuerChecked(t *testing.T, ns, name, secret string) {
	t.Helper()
	NewWithT(t).Eventually(func() string {
		iss := &v1alpha1.ReevitIssuer{}
		s := &corev1.Secret{}
		if k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, iss) != nil ||
			k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secret}, s) != nil {
			return "not found"
		}
		want := fmt.Sprintf("%d/%s", iss.Generation, s.ResourceVersion)
		if iss.Status.CheckedVersion != want {
			return iss.Status.CheckedVersion + " != " + want
		}
		return ""
	}, aktWait, 20*time.Millisecond).Should(BeEmpty(), "issuer %s/%s checked", ns, name)
}

// cleanup leaves nothing running that could call the simulator during a
// later test: no crash hook, no faults, a running manager, and no ApiKey
// left (Retain, so a broken admin key cannot hold the deletion up).
func (e *akt) cleanup() {
	if e.t.Failed() {
		e.dumpLog()
	}
	setCrash(nil)
	reevitSim.Faults().Reset()
	if aktManagerDown {
		aktStartManager(e.t)
	}
	list := &v1alpha1.ApiKeyList{}
	if err := k8s.List(e.ctx, list, client.InNamespace(e.ns)); err != nil {
		e.t.Errorf("cleanup: list apikeys: %v", err)
		return
	}
	for i := range list.Items {
		ak := &list.Items[i]
		patch := client.MergeFrom(ak.DeepCopy())
		ak.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain
		_ = k8s.Patch(e.ctx, ak, patch)
		_ = k8s.Delete(e.ctx, ak)
	}
	g := NewWithT(e.t)
	g.Eventually(func() int {
		l := &v1alpha1.ApiKeyList{}
		_ = k8s.List(e.ctx, l, client.InNamespace(e.ns))
		return len(l.Items)
	}, aktWait).Should(BeZero(), "ApiKeys of %s not gone after the test", e.ns)
}

// dumpLog prints the manager's log lines about this test's namespace.
func (e *akt) dumpLog() {
	list := &v1alpha1.ApiKeyList{}
	if err := k8s.List(e.ctx, list, client.InNamespace(e.ns)); err == nil {
		for _, ak := range list.Items {
			e.t.Logf("ApiKey %s generation %d annotations %v status %+v", ak.Name, ak.Generation, ak.Annotations, ak.Status)
		}
	}
	e.t.Logf("simulator calls: %v; clock %s", reevitSim.Counts().Snapshot(), clk.Now())
	n := 0
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(line, e.ns) && n < 400 {
			e.t.Log(line)
			n++
		}
	}
}

var aktManagerDown bool

// aktStopManager stops the manager as a killed process would stop, then
// waits until the Reevit simulator has finished every request the stopped
// manager sent. A request whose client gave up is still served; served
// after the test moves the fake clock, it would be a request from the past
// arriving in the future, which no real network does.
func aktStopManager() {
	stopManager()
	aktManagerDown = true
	waitReevitQuiet()
}

// waitReevitQuiet returns once the simulator has served no request and has
// none in flight for 200ms (10s at most).
func waitReevitQuiet() {
	total := func() int {
		n := 0
		for _, byStatus := range reevitSim.Counts().Snapshot() {
			for _, c := range byStatus {
				n += c
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	last, quietSince := total(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n := total(); n != last || reevitSim.InFlight() > 0 {
			last, quietSince = n, time.Now()
			continue
		}
		if time.Since(quietSince) >= 200*time.Millisecond {
			return
		}
	}
}

// aktStartManager starts a fresh manager: every in-memory state is gone.
func aktStartManager(t *testing.T) {
	t.Helper()
	if err := startManager(); err != nil {
		t.Fatalf("start manager: %v", err)
	}
	aktManagerDown = false
}

// putAdmin creates or updates the admin-key Secret.
func (e *akt) putAdmin(key string) {
	e.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: aktAdminSecret, Namespace: e.ns}}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := k8s.Get(e.ctx, client.ObjectKeyFromObject(s), s)
		if apierrors.IsNotFound(err) {
			s.Data = map[string][]byte{"apiKey": []byte(key)}
			return k8s.Create(e.ctx, s)
		}
		if err != nil {
			return err
		}
		s.Data = map[string][]byte{"apiKey": []byte(key)}
		return k8s.Update(e.ctx, s)
	})
	e.g.Expect(err).To(Succeed())
	e.seen = append(e.seen, key)
	if !aktManagerDown {
		waitIssuerChecked(e.t, e.ns, aktIssuer, aktAdminSecret)
	}
}

// newAdmin issues a fresh valid admin key at the simulator and puts it in
// the admin Secret.
func (e *akt) newAdmin() {
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "live", "keywarden admin 2", aktAdminScopes)
	e.putAdmin(e.adminKey)
}

// create makes an ApiKey with defaults (live, payments:read, this org).
func (e *akt) create(name string, mut ...func(*v1alpha1.ApiKey)) {
	e.t.Helper()
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:   v1alpha1.ReevitIssuerReference{Name: aktIssuer},
			Scopes:      []v1alpha1.Scope{"payments:read"},
			Environment: "live",
		},
	}
	for _, m := range mut {
		m(ak)
	}
	e.g.Expect(k8s.Create(e.ctx, ak)).To(Succeed())
}

func aktEvery(every, grace time.Duration) func(*v1alpha1.ApiKey) {
	return func(ak *v1alpha1.ApiKey) {
		ak.Spec.Rotation = &v1alpha1.Rotation{Every: &metav1.Duration{Duration: every}}
		if grace > 0 {
			ak.Spec.Rotation.GracePeriod = &metav1.Duration{Duration: grace}
		}
	}
}

func aktGrace(grace time.Duration) func(*v1alpha1.ApiKey) {
	return func(ak *v1alpha1.ApiKey) {
		ak.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: &metav1.Duration{Duration: grace}}
	}
}

// get reads the ApiKey from the API server (not a cache).
func (e *akt) get(name string) *v1alpha1.ApiKey {
	e.t.Helper()
	ak := &v1alpha1.ApiKey{}
	e.g.Expect(k8s.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, ak)).To(Succeed())
	return ak
}

// secret reads a Secret (nil when absent) and remembers its key values.
func (e *akt) secret(name string) *corev1.Secret {
	e.t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		e.t.Fatalf("get secret: %v", err)
	}
	for _, k := range []string{"apiKey", "previousApiKey"} {
		if v := string(s.Data[k]); v != "" && !slices.Contains(e.seen, v) {
			e.seen = append(e.seen, v)
		}
	}
	return s
}

// update changes the ApiKey's spec or metadata, retrying on conflicts.
func (e *akt) update(name string, mut func(*v1alpha1.ApiKey)) {
	e.t.Helper()
	updateRetrying(e.t, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}}, mut)
}

// annotate sets one annotation (a merge patch: no conflict possible).
func (e *akt) annotate(name, key, value string) {
	e.t.Helper()
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value))
	e.g.Expect(k8s.Patch(e.ctx, ak, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
}

// poke changes a harmless annotation so the object is reconciled now.
func (e *akt) poke(name string) {
	e.t.Helper()
	e.pokes++
	e.annotate(name, aktPokeAnno, strconv.Itoa(e.pokes))
}

// stepAndPoke advances the fake clock by d and pokes the object.
func (e *akt) stepAndPoke(name string, d time.Duration) {
	e.t.Helper()
	clk.Step(d)
	e.poke(name)
}

// settled waits until the ApiKey is Ready with an active key, no creation in
// flight, and a status describing the current generation.
func (e *akt) settled(name string) *v1alpha1.ApiKey {
	e.t.Helper()
	var out *v1alpha1.ApiKey
	e.g.Eventually(func(g Gomega) {
		ak := &v1alpha1.ApiKey{}
		g.Expect(k8s.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, ak)).To(Succeed())
		g.Expect(ak.Status.ObservedGeneration).To(Equal(ak.Generation))
		g.Expect(ak.Status.PendingCreate).To(BeNil())
		g.Expect(ak.Status.KeyID).NotTo(BeEmpty())
		c := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", c.Reason, c.Message)
		out = ak
	}).Should(Succeed())
	return out
}

// rotated waits until the active key is no longer from and the ApiKey settled.
func (e *akt) rotated(name, from string) *v1alpha1.ApiKey {
	e.t.Helper()
	e.g.Eventually(func() string { return e.get(name).Status.KeyID }).ShouldNot(Or(Equal(from), BeEmpty()))
	return e.settled(name)
}

// condition waits until condition typ has reason and returns it.
func (e *akt) condition(name, typ, reason string) metav1.Condition {
	e.t.Helper()
	var out metav1.Condition
	e.g.Eventually(func(g Gomega) {
		c := meta.FindStatusCondition(e.get(name).Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason), "%s: %s", typ, c.Message)
		out = *c
	}).Should(Succeed())
	return out
}

// event waits for an event of type and reason about the ApiKey.
func (e *akt) event(name, typ, reason string) eventsv1.Event {
	e.t.Helper()
	var out eventsv1.Event
	e.g.Eventually(func() bool {
		for _, ev := range eventsIn(e.t, e.ns) {
			if ev.Regarding.Name == name && ev.Type == typ && ev.Reason == reason {
				out = ev
				return true
			}
		}
		return false
	}).Should(BeTrue(), "no %s event %s for %s", typ, reason, name)
	return out
}

// keysOf returns every key at the simulator carrying the object's marker.
func (e *akt) keysOf(uid string) []reevittest.KeyInfo {
	var out []reevittest.KeyInfo
	for _, k := range reevitSim.Keys(e.org) {
		if u, _, ok := reevit.ParseMarker(k.Name); ok && u == uid {
			out = append(out, k)
		}
	}
	return out
}

// activeKeysOf returns the object's keys that are not revoked.
func (e *akt) activeKeysOf(uid string) []reevittest.KeyInfo {
	var out []reevittest.KeyInfo
	for _, k := range e.keysOf(uid) {
		if !k.Revoked {
			out = append(out, k)
		}
	}
	return out
}

// isActive reports whether key id of this org is not revoked.
func (e *akt) isActive(id string) bool {
	for _, k := range reevitSim.ActiveKeys(e.org) {
		if k.ID == id {
			return true
		}
	}
	return false
}

// authenticates checks that key is an active key of the org with that id.
func (e *akt) authenticates(key []byte, id string) {
	e.t.Helper()
	got, ok := reevitSim.Authenticate(e.org, string(key))
	e.g.Expect(ok).To(BeTrue(), "key %s does not authenticate", id)
	e.g.Expect(got).To(Equal(id))
}

// calls is the simulator's call count for one endpoint, over all orgs;
// tests run one at a time and clean up, so differences are this test's.
func calls(endpoint string) int { return reevitSim.Counts().Count(endpoint) }

// callsNow snapshots create, list and revoke counts.
func callsNow() [3]int {
	return [3]int{calls(reevittest.EndpointCreate), calls(reevittest.EndpointList), calls(reevittest.EndpointRevoke)}
}

// hygiene checks that no key value seen in this test, nor the admin key,
// appears in logs, events or status.
func (e *akt) hygiene() {
	e.t.Helper()
	assertNoSecretsLeaked(e.t, e.ns, append([]string{e.adminKey}, e.seen...)...)
}

// pending finds a pending revocation by key id.
func pending(ak *v1alpha1.ApiKey, id string) *v1alpha1.PendingRevocation {
	for i := range ak.Status.PendingRevocations {
		if ak.Status.PendingRevocations[i].KeyID == id {
			return &ak.Status.PendingRevocations[i]
		}
	}
	return nil
}

// historyOf finds the history entry of a key.
func historyOf(ak *v1alpha1.ApiKey, id string) *v1alpha1.KeyHistoryEntry {
	for i := range ak.Status.History {
		if ak.Status.History[i].KeyID == id {
			return &ak.Status.History[i]
		}
	}
	return nil
}

// nowSec is the fake now as status stores it.
func nowSec() time.Time { return clk.Now().Truncate(time.Second) }

// --- 1. Create ---------------------------------------------------------------

func TestApiKeyCreate(t *testing.T) {
	e := newAkt(t)
	c0 := callsNow()
	e.create("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.DisplayName = "billing service" })
	ak := e.settled("ak")
	g := e.g

	s := e.secret("ak")
	g.Expect(s).NotTo(BeNil())
	g.Expect(s.Data).To(HaveKey("apiKey"))
	g.Expect(string(s.Data["keyId"])).To(Equal(ak.Status.KeyID))
	g.Expect(string(s.Data["orgId"])).To(Equal(e.org))
	g.Expect(string(s.Data["url"])).To(Equal(reevitSim.URL))
	g.Expect(s.Data).NotTo(HaveKey("previousApiKey"))
	e.authenticates(s.Data["apiKey"], ak.Status.KeyID)
	g.Expect(metav1.IsControlledBy(s, ak)).To(BeTrue())

	g.Expect(ak.Status.KeyPrefix).To(HaveLen(13))
	g.Expect(ak.Status.KeyPrefix).To(Equal(string(s.Data["apiKey"])[:13]))
	g.Expect(ak.Status.KeyPrefix).To(HavePrefix("pfk_live_"))
	g.Expect(ak.Status.ActiveSince).NotTo(BeNil())
	g.Expect(ak.Status.ActiveSince.Time.Equal(nowSec())).To(BeTrue())
	g.Expect(ak.Status.NextRotationTime).To(BeNil(), "no rotation configured")
	g.Expect(ak.Finalizers).To(ContainElement(finalizer))

	keys := e.keysOf(string(ak.UID))
	g.Expect(keys).To(HaveLen(1))
	g.Expect(keys[0].Name).To(Equal(fmt.Sprintf("billing service [kw:%s:1]", ak.UID)))
	g.Expect(keys[0].Scopes).To(ConsistOf("payments:read"))

	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0[0] + 1))
	g.Expect(calls(reevittest.EndpointRevoke)).To(Equal(c0[2]))
	e.hygiene()
}

// --- 2. Scheduled rotation ---------------------------------------------------

func TestApiKeyRotationEvery(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 5*time.Minute))
	ak := e.settled("ak")
	k1 := ak.Status.KeyID
	s1 := e.secret("ak")
	g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally("==", ak.Status.ActiveSince.Add(time.Hour)))

	// Nothing happens before the hour is up.
	c0 := calls(reevittest.EndpointCreate)
	e.stepAndPoke("ak", 59*time.Minute)
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0))

	e.stepAndPoke("ak", time.Minute)
	ak = e.rotated("ak", k1)
	k2 := ak.Status.KeyID
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))
	p := pending(ak, k1)
	g.Expect(p).NotTo(BeNil())
	g.Expect(p.RevokeAfter.Time).To(BeTemporally("==", nowSec().Add(5*time.Minute)))
	g.Expect(p.Reason).To(Equal(createRotation))
	g.Expect(ak.Status.Rotations).To(BeEquivalentTo(1))
	g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally("==", nowSec().Add(time.Hour)))

	s2 := e.secret("ak")
	e.authenticates(s2.Data["apiKey"], k2)
	g.Expect(string(s2.Data["keyId"])).To(Equal(k2))
	g.Expect(s2.Data["previousApiKey"]).To(Equal(s1.Data["apiKey"]))
	g.Expect(string(s2.Data["previousKeyId"])).To(Equal(k1))
	e.authenticates(s1.Data["apiKey"], k1) // still valid during the grace period

	// The grace period ends: the previous key is revoked and leaves the Secret.
	e.stepAndPoke("ak", 5*time.Minute)
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	g.Expect(e.isActive(k1)).To(BeFalse())
	_, ok := reevitSim.Authenticate(e.org, string(s1.Data["apiKey"]))
	g.Expect(ok).To(BeFalse())
	g.Eventually(func() map[string][]byte { return e.secret("ak").Data }).ShouldNot(HaveKey("previousApiKey"))
	s3 := e.secret("ak")
	g.Expect(s3.Data).NotTo(HaveKey("previousKeyId"))
	g.Expect(s3.Data["apiKey"]).To(Equal(s2.Data["apiKey"]))
	ak = e.settled("ak")
	h := historyOf(ak, k1)
	g.Expect(h).NotTo(BeNil())
	g.Expect(h.RevokedAt).NotTo(BeNil())
	g.Expect(h.Reason).To(Equal(createRotation))
	g.Expect(historyOf(ak, k2).RevokedAt).To(BeNil())
	e.event("ak", corev1.EventTypeNormal, v1alpha1.ReasonRevoked)
	e.assertOneLiveKey("ak")
	e.hygiene()
}

func TestApiKeyRotationCronTimeZone(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", func(ak *v1alpha1.ApiKey) {
		ak.Spec.Rotation = &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Asia/Tokyo"}
	})
	ak := e.settled("ak")
	k1 := ak.Status.KeyID

	tokyo, err := time.LoadLocation("Asia/Tokyo")
	g.Expect(err).NotTo(HaveOccurred())
	since := ak.Status.ActiveSince.In(tokyo)
	want := time.Date(since.Year(), since.Month(), since.Day(), 3, 0, 0, 0, tokyo)
	if !want.After(since) {
		want = want.AddDate(0, 0, 1)
	}
	g.Expect(ak.Status.NextRotationTime.Time.Equal(want)).To(BeTrue(), "next rotation %s, want %s", ak.Status.NextRotationTime.UTC(), want.UTC())
	g.Expect(ak.Status.NextRotationTime.UTC().Hour()).To(Equal(18), "03:00 in Tokyo is 18:00 UTC")

	// One second before: no rotation.
	c0 := calls(reevittest.EndpointCreate)
	e.stepAndPoke("ak", want.Sub(clk.Now())-time.Second)
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0))

	e.stepAndPoke("ak", 2*time.Second)
	ak = e.rotated("ak", k1)
	// One new key. (The reconcile requeued for the boundary, a second away
	// in real time too, may race the poke: the poke's write then refuses
	// its status patch and the next pass replays the recorded creation
	// under the same Idempotency-Key, which Reevit answers with the same key.)
	g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(2))
	g.Expect(ak.Status.NextRotationTime.Time.Equal(want.AddDate(0, 0, 1))).To(BeTrue(), "next rotation %s", ak.Status.NextRotationTime.UTC())
	g.Expect(pending(ak, k1)).NotTo(BeNil())
	g.Expect(pending(ak, k1).RevokeAfter.Time).To(BeTemporally("==", nowSec().Add(defaultGracePeriod)))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 3. Missed rotations -----------------------------------------------------

func TestApiKeyMissedRotationsHappenOnce(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 5*time.Minute))
	k1 := e.settled("ak").Status.KeyID

	c0 := calls(reevittest.EndpointCreate)
	aktStopManager()
	clk.Step(5*time.Hour + 10*time.Minute)
	aktStartManager(t)

	e.rotated("ak", k1)
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0 + 1))
	ak := e.settled("ak")
	g.Expect(ak.Status.Rotations).To(BeEquivalentTo(1))
	g.Expect(ak.Status.PendingRevocations).To(HaveLen(1))
	g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally("==", nowSec().Add(time.Hour)))
	g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(2))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 4. Manual rotation ------------------------------------------------------

func TestApiKeyManualRotationOncePerValue(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Minute))
	k1 := e.settled("ak").Status.KeyID
	c0 := calls(reevittest.EndpointCreate)

	e.annotate("ak", v1alpha1.AnnotationRotate, "one")
	ak := e.rotated("ak", k1)
	k2 := ak.Status.KeyID
	g.Expect(ak.Status.LastRotateRequest).To(Equal("one"))
	g.Expect(pending(ak, k1).Reason).To(Equal(createManual))
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))

	// The same value again, and unrelated changes: no new key.
	e.annotate("ak", v1alpha1.AnnotationRotate, "one")
	e.poke("ak")
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0 + 1))
	g.Expect(e.get("ak").Status.KeyID).To(Equal(k2))

	e.annotate("ak", v1alpha1.AnnotationRotate, "two")
	ak = e.rotated("ak", k2)
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0 + 2))
	g.Expect(ak.Status.Rotations).To(BeEquivalentTo(2))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 5. Compromised ----------------------------------------------------------

func TestApiKeyCompromised(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 30*time.Minute))
	k1 := e.settled("ak").Status.KeyID
	s1 := e.secret("ak")

	e.annotate("ak", v1alpha1.AnnotationCompromised, "incident-42")
	e.rotated("ak", k1)
	// Revoked at once, with no grace period and no clock step.
	g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
	_, ok := reevitSim.Authenticate(e.org, string(s1.Data["apiKey"]))
	g.Expect(ok).To(BeFalse())
	ak := e.settled("ak")
	g.Expect(ak.Status.PendingRevocations).To(BeEmpty())
	g.Expect(ak.Status.LastCompromisedRequest).To(Equal("incident-42"))
	s2 := e.secret("ak")
	g.Expect(s2.Data).NotTo(HaveKey("previousApiKey"))
	g.Expect(s2.Data).NotTo(HaveKey("previousKeyId"))
	e.authenticates(s2.Data["apiKey"], ak.Status.KeyID)
	h := historyOf(ak, k1)
	g.Expect(h).NotTo(BeNil())
	g.Expect(h.Reason).To(Equal(createCompromised))
	g.Expect(h.RevokedAt).NotTo(BeNil())
	ev := e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonCompromised)
	g.Expect(ev.Note).To(ContainSubstring(ak.Status.KeyID))
	g.Expect(ev.Note).To(ContainSubstring("key "+k1+" marked compromised"), "the event names the compromised key")
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 6. Spec changes ---------------------------------------------------------

func TestApiKeySpecChange(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(2*time.Hour, 5*time.Minute))
	ak := e.settled("ak")
	k1 := ak.Status.KeyID
	since := ak.Status.ActiveSince.Time
	c0 := calls(reevittest.EndpointCreate)

	// Changes that need no new key.
	e.update("ak", func(ak *v1alpha1.ApiKey) {
		ak.Labels = map[string]string{"team": "billing"}
		ak.Spec.Secret.Labels = map[string]string{"app": "billing"}
		ak.Spec.Rotation.GracePeriod = &metav1.Duration{Duration: 7 * time.Minute}
	})
	e.update("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.Rotation.Every = &metav1.Duration{Duration: 3 * time.Hour} })
	e.annotate("ak", "example.com/owner", "team-billing")
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0))
	ak = e.settled("ak")
	g.Expect(ak.Status.KeyID).To(Equal(k1))
	// The new schedule applies to the current key.
	g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally("==", since.Add(3*time.Hour)))

	// Scopes need a new key.
	e.update("ak", func(ak *v1alpha1.ApiKey) {
		ak.Spec.Scopes = []v1alpha1.Scope{"payments:read", "payments:write"}
	})
	ak = e.rotated("ak", k1)
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0 + 1))
	p := pending(ak, k1)
	g.Expect(p).NotTo(BeNil())
	g.Expect(p.Reason).To(Equal(createSpecChange))
	g.Expect(p.RevokeAfter.Time).To(BeTemporally("==", nowSec().Add(7*time.Minute)))
	active := e.activeKeysOf(string(ak.UID))
	g.Expect(active).To(HaveLen(2))
	for _, k := range active {
		if k.ID == ak.Status.KeyID {
			g.Expect(k.Scopes).To(ConsistOf("payments:read", "payments:write"))
		}
	}
	e.stepAndPoke("ak", 7*time.Minute)
	g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	ak = e.settled("ak")
	g.Expect(historyOf(ak, k1).Reason).To(Equal(createSpecChange))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 7. Deletion -------------------------------------------------------------

// rotateOnce rotates by annotation and returns the new status.
func (e *akt) rotateOnce(name, value string) *v1alpha1.ApiKey {
	from := e.get(name).Status.KeyID
	e.annotate(name, v1alpha1.AnnotationRotate, value)
	return e.rotated(name, from)
}

func (e *akt) gone(name string) {
	e.t.Helper()
	e.g.Eventually(func() bool {
		err := k8s.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &v1alpha1.ApiKey{})
		return apierrors.IsNotFound(err)
	}).Should(BeTrue(), "ApiKey %s was not deleted", name)
}

func TestApiKeyDeletionRevoke(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Hour))
	e.settled("ak")
	ak := e.rotateOnce("ak", "r1")
	g.Expect(ak.Status.PendingRevocations).To(HaveLen(1))
	uid := string(ak.UID)
	g.Expect(e.activeKeysOf(uid)).To(HaveLen(2))

	g.Expect(k8s.Delete(e.ctx, ak)).To(Succeed())
	e.gone("ak")
	g.Expect(e.activeKeysOf(uid)).To(BeEmpty())
	g.Expect(e.keysOf(uid)).To(HaveLen(2))
	g.Expect(e.isActive(e.adminID)).To(BeTrue())
	e.hygiene()
}

func TestApiKeyDeletionRetain(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Hour), func(ak *v1alpha1.ApiKey) { ak.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain })
	e.settled("ak")
	ak := e.rotateOnce("ak", "r1")
	uid := string(ak.UID)
	r0 := calls(reevittest.EndpointRevoke)

	g.Expect(k8s.Delete(e.ctx, ak)).To(Succeed())
	e.gone("ak")
	g.Expect(e.activeKeysOf(uid)).To(HaveLen(2))
	g.Expect(calls(reevittest.EndpointRevoke)).To(Equal(r0))
	e.hygiene()
}

func TestApiKeyDeletionBlockedByInvalidAdminKey(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Hour))
	e.settled("ak")
	ak := e.rotateOnce("ak", "r1")
	uid := string(ak.UID)

	g.Expect(reevitSim.Revoke(e.org, e.adminID)).To(BeTrue())
	r0 := calls(reevittest.EndpointRevoke)
	g.Expect(k8s.Delete(e.ctx, ak)).To(Succeed())
	c := e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonDeletionBlocked)
	g.Expect(c.Message).To(ContainSubstring("401"))
	e.condition("ak", v1alpha1.ConditionRevoked, v1alpha1.ReasonDeletionBlocked)
	e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonDeletionBlocked)

	// No spin: a few attempts at most, even with the object being touched.
	e.poke("ak")
	g.Consistently(func() int { return calls(reevittest.EndpointRevoke) }).Should(BeNumerically("<=", r0+3))
	settledCalls := calls(reevittest.EndpointRevoke)
	g.Consistently(func() int { return calls(reevittest.EndpointRevoke) }, 2*time.Second).Should(Equal(settledCalls))
	g.Expect(e.activeKeysOf(uid)).To(HaveLen(2))

	// A valid admin key lets the deletion finish.
	e.newAdmin()
	e.gone("ak")
	g.Expect(e.activeKeysOf(uid)).To(BeEmpty())
	e.hygiene()
}

// --- 8. Failures -------------------------------------------------------------

// failing asserts the Ready reason, a Warning event with that reason, that
// the simulator sees no more than maxCalls further calls to endpoint while
// the object is poked, and that the Secret still holds the last good key.
func (e *akt) failing(name, reason, endpoint string, maxCalls int, goodKey []byte, goodID string) metav1.Condition {
	e.t.Helper()
	c := e.condition(name, v1alpha1.ConditionReady, reason)
	e.g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	e.event(name, corev1.EventTypeWarning, reason)
	// A failure no retry fixes says so in status; a transient one does not.
	e.g.Expect(e.get(name).Status.NeedsAttention).To(Equal(reason != v1alpha1.ReasonAPIUnavailable && reason != v1alpha1.ReasonRateLimited), "status.needsAttention")
	n0 := calls(endpoint)
	e.poke(name)
	e.g.Consistently(func() int { return calls(endpoint) }).Should(BeNumerically("<=", n0+maxCalls))
	if goodKey != nil {
		s := e.secret(name)
		e.g.Expect(s.Data["apiKey"]).To(Equal(goodKey))
		e.g.Expect(string(s.Data["keyId"])).To(Equal(goodID))
		e.authenticates(goodKey, goodID)
	}
	return c
}

func TestApiKeyFailureMissingAdminSecret(t *testing.T) {
	e := newAktBare(t)
	g := e.g
	c0 := callsNow()
	e.create("ak")
	c := e.failing("ak", v1alpha1.ReasonSecretNotFound, reevittest.EndpointCreate, 0, nil, "")
	g.Expect(c.Message).To(ContainSubstring(aktAdminSecret))
	g.Expect(callsNow()).To(Equal(c0), "no call without an admin key")
	g.Expect(e.secret("ak")).To(BeNil())

	// Creating the Secret is noticed through the watch: no poke.
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "live", "keywarden admin", aktAdminScopes)
	e.putAdmin(e.adminKey)
	ak := e.settled("ak")
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0[0] + 1))
	e.hygiene()
}

func TestApiKeyFailureUnauthorized(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 5*time.Minute))
	ak := e.settled("ak")
	k1, s1 := ak.Status.KeyID, e.secret("ak")

	g.Expect(reevitSim.Revoke(e.org, e.adminID)).To(BeTrue())
	c0 := calls(reevittest.EndpointCreate)
	e.stepAndPoke("ak", time.Hour)
	c := e.failing("ak", v1alpha1.ReasonUnauthorized, reevittest.EndpointCreate, 0, s1.Data["apiKey"], k1)
	g.Expect(c.Message).To(ContainSubstring("401"))
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))
	g.Expect(meta.FindStatusCondition(e.get("ak").Status.Conditions, v1alpha1.ConditionIssued).Reason).To(Equal(v1alpha1.ReasonUnauthorized))

	e.newAdmin()
	ak = e.rotated("ak", k1)
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	e.assertOneLiveKey("ak")
	e.hygiene()
}

func TestApiKeyFailureMissingScopeAdminCannotWrite(t *testing.T) {
	e := newAktBare(t)
	g := e.g
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "live", "read-only admin", []string{"api_keys:read", "payments:read"})
	e.putAdmin(e.adminKey)
	c0 := calls(reevittest.EndpointCreate)
	e.create("ak")
	c := e.failing("ak", v1alpha1.ReasonMissingScope, reevittest.EndpointCreate, 0, nil, "")
	g.Expect(c.Message).To(ContainSubstring("api_keys:write"))
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))
	g.Expect(e.secret("ak")).To(BeNil())
	g.Expect(e.keysOf(string(e.get("ak").UID))).To(BeEmpty())
	e.hygiene()
}

func TestApiKeyFailureMissingScopeForCreatedKey(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak")
	ak := e.settled("ak")
	k1, s1 := ak.Status.KeyID, e.secret("ak")
	c0 := calls(reevittest.EndpointCreate)

	// The admin key does not hold fraud:write, so it cannot grant it.
	e.update("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []v1alpha1.Scope{"payments:read", "fraud:write"} })
	c := e.failing("ak", v1alpha1.ReasonMissingScope, reevittest.EndpointCreate, 0, s1.Data["apiKey"], k1)
	g.Expect(c.Message).To(ContainSubstring("fraud:write"))
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0 + 1))
	g.Expect(e.activeKeysOf(string(ak.UID))).To(HaveLen(1))
	e.hygiene()
}

func TestApiKeyFailureRateLimited(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 5*time.Minute))
	ak := e.settled("ak")
	k1, s1 := ak.Status.KeyID, e.secret("ak")

	// One request per 3 s of simulator time; a first request uses it up.
	clk.Step(time.Hour)
	reevitSim.Faults().SetRateLimit(1, 3*time.Second)
	resp, err := http.Get(reevitSim.URL + "/burn")
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	c0 := calls(reevittest.EndpointCreate)
	e.poke("ak")
	c := e.failing("ak", v1alpha1.ReasonRateLimited, reevittest.EndpointCreate, 1, s1.Data["apiKey"], k1)
	g.Expect(c.Message).To(ContainSubstring("retrying after 3s"))
	g.Expect(calls(reevittest.EndpointCreate)).To(BeNumerically("<=", c0+2))
	g.Expect(reevitSim.Counts().CountStatus(reevittest.EndpointCreate, http.StatusTooManyRequests)).To(BeNumerically(">=", 1))

	// Once retry_after (and the first backoff) has passed the controller
	// retries by itself, with no poke. (The drift listing that follows in
	// the same pass may be limited in turn, so Ready is checked after the
	// limit is lifted.)
	clk.Step(6 * time.Second)
	g.Eventually(func() string { return e.get("ak").Status.KeyID }, aktWait).ShouldNot(Equal(k1))
	reevitSim.Faults().Reset()
	e.stepAndPoke("ak", time.Minute)
	ak = e.settled("ak")
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	g.Expect(ak.Status.FailedAttempts).To(BeZero())
	e.assertOneLiveKey("ak")
	e.hygiene()
}

func TestApiKeyFailureServerError(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 5*time.Minute))
	ak := e.settled("ak")
	k1, s1 := ak.Status.KeyID, e.secret("ak")

	reevitSim.Faults().SetOutage(true)
	e.stepAndPoke("ak", time.Hour)
	e.failing("ak", v1alpha1.ReasonAPIUnavailable, reevittest.EndpointCreate, 0, s1.Data["apiKey"], k1)
	g.Expect(e.get("ak").Status.FailedAttempts).To(BeEquivalentTo(1))

	// Exponential backoff in (fake) time: a poke before it ends sends
	// nothing, a poke after it sends exactly one request.
	for attempt := int32(1); attempt <= 3; attempt++ {
		n := calls(reevittest.EndpointCreate)
		e.stepAndPoke("ak", backoff(attempt)-time.Second)
		g.Consistently(func() int { return calls(reevittest.EndpointCreate) }, time.Second).Should(Equal(n))
		e.stepAndPoke("ak", time.Second)
		g.Eventually(func() int32 { return e.get("ak").Status.FailedAttempts }).Should(Equal(attempt + 1))
		// One retry; a second only when the timer and the poke race and the
		// loser's status write conflicts.
		g.Expect(calls(reevittest.EndpointCreate)).To(BeNumerically("~", n+1, 1))
	}
	g.Expect(e.secret("ak").Data["apiKey"]).To(Equal(s1.Data["apiKey"]))

	reevitSim.Faults().SetOutage(false)
	e.stepAndPoke("ak", backoff(4))
	ak = e.rotated("ak", k1)
	g.Expect(ak.Status.FailedAttempts).To(BeZero())
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// TestApiKeyFailureServerErrorManualRotation: a rotate annotation not acted
// on yet must not lift the backoff of its own failed attempt, or every event
// (a poke here) would send another request.
func TestApiKeyFailureServerErrorManualRotation(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(5*time.Minute))
	k1 := e.settled("ak").Status.KeyID
	s1 := e.secret("ak")

	reevitSim.Faults().SetOutage(true)
	e.annotate("ak", v1alpha1.AnnotationRotate, "m1")
	e.failing("ak", v1alpha1.ReasonAPIUnavailable, reevittest.EndpointCreate, 0, s1.Data["apiKey"], k1)
	n := calls(reevittest.EndpointCreate)
	for range 3 {
		e.poke("ak")
	}
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(n))

	reevitSim.Faults().SetOutage(false)
	e.stepAndPoke("ak", backoff(1))
	ak := e.rotated("ak", k1)
	g.Expect(ak.Status.LastRotateRequest).To(Equal("m1"))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// TestApiKeyCompromisedWhileRotationInFlight: a key reported compromised
// while a scheduled rotation waits for Reevit is revoked as soon as the
// replacement exists, not after the grace period.
func TestApiKeyCompromisedWhileRotationInFlight(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktEvery(time.Hour, 30*time.Minute))
	k1 := e.settled("ak").Status.KeyID

	reevitSim.Faults().SetOutage(true)
	e.stepAndPoke("ak", time.Hour)
	e.condition("ak", v1alpha1.ConditionReady, v1alpha1.ReasonAPIUnavailable)
	g.Expect(e.get("ak").Status.PendingCreate).NotTo(BeNil())
	g.Expect(e.get("ak").Status.PendingCreate.Reason).To(Equal(createRotation))

	e.annotate("ak", v1alpha1.AnnotationCompromised, "leak-1")
	reevitSim.Faults().SetOutage(false)
	e.stepAndPoke("ak", time.Minute)
	e.rotated("ak", k1)
	g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse(), "the compromised key must not wait for the grace period")
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	ak := e.settled("ak")
	g.Expect(ak.Status.LastCompromisedRequest).To(Equal("leak-1"))
	g.Expect(historyOf(ak, k1).Reason).To(Equal(createCompromised))
	g.Expect(e.secret("ak").Data).NotTo(HaveKey("previousApiKey"))
	e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonCompromised)
	// One replacement only.
	g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(2))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

func TestApiKeyFailureEnvironmentMismatch(t *testing.T) {
	e := newAktBare(t)
	g := e.g
	e.adminID, e.adminKey = reevitSim.SeedKey(e.org, "test", "test admin", aktAdminScopes)
	e.putAdmin(e.adminKey)
	c0 := callsNow()
	e.create("ak") // spec.environment: live
	c := e.failing("ak", v1alpha1.ReasonEnvironmentMismatch, reevittest.EndpointCreate, 0, nil, "")
	g.Expect(c.Message).To(ContainSubstring("pfk_test_"))
	ak := e.get("ak")
	keys := e.keysOf(string(ak.UID))
	g.Expect(keys).To(HaveLen(1))
	g.Expect(keys[0].Env).To(Equal("test"))
	g.Expect(keys[0].Revoked).To(BeTrue(), "the mismatched key must be revoked")
	g.Expect(calls(reevittest.EndpointCreate)).To(Equal(c0[0] + 1))
	g.Expect(calls(reevittest.EndpointRevoke)).To(Equal(c0[2] + 1))
	g.Expect(e.secret("ak")).To(BeNil())
	g.Expect(ak.Status.KeyID).To(BeEmpty())
	g.Expect(historyOf(ak, keys[0].ID).Reason).To(Equal(v1alpha1.ReasonEnvironmentMismatch))
	e.hygiene()
}

// --- 9. Foreign Secret -------------------------------------------------------

func TestApiKeySecretConflict(t *testing.T) {
	e := newAkt(t)
	g := e.g
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ak", Namespace: e.ns, Labels: map[string]string{"owner": "someone"}},
		Data:       map[string][]byte{"apiKey": []byte("not-ours"), "other": []byte("x")},
	}
	g.Expect(k8s.Create(e.ctx, foreign)).To(Succeed())
	before := e.secret("ak")
	c0 := callsNow()

	e.create("ak")
	c := e.failing("ak", v1alpha1.ReasonSecretConflict, reevittest.EndpointCreate, 0, nil, "")
	g.Expect(c.Message).To(ContainSubstring("not managed by this resource"))
	g.Expect(callsNow()).To(Equal(c0))
	after := e.secret("ak")
	g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
	g.Expect(after.Data).To(Equal(before.Data))
	g.Expect(after.Labels).To(Equal(before.Labels))
	g.Expect(after.Annotations).To(Equal(before.Annotations))
	g.Expect(after.OwnerReferences).To(BeEmpty())
	g.Expect(e.keysOf(string(e.get("ak").UID))).To(BeEmpty())
	e.hygiene()
}

// --- 10. Drift and leak sweeper ----------------------------------------------

func TestApiKeyDriftReplacesRevokedKey(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak")
	ak := e.settled("ak")
	k1 := ak.Status.KeyID

	g.Expect(reevitSim.Revoke(e.org, k1)).To(BeTrue())
	// Before the drift interval: nothing is listed.
	l0 := calls(reevittest.EndpointList)
	e.stepAndPoke("ak", 5*time.Minute)
	g.Consistently(func() int { return calls(reevittest.EndpointList) }).Should(Equal(l0))

	e.stepAndPoke("ak", 6*time.Minute)
	ak = e.rotated("ak", k1)
	ev := e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonDrift)
	g.Expect(ev.Note).To(ContainSubstring(k1))
	e.authenticates(e.secret("ak").Data["apiKey"], ak.Status.KeyID)
	g.Expect(historyOf(ak, k1).Reason).To(Equal(createDrift))
	g.Expect(calls(reevittest.EndpointList)).To(BeNumerically("<=", l0+2))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

func TestApiKeyLeakSweeper(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak")
	ak := e.settled("ak")
	uid := string(ak.UID)

	leakedID, leaked := reevitSim.SeedKey(e.org, "live", fmt.Sprintf("x [kw:%s:99]", uid), []string{"payments:read"})
	opsID, ops := reevitSim.SeedKey(e.org, "live", "ops team admin", aktAdminScopes)
	e.seen = append(e.seen, leaked, ops)

	e.stepAndPoke("ak", 11*time.Minute)
	g.Eventually(func() bool { return e.isActive(leakedID) }).Should(BeFalse())
	ev := e.event("ak", corev1.EventTypeWarning, v1alpha1.ReasonLeakedKeyRevoked)
	g.Expect(ev.Note).To(ContainSubstring(leakedID))
	g.Consistently(func() bool { return e.isActive(opsID) && e.isActive(e.adminID) && e.isActive(ak.Status.KeyID) }).Should(BeTrue())
	g.Expect(e.get("ak").Status.KeyID).To(Equal(ak.Status.KeyID))
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- 11. History -------------------------------------------------------------

func TestApiKeyHistoryBounded(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Minute), func(ak *v1alpha1.ApiKey) { ak.Spec.HistoryLimit = ptr.To[int32](2) })
	e.settled("ak")
	var ids []string
	for i := range 4 {
		ids = append(ids, e.rotateOnce("ak", strconv.Itoa(i)).Status.KeyID)
	}
	e.stepAndPoke("ak", 2*time.Minute)
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	ak := e.settled("ak")
	g.Expect(ak.Status.History).To(HaveLen(2))
	g.Expect(ak.Status.History[1].KeyID).To(Equal(ids[3]))
	g.Expect(ak.Status.History[0].KeyID).To(Equal(ids[2]))
	g.Expect(ak.Status.History[0].RevokedAt).NotTo(BeNil())
	g.Expect(ak.Status.History[0].Reason).To(Equal(createManual))
	for _, h := range ak.Status.History {
		g.Expect(h.KeyPrefix).To(HaveLen(13))
	}
	g.Expect(ak.Status.Rotations).To(BeEquivalentTo(4))
	e.assertOneLiveKey("ak")
	e.hygiene()
}
