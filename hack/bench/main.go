// Command bench measures Keywarden at scale (`make bench`, `make
// bench-quick`): convergence of N ApiKeys and N RevioTokens against the
// floor a bare client sets, the kube API and external calls per object on
// every path (create, refresh, rotation, steady state, restart), the
// manager's memory with many unrelated Secrets, and the lag of a refresh
// storm. It prints one table with the goals of issue 8 beside the numbers.
//
// It runs what a user runs: a local control plane (testenv) whose
// kube-apiserver writes an audit log, apisim, config/default's CRDs and
// RBAC, and bin/manager as a process under its ServiceAccount with its
// default flags (no client-side throttling unless -qps). Kube API requests
// are counted from the audit log (the manager's user only), external calls
// from apisim's counters, memory and CPU from /proc.
//
// -quick (N=100) is the CI smoke test: it asserts nothing about timing and
// fails only when something is broken (objects never Ready, the manager
// crashing, refreshes or rotations not happening). Ctrl-C stops everything
// and removes every temporary file.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

type options struct {
	n, writers            int
	namespaces            int
	quick, build          bool
	leaderElect           bool
	tokensOnly, sharded   bool
	steady, idle, timeout time.Duration
	secrets, secretSize   int
	rotations, storm      int
	stormLifetime, grace  time.Duration
	qps                   float64
	burst                 int
	managerArgs           string
	externalLatency       time.Duration
	rssSamples            int
	skip, keep            string
	apiserverProfile      string
	managerProfile        string
	managerBin            string
	profileSeconds        int
	busyBefore            float64
	restartBudget         int
	rolloutTime           time.Duration
	explicit              map[string]bool
}

type bench struct {
	o    options
	skip map[string]bool
	cl   *cluster
	tr   *tracker
	res  *results
	log  io.Writer
}

func (b *bench) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(b.log, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "ApiKeys and RevioTokens to create (N of each)")
	flag.IntVar(&o.namespaces, "namespaces", 1, "spread the objects round-robin over this many namespaces (bench-000, ...; 1: the namespace bench)")
	flag.BoolVar(&o.sharded, "sharded", false, "run three managers (main + shard1 + shard2, --watch-label-selector) on objects split by the keywarden.dev/shard label; reports per-replica RSS and which replica reconciled each object (make bench-sharded)")
	flag.BoolVar(&o.quick, "quick", false, "smoke test for CI: shorter steady state, grace period and storm lifetime, 1,000 unrelated Secrets; asserts no timing")
	flag.IntVar(&o.writers, "writers", 16, "concurrent writers of the benchmark client (creates, annotations, the floor)")
	flag.DurationVar(&o.steady, "steady", time.Minute, "steady-state window (10s with -quick)")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "the manager is idle after this long without a kube API request")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long objects may take to become Ready (5m with -quick)")
	flag.IntVar(&o.secrets, "secrets", 10000, "unrelated Secrets for the memory measure (1,000 with -quick)")
	flag.IntVar(&o.secretSize, "secret-size", 10*1024, "bytes of data in each unrelated Secret")
	flag.IntVar(&o.rotations, "rotations", 100, "ApiKeys rotated in the rotation measure (at most N)")
	flag.IntVar(&o.storm, "storm", 1000, "RevioTokens in the refresh storm (at most N)")
	flag.DurationVar(&o.stormLifetime, "storm-lifetime", 90*time.Second, "token lifetime during the refresh storm (refresh a third before expiry)")
	flag.DurationVar(&o.grace, "grace", time.Minute, "the ApiKeys' rotation.gracePeriod")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "run the manager(s) with leader election in testenv.FastFailover's profile (3s lease, 2s renew deadline, 500ms retry): the run then shows whether a busy API server makes a healthy leader lose its Lease (the manager would exit and the run fail)")
	flag.Float64Var(&o.qps, "qps", 0, "pass --kube-api-qps to the manager (0: its default, no client-side throttling)")
	flag.IntVar(&o.burst, "burst", 0, "pass --kube-api-burst to the manager with -qps")
	flag.StringVar(&o.managerArgs, "manager-args", "", "further manager flags, space separated (e.g. \"--max-concurrent-reconciles=32\")")
	flag.DurationVar(&o.externalLatency, "external-latency", 0, "latency apisim adds to every Reevit and Rev.io request")
	flag.IntVar(&o.rssSamples, "rss-samples", 10, "RSS samples (a second apart) before and after the unrelated Secrets")
	flag.BoolVar(&o.tokensOnly, "tokens-only", false, "create RevioTokens only (the job of the ESO peer figures); no ApiKeys, no rotation")
	flag.BoolVar(&o.build, "build", false, "build the manager and apisim into the temporary directory instead of using bin/")
	flag.StringVar(&o.keep, "keep", "", "copy the audit log and the manager's logs into this directory before cleaning up")
	flag.StringVar(&o.apiserverProfile, "apiserver-profile", "", "write a CPU profile of kube-apiserver during converge to this file (go tool pprof)")
	flag.StringVar(&o.managerProfile, "manager-profile", "", "write the manager's CPU profile (converge) and heap profiles (memory) into this directory; needs a manager with --pprof-bind-address")
	flag.StringVar(&o.managerBin, "manager-bin", "", "run this manager binary instead of bin/manager")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 20, "length of the -apiserver-profile, from the first create")
	flag.IntVar(&o.restartBudget, "restart-budget", 50, "the budget measure's --max-concurrent-restarts (20 with -quick)")
	flag.DurationVar(&o.rolloutTime, "rollout-time", time.Second, "how long after its pod template is patched the budget measure's Deployment rolls out (the benchmark plays the Deployment controller)")
	flag.StringVar(&o.skip, "skip", "", "comma-separated measures to skip: floor (the ConfigMap floors), steady, restart, rotation, storm, memory, budget, same-floor")
	flag.Parse()
	o.explicit = map[string]bool{}
	flag.Visit(func(f *flag.Flag) { o.explicit[f.Name] = true })
	o.quickDefaults()
	if o.n < 1 || o.writers < 1 || o.namespaces < 1 {
		fmt.Fprintln(os.Stderr, "bench: -n, -writers and -namespaces must be at least 1")
		os.Exit(2)
	}
	if o.sharded && o.managerProfile != "" {
		fmt.Fprintln(os.Stderr, "bench: -manager-profile profiles one manager; not with -sharded")
		os.Exit(2)
	}
	skip, err := parseSkip(o.skip)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if o.restartBudget < 1 {
		fmt.Fprintln(os.Stderr, "bench: -restart-budget must be at least 1")
		os.Exit(2)
	}
	if o.grace < time.Second {
		fmt.Fprintln(os.Stderr, "bench: -grace must be at least 1s")
		os.Exit(2)
	}

	// client-go's watch errors would go to controller-runtime's logger.
	ctrllog.SetLogger(crzap.New(crzap.WriteTo(io.Discard)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		// A second signal ends the process at once; testenv's watchdog
		// still stops what it started.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, o, skip))
}

// quickDefaults shortens what -quick shortens, unless given explicitly.
func (o *options) quickDefaults() {
	if !o.quick {
		return
	}
	if !o.explicit["steady"] {
		o.steady = 10 * time.Second
	}
	if !o.explicit["secrets"] {
		o.secrets = 1000
	}
	if !o.explicit["rss-samples"] {
		o.rssSamples = 5
	}
	if !o.explicit["timeout"] {
		o.timeout = 5 * time.Minute
	}
	// The rotation's grace period and the storm's wait (a third of
	// the lifetime before expiry) are most of a quick run.
	if !o.explicit["storm-lifetime"] {
		o.stormLifetime = 45 * time.Second
	}
	if !o.explicit["grace"] {
		o.grace = 20 * time.Second
	}
	if !o.explicit["restart-budget"] {
		o.restartBudget = 20
	}
}

func run(ctx context.Context, o options, skip map[string]bool) int {
	// The benchmark's own watches and the audit reader end before the
	// control plane stops, so kube-apiserver has no client left to drain.
	ctx, cancel := context.WithCancel(ctx)
	b := &bench{o: o, skip: skip, res: &results{}, log: os.Stderr}
	// Other work on the machine skews every timing: note how busy it was.
	b.o.busyBefore = machineBusy(2 * time.Second)
	b.logf("the machine was %.0f%% busy before the run", b.o.busyBefore)
	start := time.Now()
	cl, err := startCluster(ctx, o, os.Stderr)
	b.cl = cl
	defer func() {
		cancel()
		if cl == nil {
			return
		}
		if o.keep != "" {
			if err := cl.keepLogs(o.keep); err != nil {
				b.logf("keep logs: %v", err)
			} else {
				b.logf("audit log and manager logs copied to %s", o.keep)
			}
		}
		b.logf("stopping the manager, apisim and the control plane")
		if err := cl.stop(); err != nil {
			b.logf("stop: %v", err)
		}
	}()
	if err == nil && o.sharded {
		err = b.measureSharded(ctx)
	} else if err == nil {
		err = b.measure(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			b.logf("interrupted")
			return 130
		}
		b.logf("FAILED: %v", err)
		if cl != nil && cl.mgr != nil {
			b.logf("manager log: last lines\n%s", cl.mgr.LogTail(20))
		}
		return 1
	}
	b.logf("done in %s", time.Since(start).Round(time.Second))
	if o.sharded {
		b.reportSharded(os.Stdout, time.Since(start))
		if b.res.shardingBroken() {
			b.logf("FAILED: not every object was reconciled by exactly the replica its label names")
			return 1
		}
	} else {
		b.report(os.Stdout, time.Since(start))
	}
	return 0
}

// measures that -skip accepts.
var measures = []string{"floor", "steady", "restart", "rotation", "storm", "memory", "budget", "same-floor"}

// parseSkip checks -skip against the measures.
func parseSkip(v string) (map[string]bool, error) {
	skip := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		known := false
		for _, m := range measures {
			known = known || m == s
		}
		if !known {
			return nil, fmt.Errorf("-skip: unknown measure %q (known: %s)", s, strings.Join(measures, ", "))
		}
		skip[s] = true
	}
	return skip, nil
}

// prepare creates the benchmark's namespaces and issuers and starts the
// benchmark's watch of its objects.
func (b *bench) prepare(ctx context.Context) error {
	cl := b.cl
	if err := pool(ctx, b.o.namespaces, b.o.writers, func(ctx context.Context, i int) error {
		return cl.createNamespace(ctx, cl.objNS(i))
	}); err != nil {
		return err
	}
	if err := cl.createIssuers(ctx); err != nil {
		return err
	}
	var err error
	b.tr, err = startTracker(ctx, cl.cfg)
	return err
}

// settle waits until the issuers are Ready and the manager (or managers)
// idle. The issuers are checked once (a key listing, an exchange) before
// any object exists: converge measures the objects, the issuers read from
// the manager's cache.
func (b *bench) settle(ctx context.Context) error {
	if err := b.cl.waitIssuers(ctx, time.Minute); err != nil {
		return err
	}
	_, err := b.cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, b.cl.alive)
	return err
}

// stage is one measure that -skip can leave out.
type stage struct {
	name   string // as -skip names it
	prefix string // put before its error; "" for one whose errors say where they come from
	run    func(context.Context) error
}

// runStages runs, in order, those of stages that -skip does not name, and
// stops at the first error.
func (b *bench) runStages(ctx context.Context, stages ...stage) error {
	for _, s := range stages {
		if b.skip[s.name] {
			continue
		}
		if err := s.run(ctx); err != nil {
			if s.prefix == "" {
				return err
			}
			return fmt.Errorf("%s: %w", s.prefix, err)
		}
	}
	return nil
}

// measure runs every measure in order; each leaves every object Ready.
func (b *bench) measure(ctx context.Context) error {
	skip := b.skip
	cl := b.cl
	if err := b.prepare(ctx); err != nil {
		return err
	}
	if _, err := cl.startManager(ctx); err != nil {
		return err
	}
	if err := b.settle(ctx); err != nil {
		return err
	}
	// The manager's memory with no object (N=0): what converge adds is
	// per object.
	if err := b.idleMemory(ctx, cl.managerPid(), cl.scrapeMetrics, &b.res.emptyMem); err != nil {
		return err
	}
	if err := b.converge(ctx); err != nil {
		return fmt.Errorf("converge: %w", err)
	}
	if err := b.runStages(ctx,
		stage{"floor", "", b.floor},
		stage{"steady", "steady", b.steady},
		stage{"restart", "restart", b.restart},
	); err != nil {
		return err
	}
	rotate := !skip["rotation"] && b.res.nAK > 0
	if rotate || !skip["storm"] {
		if err := b.rotateAndStorm(ctx, rotate, !skip["storm"]); err != nil {
			return err
		}
	}
	if err := b.runStages(ctx,
		stage{"memory", "memory", b.memory},
		// It restarts the manager with a restart budget.
		stage{"budget", "restart budget", b.budget},
	); err != nil {
		return err
	}
	if err := cl.alive(); err != nil {
		return err
	}
	if !skip["same-floor"] {
		// Last: it stops the manager.
		if err := b.sameWritesFloor(ctx); err != nil {
			return err
		}
	}
	return nil
}
