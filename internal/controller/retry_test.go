package controller

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// TestHeld: the one rule every kind's failures follow. A change of the
// inputs lifts any hold; a failure that needs a person holds until then; any
// other failure until its retry time (recorded, or the backoff from the last
// failure for a status written without one).
func TestHeld(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(now.Add(d)); return &m }
	for _, tc := range []struct {
		name             string
		r                v1alpha1.RetryStatus
		waitedOn, inputs string
		wait             time.Duration
		held             bool
	}{
		{"no failure", v1alpha1.RetryStatus{}, "v1", "v1", 0, false},
		{"transient: waits for its retry", v1alpha1.RetryStatus{FailedAttempts: 2, LastFailureTime: at(-time.Second), NextRetryTime: at(9 * time.Second)}, "v1", "v1", 9 * time.Second, true},
		{"transient: retry time reached", v1alpha1.RetryStatus{FailedAttempts: 2, LastFailureTime: at(-10 * time.Second), NextRetryTime: at(0)}, "v1", "v1", 0, false},
		{"transient: an input changed", v1alpha1.RetryStatus{FailedAttempts: 2, LastFailureTime: at(-time.Second), NextRetryTime: at(9 * time.Second)}, "v1", "v2", 0, false},
		{"needs a person: waits with no timer", v1alpha1.RetryStatus{FailedAttempts: 1, NeedsAttention: true, LastFailureTime: at(-time.Hour)}, "v1", "v1", 0, true},
		{"needs a person: an input changed", v1alpha1.RetryStatus{FailedAttempts: 1, NeedsAttention: true, LastFailureTime: at(-time.Hour)}, "v1", "v2", 0, false},
		{"no retry time recorded: backoff from the last failure", v1alpha1.RetryStatus{FailedAttempts: 3, LastFailureTime: at(-5 * time.Second)}, "v1", "v1", 15 * time.Second, true},
		{"no retry time recorded: backoff over", v1alpha1.RetryStatus{FailedAttempts: 1, LastFailureTime: at(-5 * time.Second)}, "v1", "v1", 0, false},
		{"hold lifted (the cause is gone)", func() v1alpha1.RetryStatus {
			r := v1alpha1.RetryStatus{FailedAttempts: 4, NeedsAttention: true, LastFailureTime: at(-time.Second), NextRetryTime: at(time.Minute)}
			liftHold(&r)
			return r
		}(), "v1", "v1", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait, isHeld := held(tc.r, tc.waitedOn, tc.inputs, now)
			if wait != tc.wait || isHeld != tc.held {
				t.Errorf("held = %s, %v; want %s, %v", wait, isHeld, tc.wait, tc.held)
			}
		})
	}
}

// TestRecordRetry: a failure counts, says whether it needs a person, and
// schedules a retry only when transient.
func TestRecordRetry(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var r v1alpha1.RetryStatus
	if d := recordRetry(&r, &failure{Transient: true}, false, now, time.Time{}); d != 5*time.Second || r.NextRetryTime == nil || !r.NextRetryTime.Time.Equal(now.Add(d)) {
		t.Fatalf("transient: delay %s, next retry %v", d, r.NextRetryTime)
	}
	if d := recordRetry(&r, &failure{Transient: true, RetryAfter: 42 * time.Second}, false, now, time.Time{}); d != 42*time.Second || r.FailedAttempts != 2 {
		t.Fatalf("429: delay %s, attempts %d", d, r.FailedAttempts)
	}
	if d := recordRetry(&r, &failure{}, true, now, time.Time{}); d != 0 || r.NextRetryTime != nil || !r.NeedsAttention || r.FailedAttempts != 3 || !r.LastFailureTime.Time.Equal(now) {
		t.Fatalf("needs a person: delay %s, record %+v", d, r)
	}
	if _, isHeld := held(r, "v", "v", now.Add(time.Hour)); !isHeld {
		t.Fatal("a failure that needs a person must hold until an input changes")
	}
}

// TestWriteStatusConflictPolicy: the one status write. A conflict caused by
// metadata alone (an annotation changed after the pass read the object) is
// no stale read: the same status lands on the new version and the metadata
// stays. A conflict with another status write is a stale read: nothing is
// written, and the pass asks to run again. (Before, both were dropped: a
// failed exchange whose record was lost to an annotation was made again.)
func TestWriteStatusConflictPolicy(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := rtNamespace(t)
	rtCreate(t, rtNew(ns, "tok", "no-such-secret")) // waits for a Secret: written once, then quiet
	var orig *v1alpha1.RevioToken
	g.Eventually(func() bool {
		orig = rtGet(t, ns, "tok")
		return orig.Status.NeedsAttention
	}, 30*time.Second).Should(BeTrue())

	rtAnnotate(t, ns, "tok", "example.com/moved", "1")
	obj := orig.DeepCopy()
	obj.Status.Refreshes = 41
	again, err := writeStatus(ctx, k8s, newSupersededSet(), obj, orig, obj.Status, orig.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeFalse(), "only metadata moved: the write lands")
	got := rtGet(t, ns, "tok")
	g.Expect(got.Status.Refreshes).To(Equal(int64(41)))
	g.Expect(got.Annotations).To(HaveKeyWithValue("example.com/moved", "1"))
	g.Expect(obj.ResourceVersion).To(Equal(got.ResourceVersion), "the caller's object is the written version")

	stale := got.DeepCopy()
	other := got.DeepCopy()
	other.Status.Refreshes = 7
	g.Expect(k8s.Status().Update(ctx, other)).To(Succeed())
	mine := stale.DeepCopy()
	mine.Status.Refreshes = 99
	again, err = writeStatus(ctx, k8s, newSupersededSet(), mine, stale, mine.Status, stale.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeTrue(), "a stale status is never written over")
	g.Expect(rtGet(t, ns, "tok").Status.Refreshes).To(Equal(int64(7)))
}
