package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// converge creates N ApiKeys and N RevioTokens at once and waits until all
// are Ready; then, the manager idle, it tallies the create path.
func (b *bench) converge(ctx context.Context) error {
	cl, r, n := b.cl, b.res, b.o.n
	r.n, r.nAK = n, n
	if b.o.tokensOnly {
		r.nAK = 0
	}
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
	q0, err := scrapeQueueWaits(ctx, cl.metricsAddr())
	if err != nil {
		return err
	}
	stopPeak := b.samplePeak(ctx, cl.managerPid, &r.convergePeak)

	profDone := b.startProfiles(ctx)
	t0 := time.Now()
	if err := b.createAndWait(ctx); err != nil {
		return err
	}
	cpu1, _ := procCPU(pid)
	r.convergeCPU = cpu1 - cpu0
	r.convergeUse = meter.since(p0, busy0, total0)
	b.latencies(t0)
	b.logf("converge: all %d Ready after %s; waiting for the manager to go idle", r.nAK+n, r.convergeAll.Round(time.Millisecond))

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
	b.controllerStats(m1.minus(m0))
	if err := b.convergedState(ctx, pid, q0); err != nil {
		return err
	}
	if r.createExt, err = cl.externalSince(ctx, ext0); err != nil {
		return err
	}
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

// convergedState records, the manager idle after converge, the work
// queues' waits since q0, the memory with every object in place and (with
// -manager-profile) a heap profile.
func (b *bench) convergedState(ctx context.Context, pid int, q0 map[string]hist) error {
	cl, r := b.cl, b.res
	q1, err := scrapeQueueWaits(ctx, cl.metricsAddr())
	if err != nil {
		return err
	}
	r.queueWait = queueWaitDelta(q0, q1)
	if err := b.idleMemory(ctx, pid, cl.scrapeMetrics, &r.settledMem); err != nil {
		return err
	}
	if err := cl.profileManager(ctx, "heap", "manager-heap-converged.pprof"); err != nil {
		b.logf("profile: %v", err)
	}
	return nil
}

// startProfiles starts the CPU profiles asked for (-apiserver-profile,
// -manager-profile); each returned channel reports when one is written.
func (b *bench) startProfiles(ctx context.Context) []chan error {
	var out []chan error
	start := func(fn func() error) {
		done := make(chan error, 1)
		out = append(out, done)
		go func() { done <- fn() }()
	}
	if b.o.apiserverProfile != "" {
		start(func() error {
			return b.cl.profileAPIServer(ctx, time.Duration(b.o.profileSeconds)*time.Second, b.o.apiserverProfile)
		})
	}
	if b.o.managerProfile != "" {
		start(func() error {
			return b.cl.profileManager(ctx, fmt.Sprintf("profile?seconds=%d", b.o.profileSeconds), "manager-cpu-converge.pprof")
		})
	}
	return out
}

// createAndWait creates the objects, ApiKeys and RevioTokens interleaved,
// with the writers, and waits until every one is Ready.
func (b *bench) createAndWait(ctx context.Context) error {
	cl, r := b.cl, b.res
	total := r.nAK + r.n
	b.logf("converge: creating %d ApiKeys and %d RevioTokens with %d writers", r.nAK, r.n, b.o.writers)
	t0 := time.Now()
	err := pool(ctx, total, b.o.writers, func(ctx context.Context, i int) error {
		if r.nAK == 0 {
			i = 2*i + 1 // RevioTokens only
		}
		if i%2 == 0 {
			b.tr.expect(kindApiKey, apiKeyName(i/2), time.Now())
			return cl.c.Create(ctx, cl.newApiKey(i/2))
		}
		b.tr.expect(kindRevioToken, revioTokenName(i/2), time.Now())
		return cl.c.Create(ctx, cl.newRevioToken(i/2))
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
	return b.tr.waitFor(ctx, kindRevioToken, names(r.n, revioTokenName), b.o.timeout, cl.alive, ready)
}

// latencies derives the converge times and the per-object latencies (create
// sent to Ready observed) from the watch.
func (b *bench) latencies(t0 time.Time) {
	r := b.res
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
}

// controllerStats reads the controllers' work and the external request
// times from a metrics delta.
func (b *bench) controllerStats(dm metricSample) {
	r := b.res
	r.convergeStats = map[string]controllerStats{}
	for _, c := range []string{"apikey", "reviotoken", "clusterreevitissuer", "clusterrevioissuer", "secretrelease"} {
		r.convergeStats[c] = dm.controller(c)
	}
	r.convergeExtMean = map[string]time.Duration{}
	for _, api := range []string{"reevit", "revio"} {
		if n := dm.sum("keywarden_external_request_duration_seconds_count", `api="`+api+`"`); n > 0 {
			r.convergeExtMean[api] = time.Duration(dm.sum("keywarden_external_request_duration_seconds_sum", `api="`+api+`"`) / n * float64(time.Second))
		}
	}
}

// queueWaitDelta is each work queue's wait histogram between two scrapes.
func queueWaitDelta(before, after map[string]hist) map[string]hist {
	out := map[string]hist{}
	for name, h := range after {
		out[name] = h.minus(before[name])
	}
	return out
}

// peakMem is the highest RSS and anonymous RSS seen while sampling.
// Anonymous memory is the process's own (heap, stacks); the rest of RSS
// is file pages, mostly the binary's, which vary with what the kernel
// maps around each page touched.
type peakMem struct{ rss, anon int64 }

// samplePeak samples the memory of pid() every 200 ms into peak until the
// returned function is called.
func (b *bench) samplePeak(ctx context.Context, pid func() int, peak *peakMem) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if st, err := procStatus(pid(), "VmRSS", "RssAnon"); err == nil {
				peak.rss, peak.anon = max(peak.rss, st["VmRSS"]), max(peak.anon, st["RssAnon"])
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
