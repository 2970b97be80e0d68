package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// windowAhead returns a one-hour Europe/Berlin window opening at the
// minute about 3 h after the fake clock's now, on that day only. The
// clock is moved on first if that window would cross midnight.
func windowAhead(t *testing.T) (v1alpha1.RotationWindow, time.Time) {
	t.Helper()
	b := berlin(t)
	if h := clk.Now().Add(3 * time.Hour).In(b).Hour(); h >= 22 {
		clk.Step(6 * time.Hour)
	}
	open := clk.Now().Add(3 * time.Hour).Truncate(time.Minute).In(b)
	w := v1alpha1.RotationWindow{Days: []v1alpha1.Weekday{v1alpha1.Weekday(open.Format("Mon"))},
		Start: open.Format("15:04"), End: open.Add(time.Hour).Format("15:04"), TimeZone: "Europe/Berlin"}
	return w, open
}

// TestRotationWaitsForWindow: with the fake clock, a rotation due outside
// its window waits and happens at the window's start (plus the ApiKey's
// fixed jitter), shown beforehand in status.nextRotationTime; a rotate
// request then ignores the window.
func TestRotationWaitsForWindow(t *testing.T) {
	e := newAkt(t)
	g := e.g
	w, open := windowAhead(t)
	e.createWindowed("ak", w)
	ak := e.settled("ak")
	k1 := ak.Status.KeyID
	at := open.Add(windowJitter(time.Hour, windowSeed(ak))).UTC()
	g.Expect(at.Sub(open)).To(BeNumerically("<", 30*time.Minute), "the jitter stays in the window's first half")
	g.Eventually(func() time.Time { return e.nextRotationAt("ak") }).Should(BeTemporally("==", at))
	c := e.condition("ak", v1alpha1.ConditionRotationWindow, v1alpha1.ReasonInWindow)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(c.Message).To(ContainSubstring("waits for the next window: it starts at " + at.Format(time.RFC3339)))

	ak = e.waitsThenRotatesAt("ak", k1, time.Hour, at, open.Add(time.Hour))
	g.Expect(pending(ak, k1).Reason).To(Equal(createRotation))
	k2 := ak.Status.KeyID

	// The next one is due after the window closed: a week on, the same window.
	nextWeek := open.AddDate(0, 0, 7)
	g.Eventually(func() time.Time { return e.nextRotationAt("ak") }).
		Should(BeTemporally("==", nextWeek.Add(windowJitter(nextWeek.Add(time.Hour).Sub(nextWeek), windowSeed(ak)))))
	// An emergency ignores the window.
	e.stepAndPoke("ak", 2*time.Hour)
	e.annotate("ak", v1alpha1.AnnotationRotate, "now")
	ak = e.rotated("ak", k2)
	g.Expect(pending(ak, k2).Reason).To(Equal(createManual))
	e.hygiene()
}

// TestRotationWindowsFromIssuerPolicy: an ApiKey without windows follows
// its issuer's; when no window opens before the key would pass the
// issuer's maxKeyAge, the condition says so and the key rotates when due.
func TestRotationWindowsFromIssuerPolicy(t *testing.T) {
	e := newAkt(t)
	g := e.g
	w, open := windowAhead(t)
	createReevitIssuer(t, e.ns, "windowed", e.org, aktAdminSecret, func(s *v1alpha1.ReevitIssuerSpec) {
		s.Policy.RotationWindows = []v1alpha1.RotationWindow{w}
	})
	createReevitIssuer(t, e.ns, "strict", e.org, aktAdminSecret, func(s *v1alpha1.ReevitIssuerSpec) {
		s.Policy.RotationWindows = []v1alpha1.RotationWindow{w}
		s.Policy.MaxKeyAge = &metav1.Duration{Duration: 2 * time.Hour}
	})
	e.create("inherits", aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "windowed" })
	e.create("too-old", aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "strict" })

	ak := e.settled("inherits")
	at := open.Add(windowJitter(time.Hour, windowSeed(ak))).UTC()
	g.Eventually(func() time.Time { return e.nextRotationAt("inherits") }).Should(BeTemporally("==", at))
	g.Expect(e.condition("inherits", v1alpha1.ConditionRotationWindow, v1alpha1.ReasonInWindow).Status).To(Equal(metav1.ConditionTrue))

	ak = e.settled("too-old")
	due := ak.Status.ActiveSince.Add(time.Hour)
	g.Eventually(func() time.Time { return e.nextRotationAt("too-old") }).Should(BeTemporally("==", due))
	c := e.condition("too-old", v1alpha1.ConditionRotationWindow, v1alpha1.ReasonNoWindowBeforeMaxKeyAge)
	g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(c.Message).To(ContainSubstring("policy.maxKeyAge (2h0m0s): it rotates when due"))
	g.Expect(e.get("too-old").Status.Conditions).To(ContainElement(And(
		HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionTrue))), "the key works: Ready stays True")

	// The ApiKey's own windows win over the issuer's: none of its own
	// would be dropped, so give it an always-open one.
	e.update("too-old", func(ak *v1alpha1.ApiKey) {
		ak.Spec.Rotation.Windows = []v1alpha1.RotationWindow{{Days: []v1alpha1.Weekday{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}, Start: "00:00", End: "24:00"}}
	})
	e.condition("too-old", v1alpha1.ConditionRotationWindow, v1alpha1.ReasonInWindow)
	g.Expect(e.nextRotationAt("too-old")).To(BeTemporally("==", due))
	e.hygiene()
}

// TestRotationWindowAcrossDST: the fake clock is moved to the Saturday
// before Europe/Berlin's next daylight-saving change (the last Sunday of
// March or October), an hour's rotation is due then, and its only window is
// Sunday 03:00-04:00 in Berlin, after the change. The rotation waits for
// 03:00 at that day's offset (01:00 UTC in spring, 02:00 UTC in autumn, not
// the offset of the Saturday it was due on), plus the ApiKey's jitter.
func TestRotationWindowAcrossDST(t *testing.T) {
	e := newAkt(t)
	g := e.g
	b := berlin(t)
	change := nextOffsetChange(t, b, clk.Now().Add(48*time.Hour))
	day := change.In(b)
	open := time.Date(day.Year(), day.Month(), day.Day(), 3, 0, 0, 0, b)
	_, before := open.Add(-24 * time.Hour).Zone()
	_, after := open.Zone()
	g.Expect(before).NotTo(Equal(after), "no offset change between the Saturday and the window")
	clk.Step(open.Add(-26 * time.Hour).Sub(clk.Now()))
	e.createWindowed("dst", v1alpha1.RotationWindow{Days: []v1alpha1.Weekday{"Sun"}, Start: "03:00", End: "04:00", TimeZone: "Europe/Berlin"})
	ak := e.settled("dst")
	k1 := ak.Status.KeyID
	at := open.Add(windowJitter(time.Hour, windowSeed(ak))).UTC()
	g.Eventually(func() time.Time { return e.nextRotationAt("dst") }).Should(BeTemporally("==", at))

	// Due an hour after issue, on the Saturday: it waits for Sunday's offset.
	e.waitsThenRotatesAt("dst", k1, time.Hour, at, open.Add(time.Hour))
	e.hygiene()
}

// TestEmergenciesIgnoreWindows: with its only window hours away, an
// ApiKey's key is replaced at once when marked compromised, when a
// key-relevant spec field changes, and when its Secret is lost.
func TestEmergenciesIgnoreWindows(t *testing.T) {
	e := newAkt(t)
	g := e.g
	w, _ := windowAhead(t)
	e.createWindowed("ak", w)
	k1 := e.settled("ak").Status.KeyID
	e.condition("ak", v1alpha1.ConditionRotationWindow, v1alpha1.ReasonInWindow)

	e.annotate("ak", v1alpha1.AnnotationCompromised, "incident-7")
	ak := e.rotated("ak", k1)
	g.Expect(historyOf(ak, k1).Reason).To(Equal(createCompromised))
	k2 := e.settled("ak").Status.KeyID

	e.update("ak", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []v1alpha1.Scope{"payments:read", "payments:write"} })
	ak = e.rotated("ak", k2)
	g.Expect(pending(ak, k2).Reason).To(Equal(createSpecChange))
	k3 := e.settled("ak").Status.KeyID

	g.Expect(k8s.Delete(e.ctx, e.secret("ak"))).To(Succeed())
	e.poke("ak")
	ak = e.rotated("ak", k3)
	g.Expect(e.secret("ak")).NotTo(BeNil())
	g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally(">", clk.Now().Add(time.Hour)), "the next scheduled rotation still waits for the window")
	e.hygiene()
}

// nextOffsetChange is the first hour after from at which loc's UTC offset
// differs from the hour before (within a year).
func nextOffsetChange(t *testing.T, loc *time.Location, from time.Time) time.Time {
	t.Helper()
	from = from.Truncate(time.Hour)
	_, off := from.In(loc).Zone()
	for h := from; h.Before(from.AddDate(1, 0, 0)); h = h.Add(time.Hour) {
		if _, o := h.In(loc).Zone(); o != off {
			return h
		}
	}
	t.Fatalf("%s changes no offset within a year of %s", loc, from)
	return time.Time{}
}

// createWindowed creates an ApiKey rotating every hour (grace 5m) inside
// the given windows.
func (e *akt) createWindowed(name string, windows ...v1alpha1.RotationWindow) {
	e.t.Helper()
	e.create(name, aktEvery(time.Hour, 5*time.Minute), func(ak *v1alpha1.ApiKey) { ak.Spec.Rotation.Windows = windows })
}

// waitsThenRotatesAt moves the clock past the rotation's due time (every
// after issue) and to a second before at, the window's jittered start: the
// key stays k1 and nextRotationTime at; at at, the key is replaced, its
// new one active from at, before closes (the window's end).
func (e *akt) waitsThenRotatesAt(name, k1 string, every time.Duration, at, closes time.Time) *v1alpha1.ApiKey {
	e.t.Helper()
	g := e.g
	e.stepAndPoke(name, every+time.Minute)
	g.Consistently(func() string { return e.get(name).Status.KeyID }).Should(Equal(k1))
	g.Expect(e.nextRotationAt(name)).To(BeTemporally("==", at))
	e.stepAndPoke(name, at.Sub(clk.Now())-time.Second)
	g.Consistently(func() string { return e.get(name).Status.KeyID }).Should(Equal(k1))
	clk.Step(time.Second)
	e.poke(name)
	ak := e.rotated(name, k1)
	g.Expect(ak.Status.ActiveSince.Time).To(BeTemporally(">=", at))
	g.Expect(ak.Status.ActiveSince.Time).To(BeTemporally("<", closes))
	return ak
}

// nextRotationAt is the ApiKey's status.nextRotationTime (zero when unset).
func (e *akt) nextRotationAt(name string) time.Time {
	e.t.Helper()
	if n := e.get(name).Status.NextRotationTime; n != nil {
		return n.Time
	}
	return time.Time{}
}
