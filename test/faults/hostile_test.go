package faults

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// hostileMode sizes the hostile-tenant scenarios (issue 15).
type hostileMode struct {
	healthy    int           // healthy RevioTokens whose refresh lag is measured
	apiKeys    int           // healthy ApiKeys rotated or compromised under the black hole
	blackHoled int           // RevioTokens whose issuer is a black hole
	baseline   time.Duration // lag measured before the black hole
	window     time.Duration // lag measured with it
	foreign    int           // foreign 1 MB Secrets named as outputs
}

// hostileFigures are the hostile scenarios' summary figures; the summary's
// mutex guards them.
type hostileFigures struct {
	measured                    bool
	keysLeftLive                int
	revocations, revBlocked     int
	lagBase, lagHole            []time.Duration
	blackHoled, holeConns       int
	overdue                     int // healthy tokens over 5 s past their refresh at the window's end
	foreign, objects, conflicts int
	rssBase, rssPeak, heapEnd   float64 // bytes; heapEnd: live heap once settled
}

// hostileUpdate changes the hostile figures under the summary's lock.
func (s *summary) hostileUpdate(fn func(*hostileFigures)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hostile.measured = true
	fn(&s.hostile)
}

// render prints the hostile figures (called with the summary's lock held).
func (h *hostileFigures) render(b *strings.Builder) {
	if !h.measured {
		return
	}
	fmt.Fprintf(b, "hostile tenants:       keys left live %d; revocations blocked %d of %d\n", h.keysLeftLive, h.revBlocked, h.revocations)
	if h.blackHoled > 0 {
		fmt.Fprintf(b, "  healthy refresh lag, %d black-holed tokens: %s, %d overdue; before them: %s; %d connections to the black hole\n",
			h.blackHoled, lagFigures(h.lagHole), h.overdue, lagFigures(h.lagBase), h.holeConns)
	}
	if h.foreign > 0 {
		fmt.Fprintf(b, "  manager RSS, %d foreign 1 MB Secrets named as outputs: peak %.1f MiB (before %.1f MiB), heap in use once settled %.1f MiB; %d of %d objects SecretConflict\n",
			h.foreign, h.rssPeak/(1<<20), h.rssBase/(1<<20), h.heapEnd/(1<<20), h.conflicts, h.objects)
	}
}

// lagFigures prints p50 / p99 / max of lags.
func lagFigures(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no refreshes"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[max(0, int(float64(len(s))*p+0.999999)-1)] }
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("p50 %s, p99 %s, max %s (%d refreshes)", r(pct(0.5)), r(pct(0.99)), r(s[len(s)-1]), len(s))
}

// blackHole accepts connections on loopback and never answers.
type blackHole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			_ = c.Close()
		}
	})
	return h
}

func (h *blackHole) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// forEach runs fn for 0..n-1 on 8 goroutines and returns the first error.
func forEach(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = firstErr(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// testBlackHole: healthy RevioTokens of short-lived tokens (15 s: a refresh
// every ~10 s, 5 s before expiry) refresh while a second namespace's
// RevioTokens name an issuer whose URL accepts connections and never
// answers, and healthy ApiKeys are rotated and compromised meanwhile. It
// reports the healthy tokens' refresh lag (Secret update against
// status.nextRefreshTime) before and with the black hole, and requires every
// healthy token refreshed before it expires, every replaced key revoked and
// no key left live.
func testBlackHole(t *testing.T, s *suite) {
	hm := s.mode.hostile
	ctx := context.Background()
	sim := s.startApisim(t, 15*time.Second)
	hole := startBlackHole(t)
	nsH, nsB := s.newNamespace(t, "healthy"), s.newNamespace(t, "blackhole")
	s.createInputSecrets(t, nsH, sim)
	holeKey := "bh_" + randomHex(16)
	s.needles.add("black-hole Rev.io API key", holeKey)
	s.createSecret(t, nsB, revioSecret, "apiKey", holeKey)
	s.createIssuer(t, &v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: revioIssuer},
		Spec: v1alpha1.RevioIssuerSpec{URL: "http://" + hole.ln.Addr().String(), Host: sim.Credentials.RevioHost,
			APIKeySecretRef: v1alpha1.SecretKeyReference{Name: revioSecret, Key: "apiKey"}}})
	mgr := s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(nsH + "," + nsB),
		// The black hole is listed: what it tests is an allowed endpoint that never answers.
		AllowedEndpoints: append(sim.Endpoints(), "http://"+hole.ln.Addr().String())})
	defer func() { _ = mgr.Stop(10 * time.Second) }()

	if err := forEach(hm.healthy+hm.apiKeys, func(i int) error {
		if i < hm.apiKeys {
			return s.create(ctx, newApiKey(nsH, fmt.Sprintf("ak-%02d", i), sim, time.Hour, 5*time.Second))
		}
		return s.create(ctx, newRevioToken(nsH, fmt.Sprintf("rt-%02d", i-hm.apiKeys), sim))
	}); err != nil {
		t.Fatal(err)
	}
	chk := newChecker(s, sim, nsH, nil) // nil policy: a token expired in a Secret is a lost credential
	if _, err := chk.waitConverged(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	stopChecks := chk.background(2 * time.Second)
	lags, err := startLagTracker(s, nsH)
	if err != nil {
		t.Fatal(err)
	}
	defer lags.stop()
	sleep(ctx, hm.baseline)
	base := lags.take()

	if err := forEach(hm.blackHoled, func(i int) error {
		return s.create(ctx, newRevioToken(nsB, fmt.Sprintf("bh-%03d", i), sim))
	}); err != nil {
		t.Fatal(err)
	}
	sleep(ctx, 5*time.Second)
	replaced, err := rotateAndCompromise(ctx, s, nsH)
	if err != nil {
		t.Fatal(err)
	}
	sleep(ctx, hm.window-5*time.Second)
	withHole, overdue := lags.take(), lags.overdue(5*time.Second)
	blocked := waitRevoked(ctx, s, sim, replaced, time.Minute)
	stopChecks()
	live, err := keysLeftLive(ctx, s, sim, nsH)
	if err != nil {
		t.Fatal(err)
	}
	chk.report(t)
	reportBlackHole(t, s, hm, base, withHole, overdue, hole.accepted(), len(replaced), blocked, live)
}

// reportBlackHole records and checks the black-hole scenario's figures.
func reportBlackHole(t *testing.T, s *suite, hm hostileMode, base, withHole []time.Duration, overdue, conns, replaced int, blocked []string, live []string) {
	s.sum.hostileUpdate(func(h *hostileFigures) {
		h.lagBase, h.lagHole, h.blackHoled, h.holeConns, h.overdue = base, withHole, hm.blackHoled, conns, overdue
		h.revocations += replaced
		h.revBlocked += len(blocked)
		h.keysLeftLive += len(live)
	})
	t.Logf("healthy refresh lag before the black hole: %s; with %d black-holed tokens: %s, %d overdue; %d connections to the black hole; %d of %d replaced keys not revoked; %d keys left live",
		lagFigures(base), hm.blackHoled, lagFigures(withHole), overdue, conns, len(blocked), replaced, len(live))
	s.sum.note("black hole: %d RevioTokens of a black-holed issuer; healthy refresh lag %s (before: %s); %d connections to the black hole",
		hm.blackHoled, lagFigures(withHole), lagFigures(base), conns)
	if len(withHole) == 0 {
		t.Error("no healthy refresh measured with the black hole: the scenario measured nothing")
	}
	if overdue > 0 {
		t.Errorf("%d healthy tokens more than 5 s past their scheduled refresh at the window's end", overdue)
	}
	for _, id := range blocked {
		t.Errorf("replaced key %s was not revoked within a minute", id)
	}
	for _, p := range live {
		t.Errorf("key left live: %s", p)
	}
}

// rotateAndCompromise asks half the ApiKeys of ns for a rotation and marks
// the others compromised; it returns the key ids that must be revoked.
func rotateAndCompromise(ctx context.Context, s *suite, ns string) ([]string, error) {
	var aks v1alpha1.ApiKeyList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	v := fmt.Sprintf("hostile-%d", time.Now().Unix())
	var ids []string
	for i := range aks.Items {
		ak := &aks.Items[i]
		ann := v1alpha1.AnnotationRotate
		if i%2 == 1 {
			ann = v1alpha1.AnnotationCompromised
		}
		if ak.Status.KeyID == "" {
			return nil, fmt.Errorf("ApiKey %s has no key", ak.Name)
		}
		ids = append(ids, ak.Status.KeyID)
		if err := s.annotate(ctx, ak, ann, v); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// waitRevoked waits until apisim reports every key of ids revoked and
// returns those still active after timeout.
func waitRevoked(ctx context.Context, s *suite, sim *testenv.Apisim, ids []string, timeout time.Duration) []string {
	var active []string
	_ = poll(ctx, timeout, time.Second, func() (bool, string) {
		keys, err := sim.Control.ReevitKeys(ctx, sim.Credentials.OrgID)
		if err != nil {
			return false, err.Error()
		}
		active = active[:0]
		for _, k := range keys {
			if !k.Revoked && slices.Contains(ids, k.ID) {
				active = append(active, k.ID)
			}
		}
		return len(active) == 0, fmt.Sprintf("%d keys not revoked", len(active))
	})
	return active
}

// keysLeftLive lists the keys apisim holds active for an ApiKey of ns that
// the ApiKey does not track (its key, a pending revocation, or a creation
// in flight).
func keysLeftLive(ctx context.Context, s *suite, sim *testenv.Apisim, ns string) ([]string, error) {
	keys, err := sim.Control.ReevitKeys(ctx, sim.Credentials.OrgID)
	if err != nil {
		return nil, err
	}
	var aks v1alpha1.ApiKeyList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	byUID := map[string]*v1alpha1.ApiKey{}
	for i := range aks.Items {
		byUID[string(aks.Items[i].UID)] = &aks.Items[i]
	}
	var live []string
	for _, k := range keys {
		uid, _, ok := reevit.ParseMarker(k.Name)
		ak := byUID[uid]
		if !ok || k.Revoked || ak == nil {
			continue
		}
		st := ak.Status
		pending := slices.ContainsFunc(st.PendingRevocations, func(p v1alpha1.PendingRevocation) bool { return p.KeyID == k.ID })
		inFlight := st.PendingCreate != nil && st.PendingCreate.Name == k.Name
		if k.ID != st.KeyID && !pending && !inFlight {
			live = append(live, fmt.Sprintf("key %s of ApiKey %s/%s", k.ID, ns, ak.Name))
		}
	}
	return live, nil
}

// testForeignSecrets: ApiKeys and RevioTokens whose output names are taken
// by foreign 1 MB Secrets. Each must report SecretConflict, no foreign
// Secret may change, no key may be left live, and the manager's peak RSS
// (process_resident_memory_bytes, scraped every 250 ms) is reported.
func testForeignSecrets(t *testing.T, s *suite) {
	hm := s.mode.hostile
	ctx := context.Background()
	sim := s.startApisim(t, 0)
	ns := s.newNamespace(t, "foreign")
	s.createInputSecrets(t, ns, sim)
	mgr := s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns), AllowedEndpoints: sim.Endpoints()})
	defer func() { _ = mgr.Stop(10 * time.Second) }()
	for _, obj := range []client.Object{newApiKey(ns, "ok-ak", sim, 0, 0), newRevioToken(ns, "ok-rt", sim)} {
		if err := s.create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := newChecker(s, sim, ns, nil).waitConverged(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	rss := startRSSSampler(mgr)
	defer rss.stop()
	sleep(ctx, 3*time.Second)
	base := rss.takeMax()

	versions, err := createForeignSecrets(ctx, s, ns, hm.foreign)
	if err != nil {
		t.Fatal(err)
	}
	if err := forEach(hm.foreign, func(i int) error {
		name, out := fmt.Sprintf("taken-%03d", i), fmt.Sprintf("foreign-%03d", i)
		if i%2 == 0 {
			ak := newApiKey(ns, name, sim, 0, 0)
			ak.Spec.Secret.Name = out
			return s.create(ctx, ak)
		}
		rt := newRevioToken(ns, name, sim)
		rt.Spec.Secret.Name = out
		return s.create(ctx, rt)
	}); err != nil {
		t.Fatal(err)
	}
	conflicts, waitErr := waitConflicts(ctx, s, ns, hm.foreign, 3*time.Minute)
	if waitErr != nil {
		t.Error(waitErr)
	}
	sleep(ctx, 10*time.Second) // the steady state after the burst
	peak := rss.takeMax()
	heap, _ := scrape(ctx, mgr, "go_memstats_heap_inuse_bytes")
	checkForeignUnchanged(ctx, t, s, ns, versions)
	live, err := keysLeftLive(ctx, s, sim, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range live {
		t.Errorf("key left live: %s", p)
	}
	s.sum.hostileUpdate(func(h *hostileFigures) {
		h.foreign, h.objects, h.conflicts, h.rssBase, h.rssPeak, h.heapEnd = hm.foreign, hm.foreign, conflicts, base, peak, heap
		h.keysLeftLive += len(live)
	})
	t.Logf("%d foreign 1 MB Secrets named as outputs: %d of %d objects SecretConflict; manager RSS peak %.1f MiB (before %.1f MiB), heap in use once settled %.1f MiB; %d keys left live",
		hm.foreign, conflicts, hm.foreign, peak/(1<<20), base/(1<<20), heap/(1<<20), len(live))
	s.sum.note("foreign Secrets: %d objects naming foreign 1 MB Secrets as outputs, %d SecretConflict; manager RSS peak %.1f MiB (before %.1f MiB)",
		hm.foreign, conflicts, peak/(1<<20), base/(1<<20))
	_ = mgr.Stop(10 * time.Second)
	// 300 MB of Secrets would burden the scenarios after this one.
	_ = s.env.Client.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns), client.MatchingLabels{"faults.keywarden.dev/foreign": "true"})
}

// createForeignSecrets creates n Secrets foreign-000.. of 1 MiB of random
// data each and returns their resourceVersions.
func createForeignSecrets(ctx context.Context, s *suite, ns string, n int) (map[string]string, error) {
	blob := make([]byte, 1<<20)
	_, _ = rand.Read(blob)
	var mu sync.Mutex
	versions := map[string]string{}
	err := forEach(n, func(i int) error {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("foreign-%03d", i),
			Labels: map[string]string{"faults.keywarden.dev/foreign": "true"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"blob": blob}}
		if err := s.create(ctx, sec); err != nil {
			return err
		}
		mu.Lock()
		versions[sec.Name] = sec.ResourceVersion
		mu.Unlock()
		return nil
	})
	return versions, err
}

// waitConflicts waits until n objects of ns report Ready=False
// SecretConflict and returns how many do.
func waitConflicts(ctx context.Context, s *suite, ns string, n int, timeout time.Duration) (int, error) {
	count := 0
	err := poll(ctx, timeout, 2*time.Second, func() (bool, string) {
		var aks v1alpha1.ApiKeyList
		var rts v1alpha1.RevioTokenList
		if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		if err := s.env.Client.List(ctx, &rts, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		count = 0
		conflict := func(obj client.Object, conds []metav1.Condition, status any) {
			s.statuses.add(obj, status)
			if r := condition(conds, v1alpha1.ConditionReady); r != nil && r.Status == metav1.ConditionFalse && r.Reason == v1alpha1.ReasonSecretConflict {
				count++
			}
		}
		for i := range aks.Items {
			conflict(&aks.Items[i], aks.Items[i].Status.Conditions, aks.Items[i].Status)
		}
		for i := range rts.Items {
			conflict(&rts.Items[i], rts.Items[i].Status.Conditions, rts.Items[i].Status)
		}
		return count >= n, fmt.Sprintf("%d of %d objects report SecretConflict", count, n)
	})
	return count, err
}

// checkForeignUnchanged fails t when a foreign Secret changed (metadata
// only is read: 300 MB of data stay on the server).
func checkForeignUnchanged(ctx context.Context, t *testing.T, s *suite, ns string, versions map[string]string) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := s.env.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"faults.keywarden.dev/foreign": "true"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Items {
		if versions[m.Name] != m.ResourceVersion || len(m.Finalizers) > 0 || len(m.OwnerReferences) > 0 {
			t.Errorf("foreign Secret %s was modified (resourceVersion %s, was %s; finalizers %v; owners %d)",
				m.Name, m.ResourceVersion, versions[m.Name], m.Finalizers, len(m.OwnerReferences))
		}
	}
	if len(list.Items) != len(versions) {
		t.Errorf("%d foreign Secrets remain of %d", len(list.Items), len(versions))
	}
}
