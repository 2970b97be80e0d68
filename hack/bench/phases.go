package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
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
	convergePeakRSS                     int64
	createPath                          map[string]tally // ApiKey, RevioToken, shared
	createWrites                        int
	createExt                           extCounts

	// floor
	floorWrites int
	floorDur    time.Duration
	// the operator's reads (get, list) on the create path, and the time a
	// bare client takes for the operator's writes and reads together
	createReads int
	floorRWDur  time.Duration

	// steady state
	steadyDur  time.Duration
	steadyReqs tally
	steadyExt  extCounts

	// restart
	restartStop   time.Duration
	restartReady  time.Duration
	restartIdle   time.Duration
	restartReqs   tally
	restartExt    extCounts
	restartReadyN int

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

	// memory
	memSecrets, memSecretSize int
	memCreate                 time.Duration
	baseRSS, withRSS          []int64
	baseHeap, withHeap        float64 // go_gc_heap_live_bytes
	memReqs                   tally
}

// owner is the benchmark object a request concerns, from its name: an
// output Secret has its object's name, an Event's name starts with it.
// Requests on shared things (input Secrets, lists, watches) have none.
func owner(r request) string {
	if r.NS != benchNS {
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

// converge creates N ApiKeys and N RevioTokens at once and waits until all
// are Ready; then, the manager idle, it tallies the create path.
func (b *bench) converge(ctx context.Context) error {
	cl, r, n := b.cl, b.res, b.o.n
	r.n, r.nAK = n, n
	if b.o.tokensOnly {
		r.nAK = 0
	}
	total := r.nAK + n
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	pid := cl.managerPid()
	cpu0, _ := procCPU(pid)
	meter := cl.newCPUMeter()
	p0, busy0, total0 := meter.read()
	m0, err := cl.scrapeMetrics(ctx)
	if err != nil {
		return err
	}
	stopPeak := b.samplePeakRSS(ctx, &r.convergePeakRSS)

	b.logf("converge: creating %d ApiKeys and %d RevioTokens with %d writers", r.nAK, n, b.o.writers)
	var profDone []chan error
	if b.o.apiserverProfile != "" {
		done := make(chan error, 1)
		profDone = append(profDone, done)
		go func() {
			done <- cl.profileAPIServer(ctx, time.Duration(b.o.profileSeconds)*time.Second, b.o.apiserverProfile)
		}()
	}
	if b.o.managerProfile != "" {
		done := make(chan error, 1)
		profDone = append(profDone, done)
		go func() {
			done <- cl.profileManager(ctx, fmt.Sprintf("profile?seconds=%d", b.o.profileSeconds), "manager-cpu-converge.pprof")
		}()
	}
	t0 := time.Now()
	err = pool(ctx, total, b.o.writers, func(ctx context.Context, i int) error {
		if r.nAK == 0 {
			i = 2*i + 1 // RevioTokens only
		}
		if i%2 == 0 {
			name := apiKeyName(i / 2)
			b.tr.expect(kindApiKey, name, time.Now())
			return cl.c.Create(ctx, cl.newApiKey(name))
		}
		name := revioTokenName(i / 2)
		b.tr.expect(kindRevioToken, name, time.Now())
		return cl.c.Create(ctx, cl.newRevioToken(name))
	})
	if err != nil {
		return fmt.Errorf("create objects: %w", err)
	}
	r.createSend = time.Since(t0)
	b.logf("converge: %d creates sent in %s; waiting for Ready", total, r.createSend.Round(time.Millisecond))
	ready := func(s objState) bool { return s.Ready }
	if err := b.tr.waitFor(ctx, kindApiKey, names(r.nAK, apiKeyName), b.o.timeout, cl.alive, ready); err != nil {
		return err
	}
	if err := b.tr.waitFor(ctx, kindRevioToken, names(n, revioTokenName), b.o.timeout, cl.alive, ready); err != nil {
		return err
	}
	cpu1, _ := procCPU(pid)
	r.convergeCPU = cpu1 - cpu0
	r.convergeUse = meter.since(p0, busy0, total0)
	for _, s := range b.tr.snapshot("") {
		lat := s.ReadyAt.Sub(s.CreateSent)
		done := s.ReadyAt.Sub(t0)
		r.latAll = append(r.latAll, lat)
		r.convergeAll = max(r.convergeAll, done)
		if s.Kind == kindApiKey {
			r.latAK = append(r.latAK, lat)
			r.convergeAK = max(r.convergeAK, done)
		} else {
			r.latRT = append(r.latRT, lat)
			r.convergeRT = max(r.convergeRT, done)
		}
	}
	b.logf("converge: all %d Ready after %s; waiting for the manager to go idle", total, r.convergeAll.Round(time.Millisecond))

	last, err := cl.audit.waitIdle(ctx, t0, b.o.idle, cl.alive)
	if err != nil {
		return err
	}
	stopPeak()
	for _, done := range profDone {
		if err := <-done; err != nil {
			b.logf("profile: %v", err)
		}
	}
	m1, err := cl.scrapeMetrics(ctx)
	if err != nil {
		return err
	}
	dm := m1.minus(m0)
	r.convergeStats = map[string]controllerStats{}
	for _, c := range []string{"apikey", "reviotoken", "adminsecret"} {
		r.convergeStats[c] = dm.controller(c)
	}
	r.convergeExtMean = map[string]time.Duration{}
	for _, api := range []string{"reevit", "revio"} {
		if n := dm.sum("keywarden_external_request_duration_seconds_count", `api="`+api+`"`); n > 0 {
			r.convergeExtMean[api] = time.Duration(dm.sum("keywarden_external_request_duration_seconds_sum", `api="`+api+`"`) / n * float64(time.Second))
		}
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	ext1, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.createExt = ext1.minus(ext0)
	r.createPath = map[string]tally{kindApiKey: {}, kindRevioToken: {}, "shared": {}}
	for _, q := range cl.audit.between(t0, last.Add(time.Microsecond)) {
		r.createPath[kindOf(owner(q))].add(q)
		switch {
		case q.isWrite():
			r.createWrites++
		case q.Verb == "get" || q.Verb == "list":
			r.createReads++
		}
	}
	b.logf("converge: the manager made %d writes; idle %s after the last Ready", r.createWrites, last.Sub(t0.Add(r.convergeAll)).Round(time.Millisecond))
	return nil
}

// samplePeakRSS samples the manager's RSS every 200 ms into peak until the
// returned function is called.
func (b *bench) samplePeakRSS(ctx context.Context, peak *int64) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if rss, err := procRSS(b.cl.managerPid()); err == nil && rss > *peak {
				*peak = rss
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// floor times a bare client making as many writes as the operator made,
// with the same number of concurrent writers: ConfigMap creates.
func (b *bench) floor(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.floorWrites = r.createWrites
	if err := cl.createNamespace(ctx, floorNS); err != nil {
		return err
	}
	b.logf("floor: %d ConfigMap creates with %d writers", r.floorWrites, b.o.writers)
	meter := cl.newCPUMeter()
	p0, busy0, total0 := meter.read()
	t0 := time.Now()
	err := pool(ctx, r.floorWrites, b.o.writers, func(ctx context.Context, i int) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("floor-%06d", i), Namespace: floorNS},
			Data:       map[string]string{"value": fmt.Sprintf("%032d", i)},
		}
		return cl.c.Create(ctx, cm)
	})
	r.floorDur = time.Since(t0)
	r.floorUse = meter.since(p0, busy0, total0)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	b.logf("floor: %s (%.0f writes/s)", r.floorDur.Round(time.Millisecond), float64(r.floorWrites)/r.floorDur.Seconds())

	// The same writes plus the operator's reads (GETs of the ConfigMaps
	// just created), interleaved: what the request count alone costs.
	w, rd := r.floorWrites, r.createReads
	b.logf("floor with reads: %d ConfigMap creates and %d GETs with %d writers", w, rd, b.o.writers)
	t0 = time.Now()
	err = pool(ctx, w+rd, b.o.writers, func(ctx context.Context, i int) error {
		// Spread the creates evenly among the GETs.
		if (i+1)*w/(w+rd) != i*w/(w+rd) {
			j := i * w / (w + rd)
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("floorrw-%06d", j), Namespace: floorNS},
				Data:       map[string]string{"value": fmt.Sprintf("%032d", j)},
			}
			return cl.c.Create(ctx, cm)
		}
		var cm corev1.ConfigMap
		return cl.c.Get(ctx, client.ObjectKey{Namespace: floorNS, Name: fmt.Sprintf("floor-%06d", i%w)}, &cm)
	})
	r.floorRWDur = time.Since(t0)
	if err != nil {
		return fmt.Errorf("floor with reads: %w", err)
	}
	b.logf("floor with reads: %s", r.floorRWDur.Round(time.Millisecond))
	return nil
}

// steady counts what the manager does while nothing is due.
func (b *bench) steady(ctx context.Context) error {
	cl, r := b.cl, b.res
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	b.logf("steady state: watching for %s", b.o.steady)
	t0 := time.Now()
	if err := sleepAlive(ctx, b.o.steady, cl.alive); err != nil {
		return err
	}
	t1 := time.Now()
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	ext1, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.steadyDur = t1.Sub(t0)
	r.steadyExt = ext1.minus(ext0)
	r.steadyReqs = tally{}
	for _, q := range cl.audit.between(t0, t1) {
		r.steadyReqs.add(q)
	}
	return nil
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

// restart stops the manager with SIGTERM and starts it again with every
// object Ready, and counts what it does until it is idle.
func (b *bench) restart(ctx context.Context) error {
	cl, r := b.cl, b.res
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	b.logf("restart: SIGTERM to the manager")
	ts := time.Now()
	if err := cl.stopManager(); err != nil {
		return err
	}
	r.restartStop = time.Since(ts)
	t0 := time.Now()
	if _, err := cl.startManager(ctx); err != nil {
		return err
	}
	r.restartReady = time.Since(t0)
	last, err := cl.audit.waitIdle(ctx, t0, b.o.idle, cl.alive)
	if err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	ext1, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.restartIdle = last.Sub(t0)
	r.restartExt = ext1.minus(ext0)
	r.restartReqs = tally{}
	for _, q := range cl.audit.between(t0, last.Add(time.Microsecond)) {
		r.restartReqs.add(q)
	}
	for _, s := range b.tr.snapshot("") {
		if s.Ready {
			r.restartReadyN++
		}
	}
	if r.restartReadyN != r.nAK+r.n {
		return fmt.Errorf("after the restart only %d of %d objects are Ready", r.restartReadyN, r.nAK+r.n)
	}
	b.logf("restart: idle %s after the start", r.restartIdle.Round(time.Millisecond))
	return nil
}

// rotateAndStorm runs the rotation and the refresh storm at the same time
// (they touch different objects and different APIs, so their counts stay
// apart), which saves a grace period of waiting.
func (b *bench) rotateAndStorm(ctx context.Context, rotate, storm bool) error {
	if _, err := b.cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, b.cl.alive); err != nil {
		return err
	}
	var (
		wg         sync.WaitGroup
		errR, errS error
	)
	if rotate {
		wg.Add(1)
		go func() { defer wg.Done(); errR = b.rotation(ctx) }()
	}
	if storm {
		wg.Add(1)
		go func() { defer wg.Done(); errS = b.storm(ctx) }()
	}
	wg.Wait()
	if errR != nil {
		return fmt.Errorf("rotation: %w", errR)
	}
	if errS != nil {
		return fmt.Errorf("refresh storm: %w", errS)
	}
	return nil
}

// rotation rotates M ApiKeys with the keywarden.dev/rotate annotation and
// waits until the previous keys are revoked after the grace period.
func (b *bench) rotation(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.rotM = min(b.o.n, b.o.rotations)
	ns := names(r.rotM, apiKeyName)
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	v := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.logf("rotation: rotating %d ApiKeys (grace period %s)", r.rotM, b.o.grace)
	t0 := time.Now()
	if err := pool(ctx, r.rotM, b.o.writers, func(ctx context.Context, i int) error {
		return cl.annotate(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: ns[i], Namespace: benchNS}}, v1alpha1.AnnotationRotate, v)
	}); err != nil {
		return err
	}
	done := func(s objState) bool {
		return s.LastRotateRequest == v && s.Rotations >= 1 && s.PendingRevocations == 0 && !s.PendingCreate && s.Ready
	}
	if err := b.tr.waitFor(ctx, kindApiKey, ns, b.o.grace+5*time.Minute, cl.alive, done); err != nil {
		return err
	}
	r.rotDur = time.Since(t0)
	// Events are sent asynchronously: let the last ones land.
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	ext1, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.rotExt = ext1.minus(ext0).api("reevit")
	r.rotReqs = countFor(cl.audit.between(t0, time.Now()), nameSet(ns))
	b.logf("rotation: %d rotations complete, previous keys revoked, in %s", r.rotM, r.rotDur.Round(time.Millisecond))
	return nil
}

// storm gives K tokens a short lifetime at once (apisim's token lifetime
// and a keywarden.dev/refresh on all), then watches their next, scheduled
// refreshes: spread, lag behind status.nextRefreshTime, cost.
func (b *bench) storm(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.refK = min(b.o.n, b.o.storm)
	r.lifetime = b.o.stormLifetime
	ns := names(r.refK, revioTokenName)
	set := nameSet(ns)
	before := map[string]int64{}
	for _, s := range b.tr.snapshot(kindRevioToken) {
		before[s.Name] = s.Refreshes
	}
	if err := cl.sim.Control.SetTokenLifetime(ctx, r.lifetime); err != nil {
		return err
	}
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	v := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.logf("refresh storm: refreshing %d RevioTokens now with %s tokens", r.refK, r.lifetime)
	t0 := time.Now()
	if err := pool(ctx, r.refK, b.o.writers, func(ctx context.Context, i int) error {
		return cl.annotate(ctx, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Name: ns[i], Namespace: benchNS}}, v1alpha1.AnnotationRefresh, v)
	}); err != nil {
		return err
	}
	triggered := func(s objState) bool {
		return s.LastRefreshRequest == v && s.Refreshes > before[s.Name] && s.Ready
	}
	if err := b.tr.waitFor(ctx, kindRevioToken, ns, 5*time.Minute, cl.alive, triggered); err != nil {
		return err
	}
	r.triggerDur = time.Since(t0)
	// Tokens issued from now on live apisim's default again, so the
	// scheduled refreshes settle the tokens for the rest of the run.
	if err := cl.sim.Control.SetTokenLifetime(ctx, apisim.DefaultTokenLifetime); err != nil {
		return err
	}
	after := map[string]int64{}
	sched := map[string]time.Time{}
	var minNext, maxNext, minExp, maxExp time.Time
	for _, s := range b.tr.snapshot(kindRevioToken) {
		if !set[s.Name] {
			continue
		}
		after[s.Name], sched[s.Name] = s.Refreshes, s.NextRefresh
		minNext, maxNext = minT(minNext, s.NextRefresh), maxT(maxNext, s.NextRefresh)
		minExp, maxExp = minT(minExp, s.ExpiresAt), maxT(maxExp, s.ExpiresAt)
	}
	r.nextSpread, r.expirySpread = maxNext.Sub(minNext), maxExp.Sub(minExp)
	b.logf("refresh storm: %d refreshed on request in %s; next refreshes due %s to %s",
		r.refK, r.triggerDur.Round(time.Millisecond), minNext.Format(time.TimeOnly), maxNext.Format(time.TimeOnly))

	// The request-triggered refreshes are over well before the first
	// scheduled one (a third of the lifetime before expiry).
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	boundary := time.Now()
	if !boundary.Before(minNext) {
		return fmt.Errorf("the first scheduled refresh (%s) came before the request-triggered ones settled (%s): use a longer -storm-lifetime", minNext.Format(time.TimeOnly), boundary.Format(time.TimeOnly))
	}
	ext1, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.refExt = ext1.minus(ext0).api("revio")
	r.refReqs = countFor(cl.audit.between(t0, boundary), set)

	refreshed := func(s objState) bool { return s.Refreshes > after[s.Name] && s.Ready }
	if err := b.tr.waitFor(ctx, kindRevioToken, ns, time.Until(maxNext)+3*time.Minute, cl.alive, refreshed); err != nil {
		return err
	}
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	end := time.Now()
	ext2, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.schedExt = ext2.minus(ext1).api("revio")
	reqs := cl.audit.between(boundary, end)
	r.schedReqs = countFor(reqs, set)
	// A refresh happened when its Secret was written: the first Secret
	// write of each token after the boundary.
	actual := map[string]time.Time{}
	for _, q := range reqs {
		if q.Resource == "secrets" && q.isWrite() && set[q.Name] {
			if t, ok := actual[q.Name]; !ok || q.At.Before(t) {
				actual[q.Name] = q.At
			}
		}
	}
	if len(actual) != r.refK {
		return fmt.Errorf("found the scheduled Secret write of %d of %d tokens in the audit log", len(actual), r.refK)
	}
	var first, last time.Time
	for name, at := range actual {
		r.lags = append(r.lags, at.Sub(sched[name]))
		first, last = minT(first, at), maxT(last, at)
	}
	r.refreshSpread = last.Sub(first)
	b.logf("refresh storm: %d scheduled refreshes between %s and %s", r.refK, first.Format(time.TimeOnly), last.Format(time.TimeOnly))
	return nil
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

// memory samples the manager's RSS, creates S unrelated Secrets of the
// given size in another namespace, and samples again.
func (b *bench) memory(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.memSecrets, r.memSecretSize = b.o.secrets, b.o.secretSize
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	b.logf("memory: baseline RSS")
	var err error
	if r.baseRSS, err = b.sampleRSS(ctx, b.o.rssSamples); err != nil {
		return err
	}
	if m, err := cl.scrapeMetrics(ctx); err == nil {
		r.baseHeap = m.sum("go_gc_heap_live_bytes")
	}
	if err := cl.profileManager(ctx, "heap", "manager-heap-baseline.pprof"); err != nil {
		b.logf("profile: %v", err)
	}
	if err := cl.createNamespace(ctx, unrelatedNS); err != nil {
		return err
	}
	b.logf("memory: creating %d unrelated Secrets of %d bytes", r.memSecrets, r.memSecretSize)
	t0 := time.Now()
	if err := pool(ctx, r.memSecrets, b.o.writers, func(ctx context.Context, i int) error {
		data := make([]byte, r.memSecretSize)
		_, _ = rand.Read(data)
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%06d", i), Namespace: unrelatedNS,
				Labels: map[string]string{"app.kubernetes.io/name": "unrelated"}},
			Data: map[string][]byte{"blob": data},
		}
		return cl.c.Create(ctx, s)
	}); err != nil {
		return err
	}
	r.memCreate = time.Since(t0)
	// Let the watch events arrive and the heap settle.
	if err := sleepAlive(ctx, 10*time.Second, cl.alive); err != nil {
		return err
	}
	b.logf("memory: RSS with the Secrets")
	if r.withRSS, err = b.sampleRSS(ctx, b.o.rssSamples); err != nil {
		return err
	}
	if m, err := cl.scrapeMetrics(ctx); err == nil {
		r.withHeap = m.sum("go_gc_heap_live_bytes")
	}
	if err := cl.profileManager(ctx, "heap", "manager-heap-secrets.pprof"); err != nil {
		b.logf("profile: %v", err)
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	r.memReqs = tally{}
	for _, q := range cl.audit.between(t0, time.Now()) {
		r.memReqs.add(q)
	}
	return nil
}

// sampleRSS reads the manager's RSS n times, a second apart.
func (b *bench) sampleRSS(ctx context.Context, n int) ([]int64, error) {
	var out []int64
	for i := range n {
		rss, err := procRSS(b.cl.managerPid())
		if err != nil {
			return nil, fmt.Errorf("read the manager's RSS: %w", err)
		}
		out = append(out, rss)
		if i < n-1 {
			if err := sleepAlive(ctx, time.Second, b.cl.alive); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
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
