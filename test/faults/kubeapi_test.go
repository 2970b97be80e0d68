package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/simfault"
	"github.com/keywarden/keywarden/internal/testenv"
)

// supervisor restarts a manager that exits by itself, as the kubelet would
// restart its container (a manager that loses its leader-election Lease
// while the API server is away exits on purpose).
type supervisor struct {
	s    *suite
	opts testenv.ManagerOptions

	mu       sync.Mutex
	cur      *testenv.Manager
	restarts int
	exits    []string
	stopping chan struct{}
	done     chan struct{}
}

func (s *suite) supervise(t *testing.T, opts testenv.ManagerOptions) *supervisor {
	t.Helper()
	sv := &supervisor{s: s, opts: opts, cur: s.startManager(t, opts), stopping: make(chan struct{}), done: make(chan struct{})}
	go sv.loop()
	return sv
}

func (sv *supervisor) loop() {
	defer close(sv.done)
	for {
		sv.mu.Lock()
		cur := sv.cur
		sv.mu.Unlock()
		select {
		case <-sv.stopping:
			return
		case <-cur.Done():
		}
		_, err := cur.Exited()
		sv.mu.Lock()
		sv.exits = append(sv.exits, fmt.Sprintf("%v", err))
		sv.mu.Unlock()
		for {
			select {
			case <-sv.stopping:
				return
			case <-time.After(time.Second):
			}
			m, err := sv.s.tryStartManager(sv.opts)
			if err == nil {
				sv.mu.Lock()
				sv.cur, sv.restarts = m, sv.restarts+1
				sv.mu.Unlock()
				break
			}
			if m != nil {
				_ = m.Kill()
			}
		}
	}
}

func (sv *supervisor) current() *testenv.Manager {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.cur
}

func (sv *supervisor) shutdown() {
	close(sv.stopping)
	<-sv.done
	_ = sv.current().Stop(10 * time.Second)
}

// testKubeAPI takes the Kubernetes API away from the manager in two ways:
// the API server restarted, and Secret writes refused (the verbs removed
// from its ClusterRole, then restored). Nothing may be lost: every
// requested rotation and refresh happens, every Secret keeps a valid
// credential, no key leaks.
func testKubeAPI(t *testing.T, s *suite) {
	m := s.mode
	ctx := context.Background()
	sim := s.startApisim(t, 10*time.Minute)
	ns := s.newNamespace(t, "kubeapi")
	s.createInputSecrets(t, ns, sim)
	// Leader election on, as config/default deploys it.
	sv := s.supervise(t, testenv.ManagerOptions{AllowedEndpoints: sim.Endpoints(), Args: managerArgs(ns, testenv.FastFailoverArgs()...)})
	defer sv.shutdown()
	s.createKeysAndTokens(ctx, t, ns, sim, m.kubeObjects, "%02d")
	chk := newChecker(s, sim, ns, nil)
	if _, err := chk.waitConverged(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	stopChecks := chk.background(3 * time.Second)
	defer stopChecks()

	t.Run("APIServerRestart", func(t *testing.T) {
		for i := 0; i < m.apiServerRestarts; i++ {
			v := fmt.Sprintf("apiserver-restart-%d", i)
			// Slow external calls, so the API server goes away while
			// creations and exchanges are in flight and their Secret writes
			// and status updates meet a missing API server.
			slow := simfault.Settings{Latency: simfault.Duration(time.Second)}
			if err := sim.Control.SetReevitFaults(ctx, slow); err != nil {
				t.Fatal(err)
			}
			if err := sim.Control.SetRevioFaults(ctx, slow); err != nil {
				t.Fatal(err)
			}
			asked := time.Now()
			if err := s.rotateAll(ctx, ns, v); err != nil {
				t.Fatal(err)
			}
			sleep(ctx, 500*time.Millisecond)
			stopped, killed, down, err := s.restartAPIServer(ctx, 5*time.Second, i)
			_ = sim.Control.SetReevitFaults(ctx, simfault.Settings{})
			_ = sim.Control.SetRevioFaults(ctx, simfault.Settings{})
			if err != nil {
				t.Fatalf("restart the API server: %v", err)
			}
			s.sum.fault("kube-apiserver restarted", 1)
			if err := waitServed(ctx, s, ns, v, asked, 3*time.Minute); err != nil {
				t.Error(err)
			}
			// And the manager works on what is asked once the API is back.
			v, asked = v+"-after", time.Now()
			if err := s.rotateAll(ctx, ns, v); err != nil {
				t.Fatal(err)
			}
			if err := waitServed(ctx, s, ns, v, asked, 3*time.Minute); err != nil {
				t.Error(err)
			}
			took, err := chk.waitConverged(ctx, 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			how := "exited on SIGTERM"
			if killed {
				how = "still draining after SIGTERM, SIGKILLed"
			}
			t.Logf("API server restart %d: %s after %s, unavailable %s; a new rotation of everything done and converged %s after it was back",
				i+1, how, stopped.Round(100*time.Millisecond), down.Round(100*time.Millisecond), took.Round(time.Second))
			s.sum.note("kube-apiserver restart %d (same etcd and port): %s after %s, unavailable %s in all; rotations asked before and after all done, converged %s after it was back",
				i+1, how, stopped.Round(100*time.Millisecond), down.Round(100*time.Millisecond), took.Round(time.Second))
		}
	})
	t.Run("SecretWritesRefused", func(t *testing.T) {
		refuseSecretWrites(t, s, chk, ns)
	})
	stopChecks()
	chk.report(t)
	sv.mu.Lock()
	s.sum.note("Kubernetes API faults: the supervised manager (leader election, lease %s) exited %d times by itself and was restarted %d times", testenv.FastFailover.LeaseDuration, len(sv.exits), sv.restarts)
	sv.mu.Unlock()
}

// refuseSecretWrites removes create, patch and update on Secrets from the
// manager's ClusterRole while rotations and refreshes are asked for, checks
// that the failure shows and that the Secrets keep their valid credential,
// restores the rule and waits for everything to catch up.
func refuseSecretWrites(t *testing.T, s *suite, chk *checker, ns string) {
	ctx := context.Background()
	c := s.env.Client
	role := &rbacv1.ClusterRole{}
	if err := c.Get(ctx, client.ObjectKey{Name: testenv.ManagerRole}, role); err != nil {
		t.Fatal(err)
	}
	original := role.DeepCopy().Rules
	restored := false
	restore := func() {
		if restored {
			return
		}
		err := retryKube(ctx, func() error {
			cur := &rbacv1.ClusterRole{}
			if err := c.Get(ctx, client.ObjectKey{Name: testenv.ManagerRole}, cur); err != nil {
				return err
			}
			cur.Rules = original
			return c.Update(ctx, cur)
		})
		if err != nil {
			t.Errorf("restore the ClusterRole: %v", err)
			return
		}
		restored = true
	}
	t.Cleanup(restore)

	reduced := role.DeepCopy()
	found := false
	for i, r := range reduced.Rules {
		if slices.Contains(r.Resources, "secrets") {
			reduced.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool {
				return v == "create" || v == "patch" || v == "update"
			})
			found = true
		}
	}
	if !found {
		t.Fatalf("ClusterRole %s has no rule for secrets", testenv.ManagerRole)
	}
	if err := c.Update(ctx, reduced); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		ok, err := managerMay(ctx, s, "patch", ns)
		return err == nil && !ok, fmt.Sprintf("manager may still patch Secrets (%v)", err)
	}); err != nil {
		t.Fatal(err)
	}
	refusedAt := time.Now()
	s.sum.fault("Secret writes refused (RBAC verbs removed)", 1)

	hold := s.mode.rbacHold
	sawFailure := false
	var asked time.Time
	for r := 0; r < 2; r++ {
		asked = time.Now()
		if err := s.rotateAll(ctx, ns, fmt.Sprintf("rbac-%d", r)); err != nil {
			t.Fatal(err)
		}
		_ = poll(ctx, hold/2, time.Second, func() (bool, string) {
			if !sawFailure {
				sawFailure = anyCondition(ctx, s, ns, v1alpha1.ConditionSecretSynced, v1alpha1.ReasonSecretWriteFailed)
			}
			return false, ""
		})
	}
	if !sawFailure {
		t.Errorf("no object reported %s while Secret writes were refused", v1alpha1.ReasonSecretWriteFailed)
	}
	restore()
	if err := poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		ok, err := managerMay(ctx, s, "patch", ns)
		return err == nil && ok, fmt.Sprintf("manager may not patch Secrets yet (%v)", err)
	}); err != nil {
		t.Fatal(err)
	}
	refused := time.Since(refusedAt)
	if err := waitServed(ctx, s, ns, "rbac-1", asked, 2*hold+90*time.Second); err != nil {
		t.Error(err)
	}
	took, err := chk.waitConverged(ctx, 2*hold+90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Secret writes refused for %s; converged %s after the rule came back", refused.Round(time.Second), took.Round(time.Second))
	s.sum.note("Secret writes refused for %s: %s reported; converged %s after the RBAC rule came back, every requested rotation and refresh done",
		refused.Round(time.Second), v1alpha1.ReasonSecretWriteFailed, took.Round(time.Second))
}

// managerMay asks the API server whether the manager's identity may do verb
// on Secrets in ns.
func managerMay(ctx context.Context, s *suite, verb, ns string) (bool, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: testenv.ManagerUser, Groups: testenv.ManagerGroups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets"},
	}}
	if err := s.env.Client.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// anyCondition reports whether an object in ns has condition typ False with reason.
func anyCondition(ctx context.Context, s *suite, ns, typ, reason string) bool {
	var aks v1alpha1.ApiKeyList
	var rts v1alpha1.RevioTokenList
	if s.env.Client.List(ctx, &aks, client.InNamespace(ns)) != nil || s.env.Client.List(ctx, &rts, client.InNamespace(ns)) != nil {
		return false
	}
	match := func(conds []metav1.Condition) bool {
		c := meta.FindStatusCondition(conds, typ)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason
	}
	for _, ak := range aks.Items {
		if match(ak.Status.Conditions) {
			return true
		}
	}
	for _, rt := range rts.Items {
		if match(rt.Status.Conditions) {
			return true
		}
	}
	return false
}

// unserved lists the ApiKeys in ns that have not acted on rotation request
// v (asked at asked) with a new key since, and the RevioTokens that have not
// acted on refresh request v with a new token since.
func unserved(ctx context.Context, s *suite, ns, v string, asked time.Time) ([]string, error) {
	var aks v1alpha1.ApiKeyList
	var rts v1alpha1.RevioTokenList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	if err := s.env.Client.List(ctx, &rts, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	since := &metav1.Time{Time: asked.Truncate(time.Second)}
	var out []string
	for _, ak := range aks.Items {
		if at := ak.Status.ActiveSince; ak.Status.LastRotateRequest != v || at == nil || at.Before(since) {
			out = append(out, fmt.Sprintf("ApiKey %s: rotation request %q not served (last served %q, key active since %s)", ak.Name, v, ak.Status.LastRotateRequest, stamp(at)))
		}
	}
	for _, rt := range rts.Items {
		if at := rt.Status.LastRefreshTime; rt.Status.LastRefreshRequest != v || at == nil || at.Before(since) {
			out = append(out, fmt.Sprintf("RevioToken %s: refresh request %q not served (last served %q, last refresh %s)", rt.Name, v, rt.Status.LastRefreshRequest, stamp(at)))
		}
	}
	return out, nil
}

// waitServed waits until every object in ns acted on request v: nothing
// asked for was lost.
func waitServed(ctx context.Context, s *suite, ns, v string, asked time.Time, timeout time.Duration) error {
	return poll(ctx, timeout, time.Second, func() (bool, string) {
		out, err := unserved(ctx, s, ns, v, asked)
		if err != nil {
			return false, err.Error()
		}
		return len(out) == 0, strings.Join(out, "; ")
	})
}
