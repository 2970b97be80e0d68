package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/simfault"
	"github.com/keywarden/keywarden/internal/testenv"
)

// Phases of an admin-key rotation a kill is aimed at (issue 23).
const (
	adminPhaseCreate = "create" // intent recorded, the creation in flight at Reevit
	adminPhaseSecret = "secret" // the new key minted: the Secret write and its proof
	adminPhaseRevoke = "revoke" // the new key in use, the previous one due for revocation
)

var adminPhases = []string{adminPhaseCreate, adminPhaseSecret, adminPhaseRevoke}

// adminLatency slows every Reevit call of the scenario, so each phase of a
// rotation lasts long enough for a kill aimed at it to land inside it.
const adminLatency = 300 * time.Millisecond

// adminGrace is the rotating issuer's grace period: short, so the revoke
// phase comes within the scenario.
const adminGrace = 2 * time.Second

// testAdminKeyKills SIGKILLs the manager during admin-key rotations of a
// ReevitIssuer (issue 23): each kill is aimed at one phase in turn (the
// creation, the Secret write, the revocation of the previous key), found by
// watching the issuer's status, its Secret and apisim, and the manager is
// restarted at once. Rotations are asked with keywarden.dev/rotate and now
// and then keywarden.dev/compromised (no grace). ApiKeys of the issuer are
// created and rotated throughout. Throughout and at the end: the admin
// Secret's key authenticates (no admin key lost), every live key at apisim
// is tracked by the issuer's status or an ApiKey (none untracked), and at
// the end the issuer is Ready with nothing in flight and every ApiKey
// converges through it.
func testAdminKeyKills(t *testing.T, s *suite) {
	m := s.mode
	ctx := context.Background()
	sim := s.startApisim(t, time.Minute)
	ns := s.newNamespace(t, "adminkills")
	s.createSecret(t, ns, adminSecret, "apiKey", sim.Credentials.AdminKey)
	iss := newReevitIssuer(ns, reevitIssuer, sim, v1alpha1.SecretKeyReference{Name: adminSecret, Key: "apiKey"})
	iss.Spec.AdminKeyRotation = &v1alpha1.AdminKeyRotation{Every: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: adminGrace}}
	s.createIssuer(t, iss)
	if err := sim.Control.SetReevitFaults(ctx, simfault.Settings{Latency: simfault.Duration(adminLatency)}); err != nil {
		t.Fatalf("set apisim latency: %v", err)
	}
	opts := testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns), AllowedEndpoints: sim.Endpoints()}
	mgr := s.startManager(t, opts)
	defer func() { _ = mgr.Stop(10 * time.Second) }()

	var aks []client.Object
	for i := 0; i < m.adminApiKeys; i++ {
		ak := newApiKey(ns, fmt.Sprintf("ak-%03d", i), sim, time.Minute, 10*time.Second)
		if err := s.create(ctx, ak); err != nil {
			t.Fatal(err)
		}
		aks = append(aks, ak)
	}

	chk := newChecker(s, sim, ns, nil)
	chk.adminKeys = true
	stopChecks := chk.background(2 * time.Second)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("admin-key kills: seed %d, %d kills", seed, m.adminKills)

	w := &adminWatch{s: s, sim: sim, key: client.ObjectKeyFromObject(iss)}
	killed := map[string]int{}
	var started, compromised, unwritten int
	var maxReady time.Duration
	killStart := time.Now()
	for i := 0; i < m.adminKills; i++ {
		phase := adminPhases[i%len(adminPhases)]
		ask := func() error {
			// Nothing in flight: ask for the next rotation (each value
			// acts once), now and then as compromised. A compromised
			// rotation revokes the previous key in the pass that proves
			// the new one, before status shows it: a kill aimed at the
			// revocation asks for a rotation with grace.
			v := fmt.Sprintf("ask-%d", started)
			key := v1alpha1.AnnotationRotate
			if phase != adminPhaseRevoke && rng.IntN(4) == 0 {
				key = v1alpha1.AnnotationCompromised
				compromised++
			}
			started++
			return s.annotate(ctx, w.obj(), key, v)
		}
		if phase == adminPhaseSecret && i/len(adminPhases)%2 == 0 {
			// Every other kill aimed at the Secret write lands between
			// the creation at Reevit and the Secret write: apisim drops
			// the creation's answer after committing it, so the key is
			// minted, the manager backs off with the old key still in the
			// Secret, and a restart must replay the creation.
			if _, err := w.waitPhase(ctx, adminPhaseCreate, 90*time.Second, ask); err != nil {
				t.Fatalf("kill %d (creation before a dropped answer): %v; %s", i+1, err, w.describe(ctx))
			}
			if err := sim.Control.SetReevitFaults(ctx, simfault.Settings{Latency: simfault.Duration(adminLatency), DropAfterCommit: 1}); err != nil {
				t.Fatalf("drop the creation's answer: %v", err)
			}
			s.sum.fault("admin-key creation answer dropped", 1)
		}
		got, err := w.waitPhase(ctx, phase, 90*time.Second, ask)
		if err != nil {
			stopChecks()
			chk.report(t)
			t.Fatalf("kill %d (%s phase): %v; %s", i+1, phase, err, w.describe(ctx))
		}
		aimedUnwritten := w.unwritten
		// A random delay within the phase (it lasts at least one
		// apisim latency): not always the same instant of it.
		sleep(ctx, time.Duration(rng.Int64N(int64(adminLatency/2))))
		mgr = s.killAndRestart(t, mgr, opts, i+1)
		killed[got]++
		if got == adminPhaseSecret && aimedUnwritten {
			unwritten++
		}
		s.sum.fault("manager SIGKILL (admin-key rotations)", 1)
		// Recovered: the interrupted phase done and the issuer Ready.
		restarted := time.Now()
		if err := poll(ctx, 2*time.Minute, 50*time.Millisecond, func() (bool, string) { return w.resumed(ctx, got) }); err != nil {
			t.Errorf("after kill %d (%s phase): %v", i+1, got, err)
		}
		maxReady = max(maxReady, time.Since(restarted))
	}
	killPhase := time.Since(killStart)

	// The last rotation finishes (its previous key revoked), then every
	// ApiKey is rotated once more through the rotated admin key.
	settled := time.Now()
	if err := poll(ctx, 2*time.Minute, 200*time.Millisecond, w.settled); err != nil {
		t.Error(err)
	}
	took, err := s.rotateAllAndSettle(t, chk, "after-admin-kills", settled, stopChecks)

	final := w.obj()
	if err := s.env.Client.Get(ctx, w.key, final); err != nil {
		t.Fatal(err)
	}
	a := final.Status.AdminKey
	if a == nil || a.Rotations < int64(started) {
		t.Errorf("%d admin-key rotations asked, status.adminKey %+v", started, a)
	}
	revoked, rerr := w.revokedAdminKeys(ctx)
	if rerr != nil {
		t.Fatal(rerr)
	}
	lost, untracked := chk.adminFindings()
	if err == nil && chk.count() == 0 {
		for i := 0; i < m.adminKills; i++ {
			s.sum.kill()
		}
	}
	s.sum.note("admin-key kills: %d SIGKILLs over %s (seed %d) during %d admin-key rotations of a ReevitIssuer (%d compromised), with %d ApiKeys of it: %d in the creation, %d in the Secret write (%d found minted and not yet written), %d in the revocation; %d previous admin keys revoked; admin keys lost %d, live and untracked %d; the interrupted phase done and the issuer Ready at most %s after each restart; every ApiKey rotated and converged %s after the last rotation",
		m.adminKills, killPhase.Round(time.Second), seed, started, compromised, len(aks), killed[adminPhaseCreate], killed[adminPhaseSecret], unwritten, killed[adminPhaseRevoke],
		revoked, lost, untracked, maxReady.Round(100*time.Millisecond), took.Round(time.Second))
	for _, p := range adminPhases {
		if killed[p] < m.adminKills/len(adminPhases) {
			t.Errorf("%d kills landed in the %s phase, want at least %d (kills by phase: %v)", killed[p], p, m.adminKills/len(adminPhases), killed)
		}
	}
}

// adminWatch reads the rotating issuer, its Secret and apisim to say which
// phase of a rotation is under way.
type adminWatch struct {
	s   *suite
	sim *testenv.Apisim
	key client.ObjectKey
	// unwritten is set when the last phase read found the new key minted
	// and the Secret not yet written.
	unwritten bool
}

func (w *adminWatch) obj() *v1alpha1.ReevitIssuer {
	return &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: w.key.Namespace, Name: w.key.Name}}
}

// phase reads the issuer and names the phase under way: "" when nothing is
// in flight (idle true) or a phase without a target (the previous key
// within its grace period).
func (w *adminWatch) phase(ctx context.Context) (phase string, idle bool, err error) {
	iss := w.obj()
	if err := w.s.env.Client.Get(ctx, w.key, iss); err != nil {
		return "", false, err
	}
	a := iss.Status.AdminKey
	w.unwritten = false
	switch {
	case a == nil:
		return "", false, nil
	case a.Pending != nil:
		sec := &corev1.Secret{}
		if err := w.s.env.Client.Get(ctx, client.ObjectKey{Namespace: w.key.Namespace, Name: adminSecret}, sec); err != nil {
			return "", false, err
		}
		w.s.needles.addSecret(sec)
		if v1alpha1.Fingerprint([]byte(strings.TrimSpace(string(sec.Data["apiKey"])))) != a.Pending.OldFingerprint {
			return adminPhaseSecret, false, nil // written, not yet proven
		}
		minted, err := w.minted(ctx, a.Pending.Name)
		if err != nil || !minted {
			return adminPhaseCreate, false, err
		}
		w.unwritten = true
		return adminPhaseSecret, false, nil // minted, not yet written
	case a.Previous != nil:
		if !time.Now().Before(a.Previous.RevokeAfter.Time) {
			return adminPhaseRevoke, false, nil
		}
		return "", false, nil
	}
	return "", true, nil
}

// describe summarises the issuer's admin-key status and condition for a
// failure message (ids and prefixes only).
func (w *adminWatch) describe(ctx context.Context) string {
	iss := w.obj()
	if err := w.s.env.Client.Get(ctx, w.key, iss); err != nil {
		return err.Error()
	}
	a := iss.Status.AdminKey
	if a == nil {
		return "no status.adminKey"
	}
	c := condition(iss.Status.Conditions, v1alpha1.ConditionAdminKeyRotation)
	cond := "no AdminKeyRotation condition"
	if c != nil {
		cond = fmt.Sprintf("AdminKeyRotation=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	return fmt.Sprintf("status.adminKey id %s, rotations %d, pending %v, previous %v, lastRotateRequest %q, lastCompromisedRequest %q, failedAttempts %d; %s; annotations %v",
		a.ID, a.Rotations, a.Pending != nil, a.Previous != nil, a.LastRotateRequest, a.LastCompromisedRequest, a.FailedAttempts, cond, iss.Annotations)
}

// minted reports whether apisim holds a key named name (the pending
// rotation's).
func (w *adminWatch) minted(ctx context.Context, name string) (bool, error) {
	keys, err := w.sim.Control.ReevitKeys(ctx, w.sim.Credentials.OrgID)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		if k.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// waitPhase polls until a rotation is in phase want and returns the phase
// found. A kill aimed at the Secret write that finds the key already
// proven waits for the next rotation; when nothing is in flight and the
// issuer is Ready, ask starts one.
func (w *adminWatch) waitPhase(ctx context.Context, want string, timeout time.Duration, ask func() error) (string, error) {
	asked := false
	var got string
	err := poll(ctx, timeout, 20*time.Millisecond, func() (bool, string) {
		p, idle, err := w.phase(ctx)
		if err != nil {
			return false, err.Error()
		}
		if p == want {
			got = p
			return true, ""
		}
		if p != "" || !idle {
			asked = false // a rotation is under way: the next idle moment asks again
			return false, "phase " + p
		}
		if ok, why := w.ready(); !ok {
			return false, why
		}
		if !asked {
			if err := ask(); err != nil {
				return false, err.Error()
			}
			asked = true
		}
		return false, "idle, rotation asked"
	})
	return got, err
}

// resumed reports whether the phase a kill interrupted is over and the
// issuer Ready.
func (w *adminWatch) resumed(ctx context.Context, killed string) (bool, string) {
	p, _, err := w.phase(ctx)
	if err != nil {
		return false, err.Error()
	}
	if p == killed {
		return false, "still in the " + p + " phase"
	}
	return w.ready()
}

// ready reports whether the issuer is Ready for its generation.
func (w *adminWatch) ready() (bool, string) {
	iss := w.obj()
	if err := w.s.env.Client.Get(context.Background(), w.key, iss); err != nil {
		return false, err.Error()
	}
	if !readyFor(iss.Status.Conditions, iss.Generation) {
		return false, "issuer " + describeReady(iss.Status.Conditions)
	}
	return true, ""
}

// settled reports whether the issuer is Ready with no rotation in flight
// and no previous key left to revoke.
func (w *adminWatch) settled() (bool, string) {
	if ok, why := w.ready(); !ok {
		return false, why
	}
	iss := w.obj()
	if err := w.s.env.Client.Get(context.Background(), w.key, iss); err != nil {
		return false, err.Error()
	}
	a := iss.Status.AdminKey
	switch {
	case a == nil:
		return false, "no status.adminKey"
	case a.Pending != nil:
		return false, "admin-key rotation " + a.Pending.Name + " in flight"
	case a.Previous != nil:
		return false, fmt.Sprintf("previous admin key %s not revoked (attempts %d, last error %q)", a.Previous.ID, a.Previous.Attempts, a.Previous.LastError)
	}
	return true, ""
}

// revokedAdminKeys counts the revoked keys at apisim that were admin keys:
// apisim's first one and every key an admin-key rotation made.
func (w *adminWatch) revokedAdminKeys(ctx context.Context) (int, error) {
	keys, err := w.sim.Control.ReevitKeys(ctx, w.sim.Credentials.OrgID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		if k.Revoked && (k.ID == w.sim.Credentials.AdminKeyID || strings.HasPrefix(k.Name, "keywarden admin ")) {
			n++
		}
	}
	return n, nil
}
