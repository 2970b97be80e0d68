package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/keywarden/keywarden/internal/controller"
	"github.com/keywarden/keywarden/internal/testenv"
)

// The -sharded run: three managers split the objects by label, as
// docs/sharding.md deploys them. Object i goes to shards[i%3].
var shards = []struct{ name, label, selector string }{
	{"main", "", "!" + controller.ShardLabel},
	{"shard1", "shard1", controller.ShardLabel + " in (shard1)"},
	{"shard2", "shard2", controller.ShardLabel + " in (shard2)"},
}

// replica is one manager of a -sharded run. Every replica runs as the
// manager's ServiceAccount; the user agent the manager derives from its
// selector (keywarden-manager/shard-<id>) tells them apart in the audit log.
type replica struct {
	name, selector, userAgent string
	mgr                       *testenv.Manager
}

// replicaResult is what one replica did and used during converge.
type replicaResult struct {
	name, selector, userAgent string
	expected, reconciled      int // objects its label claims; objects only it touched
	writes                    int
	cpu                       time.Duration
	peak                      peakMem
	empty, settled            memSample
	stats                     map[string]controllerStats
	queueWait                 map[string]hist
}

// shardLabels are the labels of object i: none for the main instance.
func (cl *cluster) shardLabels(i int) map[string]string {
	if !cl.o.sharded || shards[i%len(shards)].label == "" {
		return nil
	}
	return map[string]string{controller.ShardLabel: shards[i%len(shards)].label}
}

// startReplicas starts the three managers, the main instance as cl.mgr.
func (cl *cluster) startReplicas(ctx context.Context) error {
	base := cl.managerArgs()
	for i, s := range shards {
		sel, err := controller.ParseWatchSelector(s.selector)
		if err != nil {
			return err
		}
		args := append(append([]string(nil), base...), "--watch-label-selector="+s.selector)
		m, err := cl.env.StartManager(ctx, testenv.ManagerOptions{NoLeaderElection: true, Args: args, AllowedEndpoints: cl.sim.Endpoints()})
		if err != nil {
			return fmt.Errorf("start the %s manager: %w", s.name, err)
		}
		cl.mgrMu.Lock()
		cl.replicas = append(cl.replicas, &replica{name: s.name, selector: s.selector, userAgent: "keywarden-manager/shard-" + controller.ShardID(sel), mgr: m})
		if i == 0 {
			cl.mgr, cl.mgrArgs = m, args
		}
		cl.mgrMu.Unlock()
	}
	return nil
}

// measureSharded runs converge with three replicas, then steady state.
func (b *bench) measureSharded(ctx context.Context) error {
	cl, r := b.cl, b.res
	if err := b.prepare(ctx); err != nil {
		return err
	}
	if err := cl.startReplicas(ctx); err != nil {
		return err
	}
	if err := b.settle(ctx); err != nil {
		return err
	}
	r.replicas = make([]replicaResult, len(cl.replicas))
	for i, rp := range cl.replicas {
		r.replicas[i] = replicaResult{name: rp.name, selector: rp.selector, userAgent: rp.userAgent}
		addr := rp.mgr.MetricsAddr
		scrape := func(ctx context.Context) (metricSample, error) { return scrapeAddr(ctx, addr) }
		if err := b.idleMemory(ctx, rp.mgr.Pid(), scrape, &r.replicas[i].empty); err != nil {
			return err
		}
	}
	if err := b.convergeSharded(ctx); err != nil {
		return fmt.Errorf("converge: %w", err)
	}
	return b.runStages(ctx, stage{"steady", "steady", b.steady})
}

// convergeSharded creates the objects, split by label, waits until all are
// Ready and the replicas idle, and tallies each replica's work.
func (b *bench) convergeSharded(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.n, r.nAK = b.o.n, b.o.n
	if b.o.tokensOnly {
		r.nAK = 0
	}
	type start struct {
		cpu time.Duration
		m   metricSample
		q   map[string]hist
	}
	starts := make([]start, len(cl.replicas))
	var stops []func()
	for i, rp := range cl.replicas {
		var err error
		starts[i].cpu, _ = procCPU(rp.mgr.Pid())
		if starts[i].m, err = scrapeAddr(ctx, rp.mgr.MetricsAddr); err != nil {
			return err
		}
		if starts[i].q, err = scrapeQueueWaits(ctx, rp.mgr.MetricsAddr); err != nil {
			return err
		}
		stops = append(stops, b.samplePeak(ctx, rp.mgr.Pid, &r.replicas[i].peak))
	}
	meter := cl.newCPUMeter()
	p0, busy0, total0 := meter.read()
	t0 := time.Now()
	if err := b.createAndWait(ctx); err != nil {
		return err
	}
	r.convergeUse = meter.since(p0, busy0, total0)
	b.latencies(t0)
	b.logf("converge: all %d Ready after %s; waiting for the replicas to go idle", r.nAK+r.n, r.convergeAll.Round(time.Millisecond))
	last, err := cl.audit.waitIdle(ctx, t0, b.o.idle, cl.alive)
	if err != nil {
		return err
	}
	for _, stop := range stops {
		stop()
	}
	for i, rp := range cl.replicas {
		rr := &r.replicas[i]
		cpu, _ := procCPU(rp.mgr.Pid())
		rr.cpu = cpu - starts[i].cpu
		m, err := scrapeAddr(ctx, rp.mgr.MetricsAddr)
		if err != nil {
			return err
		}
		rr.stats = map[string]controllerStats{}
		for _, c := range []string{"apikey", "reviotoken"} {
			rr.stats[c] = m.minus(starts[i].m).controller(c)
		}
		q, err := scrapeQueueWaits(ctx, rp.mgr.MetricsAddr)
		if err != nil {
			return err
		}
		rr.queueWait = queueWaitDelta(starts[i].q, q)
		addr := rp.mgr.MetricsAddr
		scrape := func(ctx context.Context) (metricSample, error) { return scrapeAddr(ctx, addr) }
		if err := b.idleMemory(ctx, rp.mgr.Pid(), scrape, &rr.settled); err != nil {
			return err
		}
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	b.attribute(cl.audit.between(t0, last.Add(time.Microsecond)))
	b.logf("converge: objects reconciled by exactly the replica their label names: %d of %d (by none %d, by another %d, by several %d)",
		r.byOne, r.nAK+r.n, r.byNone, r.byWrong, r.byMany)
	return nil
}

// attribute finds, from the audit log, which replicas (by user agent) made
// requests concerning each object, and counts the objects reconciled by
// exactly the replica their label names, by none, by another, by several.
func (b *bench) attribute(reqs []request) {
	r := b.res
	byAgent := map[string]int{}
	for i, rr := range r.replicas {
		byAgent[rr.userAgent] = i
	}
	touched := map[string]map[int]bool{}
	for _, q := range reqs {
		o := owner(q)
		i, ok := byAgent[q.UserAgent]
		if o == "" || !ok {
			continue
		}
		if touched[o] == nil {
			touched[o] = map[int]bool{}
		}
		touched[o][i] = true
		if q.isWrite() {
			r.replicas[i].writes++
		}
	}
	check := func(name string, want int) {
		r.replicas[want].expected++
		t := touched[name]
		switch {
		case len(t) == 0:
			r.byNone++
		case len(t) > 1:
			r.byMany++
		case !t[want]:
			r.byWrong++
		default:
			r.byOne++
			r.replicas[want].reconciled++
		}
	}
	for i := range r.nAK {
		check(apiKeyName(i), i%len(shards))
	}
	for i := range r.n {
		check(revioTokenName(i), i%len(shards))
	}
}

// shardingBroken reports whether any object was not reconciled by exactly
// the replica its label names.
func (r *results) shardingBroken() bool { return r.byNone+r.byWrong+r.byMany > 0 }

// reportSharded prints the header and the table of a -sharded run.
func (b *bench) reportSharded(w io.Writer, took time.Duration) {
	r, t := b.res, &table{}
	all := r.nAK + r.n
	what := fmt.Sprintf("%d ApiKeys + %d RevioTokens", r.nAK, r.n)
	if r.nAK == 0 {
		what = fmt.Sprintf("%d RevioTokens", r.n)
	}
	t.add(fmt.Sprintf("**sharded converge**: %s in %d namespace(s), split by the %s label over %d replicas, created at once (%d writers), until all Ready", what, b.o.namespaces, controller.ShardLabel, len(r.replicas), b.o.writers),
		fmt.Sprintf("%s (creates sent in %s; per object p50 / p99 %s / %s)", secs(r.convergeAll), secs(r.createSend), secs(percentile(r.latAll, 50)), secs(percentile(r.latAll, 99))), "", "")
	t.add(subRow+"CPU during converge (2 cores)", r.convergeUse.String(), "", "")
	t.add("**objects reconciled by exactly one replica**, the one their label names (audit log, by user agent)",
		fmt.Sprintf("%d of %d (by none %d, by another %d, by several %d)", r.byOne, all, r.byNone, r.byWrong, r.byMany), "all", met(!r.shardingBroken()))
	for _, rr := range r.replicas {
		t.add(fmt.Sprintf(subRow+"replica %s (`%s`, user agent %s): objects it alone reconciled / its label claims; writes per object; CPU", rr.name, rr.selector, rr.userAgent),
			fmt.Sprintf("%d / %d; %s; %s", rr.reconciled, rr.expected, ratio(rr.writes, rr.expected), secs(rr.cpu)), "", "")
		t.add(subRow+rr.name+": RSS before any object / peak during converge (anonymous) / idle after; live heap before / after",
			fmt.Sprintf("%s / %s (%s) / %s; %s / %s", mib(rr.empty.rss), mib(rr.peak.rss), mib(rr.peak.anon), mib(rr.settled.rss), mib(int64(rr.empty.heapLive)), mib(int64(rr.settled.heapLive))), "", "")
		var qs []string
		for _, c := range []string{"apikey", "reviotoken"} {
			st := rr.stats[c]
			qs = append(qs, fmt.Sprintf("%s %.0f reconciles, queue wait mean %s, p99 %s", c, st.reconciles, secs(st.meanQueueWait), rr.queueWait[c].p99()))
		}
		t.add(subRow+rr.name+": controllers", strings.Join(qs, "; "), "", "")
	}
	b.reportLifecycle(t)
	b.header(w, took)
	t.write(w)
	if b.o.quick {
		_, _ = fmt.Fprintln(w, "\n-quick: a smoke test; nothing about timing is asserted.")
	}
}

// replicaNames lists the replicas for the header.
func (cl *cluster) replicaNames() string {
	var out []string
	for _, rp := range cl.replicas {
		out = append(out, fmt.Sprintf("%s `--watch-label-selector=%s`", rp.name, rp.selector))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
