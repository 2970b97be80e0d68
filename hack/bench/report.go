package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keywarden/keywarden/internal/testenv"
)

// row is one line of the table.
type row struct {
	measure, result, goal, met string
}

// goal formats whether a goal was met.
func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func secs(d time.Duration) string {
	switch {
	case d < time.Millisecond && d > 0:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
}

// table collects the rows. A sub-row (a detail of the row above) starts
// with subRow.
type table struct{ rows []row }

const subRow = "↳ "

func (t *table) add(measure, result, goal, ok string) {
	t.rows = append(t.rows, row{measure, result, goal, ok})
}

// report prints the header and the table.
func (b *bench) report(w io.Writer, took time.Duration) {
	t := &table{}
	b.reportConverge(t)
	b.reportEconomy(t)
	b.reportRefresh(t)
	b.reportLifecycle(t)
	b.reportMemory(t)
	b.reportStorm(t)
	b.reportBudget(t)

	b.header(w, took)
	t.write(w)
	if b.o.quick {
		_, _ = fmt.Fprintln(w, "\n-quick: a smoke test; the goals are for N=1000 and nothing about timing is asserted.")
	}
}

// write prints the table in Markdown, then its summary.
func (t *table) write(w io.Writer) {
	_, _ = fmt.Fprintln(w, "| measure | result | goal | met |")
	_, _ = fmt.Fprintln(w, "|---|---|---|---|")
	for _, x := range t.rows {
		_, _ = fmt.Fprintf(w, "| %s | %s | %s | %s |\n", x.measure, x.result, x.goal, x.met)
	}
	t.summary(w)
}

// summary prints how many goals were met and which were missed.
func (t *table) summary(w io.Writer) {
	var missed []string
	parent := ""
	for _, x := range t.rows {
		name := strings.ReplaceAll(x.measure, "**", "")
		if sub, ok := strings.CutPrefix(name, subRow); ok {
			name = parent + ": " + sub
		} else {
			parent = name
			if _, bold, ok := strings.Cut(x.measure, "**"); ok {
				parent, _, _ = strings.Cut(bold, "**")
			}
		}
		if strings.Contains(x.met, "**no**") {
			missed = append(missed, name)
		}
	}
	goals := len(t.rows) - countEmpty(t.rows)
	_, _ = fmt.Fprintf(w, "\nGoals (and peer targets) met: %d of %d.", goals-len(missed), goals)
	if len(missed) > 0 {
		_, _ = fmt.Fprintf(w, " Missed: %s.", strings.Join(missed, "; "))
	}
	_, _ = fmt.Fprintln(w)
}

// peers: the ESO figures are for 1000 tokens; compare only then.
func (r *results) peers() bool { return r.n == 1000 }

func (b *bench) reportConverge(t *table) {
	r, o := b.res, b.o
	if r.nAK > 0 {
		t.add(fmt.Sprintf("**converge**: %d ApiKeys + %d RevioTokens created at once (%d writers), until all Ready", r.nAK, r.n, o.writers),
			fmt.Sprintf("%s (creates sent in %s; ApiKeys %s, RevioTokens %s)", secs(r.convergeAll), secs(r.createSend), secs(r.convergeAK), secs(r.convergeRT)), "", "")
	} else {
		t.add(fmt.Sprintf("**converge**: %d RevioTokens created at once (%d writers), until all Ready", r.n, o.writers),
			fmt.Sprintf("%s (creates sent in %s)", secs(r.convergeAll), secs(r.createSend)), "", "")
	}
	t.add(subRow+"per object, create to Ready: p50 / p95 / p99",
		fmt.Sprintf("%s / %s / %s", secs(percentile(r.latAll, 50)), secs(percentile(r.latAll, 95)), secs(percentile(r.latAll, 99))), "", "")
	if r.nAK > 0 {
		t.add(subRow+"ApiKey p50 / p99; RevioToken p50 / p99",
			fmt.Sprintf("%s / %s; %s / %s", secs(percentile(r.latAK, 50)), secs(percentile(r.latAK, 99)), secs(percentile(r.latRT, 50)), secs(percentile(r.latRT, 99))), "", "")
	}
	t.add(subRow+"CPU during converge (2 cores)", r.convergeUse.String(), "", "")
	for _, c := range []struct {
		name string
		n    int
	}{{"apikey", r.nAK}, {"reviotoken", r.n}} {
		if c.n == 0 {
			continue
		}
		st := r.convergeStats[c.name]
		t.add(fmt.Sprintf(subRow+"controller %s: reconciles per object; mean reconcile time; wait in the work queue: mean, p99 (native histogram bucket)", c.name),
			fmt.Sprintf("%.2f (errors %.0f, requeues %.0f); %s; %s, %s", st.reconciles/float64(c.n), st.errors, st.requeues, secs(st.meanReconcile), secs(st.meanQueueWait), r.queueWait[c.name].p99()), "", "")
	}
	if len(r.convergeExtMean) > 0 {
		t.add(subRow+"mean external request time (manager's view)", fmt.Sprintf("reevit %s, revio %s", secs(r.convergeExtMean["reevit"]), secs(r.convergeExtMean["revio"])), "", "")
	}
	if r.floorDur > 0 {
		t.add(fmt.Sprintf("**floor**: a bare client makes the operator's %d writes (ConfigMap creates, %d writers)", r.floorWrites, o.writers),
			fmt.Sprintf("%s (%.0f writes/s)", secs(r.floorDur), float64(r.floorWrites)/r.floorDur.Seconds()), "", "")
		t.add(subRow+"CPU during the floor", r.floorUse.String(), "", "")
		ratioCF := r.convergeAll.Seconds() / r.floorDur.Seconds()
		t.add("**converge / floor**", fmt.Sprintf("%.2fx", ratioCF), "≤ 3x", met(ratioCF <= 3))
	}
	if r.floorRWDur > 0 {
		t.add(fmt.Sprintf(subRow+"for comparison: a bare client makes the operator's %d writes and its %d reads (ConfigMap creates and GETs)", r.floorWrites, r.createReads),
			fmt.Sprintf("%s; converge / that %.2fx", secs(r.floorRWDur), r.convergeAll.Seconds()/r.floorRWDur.Seconds()), "", "")
	}
	if r.sameFloorDur > 0 {
		t.add(fmt.Sprintf("**the operator's own writes by a bare client**: its %d create-path writes (finalizer and status merge patches, Secret applies; payloads copied from converged objects; manager stopped; run last; %d writers)", r.sameFloorWrites, o.writers),
			fmt.Sprintf("%s (%.0f writes/s)", secs(r.sameFloorDur), float64(r.sameFloorWrites)/r.sameFloorDur.Seconds()), "", "")
		t.add(subRow+"CPU during those writes", r.sameFloorUse.String(), "", "")
		t.add(subRow+"converge / those writes: converge against the API server's cost of the operator's writes alone", fmt.Sprintf("%.2fx", r.convergeAll.Seconds()/r.sameFloorDur.Seconds()), "", "")
	}
	t.add("manager CPU / peak RSS during converge (peak anonymous RSS)", fmt.Sprintf("%s / %s (%s)", secs(r.convergeCPU), mib(r.convergePeak.rss), mib(r.convergePeak.anon)), "", "")
	b.reportObjectMemory(t)
	if !r.peers() || r.nAK > 0 {
		return
	}
	// The side-by-side figures of ../shared/PEERS.md (tuned ESO, 1000
	// ExternalSecrets alone): 14.6-16.2 s, peak RSS 87.5-88.5 MiB.
	t.add("**peers**, 1000 RevioTokens alone: all Ready", secs(r.convergeRT),
		"≤ a third of tuned ESO's 14.6 s (side by side): 4.87 s", met(r.convergeRT <= 4870*time.Millisecond))
	t.add(subRow+"manager peak RSS during converge (peak anonymous RSS)", fmt.Sprintf("%s (%s)", mib(r.convergePeak.rss), mib(r.convergePeak.anon)),
		"≤ half of tuned ESO's 87.5 MiB: 43.8 MiB", met(float64(r.convergePeak.rss) <= 87.5/2*(1<<20)))
	t.add(subRow+"manager CPU during converge", secs(r.convergeCPU), "tuned ESO 6.8-7.4 s", "")
}

// reportObjectMemory: the manager's memory with no object and with every
// object in place, and so the cost of an object.
func (b *bench) reportObjectMemory(t *table) {
	r := b.res
	if r.emptyMem.rss == 0 || r.settledMem.rss == 0 {
		return
	}
	all := r.nAK + r.n
	t.add("**memory, idle**: manager RSS with no object (N=0, issuers checked) / with every object in place (after converge) / the difference per 1000 objects (includes the one-off cost of having worked: compare runs of two sizes)",
		fmt.Sprintf("%s / %s / %+.2f MiB (live heap %+.2f MiB)", mib(r.emptyMem.rss), mib(r.settledMem.rss),
			float64(r.settledMem.rss-r.emptyMem.rss)/(1<<20)/float64(all)*1000, (r.settledMem.heapLive-r.emptyMem.heapLive)/(1<<20)/float64(all)*1000), "", "")
	t.add(subRow+"where it goes, no object", r.emptyMem.String(), "", "")
	t.add(fmt.Sprintf(subRow+"where it goes, %d objects", all), r.settledMem.String(), "", "")
}

// reportEconomy: kube API requests and external calls on the create path.
func (b *bench) reportEconomy(t *table) {
	r := b.res
	ak, rt, shared := r.createPath[kindApiKey], r.createPath[kindRevioToken], r.createPath["shared"]
	akW, rtW, all := ak.total(true), rt.total(true), r.nAK+r.n
	t.add("**kube API writes per object on create**, all (shared included)", ratio(r.createWrites, all), "≤ 4", met(r.createWrites <= 4*all))
	if r.nAK > 0 {
		t.add(subRow+"ApiKey", fmt.Sprintf("%s: %s", ratio(akW, r.nAK), ak.perObject(r.nAK, true)), "≤ 4", met(akW <= 4*r.nAK))
	}
	if r.peers() {
		t.add(subRow+"RevioToken", fmt.Sprintf("%s: %s", ratio(rtW, r.n), rt.perObject(r.n, true)), "≤ 4; peers: ESO 3.00, target ≤ 2", met(rtW <= 4*r.n)+peerMet(rtW <= 2*r.n))
	} else {
		t.add(subRow+"RevioToken", fmt.Sprintf("%s: %s", ratio(rtW, r.n), rt.perObject(r.n, true)), "≤ 4", met(rtW <= 4*r.n))
	}
	t.add(subRow+"shared (issuers and their Secrets; totals, not per object)", totals(shared, true), "", "")
	t.add("kube API reads per object on create", "", "", "")
	if r.nAK > 0 {
		t.add(subRow+"ApiKey", fmt.Sprintf("%s: %s", ratio(ak.reads(), r.nAK), ak.perObject(r.nAK, false)), "", "")
	}
	t.add(subRow+"RevioToken", fmt.Sprintf("%s: %s", ratio(rt.reads(), r.n), rt.perObject(r.n, false)), "", "")
	t.add(subRow+"shared (lists, watches, issuers and their Secrets; totals)", totals(shared, false), "", "")
	ext := "RevioToken: " + r.createExt.api("revio").perObject(r.n)
	if r.nAK > 0 {
		ext = "ApiKey: " + r.createExt.api("reevit").perObject(r.nAK) + "; " + ext
	}
	t.add("**external calls per object on create**", ext, "", "")
}

// reportRefresh: the cost of a refresh (on request and on schedule) and of
// a rotation.
func (b *bench) reportRefresh(t *table) {
	r := b.res
	if r.refK > 0 {
		for _, x := range []struct {
			what string
			reqs tally
			ext  extCounts
		}{
			{fmt.Sprintf("**refresh on request** (keywarden.dev/refresh on %d tokens at once)", r.refK), r.refReqs, r.refExt},
			{fmt.Sprintf("**refresh on schedule** (the storm's %d tokens)", r.refK), r.schedReqs, r.schedExt},
		} {
			ex := x.ext["revio exchange"]
			sw := x.reqs["patch secrets"] + x.reqs["update secrets"] + x.reqs["create secrets"]
			stw := x.reqs["patch reviotokens/status"] + x.reqs["update reviotokens/status"]
			ok := ex == r.refK && sw == r.refK && stw <= r.refK
			t.add(x.what+": exchanges / Secret writes / status writes per refresh",
				fmt.Sprintf("%s / %s / %s", ratio(ex, r.refK), ratio(sw, r.refK), ratio(stw, r.refK)), "1 / 1 / ≤ 1", met(ok))
			t.add(subRow+"all writes and external calls per refresh",
				fmt.Sprintf("%s writes: %s; external: %s", ratio(x.reqs.total(true), r.refK), x.reqs.perObject(r.refK, true), x.ext.perObject(r.refK)), "", "")
		}
	}
	if r.rotM > 0 {
		t.add(fmt.Sprintf("**rotation** (keywarden.dev/rotate on %d ApiKeys, grace %s, revocation included): writes per rotation", r.rotM, b.o.grace),
			fmt.Sprintf("%s: %s", ratio(r.rotReqs.total(true), r.rotM), r.rotReqs.perObject(r.rotM, true)), "", "")
		t.add(subRow+"external calls per rotation; done in", fmt.Sprintf("%s; %s", r.rotExt.perObject(r.rotM), secs(r.rotDur)), "", "")
	}
}

// reportLifecycle: steady state and restart.
func (b *bench) reportLifecycle(t *table) {
	r := b.res
	if r.steadyDur > 0 {
		sw := r.steadyReqs.total(true)
		t.add(fmt.Sprintf("**steady state** %s, nothing due: writes / external calls", secs(r.steadyDur)),
			fmt.Sprintf("%d / %d (reads: %s)", sw, r.steadyExt.total(), totals(r.steadyReqs, false)), "0 / 0", met(sw == 0 && r.steadyExt.total() == 0))
	}
	if r.restartIdle > 0 {
		rw := r.restartReqs.total(true)
		t.add("**restart** (SIGTERM, start, every object Ready): writes / external calls until idle",
			fmt.Sprintf("%d / %d", rw, r.restartExt.total()), "0 / 0", met(rw == 0 && r.restartExt.total() == 0))
		t.add(subRow+"time to idle (last request; ready after; every object reconciled once after; the old process exited after SIGTERM in); reads",
			fmt.Sprintf("%s (%s; %s; %s); %s", secs(r.restartIdle), secs(r.restartReady), secs(r.restartReconciled), secs(r.restartStop), totals(r.restartReqs, false)), "", "")
	}
}

// reportMemory: RSS and live heap with unrelated Secrets against none.
func (b *bench) reportMemory(t *table) {
	r := b.res
	if len(r.withRSS) == 0 {
		return
	}
	baseMax, withMax := maxOf(r.baseRSS), maxOf(r.withRSS)
	baseLast, withLast := r.baseRSS[len(r.baseRSS)-1], r.withRSS[len(r.withRSS)-1]
	t.add("**memory**: manager RSS, baseline (every object in place): max / last", fmt.Sprintf("%s / %s", mib(baseMax), mib(baseLast)), "", "")
	d := withMax - baseMax
	t.add(fmt.Sprintf(subRow+"with %d unrelated Secrets of %d KiB (created in %s): max / last (delta of max)", r.memSecrets, r.memSecretSize/1024, secs(r.memCreate)),
		fmt.Sprintf("%s / %s (%+.1f MiB)", mib(withMax), mib(withLast), float64(d)/(1<<20)), "≤ baseline + 10 MiB", met(d <= 10<<20))
	if r.baseHeap > 0 && r.withHeap > 0 {
		t.add(subRow+"live Go heap after the last GC (go_gc_heap_live_bytes): baseline / with the Secrets",
			fmt.Sprintf("%s / %s (%+.1f MiB)", mib(int64(r.baseHeap)), mib(int64(r.withHeap)), (r.withHeap-r.baseHeap)/(1<<20)), "", "")
	}
	t.add(subRow+"kube API requests the unrelated Secrets caused", totals(r.memReqs, true)+"; reads: "+totals(r.memReqs, false), "", "")
}

// reportStorm: spread and lag of the scheduled refreshes.
func (b *bench) reportStorm(t *table) {
	r := b.res
	if len(r.lags) == 0 {
		return
	}
	t.add(fmt.Sprintf("**refresh storm**: %d tokens of %s; spread of expiries / scheduled refreshes / actual refreshes", r.refK, r.lifetime),
		fmt.Sprintf("%s / %s / %s", secs(r.expirySpread), secs(r.nextSpread), secs(r.refreshSpread)), "", "")
	p99 := percentile(r.lags, 99)
	t.add(subRow+"lag of the Secret write behind status.nextRefreshTime (kept to the second): p50 / p99 / max",
		fmt.Sprintf("%s / %s / %s", secs(percentile(r.lags, 50)), secs(p99), secs(maxOf(r.lags))), "p99 < 5 s", met(p99 < 5*time.Second))
}

// reportBudget: the restart budget measure.
func (b *bench) reportBudget(t *table) {
	r := b.res
	if r.budgetN == 0 || r.budgetDone == 0 {
		return
	}
	t.add(fmt.Sprintf("**restart budget**: %d RevioTokens refreshed at once (keywarden.dev/refresh), each restarting its own Deployment (envFrom), --max-concurrent-restarts=%d: most restarts in flight, Deployments patched and not rolled out / the manager's keywarden_restarts_in_flight (sampled every 250 ms)", r.budgetN, r.budgetB),
		fmt.Sprintf("%d / %d", r.budgetMostSeen, r.budgetMostGauge), fmt.Sprintf("≤ %d", r.budgetB), met(r.budgetMostSeen <= r.budgetB && r.budgetMostGauge <= r.budgetB))
	t.add(subRow+"Deployments restarted for their Secret's current version and rolled out",
		fmt.Sprintf("%d of %d", r.budgetN-r.budgetStale, r.budgetN), "all", met(r.budgetStale == 0 && r.budgetDone == r.budgetN))
	t.add(fmt.Sprintf(subRow+"time to drain, refresh asked to the last rollout done (each rollout takes %s; the manager sees one finish within 5 s); first patch after (the coalescing window)", secs(r.budgetRollout)),
		fmt.Sprintf("%s; %s", secs(r.budgetDrain), secs(r.budgetFirstPatch)), "", "")
	t.add(subRow+"restarts asked / queued / done / failed (the manager's counters); longest queue",
		fmt.Sprintf("%.0f / %.0f / %.0f / %.0f; %d", r.budgetRequested, r.budgetQueued, r.budgetFinished, r.budgetFailed, r.budgetMostQueue), "", "")
	t.add(subRow+"manager CPU / peak RSS (anonymous) while draining",
		fmt.Sprintf("%s / %s (%s)", secs(r.budgetCPU), mib(r.budgetPeak.rss), mib(r.budgetPeak.anon)), "", "")
}

// countEmpty counts the rows without a goal.
func countEmpty(rows []row) int {
	n := 0
	for _, x := range rows {
		if x.met == "" {
			n++
		}
	}
	return n
}

func peerMet(ok bool) string {
	if ok {
		return "; peer target: yes"
	}
	return "; peer target: **no**"
}

// totals formats absolute counts (writes or reads).
func totals(t tally, writes bool) string {
	var parts []string
	for _, k := range t.keys() {
		if writes == isWriteKey(k) {
			parts = append(parts, fmt.Sprintf("%s %d%s", k, t[k], t.failures(k)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// header prints the machine, the versions and the command line.
func (b *bench) header(w io.Writer, took time.Duration) {
	// Built from Go modules, kube-apiserver reports no version of its own;
	// hack/controlplane.sh names its cache directory after the versions.
	server := "kube-apiserver and etcd " + strings.ReplaceAll(filepath.Base(os.Getenv("KUBEBUILDER_ASSETS")), "-etcd-", ", etcd-")
	args := strings.TrimSpace("go run ./hack/bench " + strings.Join(os.Args[1:], " "))
	mgr := b.cl.env.ManagerBin
	if rel, err := filepath.Rel(b.cl.env.RepoRoot, mgr); err == nil && !strings.HasPrefix(rel, "..") {
		mgr = rel
	}
	_, _ = fmt.Fprintf(w, "\nKeywarden benchmark, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	_, _ = fmt.Fprintf(w, "- machine: %s; %.0f%% busy with other work just before the run\n", machine(), b.o.busyBefore)
	_, _ = fmt.Fprintf(w, "- command: `%s` (%s, run time %s)\n", args, makeTarget(b.o), took.Round(time.Second))
	_, _ = fmt.Fprintf(w, "- control plane: %s (hack/controlplane.sh), local, audit log at Metadata level\n", server)
	_, _ = fmt.Fprintf(w, "- manager: `%s %s` (and testenv's --kubeconfig, loopback metrics and probe addresses, --allow-http-endpoints and apisim's two URLs as --allowed-endpoints) as system:serviceaccount:keywarden-system:keywarden-controller-manager with config/default's RBAC\n", mgr, strings.Join(b.cl.mgrArgs, " "))
	if b.o.leaderElect {
		_, _ = fmt.Fprintf(w, "- leader election on: the leader kept its Lease through every phase (a lost Lease ends the manager, which fails the run); %d Lease requests and leader-election events left out of the tables\n", b.cl.audit.leaseCount())
	}
	if len(b.cl.replicas) > 0 {
		_, _ = fmt.Fprintf(w, "- replicas (same flags, same ServiceAccount, told apart by user agent): %s\n", b.cl.replicaNames())
	}
	if b.o.namespaces > 1 {
		_, _ = fmt.Fprintf(w, "- objects spread round-robin over %d namespaces\n", b.o.namespaces)
	}
	_, _ = fmt.Fprintf(w, "- issuers: one ClusterReevitIssuer (with a policy and a namespace selector) and one ClusterRevioIssuer serve every object, their Secrets in %s; checked before the objects are created\n", testenv.ClusterResourceNamespace)
	lat := "no added latency"
	if b.o.externalLatency > 0 {
		lat = b.o.externalLatency.String() + " added latency"
	}
	_, _ = fmt.Fprintf(w, "- external APIs: apisim on loopback (%s); kube requests counted from the audit log (manager's user), external calls from apisim\n\n", lat)
}

func makeTarget(o options) string {
	switch {
	case o.quick:
		return "make bench-quick"
	case o.sharded:
		return "make bench-sharded"
	case o.n >= 10000:
		return "make bench-scale"
	}
	return "make bench"
}
