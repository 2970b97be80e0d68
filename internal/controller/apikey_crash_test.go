package controller

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit/reevittest"
)

// The crash tests stop an ApiKey reconcile at each step boundary of a key
// creation and of a rotation, as if the process died there, then let it go
// on (a retry in the same process, or a fresh manager) and check that no key
// was lost and none leaked.

// assertOneLiveKey is the invariant every crash test ends with, and that
// must hold whenever no creation is in flight: the simulator holds exactly
// one active key of the object that is not waiting in pendingRevocations,
// that key is status.keyId and the one in the Secret (and it authenticates);
// every other key carrying the object's marker is revoked or pending with a
// revokeAfter; the Secret's previous key, if any, is a pending one.
func (e *akt) assertOneLiveKey(name string) *v1alpha1.ApiKey {
	e.t.Helper()
	var out *v1alpha1.ApiKey
	e.g.Eventually(func(g Gomega) {
		ak := e.get(name)
		st := ak.Status
		g.Expect(st.PendingCreate).To(BeNil(), "a creation is still in flight")
		g.Expect(st.KeyID).NotTo(BeEmpty())
		pend := map[string]bool{}
		for _, p := range st.PendingRevocations {
			g.Expect(p.RevokeAfter.IsZero()).To(BeFalse(), "pending %s without revokeAfter", p.KeyID)
			pend[p.KeyID] = true
		}
		var live []reevittest.KeyInfo
		mine := map[string]bool{}
		for _, k := range e.keysOf(string(ak.UID)) {
			mine[k.ID] = true
			if !k.Revoked && !pend[k.ID] {
				live = append(live, k)
			}
		}
		g.Expect(live).To(HaveLen(1), "active keys of the object outside pendingRevocations")
		g.Expect(live[0].ID).To(Equal(st.KeyID))
		for id := range pend {
			g.Expect(mine).To(HaveKey(id), "pending key %s is not one of the object's keys", id)
			g.Expect(id).NotTo(Equal(st.KeyID))
		}

		s := e.secret(st.SecretName)
		g.Expect(s).NotTo(BeNil(), "output Secret missing")
		g.Expect(string(s.Data["keyId"])).To(Equal(st.KeyID))
		id, ok := reevitSim.Authenticate(e.org, string(s.Data["apiKey"]))
		g.Expect(ok).To(BeTrue(), "the key in the Secret does not authenticate: lost")
		g.Expect(id).To(Equal(st.KeyID))
		if prev := string(s.Data["previousKeyId"]); prev != "" {
			g.Expect(pend).To(HaveKey(prev), "the Secret's previous key is not pending")
			pid, ok := reevitSim.Authenticate(e.org, string(s.Data["previousApiKey"]))
			g.Expect(ok).To(BeTrue(), "the Secret's previous key does not authenticate")
			g.Expect(pid).To(Equal(prev))
		}
		// While a previous key of a graceful rotation waits, the Secret
		// carries it beside the current one.
		for _, p := range st.PendingRevocations {
			if p.Reason != createCompromised && p.Reason != createDrift && p.RevokeAfter.After(clk.Now()) {
				g.Expect(string(s.Data["previousKeyId"])).NotTo(BeEmpty(), "previous key %s pending but not in the Secret", p.KeyID)
			}
		}
		out = ak
	}).Should(Succeed())
	return out
}

// crashAt makes the reconcile die at step: the first times passes there, or
// every pass when times < 0. It returns the number of passes.
func crashAt(step string, times int32) *atomic.Int32 {
	hits := &atomic.Int32{}
	setCrash(func(s string) bool {
		if s != step {
			return false
		}
		n := hits.Add(1)
		return times < 0 || n <= times
	})
	return hits
}

// aktCrashModes: "once" dies one time and the same process retries; "restart"
// dies at every pass until the process is replaced by a fresh manager.
var aktCrashModes = []string{"once", "restart"}

// crashAndRecover arms the crash, runs trigger, waits for the crash, then
// recovers as mode says and pokes the object.
func (e *akt) crashAndRecover(name, step, mode string, trigger func()) {
	e.t.Helper()
	times := int32(1)
	if mode == "restart" {
		times = -1
	}
	hits := crashAt(step, times)
	trigger()
	e.g.Eventually(hits.Load).Should(BeNumerically(">=", 1), "the reconcile never reached %s", step)
	if mode == "restart" {
		aktStopManager()
		setCrash(nil)
		aktStartManager(e.t)
	}
	setCrash(nil)
	e.poke(name)
}

func TestApiKeyCrashCreate(t *testing.T) {
	for _, step := range []string{"intent-recorded", "after-post", "after-secret", "after-switch"} {
		for _, mode := range aktCrashModes {
			t.Run(step+"/"+mode, func(t *testing.T) {
				e := newAkt(t)
				e.crashAndRecover("ak", step, mode, func() { e.create("ak") })
				ak := e.assertOneLiveKey("ak")
				e.settled("ak")
				// Retries replayed the recorded request: exactly one key was
				// ever made, under the first Idempotency-Key.
				e.g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(1))
				e.g.Expect(ak.Status.KeyGeneration).To(BeEquivalentTo(1))
				e.hygiene()
			})
		}
	}
}

func TestApiKeyCrashCreateResponseDropped(t *testing.T) {
	e := newAkt(t)
	reevitSim.Faults().DropAfterCommit(1)
	e.create("ak")
	// The POST committed and its answer was lost (the transport may have
	// resent it on its own, which Reevit answers with a replay).
	e.g.Eventually(func() int { return reevitSim.Counts().CountStatus(reevittest.EndpointCreate, 0) }).Should(BeNumerically(">=", 1))
	e.stepAndPoke("ak", time.Minute) // past any backoff
	ak := e.assertOneLiveKey("ak")
	e.settled("ak")
	e.g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(1))
	e.hygiene()
}

// rotationFixture creates an ApiKey with a 5m grace period and returns its
// first key id.
func (e *akt) rotationFixture() string {
	e.create("ak", aktGrace(5*time.Minute))
	return e.settled("ak").Status.KeyID
}

// afterRotation checks the end state of one rotation from k1 and then lets
// the grace period end.
func (e *akt) afterRotation(k1 string) {
	e.t.Helper()
	ak := e.assertOneLiveKey("ak")
	e.settled("ak")
	e.g.Expect(ak.Status.KeyID).NotTo(Equal(k1))
	e.g.Expect(pending(ak, k1)).NotTo(BeNil(), "the previous key must wait for its grace period")
	e.g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(2), "exactly one key created by the rotation")
	e.g.Expect(ak.Status.Rotations).To(BeEquivalentTo(1))

	e.stepAndPoke("ak", 5*time.Minute)
	e.g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
	e.g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
	ak = e.assertOneLiveKey("ak")
	e.g.Expect(e.activeKeysOf(string(ak.UID))).To(HaveLen(1))
}

func TestApiKeyCrashRotation(t *testing.T) {
	for _, step := range []string{"intent-recorded", "after-post", "after-secret", "after-switch"} {
		for _, mode := range aktCrashModes {
			t.Run(step+"/"+mode, func(t *testing.T) {
				e := newAkt(t)
				k1 := e.rotationFixture()
				e.crashAndRecover("ak", step, mode, func() { e.annotate("ak", v1alpha1.AnnotationRotate, "r1") })
				e.afterRotation(k1)
				e.hygiene()
			})
		}
	}
}

func TestApiKeyCrashRotationResponseDropped(t *testing.T) {
	e := newAkt(t)
	k1 := e.rotationFixture()
	dropped := reevitSim.Counts().CountStatus(reevittest.EndpointCreate, 0)
	reevitSim.Faults().DropAfterCommit(1)
	e.annotate("ak", v1alpha1.AnnotationRotate, "r1")
	e.g.Eventually(func() int { return reevitSim.Counts().CountStatus(reevittest.EndpointCreate, 0) }).Should(BeNumerically(">", dropped))
	e.stepAndPoke("ak", 30*time.Second) // past any backoff, within the grace period
	e.afterRotation(k1)
	e.hygiene()
}

func TestApiKeyCrashDuringRevoke(t *testing.T) {
	for _, mode := range aktCrashModes {
		t.Run("grace/"+mode, func(t *testing.T) {
			e := newAkt(t)
			k1 := e.rotationFixture()
			e.annotate("ak", v1alpha1.AnnotationRotate, "r1")
			e.rotated("ak", k1)
			e.crashAndRecover("ak", "during-revoke", mode, func() { e.stepAndPoke("ak", 5*time.Minute) })
			e.g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
			e.g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
			ak := e.assertOneLiveKey("ak")
			e.g.Expect(e.activeKeysOf(string(ak.UID))).To(HaveLen(1))
			e.g.Expect(historyOf(ak, k1).Reason).To(Equal(createManual))
			e.hygiene()
		})
		t.Run("compromised/"+mode, func(t *testing.T) {
			e := newAkt(t)
			k1 := e.rotationFixture()
			e.crashAndRecover("ak", "during-revoke", mode, func() { e.annotate("ak", v1alpha1.AnnotationCompromised, "c1") })
			e.g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
			e.g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())
			ak := e.assertOneLiveKey("ak")
			e.g.Expect(ak.Status.KeyID).NotTo(Equal(k1))
			e.g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(2))
			e.g.Expect(e.activeKeysOf(string(ak.UID))).To(HaveLen(1))
			e.hygiene()
		})
	}
}

// TestApiKeyCrashDuringRevokeInvariantHolds checks the invariant at the
// instant of the crash, before any recovery: the previous key is still
// active but listed in pendingRevocations.
func TestApiKeyCrashDuringRevokeInvariantHolds(t *testing.T) {
	e := newAkt(t)
	k1 := e.rotationFixture()
	e.annotate("ak", v1alpha1.AnnotationRotate, "r1")
	e.rotated("ak", k1)
	hits := crashAt("during-revoke", -1)
	e.stepAndPoke("ak", 5*time.Minute)
	e.g.Eventually(hits.Load).Should(BeNumerically(">=", 1))
	e.g.Expect(e.isActive(k1)).To(BeTrue())
	ak := e.assertOneLiveKey("ak")
	e.g.Expect(pending(ak, k1)).NotTo(BeNil())
	aktStopManager()
	setCrash(nil)
	aktStartManager(t)
	e.g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())
	e.assertOneLiveKey("ak")
	e.hygiene()
}

// --- Reevit's 24-hour replay window has passed ----------------------------

// crashThenDownFor crashes at step (every pass), stops the manager, lets d
// pass, and starts a fresh manager without the crash.
func (e *akt) crashThenDownFor(step string, d time.Duration, trigger func()) {
	e.t.Helper()
	hits := crashAt(step, -1)
	trigger()
	e.g.Eventually(hits.Load).Should(BeNumerically(">=", 1))
	aktStopManager()
	setCrash(nil)
	clk.Step(d)
	aktStartManager(e.t)
	e.poke("ak")
}

func TestApiKeyCrashReplayWindowPassedOrphanRevoked(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.crashThenDownFor("after-post", 25*time.Hour, func() { e.create("ak") })
	ak := e.assertOneLiveKey("ak")
	keys := e.keysOf(string(ak.UID))
	g.Expect(keys).To(HaveLen(2), "the orphan and its replacement")
	g.Expect(keys[0].Revoked).To(BeTrue(), "the orphan found by name is revoked")
	g.Expect(keys[1].ID).To(Equal(ak.Status.KeyID))
	e.event("ak", "Warning", v1alpha1.ReasonLeakedKeyRevoked)
	e.settled("ak")
	e.hygiene()
}

func TestApiKeyCrashReplayWindowPassedAdopted(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.crashThenDownFor("after-secret", 25*time.Hour, func() { e.create("ak") })
	c0 := calls(reevittest.EndpointCreate)
	ak := e.assertOneLiveKey("ak")
	e.settled("ak")
	keys := e.keysOf(string(ak.UID))
	g.Expect(keys).To(HaveLen(1), "the key the Secret holds is adopted, not replaced")
	g.Expect(keys[0].ID).To(Equal(ak.Status.KeyID))
	g.Consistently(func() int { return calls(reevittest.EndpointCreate) }).Should(Equal(c0))
	e.hygiene()
}

func TestApiKeyCrashReplayWindowPassedDuringRotation(t *testing.T) {
	e := newAkt(t)
	g := e.g
	k1 := e.rotationFixture()
	s1 := e.secret("ak")
	e.crashThenDownFor("after-post", 25*time.Hour, func() { e.annotate("ak", v1alpha1.AnnotationRotate, "r1") })
	ak := e.assertOneLiveKey("ak")
	e.settled("ak")
	keys := e.keysOf(string(ak.UID))
	g.Expect(keys).To(HaveLen(3), "k1, the orphan and its replacement")
	g.Expect(keys[1].Revoked).To(BeTrue(), "the orphan is revoked")
	g.Expect(ak.Status.KeyID).To(Equal(keys[2].ID))
	g.Expect(pending(ak, k1)).NotTo(BeNil())
	g.Expect(e.secret("ak").Data["previousApiKey"]).To(Equal(s1.Data["apiKey"]))
	e.hygiene()
}

// TestApiKeyCrashLoopNoLeak dies after every POST for a while: the retries
// replay the same request and never create a second key.
func TestApiKeyCrashLoopNoLeak(t *testing.T) {
	e := newAkt(t)
	c0 := reevitSim.Counts().CountStatus(reevittest.EndpointCreate, http.StatusCreated)
	hits := crashAt("after-post", -1)
	e.create("ak")
	e.g.Eventually(hits.Load).Should(BeNumerically(">=", 5))
	setCrash(nil)
	e.poke("ak")
	ak := e.assertOneLiveKey("ak")
	e.g.Expect(e.keysOf(string(ak.UID))).To(HaveLen(1))
	e.g.Expect(reevitSim.Counts().CountStatus(reevittest.EndpointCreate, http.StatusCreated)).To(BeNumerically(">=", c0+5), "every pass sent the POST")
	e.hygiene()
}
