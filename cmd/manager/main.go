// Command manager runs the Keywarden controllers: ApiKey (Reevit keys) and
// RevioToken (Rev.io JWTs). It is wiring only: flags, the manager, the
// reconcilers and the real clock.
package main

import (
	"flag"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/controller"
	"github.com/keywarden/keywarden/internal/httpcore"
)

// The metrics endpoint authenticates and authorises its callers.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

func main() {
	var (
		metricsAddr, probeAddr                    string
		metricsSecure                             bool
		pprofAddr                                 string
		leaderElect                               bool
		leaderElectionID, leaderNS                string
		namespaces, watchSelector                 string
		qps                                       float64
		burst                                     int
		maxConcurrent                             int
		allowHTTP                                 bool
		allowedEndpoints, clusterNS               string
		driftInterval, rolloutLimit               time.Duration
		restartWindow                             time.Duration
		leaseDuration, renewDeadline, retryPeriod time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, allowing only callers authorised for GET /metrics (TokenReview and SubjectAccessReview); false serves plain HTTP.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address to serve net/http/pprof on (profiling); empty disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Enable leader election so only one replica reconciles.")
	flag.StringVar(&leaderElectionID, "leader-election-id", "keywarden.keywarden.dev", "Name of the leader-election Lease.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.DurationVar(&leaseDuration, "leader-election-lease-duration", 15*time.Second, "Leader-election lease duration.")
	flag.DurationVar(&renewDeadline, "leader-election-renew-deadline", 10*time.Second, "Leader-election renew deadline.")
	flag.DurationVar(&retryPeriod, "leader-election-retry-period", 2*time.Second, "How often the leader renews the Lease and a follower tries to take it; a SIGKILLed leader's successor takes over within about lease duration + 2 x retry period.")
	flag.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces to watch (default: all).")
	flag.StringVar(&watchSelector, "watch-label-selector", "", "Reconcile only the ApiKeys and RevioTokens this label selector matches (sharding, docs/sharding.md), e.g. 'keywarden.dev/shard in (shard1)' or '!keywarden.dev/shard'; the leader-election ID gets a suffix derived from it unless --leader-election-id is set.")
	flag.Float64Var(&qps, "kube-api-qps", -1, "Client-side QPS limit towards the API server; negative leaves throttling to the API server's priority and fairness.")
	flag.IntVar(&burst, "kube-api-burst", 0, "Client-side burst towards the API server (with --kube-api-qps > 0).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", 16, "Reconciles run in parallel per controller.")
	perHost := flag.Int("max-requests-per-host", httpcore.DefaultMaxInFlight, "Requests in flight to one Reevit or Rev.io host at once, so a host that does not answer holds only that many workers; negative: no limit.")
	flag.BoolVar(&allowHTTP, "allow-http-endpoints", false, "Allow the http scheme for Reevit and Rev.io URLs under --allowed-endpoints (list the simulators there; tests and the demo only). No host passes for being loopback.")
	flag.StringVar(&allowedEndpoints, "allowed-endpoints", strings.Join(controller.DefaultAllowedEndpoints(), ","),
		"Comma-separated base URLs issuers may name; the manager sends no credential anywhere else. Compared as written: the same scheme, host and port, a path at or below the entry's; --allow-http-endpoints widens nothing.")
	flag.StringVar(&clusterNS, "cluster-resource-namespace", "", "Namespace holding the credential Secrets of ClusterReevitIssuers and ClusterRevioIssuers (default: the manager's own namespace).")
	flag.DurationVar(&driftInterval, "drift-check-interval", 15*time.Minute, "How often each organisation's keys are listed to notice keys revoked outside Keywarden and leaked keys; 0 disables.")
	flag.DurationVar(&rolloutLimit, "rollout-wait-limit", 15*time.Minute, "How long a revocation waits for rollout targets after the grace period before going ahead with a Warning.")
	auditLog := flag.String("audit-log", "stderr", "Where the audit stream goes (one JSON line per credential event, \"logger\":\"audit\", docs/audit.md): stderr (beside the manager's log), stdout, off, or a file path (appended).")
	flag.DurationVar(&restartWindow, "restart-coalesce-window", 10*time.Second, "Restarts of one workload asked for within this long (several credentials changing together) make one pod-template patch; 0 patches at once.")
	maxRestarts := flag.Int("max-concurrent-restarts", 0, "Workloads rolling out a Keywarden restart at once in the whole cluster; more wait in a queue, in order. 0: no bound.")
	maxRestartsNS := flag.Int("max-concurrent-restarts-per-namespace", 0, "Workloads rolling out a Keywarden restart at once in one namespace; more wait in the queue. 0: no bound.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	memLimit := setDefaultMemoryLimit()
	if os.Getenv("GOGC") == "" {
		// Half Go's default heap headroom: the manager has CPU to spare
		// (a third of External Secrets' for the same job) and is judged
		// by its memory; GOGC in the environment still wins.
		debug.SetGCPercent(defaultGOGC)
	}

	shard, err := controller.ParseWatchSelector(watchSelector)
	if err != nil {
		log.Error(err, "invalid --watch-label-selector")
		os.Exit(1)
	}
	explicitID := false
	flag.Visit(func(f *flag.Flag) { explicitID = explicitID || f.Name == "leader-election-id" })
	if !explicitID {
		leaderElectionID = controller.LeaderElectionID(leaderElectionID, shard)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = float32(qps)
	if qps > 0 {
		cfg.Burst = max(burst, int(qps))
	}
	cfg.UserAgent = "keywarden-manager"
	if shard != nil {
		// Tells the shards apart in the audit log; the API server's field
		// manager is the part before the slash, the same for every shard.
		cfg.UserAgent += "/shard-" + controller.ShardID(shard)
	}

	cacheOpts := cache.Options{DefaultTransform: controller.TrimForCache}
	if namespaces != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(namespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				cacheOpts.DefaultNamespaces[ns] = cache.Config{}
			}
		}
		// The cluster issuers' Secrets live in the cluster-resource
		// namespace: watched too, so their changes are seen and they are
		// protected by the in-use finalizer.
		cacheOpts.DefaultNamespaces[clusterResourceNamespace(clusterNS)] = cache.Config{}
	}
	controller.ShardCache(&cacheOpts, shard)

	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: metricsSecure}
	if metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       leaderNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		Cache:                         cacheOpts,
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets and workloads are read directly: caching every Secret in
			// the cluster is what makes other operators run out of memory.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
	})
	if err != nil {
		log.Error(err, "unable to create manager")
		os.Exit(1)
	}

	clusterNS = clusterResourceNamespace(clusterNS)
	var allowed []string
	for _, u := range strings.Split(allowedEndpoints, ",") {
		if u = strings.TrimSpace(u); u != "" {
			allowed = append(allowed, u)
		}
	}
	// One per manager, shared by both API clients: per-host limits and circuit breakers.
	apiHTTP := &http.Client{Transport: httpcore.NewHostGuard(nil, clock.RealClock{}, httpcore.HostLimits{MaxInFlight: *perHost})}
	auditSink, err := openAudit(*auditLog)
	if err != nil {
		log.Error(err, "unable to open the audit log")
		os.Exit(1)
	}
	if err := controller.Setup(mgr, controller.Options{
		Audit:                             auditSink,
		AllowedEndpoints:                  allowed,
		ClusterResourceNamespace:          clusterNS,
		Clock:                             clock.RealClock{},
		AllowHTTP:                         allowHTTP,
		HTTPClient:                        apiHTTP,
		MaxConcurrentReconciles:           maxConcurrent,
		DriftCheckInterval:                driftInterval,
		RolloutWaitLimit:                  rolloutLimit,
		RestartCoalesceWindow:             restartWindow,
		MaxConcurrentRestarts:             *maxRestarts,
		MaxConcurrentRestartsPerNamespace: *maxRestartsNS,
		Sharded:                           shard != nil,
	}); err != nil {
		log.Error(err, "unable to set up controllers")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	log.Info("starting manager", "allowHTTPEndpoints", allowHTTP, "allowedEndpoints", allowed, "clusterResourceNamespace", clusterNS, "namespaces", namespaces, "watchLabelSelector", watchSelector,
		"leaderElectionID", leaderElectionID, "memoryLimit", memLimit, "startedAt", metav1.Now().UTC().Format(time.RFC3339))
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager exited with an error")
		os.Exit(1)
	}
}

// defaultGOGC is the collector's target when GOGC is unset (Go's is 100).
const defaultGOGC = 50

// clusterResourceNamespace is the flag's value, or the manager's own namespace.
func clusterResourceNamespace(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return ownNamespace()
}

// ownNamespace is the namespace the manager runs in: POD_NAMESPACE, the
// service account's namespace file, or keywarden-system.
func ownNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return "keywarden-system"
}

// openAudit is the audit stream's destination named by --audit-log.
func openAudit(dest string) (audit.Sink, error) {
	switch dest {
	case "off":
		return audit.Discard, nil
	case "stderr", "":
		return audit.NewWriter(os.Stderr), nil
	case "stdout":
		return audit.NewWriter(os.Stdout), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return audit.NewWriter(f), nil
}
