package faults

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// testLeaderElection runs two managers with leader election, stops the
// leader with SIGKILL and with SIGTERM (which releases the Lease), and
// measures how long until the other one reconciles: the time from the signal
// to the first status written on an object created right after it. Every
// object must end with exactly one key per creation it started.
func testLeaderElection(t *testing.T, s *suite) {
	ctx := context.Background()
	sim := s.startApisim(t, 10*time.Minute)
	ns := s.newNamespace(t, "leader")
	s.createInputSecrets(t, ns, sim)
	// Leader election as testenv.FastFailover sets it: a failover within
	// seconds, measured here.
	opts := testenv.ManagerOptions{AllowedEndpoints: sim.Endpoints(), Args: managerArgs(ns, testenv.FastFailoverArgs()...)}
	mgrs := []*testenv.Manager{s.startManager(t, opts), s.startManager(t, opts)}
	defer func() {
		for _, m := range mgrs {
			_ = m.Stop(10 * time.Second)
		}
	}()

	s.createKeysAndTokens(ctx, t, ns, sim, 3, "%d")
	chk := newChecker(s, sim, ns, nil)
	if _, err := chk.waitConverged(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	stopChecks := chk.background(2 * time.Second)

	for round := 0; round < 2*s.mode.failovers(); round++ {
		sigkill := round%2 == 0
		leader, follower, err := whoLeads(ctx, mgrs)
		if err != nil {
			t.Fatal(err)
		}
		// A rotation in flight at the moment the leader goes: the new
		// leader must finish it with the same key, not a second one.
		if err := s.rotateAll(ctx, ns, fmt.Sprintf("failover-%d", round)); err != nil {
			t.Fatal(err)
		}
		sleep(ctx, 300*time.Millisecond)
		oldHolder := leaseHolder(ctx, s)

		t0 := time.Now()
		kind := "SIGTERM"
		if sigkill {
			kind = "SIGKILL"
			if err := leader.Kill(); err != nil {
				t.Fatal(err)
			}
		} else if err := leader.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		s.sum.fault("leader "+kind, 1)
		// A short grace period: every later round rotates the probes too, and
		// their previous keys must not pile up to the revocation backlog.
		probeAK := newApiKey(ns, fmt.Sprintf("probe-ak-%d", round), sim, time.Hour, 10*time.Second)
		probeRT := newRevioToken(ns, fmt.Sprintf("probe-rt-%d", round), sim)
		if err := s.create(ctx, probeAK); err != nil {
			t.Fatal(err)
		}
		if err := s.create(ctx, probeRT); err != nil {
			t.Fatal(err)
		}

		var leaseAt, reconcileAt time.Duration
		err = poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, string) {
			if leaseAt == 0 {
				if h := leaseHolder(ctx, s); h != "" && h != oldHolder {
					leaseAt = time.Since(t0)
				}
			}
			if reconcileAt == 0 {
				ak := &v1alpha1.ApiKey{}
				rt := &v1alpha1.RevioToken{}
				if s.env.Client.Get(ctx, client.ObjectKeyFromObject(probeAK), ak) == nil && len(ak.Status.Conditions) > 0 ||
					s.env.Client.Get(ctx, client.ObjectKeyFromObject(probeRT), rt) == nil && len(rt.Status.Conditions) > 0 {
					reconcileAt = time.Since(t0)
				}
			}
			return leaseAt > 0 && reconcileAt > 0, fmt.Sprintf("lease taken over after %s, first reconcile after %s", leaseAt, reconcileAt)
		})
		if err != nil {
			t.Fatalf("%s of the leader: no failover: %v\nfollower log:\n%s", kind, err, follower.LogTail(30))
		}
		s.sum.gap(sigkill, leaseAt, reconcileAt)
		t.Logf("%s of the leader: Lease taken over after %s, first reconcile by the other manager after %s", kind, leaseAt.Round(10*time.Millisecond), reconcileAt.Round(10*time.Millisecond))
		if !sigkill {
			if exited, _ := leader.Wait(45 * time.Second); !exited {
				t.Errorf("the leader did not exit within 45 s of SIGTERM")
			}
		}
		if l, err := scrape(ctx, follower, "leader_election_master_status", `name="`+testenv.LeaderElectionID+`"`); err != nil || l != 1 {
			t.Errorf("the follower does not report itself leader (%v, %v)", l, err)
		}

		// A fresh follower takes the old leader's place.
		mgrs = []*testenv.Manager{follower, s.startManager(t, opts)}
		if _, err := chk.waitConverged(ctx, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	stopChecks()

	// No double create: each creation an object started made one key.
	var aks v1alpha1.ApiKeyList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	keys, err := sim.Control.ReevitKeys(ctx, sim.Credentials.OrgID)
	if err != nil {
		t.Fatal(err)
	}
	perObject := map[string]int{}
	for _, k := range keys {
		if uid, _, ok := reevit.ParseMarker(k.Name); ok {
			perObject[uid]++
		}
	}
	for _, ak := range aks.Items {
		if got := perObject[string(ak.UID)]; int64(got) != ak.Status.KeyGeneration {
			t.Errorf("ApiKey %s: %d keys at apisim for %d creations started (status.keyGeneration)", ak.Name, got, ak.Status.KeyGeneration)
		}
	}
	chk.report(t)
}

// whoLeads finds the manager that reports itself leader (controller-runtime's
// leader_election_master_status) and the other one.
func whoLeads(ctx context.Context, mgrs []*testenv.Manager) (leader, follower *testenv.Manager, err error) {
	err = poll(ctx, time.Minute, 200*time.Millisecond, func() (bool, string) {
		var leaders []int
		for i, m := range mgrs {
			if v, err := scrape(ctx, m, "leader_election_master_status", `name="`+testenv.LeaderElectionID+`"`); err == nil && v == 1 {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Sprintf("%d managers report themselves leader", len(leaders))
		}
		leader, follower = mgrs[leaders[0]], mgrs[1-leaders[0]]
		return true, ""
	})
	return leader, follower, err
}

// leaseHolder is the identity holding the manager's Lease ("" when none).
func leaseHolder(ctx context.Context, s *suite) string {
	var l coordinationv1.Lease
	if err := s.env.Client.Get(ctx, client.ObjectKey{Namespace: testenv.ManagerNamespace, Name: testenv.LeaderElectionID}, &l); err != nil {
		return ""
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
