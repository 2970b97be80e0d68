package main

import (
	"context"
	"sort"
	"strings"
	"time"
)

// results holds every measurement the table prints.
type results struct {
	n   int // RevioTokens, and ApiKeys unless nAK is 0
	nAK int

	// converge
	convergeAll, convergeAK, convergeRT time.Duration
	createSend                          time.Duration
	latAll, latAK, latRT                []time.Duration
	convergeCPU                         time.Duration
	convergeUse, floorUse               cpuUse
	convergeStats                       map[string]controllerStats
	convergeExtMean                     map[string]time.Duration
	convergePeak                        peakMem
	queueWait                           map[string]hist // by work queue
	// the manager's memory idle before any object exists (N=0) and idle
	// after converge, every object in place
	emptyMem, settledMem memSample
	createPath           map[string]tally // ApiKey, RevioToken, shared
	createWrites         int
	createExt            extCounts

	// floor
	floorWrites int
	floorDur    time.Duration
	// the operator's reads (get, list) on the create path, and the time a
	// bare client takes for the operator's writes and reads together
	createReads int
	floorRWDur  time.Duration
	// the same-writes floor: the operator's own writes by a bare client
	sameFloorWrites int
	sameFloorDur    time.Duration
	sameFloorUse    cpuUse

	// steady state
	steadyDur  time.Duration
	steadyReqs tally
	steadyExt  extCounts

	// restart
	restartStop  time.Duration
	restartReady time.Duration
	// restartReconciled: until every object was reconciled once
	restartReconciled time.Duration
	restartIdle       time.Duration
	restartReqs       tally
	restartExt        extCounts
	restartReadyN     int

	// rotation
	rotM    int
	rotReqs tally
	rotExt  extCounts
	rotDur  time.Duration

	// refresh: on request (annotation) and on schedule (the storm)
	refK                     int
	refReqs, schedReqs       tally
	refExt, schedExt         extCounts
	triggerDur               time.Duration
	expirySpread, nextSpread time.Duration
	refreshSpread            time.Duration
	lags                     []time.Duration
	lifetime                 time.Duration

	// -sharded: one entry per manager, and the objects by how many
	// replicas reconciled them
	replicas                       []replicaResult
	byNone, byOne, byWrong, byMany int

	// memory
	memSecrets, memSecretSize int
	memCreate                 time.Duration
	baseRSS, withRSS          []int64
	baseHeap, withHeap        float64 // go_gc_heap_live_bytes
	memReqs                   tally

	// restart budget: N RevioTokens refreshed at once, N Deployments
	budgetN, budgetB              int
	budgetRollout                 time.Duration
	budgetMostSeen                int // Deployments patched, not rolled out
	budgetMostGauge               int // keywarden_restarts_in_flight
	budgetMostQueue               int // keywarden_restart_queue_length
	budgetDone, budgetStale       int
	budgetDrain, budgetFirstPatch time.Duration
	budgetCPU                     time.Duration
	budgetPeak                    peakMem
	budgetRequested, budgetQueued float64
	budgetFinished, budgetFailed  float64
}

// owner is the benchmark object a request concerns, from its name: an
// output Secret has its object's name, an Event's name starts with it.
// Requests on shared things (input Secrets, lists, watches) have none.
func owner(r request) string {
	if !isObjNS(r.NS) {
		return ""
	}
	n := r.Name
	if r.Resource == "events" {
		n, _, _ = strings.Cut(n, ".")
	}
	if strings.HasPrefix(n, "ak-") || strings.HasPrefix(n, "rt-") {
		return n
	}
	return ""
}

func kindOf(name string) string {
	switch {
	case strings.HasPrefix(name, "ak-"):
		return kindApiKey
	case strings.HasPrefix(name, "rt-"):
		return kindRevioToken
	}
	return "shared"
}

// countFor tallies the requests that concern the named objects.
func countFor(reqs []request, names map[string]bool) tally {
	t := tally{}
	for _, r := range reqs {
		if names[owner(r)] {
			t.add(r)
		}
	}
	return t
}

func nameSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func names(n int, name func(int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = name(i)
	}
	return out
}

// sleepAlive sleeps d, failing early if the manager dies.
func sleepAlive(ctx context.Context, d time.Duration, alive func() error) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Until(end), 500*time.Millisecond)):
		}
	}
	return alive()
}

// percentile is the nearest-rank percentile p (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func maxOf[T int64 | time.Duration](xs []T) T {
	var m T
	for i, x := range xs {
		if i == 0 || x > m {
			m = x
		}
	}
	return m
}

func minT(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func maxT(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
