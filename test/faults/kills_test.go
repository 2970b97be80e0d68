package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// testKills SIGKILLs the manager at random moments (0.2-3 s after each
// restart) while ApiKeys and RevioTokens are created, rotated every minute
// and on request, and refreshed, restarting it each time; the invariants are
// checked every few seconds throughout and once more at the end.
func testKills(t *testing.T, s *suite) {
	m := s.mode
	ctx := context.Background()
	sim := s.startApisim(t, time.Minute)
	ns := s.newNamespace(t, "kills")
	s.createInputSecrets(t, ns, sim)
	opts := testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns), AllowedEndpoints: sim.Endpoints()}
	mgr := s.startManager(t, opts)
	defer func() { _ = mgr.Stop(10 * time.Second) }()

	chk := newChecker(s, sim, ns, nil)
	stopChecks := chk.background(3 * time.Second)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("kills: seed %d, %d kills, %d ApiKeys, %d RevioTokens", seed, m.kills, m.killApiKeys, m.killRevioTokens)

	// Objects are created during the first half of the kill phase; every
	// object created is asked for a rotation or refresh now and then, so
	// kills land in creations, rotations, refreshes and revocations alike.
	phase, cancelPhase := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var created []client.Object
	var createErr error
	var objs []client.Object
	for i := 0; i < max(m.killApiKeys, m.killRevioTokens); i++ {
		if i < m.killApiKeys {
			objs = append(objs, newApiKey(ns, fmt.Sprintf("ak-%03d", i), sim, time.Minute, 10*time.Second))
		}
		if i < m.killRevioTokens {
			objs = append(objs, newRevioToken(ns, fmt.Sprintf("rt-%03d", i), sim))
		}
	}
	// Spread over about half of the expected kill phase (a kill every
	// 1.6 s on average plus the restart); once the phase ends the rest go
	// at once.
	spread := time.Duration(m.kills) * 2500 * time.Millisecond / 2
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, obj := range objs {
			if err := s.create(ctx, obj); err != nil {
				mu.Lock()
				createErr = err
				mu.Unlock()
				return
			}
			mu.Lock()
			created = append(created, obj)
			mu.Unlock()
			sleep(phase, spread/time.Duration(len(objs)))
		}
	}()
	triggers := 0
	go func() {
		defer wg.Done()
		for n := 0; phase.Err() == nil; n++ {
			sleep(phase, 700*time.Millisecond)
			mu.Lock()
			if len(created) == 0 {
				mu.Unlock()
				continue
			}
			obj := created[rng.IntN(len(created))]
			mu.Unlock()
			key := v1alpha1.AnnotationRefresh
			if _, ok := obj.(*v1alpha1.ApiKey); ok {
				key = v1alpha1.AnnotationRotate
			}
			if s.annotate(ctx, obj, key, fmt.Sprintf("kill-%d", n)) == nil {
				triggers++
			}
		}
	}()

	killStart := time.Now()
	for i := 0; i < m.kills; i++ {
		sleep(ctx, 200*time.Millisecond+time.Duration(rng.Int64N(int64(2800*time.Millisecond))))
		mgr = s.killAndRestart(t, mgr, opts, i+1)
		s.sum.fault("manager SIGKILL (kill scenario)", 1)
	}
	killPhase := time.Since(killStart)
	cancelPhase()
	wg.Wait()
	if createErr != nil {
		t.Fatalf("create objects: %v", createErr)
	}
	// The manager that survived the last kill still does what it is asked:
	// one more rotation and refresh of everything.
	took, err := s.rotateAllAndSettle(t, chk, "after-kills", time.Now(), stopChecks)

	var aks v1alpha1.ApiKeyList
	var rts v1alpha1.RevioTokenList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if err := s.env.Client.List(ctx, &rts, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var rotations, refreshes int64
	for _, ak := range aks.Items {
		rotations += ak.Status.Rotations
	}
	for _, rt := range rts.Items {
		refreshes += rt.Status.Refreshes
	}
	if len(aks.Items)+len(rts.Items) != len(created) {
		t.Errorf("%d objects created, %d found", len(created), len(aks.Items)+len(rts.Items))
	}
	if err == nil && chk.count() == 0 {
		for i := 0; i < m.kills; i++ {
			s.sum.kill()
		}
	}
	s.sum.note("kills: %d SIGKILLs over %s (seed %d) during the creation of %d ApiKeys and %d RevioTokens, %d key rotations, %d token refreshes, %d rotate/refresh requests; one more rotation and refresh of everything done and all converged %s after the last kill",
		m.kills, killPhase.Round(time.Second), seed, len(aks.Items), len(rts.Items), rotations, refreshes, triggers, took.Round(time.Second))
}

// killAndRestart SIGKILLs mgr and starts its successor with the same
// options (up to three tries); kill n names it in failures.
func (s *suite) killAndRestart(t *testing.T, mgr *testenv.Manager, opts testenv.ManagerOptions, n int) *testenv.Manager {
	t.Helper()
	if err := mgr.Kill(); err != nil {
		t.Fatalf("kill %d: %v", n, err)
	}
	for attempt := 0; ; attempt++ {
		next, err := s.tryStartManager(opts)
		if err == nil {
			return next
		}
		if next != nil {
			_ = next.Kill()
		}
		if attempt == 2 {
			t.Fatalf("restart after kill %d: %v", n, err)
		}
	}
}

// rotateAllAndSettle asks every object of chk's namespace for one more
// rotation or refresh (value v), waits until each served it and everything
// converged, stops the background checks and reports them; took is
// measured from since.
func (s *suite) rotateAllAndSettle(t *testing.T, chk *checker, v string, since time.Time, stopChecks func()) (time.Duration, error) {
	t.Helper()
	ctx := context.Background()
	if err := s.rotateAll(ctx, chk.ns, v); err != nil {
		t.Fatal(err)
	}
	if err := waitServed(ctx, s, chk.ns, v, since, 3*time.Minute); err != nil {
		t.Error(err)
	}
	_, err := chk.waitConverged(ctx, 4*time.Minute)
	took := time.Since(since)
	stopChecks()
	if err != nil {
		t.Error(err)
	}
	chk.report(t)
	return took, err
}
