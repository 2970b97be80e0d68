package controller

import (
	"testing"

	. "github.com/onsi/gomega"
)

// TestNextAdmissible: the queue is first come first served; a restart whose
// namespace is full, or whose workload is still rolling out, keeps its place
// while later ones go; nothing goes while the cluster is full.
func TestNextAdmissible(t *testing.T) {
	g := NewWithT(t)
	k := func(ns, name string) workloadKey { return workloadKey{ns, "Deployment", name} }
	r := &restarter{budget: restartBudget{global: 3, perNS: 2}, inflight: map[workloadKey]inFlight{}, inflightNS: map[string]int{}}
	for _, key := range []workloadKey{k("a", "1"), k("a", "2"), k("a", "3"), k("b", "1"), k("b", "2")} {
		r.waiting = append(r.waiting, &queuedRestart{key: key})
	}
	r.markInFlight(k("b", "2"), inFlight{}) // rolling out already
	var got []workloadKey
	for q := r.nextAdmissible(); q != nil; q = r.nextAdmissible() {
		got = append(got, q.key)
		r.markInFlight(q.key, inFlight{})
	}
	g.Expect(got).To(Equal([]workloadKey{k("a", "1"), k("a", "2")}), "a is full at 2, and the cluster at 3 with b/2")
	g.Expect(r.waiting).To(HaveLen(3))
	g.Expect(r.waiting[0].key).To(Equal(k("a", "3")), "the queue keeps its order")

	// b/2 finishes: b/1 goes before a/3 only because a is still full;
	// b/2's own queued restart waits no longer.
	delete(r.inflight, k("b", "2"))
	r.inflightNS["b"]--
	q := r.nextAdmissible()
	g.Expect(q).NotTo(BeNil())
	g.Expect(q.key).To(Equal(k("b", "1")))
	g.Expect(r.budget.enabled()).To(BeTrue())
	g.Expect(restartBudget{}.enabled()).To(BeFalse())
}
