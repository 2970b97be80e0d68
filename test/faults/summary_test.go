package faults

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// summary collects the figures the suite reports (issue 9, "Must show").
type summary struct {
	mu sync.Mutex

	killsSurvived int            // SIGKILLs of a manager after which everything converged
	faults        map[string]int // injected faults by kind
	leaked        []string       // keys found active and tracked by nothing
	lost          []string       // moments a workload's Secret held no valid credential
	gapKill       []time.Duration
	gapTerm       []time.Duration
	leaseKill     []time.Duration
	leaseTerm     []time.Duration
	notes         []string
	hostile       hostileFigures // the hostile-tenant scenarios (issue 15)
	durations     [][2]string
	total         time.Duration
}

func newSummary() *summary { return &summary{faults: map[string]int{}} }

// fault adds n injected faults of kind.
func (s *summary) fault(kind string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[kind] += n
}

func (s *summary) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killsSurvived++
}

func (s *summary) leak(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.leaked, what) {
		s.leaked = append(s.leaked, what)
	}
}

func (s *summary) loss(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.lost, what) {
		s.lost = append(s.lost, what)
	}
}

func (s *summary) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *summary) gap(sigkill bool, lease, reconcile time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sigkill {
		s.gapKill, s.leaseKill = append(s.gapKill, reconcile), append(s.leaseKill, lease)
	} else {
		s.gapTerm, s.leaseTerm = append(s.gapTerm, reconcile), append(s.leaseTerm, lease)
	}
}

func (s *summary) timed(what string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.durations = append(s.durations, [2]string{what, d.Round(time.Second).String()})
}

// render is the closing summary, printed to the test log and stdout.
func (s *summary) render(m mode) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "==== Keywarden fault-tolerance summary (%s mode) ====\n", m.name)
	fmt.Fprintf(&b, "kills survived:        %d (manager SIGKILLed and restarted)\n", s.killsSurvived)
	fmt.Fprintf(&b, "keys leaked:           %d\n", len(s.leaked))
	for _, l := range s.leaked {
		fmt.Fprintf(&b, "  - %s\n", l)
	}
	fmt.Fprintf(&b, "credentials lost:      %d\n", len(s.lost))
	for _, l := range s.lost {
		fmt.Fprintf(&b, "  - %s\n", l)
	}
	fmt.Fprintf(&b, "failover gap, SIGKILL: %s (Lease taken over: %s)\n", durs(s.gapKill), durs(s.leaseKill))
	fmt.Fprintf(&b, "failover gap, SIGTERM: %s (Lease taken over: %s)\n", durs(s.gapTerm), durs(s.leaseTerm))
	s.hostile.render(&b)
	b.WriteString("faults injected by kind:\n")
	kinds := make([]string, 0, len(s.faults))
	for k := range s.faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-44s %d\n", k, s.faults[k])
	}
	if len(s.notes) > 0 {
		b.WriteString("notes:\n")
		for _, n := range s.notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	b.WriteString("durations:")
	for _, d := range s.durations {
		fmt.Fprintf(&b, " %s %s;", d[0], d[1])
	}
	fmt.Fprintf(&b, " total %s\n", s.total.Round(time.Second))
	return b.String()
}

// durs prints measured durations: each one, and the maximum when several.
func durs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "not measured"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(10 * time.Millisecond).String()
	}
	if len(ds) == 1 {
		return parts[0]
	}
	return strings.Join(parts, ", ") + " (max " + slices.Max(ds).Round(10*time.Millisecond).String() + ")"
}
