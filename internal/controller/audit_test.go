package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
)

// auditLog records the suite manager's audit stream as the JSON lines the
// manager writes.
var auditLog = &recordingSink{}

type recordingSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *recordingSink) Record(r audit.Record) {
	var b strings.Builder
	audit.NewWriter(&b).Record(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, b.String())
}

// of returns the records about objects of namespace ns, in order.
func (s *recordingSink) of(t *testing.T, ns string) []audit.Record {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Record
	for _, l := range s.lines {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if r.Object.Namespace == ns {
			out = append(out, r)
		}
	}
	return out
}

// lines returns the raw lines about namespace ns.
func (s *recordingSink) linesOf(ns string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.lines {
		if strings.Contains(l, `"namespace":"`+ns+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// auditKeys is "Event keyId" of each record, to count events.
func auditKeys(recs []audit.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Event)+" "+r.KeyID)
	}
	return out
}

// One ApiKey through every credential event: created, rotated on request,
// the previous key revoked after grace, marked compromised, a revocation
// refused by Reevit then retried, a leaked key swept; and an ApiKey the
// policy refuses. Each event is written exactly once, with the object, the
// issuer record, the key's id and prefix, never a key.
func TestAuditStream(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Minute))
	ak := e.settled("ak")
	k1 := ak.Status.KeyID

	e.annotate("ak", v1alpha1.AnnotationRotate, "r1")
	k2 := e.rotated("ak", k1).Status.KeyID
	e.stepAndPoke("ak", 2*time.Minute)
	g.Eventually(func() bool { return e.isActive(k1) }).Should(BeFalse())

	e.annotate("ak", v1alpha1.AnnotationCompromised, "incident-7")
	k3 := e.rotated("ak", k2).Status.KeyID
	g.Eventually(func() bool { return e.isActive(k2) }).Should(BeFalse())

	// A revocation Reevit refuses (503) is told, then retried.
	e.annotate("ak", v1alpha1.AnnotationRotate, "r2")
	k4 := e.rotated("ak", k3).Status.KeyID
	reevitSim.Faults().FailNext(1000, 503)
	e.stepAndPoke("ak", 2*time.Minute)
	g.Eventually(func() []string { return auditKeys(auditLog.of(t, e.ns)) }).Should(ContainElement("RevokeFailed " + k3))
	reevitSim.Faults().Reset()
	e.stepAndPoke("ak", 5*time.Minute)
	g.Eventually(func() bool { return e.isActive(k3) }).Should(BeFalse())

	// A key carrying the object's marker that nothing tracks.
	leakedID, leaked := reevitSim.SeedKey(e.org, "live", fmt.Sprintf("x [kw:%s:99]", ak.UID), []string{"payments:read"})
	e.seen = append(e.seen, leaked)
	e.stepAndPoke("ak", 11*time.Minute)
	g.Eventually(func() bool { return e.isActive(leakedID) }).Should(BeFalse())

	// An ApiKey asking for a scope the issuer's policy does not allow.
	iss := &v1alpha1.ReevitIssuer{}
	g.Expect(k8s.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: aktIssuer}, iss)).To(Succeed())
	iss.Spec.Policy.AllowedScopes = []v1alpha1.Scope{"payments:read"}
	g.Expect(k8s.Update(e.ctx, iss)).To(Succeed())
	e.create("refused", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []v1alpha1.Scope{"payments:write"} })
	e.condition("refused", v1alpha1.ConditionReady, v1alpha1.ReasonPolicyViolation)

	want := []string{
		"KeyMinted " + k1, "KeyActivated " + k1,
		"RotationRequested " + k1, "KeyMinted " + k2, "KeyActivated " + k2, "KeyRevoked " + k1,
		"KeyCompromised " + k2, "KeyMinted " + k3, "KeyActivated " + k3, "KeyRevoked " + k2,
		"RotationRequested " + k3, "KeyMinted " + k4, "KeyActivated " + k4, "RevokeFailed " + k3, "KeyRevoked " + k3,
		"LeakedKeyRevoked " + leakedID, "PolicyRefused ",
	}
	g.Eventually(func() []string { return auditKeys(auditLog.of(t, e.ns)) }).Should(ContainElements(want))
	// Nothing written twice, also a moment later.
	g.Consistently(func() []string { return auditKeys(auditLog.of(t, e.ns)) }).Should(ConsistOf(want))

	byEvent := map[audit.Event]audit.Record{}
	for _, r := range auditLog.of(t, e.ns) {
		byEvent[r.Event] = r
		g.Expect(r.Object.Kind).To(Equal(kindApiKey))
		g.Expect(r.Object.UID).NotTo(BeEmpty())
		g.Expect(r.Time.IsZero()).To(BeFalse())
	}
	for _, ev := range audit.Events {
		if adminKeyEvents[ev] {
			// Issuer admin-key events are about issuers, not ApiKeys:
			// TestAdminKeyAudit (issuer_adminkey_test.go) checks them.
			continue
		}
		g.Expect(byEvent).To(HaveKey(ev), "event type %s written", ev)
	}
	act := byEvent[audit.KeyActivated]
	g.Expect(act.Issuer).NotTo(BeNil())
	g.Expect(act.Issuer.OrgID).To(Equal(e.org))
	g.Expect(act.Issuer.Name).To(Equal(aktIssuer))
	g.Expect(act.KeyPrefix).To(HavePrefix("pfk_live_"))
	g.Expect(act.Scopes).NotTo(BeEmpty())
	g.Expect(act.Environment).To(Equal("live"))
	g.Expect(byEvent[audit.KeyCompromised].Reason).To(Equal(createCompromised))
	g.Expect(byEvent[audit.PolicyRefused].Message).To(ContainSubstring("payments:write"))
	g.Expect(byEvent[audit.PolicyRefused].Object.Name).To(Equal("refused"))

	// No key in any line: every key the test saw and every key a Secret held.
	secrets := append([]string{}, e.seen...)
	secrets = append(secrets, e.adminKey)
	for _, k := range []string{"apiKey", "previousApiKey"} {
		if v := e.secret("ak").Data[k]; len(v) > 0 {
			secrets = append(secrets, string(v))
		}
	}
	for _, l := range auditLog.linesOf(e.ns) {
		g.Expect(l).To(HaveSuffix("\n"))
		g.Expect(strings.Count(l, "\n")).To(Equal(1), "one line per record")
		g.Expect(l).To(ContainSubstring(`"logger":"audit"`))
		for _, s := range secrets {
			g.Expect(l).NotTo(ContainSubstring(s), "an audit line carries a key")
		}
	}
	e.hygiene()
}

// TestAuditSurvivesStatusConflict: a pass that revoked keys at Reevit (a
// previous key after grace and a leaked key) and then lost its status write
// to another writer (a person's annotation, at that instant) still writes
// their records, though the pass run again finds the leaked key gone, and
// writes none twice.
func TestAuditSurvivesStatusConflict(t *testing.T) {
	e := newAkt(t)
	g := e.g
	e.create("ak", aktGrace(time.Minute))
	k1 := e.settled("ak").Status.KeyID
	e.annotate("ak", v1alpha1.AnnotationRotate, "r1")
	ak := e.rotated("ak", k1)
	leakedID, leaked := reevitSim.SeedKey(e.org, "live", fmt.Sprintf("x [kw:%s:99]", ak.UID), []string{"payments:read"})
	e.seen = append(e.seen, leaked)

	// One pass revokes k1 (its grace ended) and sweeps the leaked key; its
	// status write then meets a conflicting write.
	var conflicts atomic.Int32
	step := "before-status-patch/" + e.ns + "/ak"
	setCrash(func(s string) bool {
		if s == step && conflicts.Load() == 0 && !e.isActive(k1) && !e.isActive(leakedID) {
			conflicts.Add(1)
			obj := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "ak", Namespace: e.ns}}
			patch := []byte(`{"metadata":{"annotations":{"test.keywarden.dev/conflict":"1"}}}`)
			if err := k8s.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Errorf("conflicting write: %v", err)
			}
		}
		return false
	})
	e.stepAndPoke("ak", 11*time.Minute)
	g.Eventually(conflicts.Load).Should(BeNumerically("==", 1), "the revoking pass met a conflict")
	setCrash(nil)
	g.Eventually(func() []v1alpha1.PendingRevocation { return e.get("ak").Status.PendingRevocations }).Should(BeEmpty())

	want := []string{"KeyRevoked " + k1, "LeakedKeyRevoked " + leakedID}
	g.Eventually(func() []string { return auditKeys(auditLog.of(t, e.ns)) }).Should(ContainElements(want))
	e.poke("ak")
	g.Consistently(func() []string { return repeated(auditKeys(auditLog.of(t, e.ns))) }).Should(BeEmpty(), "each event written once")
	e.hygiene()
}

// repeated lists the elements of l that occur more than once.
func repeated(l []string) []string {
	var dup []string
	seen := map[string]bool{}
	for _, k := range l {
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
	}
	return dup
}
