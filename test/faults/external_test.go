package faults

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/httpcore"
	"github.com/keywarden/keywarden/internal/simfault"
	"github.com/keywarden/keywarden/internal/testenv"
)

// controllerBackoffCap is the longest wait between two attempts of an object
// after transient failures (internal/controller backoffCap).
const controllerBackoffCap = time.Minute

// reachability is the timeline of the Rev.io API being unusable (an outage,
// or a latency at the client's timeout), for the token-expiry rule: a token
// may expire in a Secret only when the API was down during the window in
// which it should have been refreshed, and must be replaced soon after the
// API comes back.
type reachability struct {
	mu        sync.Mutex
	downSince time.Time // zero while reachable
	upSince   time.Time // end of the last down period; zero when never down
}

func (r *reachability) set(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	switch {
	case down && r.downSince.IsZero():
		r.downSince = now
	case !down && !r.downSince.IsZero():
		r.downSince, r.upSince = time.Time{}, now
	}
}

// policy says a token found expired at now is lost when the API is up and
// either was usable for the whole refresh window before the expiry (window:
// how long before expiry a refresh is due) or came back more than recovery
// ago. Usable starts one host-guard cooldown after the API came back: a
// down period that failed connections may have opened the manager's
// circuit for the host (httpcore.HostGuard), which then refuses requests
// until a probe after the cooldown is answered.
func (r *reachability) policy(window, recovery time.Duration) tokenPolicy {
	return func(exp, now time.Time) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if now.Before(exp.Add(2*time.Second)) || !r.downSince.IsZero() {
			return false
		}
		if r.upSince.IsZero() || !r.upSince.Add(httpcore.DefaultCooldown).After(exp.Add(-window)) {
			return true
		}
		return now.After(r.upSince.Add(recovery))
	}
}

// extPhase is one external fault.
type extPhase struct {
	kind           string
	reevit, revio  simfault.Settings
	hold           time.Duration
	down           bool // the Rev.io API is unusable while the fault lasts
	reapply        int  // re-apply the fault and ask for work this often during hold
	before         func(ctx context.Context) error
	injected       func(d apisim.Counts) int
	convergeWithin time.Duration
}

// testExternalAPI injects faults into apisim through its control API, one
// kind at a time, while ApiKeys rotate (every minute and on request) and
// RevioTokens of a 30 s lifetime refresh: after each, everything must
// converge, no token may expire while the API could have refreshed it, and
// the reconcile and request counts must stay bounded.
func testExternalAPI(t *testing.T, s *suite) {
	m := s.mode
	ctx := context.Background()
	const lifetime = 30 * time.Second
	sim := s.startApisim(t, lifetime)
	ns := s.newNamespace(t, "external")
	s.createInputSecrets(t, ns, sim)
	mgr := s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns), AllowedEndpoints: sim.Endpoints()})
	defer func() { _ = mgr.Stop(10 * time.Second) }()

	n := m.extObjects
	s.createKeysAndTokens(ctx, t, ns, sim, n, "%02d")
	reach := &reachability{}
	// A token is refreshed a third of its lifetime before it expires; once the
	// API is back, 30 s (a few retries) is long enough to refresh it.
	chk := newChecker(s, sim, ns, reach.policy(lifetime/3, 30*time.Second))
	if _, err := chk.waitConverged(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	stopChecks := chk.background(2 * time.Second)
	defer stopChecks()

	hold := m.extHold
	statuses := func(codes ...int) func(apisim.Counts) int {
		return func(d apisim.Counts) int { return countStatus(d.Reevit, codes...) + countStatus(d.Revio, codes...) }
	}
	phases := []extPhase{
		{
			kind:   "5xx bursts (failNext)",
			reevit: simfault.Settings{FailNext: 2 * n, FailStatus: http.StatusServiceUnavailable},
			revio:  simfault.Settings{FailNext: 2 * n, FailStatus: http.StatusBadGateway},
			hold:   hold, reapply: 3, injected: statuses(500, 502, 503, 504),
		},
		{
			kind:   "random 500s (failureRate 0.3)",
			reevit: simfault.Settings{FailureRate: 0.3, FailStatus: http.StatusInternalServerError},
			revio:  simfault.Settings{FailureRate: 0.3, FailStatus: http.StatusInternalServerError},
			hold:   hold, reapply: 4, injected: statuses(500),
		},
		{
			// Enough for the steady refreshes, not for a rotation of everything.
			kind:   "429 storms (rateLimit, retry_after)",
			reevit: simfault.Settings{RateLimit: max(2, n/2), RateWindow: simfault.Duration(10 * time.Second)},
			revio:  simfault.Settings{RateLimit: max(2, n/2), RateWindow: simfault.Duration(10 * time.Second)},
			hold:   hold, reapply: 3, injected: statuses(429),
		},
		{
			kind:   "10 s latency",
			reevit: simfault.Settings{Latency: simfault.Duration(10 * time.Second)},
			revio:  simfault.Settings{Latency: simfault.Duration(10 * time.Second)},
			hold:   max(hold, 15*time.Second), down: true, reapply: 1, injected: statuses(),
		},
		{
			kind:   "connections dropped after commit",
			reevit: simfault.Settings{DropAfterCommit: 2 * n},
			revio:  simfault.Settings{DropAfterCommit: 2 * n},
			// Unusable: every request is committed and its answer lost, and
			// five failed connections in a row pause the host.
			hold: hold, down: true, reapply: 2, injected: statuses(0),
		},
		{
			kind:   "outage while tokens near expiry",
			reevit: simfault.Settings{Outage: true},
			revio:  simfault.Settings{Outage: true},
			hold:   m.outage, down: true, injected: statuses(503),
			before: func(ctx context.Context) error {
				return tokensNearExpiry(ctx, s, ns, lifetime)
			},
			convergeWithin: m.outage + time.Minute,
		},
	}
	for i, p := range phases {
		if p.convergeWithin == 0 {
			// An object whose last attempt failed just before the fault
			// was lifted waits up to the backoff cap before it tries again.
			p.convergeWithin = 2*p.hold + 45*time.Second + controllerBackoffCap
		}
		ok := t.Run(fmt.Sprintf("%d-%s", i+1, p.kind), func(t *testing.T) {
			runExtPhase(t, s, sim, mgr, chk, reach, ns, n, p, i)
		})
		if !ok {
			// Leave apisim healthy for whatever comes next.
			_ = sim.Control.SetReevitFaults(ctx, simfault.Settings{})
			_ = sim.Control.SetRevioFaults(ctx, simfault.Settings{})
			reach.set(false)
		}
	}
	stopChecks()
	chk.report(t)
}

// runExtPhase injects one fault for its hold time, asking for rotations and
// refreshes while it lasts, clears it and checks the recovery and the counts.
func runExtPhase(t *testing.T, s *suite, sim *testenv.Apisim, mgr *testenv.Manager, chk *checker, reach *reachability, ns string, n int, p extPhase, idx int) {
	ctx := context.Background()
	if p.before != nil {
		if err := p.before(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ak0, rt0, err := reconcileCounts(ctx, mgr)
	if err != nil {
		t.Fatal(err)
	}
	c0, err := sim.Control.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	apply := func() {
		if err := sim.Control.SetReevitFaults(ctx, p.reevit); err != nil {
			t.Error(err)
		}
		if err := sim.Control.SetRevioFaults(ctx, p.revio); err != nil {
			t.Error(err)
		}
	}
	apply()
	reach.set(p.down)
	for r := 0; r < p.reapply; r++ {
		if r > 0 {
			apply()
		}
		if err := s.rotateAll(ctx, ns, fmt.Sprintf("phase%d-%d", idx, r)); err != nil {
			t.Error(err)
		}
		sleep(ctx, p.hold/time.Duration(p.reapply))
	}
	if p.reapply == 0 {
		sleep(ctx, p.hold)
	}
	if err := sim.Control.SetReevitFaults(ctx, simfault.Settings{}); err != nil {
		t.Error(err)
	}
	if err := sim.Control.SetRevioFaults(ctx, simfault.Settings{}); err != nil {
		t.Error(err)
	}
	reach.set(false)
	held := time.Since(start)
	cHold, err := sim.Control.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}

	took, err := chk.waitConverged(ctx, p.convergeWithin)
	if err != nil {
		t.Error(err)
	}
	ak1, rt1, merr := reconcileCounts(ctx, mgr)
	c1, cerr := sim.Control.Counts(ctx)
	if merr != nil || cerr != nil {
		t.Fatalf("counts: %v %v", merr, cerr)
	}
	d := countDelta(c1, c0)
	injected := p.injected(countDelta(cHold, c0))
	s.sum.fault(p.kind, injected)
	requests := countStatus(d.Reevit) + countStatus(d.Revio)
	secs := (held + took).Seconds()
	t.Logf("%s: held %s, converged %s later; %d faults answered, %d requests, reconciles apikey %.0f reviotoken %.0f (for %d+%d objects)",
		p.kind, held.Round(time.Second), took.Round(time.Second), injected, requests, ak1-ak0, rt1-rt0, n, n)
	s.sum.note("external %s: held %s, converged %s after; %d faults answered; %d API requests, %.0f+%.0f reconciles for %d objects",
		p.kind, held.Round(time.Second), took.Round(time.Second), injected, requests, ak1-ak0, rt1-rt0, 2*n)
	if injected == 0 {
		t.Errorf("%s: no fault was answered: the phase tested nothing", p.kind)
	}
	// No hot loop: on average at most one reconcile and one API request per
	// object every two seconds, plus a fixed allowance per object for the
	// requested rotations and refreshes.
	bound := float64(n)*secs/2 + float64(10*n*max(p.reapply, 1))
	if ak1-ak0 > bound || rt1-rt0 > bound {
		t.Errorf("%s: %.0f ApiKey and %.0f RevioToken reconciles in %.0f s for %d objects each: above %.0f, a hot loop", p.kind, ak1-ak0, rt1-rt0, secs, n, bound)
	}
	if float64(requests) > 2*bound {
		t.Errorf("%s: %d API requests in %.0f s for %d objects: above %.0f, a hot loop", p.kind, requests, secs, 2*n, 2*bound)
	}
}

// tokensNearExpiry refreshes every token now and returns when they are a
// few seconds from their scheduled refresh, so an outage starting then finds
// every token near expiry.
func tokensNearExpiry(ctx context.Context, s *suite, ns string, lifetime time.Duration) error {
	var rts v1alpha1.RevioTokenList
	if err := s.env.Client.List(ctx, &rts, client.InNamespace(ns)); err != nil {
		return err
	}
	v := fmt.Sprintf("near-expiry-%d", time.Now().Unix())
	for i := range rts.Items {
		if err := s.annotate(ctx, &rts.Items[i], v1alpha1.AnnotationRefresh, v); err != nil {
			return err
		}
	}
	issued := time.Now()
	if err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) {
		var list v1alpha1.RevioTokenList
		if err := s.env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, rt := range list.Items {
			if rt.Status.LastRefreshRequest != v || rt.Status.FailedAttempts > 0 {
				return false, "RevioToken " + rt.Name + " has not refreshed yet"
			}
		}
		return true, ""
	}); err != nil {
		return err
	}
	// Refresh is due at two thirds of the lifetime, minus up to 1 s jitter.
	sleep(ctx, time.Until(issued.Add(lifetime*2/3-3*time.Second)))
	return nil
}
