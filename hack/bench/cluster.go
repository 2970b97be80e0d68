package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

const (
	benchNS        = "bench"
	floorNS        = "bench-floor"
	unrelatedNS    = "bench-unrelated"
	adminSecret    = "reevit-admin"
	revioKeySecret = "revio-api-key"
	// benchNSLabel marks the namespaces the benchmark creates; the Reevit
	// issuer's namespace selector admits them.
	benchNSLabel = "bench.keywarden.dev/namespace"
	// issuerName names the one ClusterReevitIssuer and the one
	// ClusterRevioIssuer every benchmark object uses, as a platform runs
	// them: their Secrets in the cluster-resource namespace.
	issuerName = "bench"
)

// cluster is the running control plane, apisim and manager, and the
// benchmark's clients.
type cluster struct {
	o     options
	env   *testenv.Env
	sim   *testenv.Apisim
	audit *auditLog
	// c is an admin client without client-side throttling.
	c   client.Client
	cfg *rest.Config
	log io.Writer

	mgrMu    sync.Mutex
	mgr      *testenv.Manager
	stopping bool // the benchmark stops the manager on purpose
	mgrArgs  []string
	// budgetArgs are the budget measure's further manager flags (not in
	// mgrArgs, which the report's header prints).
	budgetArgs []string
	tmp        string
	// pprofAddr is where the manager serves /debug/pprof (-manager-profile).
	pprofAddr string
	// replicas are the managers of a -sharded run (the first is mgr).
	replicas []*replica
}

// startCluster starts the control plane with an audit log, builds or finds
// the binaries, starts apisim and installs config/default. The manager is
// started separately.
func startCluster(ctx context.Context, o options, log io.Writer) (*cluster, error) {
	tmp, err := os.MkdirTemp("", "keywarden-bench-")
	if err != nil {
		return nil, err
	}
	cl := &cluster{o: o, log: log, tmp: tmp}
	_, auditPath, args, err := auditArgs(tmp)
	if err != nil {
		return cl, err
	}
	cl.audit = newAuditLog(auditPath, testenv.ManagerUser)
	env, err := testenv.Start(ctx, testenv.Options{Log: log, APIServerFlags: args})
	cl.env = env
	if err != nil {
		return cl, err
	}
	go cl.audit.follow(ctx)

	cl.cfg = rest.CopyConfig(env.AdminConfig)
	cl.cfg.QPS, cl.cfg.Burst = -1, 0 // no client-side throttling: the floor is the API server's
	cl.cfg.UserAgent = "keywarden-bench"
	if cl.c, err = client.New(cl.cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return cl, err
	}

	if err := cl.binaries(ctx); err != nil {
		return cl, err
	}
	var simArgs []string
	if o.externalLatency > 0 {
		simArgs = append(simArgs, "--latency="+o.externalLatency.String())
	}
	if cl.sim, err = env.StartApisim(ctx, testenv.ApisimOptions{Args: simArgs}); err != nil {
		return cl, err
	}
	if _, err := env.Install(ctx); err != nil {
		return cl, err
	}
	// Probe the audit log: a request of ours must show up in it.
	if err := cl.audit.sync(ctx, cl.probe); err != nil {
		return cl, err
	}
	return cl, nil
}

// binaries uses bin/manager and bin/apisim from `make build` when both
// exist (and -build is not given), otherwise builds them into the Env.
func (cl *cluster) binaries(ctx context.Context) error {
	m := filepath.Join(cl.env.RepoRoot, "bin", "manager")
	a := filepath.Join(cl.env.RepoRoot, "bin", "apisim")
	if cl.o.build || !fileExists(m) || !fileExists(a) {
		if err := cl.env.Build(ctx); err != nil {
			return err
		}
	} else {
		cl.env.ManagerBin, cl.env.ApisimBin = m, a
	}
	if cl.o.managerBin != "" {
		cl.env.ManagerBin = cl.o.managerBin
	}
	if cl.o.managerProfile != "" {
		out, _ := exec.CommandContext(ctx, cl.env.ManagerBin, "-h").CombinedOutput()
		if !strings.Contains(string(out), "pprof-bind-address") {
			return fmt.Errorf("-manager-profile: %s has no --pprof-bind-address flag", cl.env.ManagerBin)
		}
		if err := os.MkdirAll(cl.o.managerProfile, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// probe is a cheap request whose audit line proves the log is current.
func (cl *cluster) probe(ctx context.Context) error {
	var ns corev1.Namespace
	return client.IgnoreNotFound(cl.c.Get(ctx, client.ObjectKey{Name: "default"}, &ns))
}

// syncAudit makes sure every request completed so far has been read.
func (cl *cluster) syncAudit(ctx context.Context) error { return cl.audit.sync(ctx, cl.probe) }

// managerArgs are the manager's flags besides testenv's (kubeconfig of the
// ServiceAccount, loopback metrics and probe addresses, http endpoints).
// The cluster-resource namespace is given explicitly, as testenv also does.
func (cl *cluster) managerArgs() []string {
	args := []string{"--leader-elect=false", "--metrics-secure=false", "--cluster-resource-namespace=" + testenv.ClusterResourceNamespace}
	if cl.o.leaderElect {
		// A lost Lease ends the manager process, which alive() reports: a
		// run that completes kept its Lease throughout.
		args[0] = "--leader-elect"
		args = append(args, "--leader-election-namespace="+testenv.ManagerNamespace)
		args = append(args, testenv.FastFailoverArgs()...)
	}
	if cl.o.qps > 0 {
		args = append(args, fmt.Sprintf("--kube-api-qps=%g", cl.o.qps), fmt.Sprintf("--kube-api-burst=%d", max(cl.o.burst, int(cl.o.qps))))
	}
	if cl.o.managerProfile != "" {
		if port, err := testenv.FreePort(); err == nil {
			cl.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
			args = append(args, "--pprof-bind-address="+cl.pprofAddr)
		}
	}
	if cl.o.managerArgs != "" {
		args = append(args, strings.Fields(cl.o.managerArgs)...)
	}
	return args
}

// profileManager fetches a profile from the manager's /debug/pprof
// ("profile?seconds=20", "heap") into the -manager-profile directory.
func (cl *cluster) profileManager(ctx context.Context, what, file string) error {
	if cl.pprofAddr == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cl.pprofAddr+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manager pprof %s: HTTP %d", what, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cl.o.managerProfile, file), b, 0o644)
}

// startManager starts the manager process and waits until it is ready.
func (cl *cluster) startManager(ctx context.Context) (*testenv.Manager, error) {
	cl.mgrArgs = cl.managerArgs()
	args := append(slices.Clip(cl.mgrArgs), cl.budgetArgs...)
	m, err := cl.env.StartManager(ctx, testenv.ManagerOptions{NoLeaderElection: true, Args: args, AllowedEndpoints: cl.sim.Endpoints()})
	cl.mgrMu.Lock()
	cl.mgr, cl.stopping = m, false
	cl.mgrMu.Unlock()
	return m, err
}

// stopManager ends the manager with SIGTERM, as a rolling update would.
func (cl *cluster) stopManager() error {
	cl.mgrMu.Lock()
	m := cl.mgr
	cl.stopping = true
	cl.mgrMu.Unlock()
	if m == nil {
		return nil
	}
	return m.Stop(30 * time.Second)
}

// alive returns an error when the manager has exited unexpectedly.
func (cl *cluster) alive() error {
	cl.mgrMu.Lock()
	m, stopping := cl.mgr, cl.stopping
	cl.mgrMu.Unlock()
	if m == nil || stopping {
		return nil
	}
	if exited, err := m.Exited(); exited {
		return fmt.Errorf("the manager exited (%w); last log lines:\n%s", err, m.LogTail(30))
	}
	for _, rp := range cl.replicas {
		if exited, err := rp.mgr.Exited(); exited {
			return fmt.Errorf("the %s manager exited (%w); last log lines:\n%s", rp.name, err, rp.mgr.LogTail(30))
		}
	}
	return nil
}

// managerPid is the running manager's process id.
func (cl *cluster) managerPid() int {
	cl.mgrMu.Lock()
	defer cl.mgrMu.Unlock()
	if cl.mgr == nil {
		return 0
	}
	return cl.mgr.Pid()
}

// stop ends everything and removes the temporary directories.
func (cl *cluster) stop() error {
	var errs []error
	if cl.env != nil {
		cl.mgrMu.Lock()
		cl.stopping = true
		cl.mgrMu.Unlock()
		errs = append(errs, cl.env.Stop())
	}
	errs = append(errs, os.RemoveAll(cl.tmp))
	return errors.Join(errs...)
}

// createNamespace creates a namespace with benchNSLabel (an existing one
// is fine).
func (cl *cluster) createNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchNSLabel: "true"}}}
	return client.IgnoreAlreadyExists(cl.c.Create(ctx, ns))
}

// objNS is the namespace of the i-th ApiKey and the i-th RevioToken:
// benchNS, or with -namespaces M, bench-000 ... round-robin.
func (cl *cluster) objNS(i int) string {
	if cl.o.namespaces <= 1 {
		return benchNS
	}
	return fmt.Sprintf("%s-%03d", benchNS, i%cl.o.namespaces)
}

// isObjNS reports whether ns holds the benchmark's measured objects
// (benchNS or bench-000 ...; not the floors' namespaces).
func isObjNS(ns string) bool {
	if ns == benchNS {
		return true
	}
	rest, ok := strings.CutPrefix(ns, benchNS+"-")
	return ok && rest != "" && strings.Trim(rest, "0123456789") == ""
}

// createIssuers creates the platform's issuers every benchmark object
// names, one of each kind (as one ClusterSecretStore serves ESO's
// ExternalSecrets in the peer figures): a ClusterReevitIssuer and a
// ClusterRevioIssuer, their admin-key and API-key Secrets in the manager's
// cluster-resource namespace. The Reevit issuer has a policy and a
// namespace selector, so every ApiKey goes through the checks a platform
// would have.
func (cl *cluster) createIssuers(ctx context.Context) error {
	for name, key := range map[string]string{adminSecret: cl.sim.Credentials.AdminKey, revioKeySecret: cl.sim.Credentials.RevioAPIKey} {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testenv.ClusterResourceNamespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"apiKey": []byte(key)},
		}
		if err := cl.c.Create(ctx, s); err != nil {
			return fmt.Errorf("create input secret %s: %w", name, err)
		}
	}
	ri := &v1alpha1.ClusterReevitIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: issuerName},
		Spec: v1alpha1.ReevitIssuerSpec{
			URL: cl.sim.Credentials.ReevitURL, OrgID: cl.sim.Credentials.OrgID,
			AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: adminSecret, Key: "apiKey"},
			Policy: v1alpha1.ReevitIssuerPolicy{
				AllowedScopes:     []v1alpha1.Scope{"payments:read"},
				Environments:      []v1alpha1.Environment{v1alpha1.Environment(cl.environment())},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{benchNSLabel: "true"}},
				MaxKeyAge:         &metav1.Duration{Duration: 720 * time.Hour},
				MaxGracePeriod:    &metav1.Duration{Duration: cl.o.grace},
			},
		},
	}
	if err := cl.c.Create(ctx, ri); err != nil {
		return fmt.Errorf("create ClusterReevitIssuer: %w", err)
	}
	rvi := &v1alpha1.ClusterRevioIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: issuerName},
		Spec: v1alpha1.RevioIssuerSpec{
			URL: cl.sim.Credentials.RevioURL, Host: cl.sim.Credentials.RevioHost,
			APIKeySecretRef: v1alpha1.SecretKeyReference{Name: revioKeySecret, Key: "apiKey"},
		},
	}
	if err := cl.c.Create(ctx, rvi); err != nil {
		return fmt.Errorf("create ClusterRevioIssuer: %w", err)
	}
	return nil
}

// waitIssuers waits until both issuers are Ready (their credentials
// checked), so that the create path measured afterwards is the objects'.
func (cl *cluster) waitIssuers(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ri, rvi := &v1alpha1.ClusterReevitIssuer{}, &v1alpha1.ClusterRevioIssuer{}
		err := cl.c.Get(ctx, client.ObjectKey{Name: issuerName}, ri)
		if err == nil {
			err = cl.c.Get(ctx, client.ObjectKey{Name: issuerName}, rvi)
		}
		if err == nil && issuerReady(ri.Status, ri.Generation) && issuerReady(rvi.Status, rvi.Generation) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("ClusterReevitIssuer: %s; ClusterRevioIssuer: %s", describeIssuer(ri.Status), describeIssuer(rvi.Status))
		}
		if aerr := cl.alive(); aerr != nil {
			return aerr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("issuers not Ready within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func issuerReady(st v1alpha1.IssuerStatus, gen int64) bool {
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen
}

func describeIssuer(st v1alpha1.IssuerStatus) string {
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		return "no Ready condition"
	}
	return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
}

// environment is the Reevit environment of apisim's admin key: Reevit
// issues keys in the admin key's environment.
func (cl *cluster) environment() string {
	if strings.HasPrefix(cl.sim.Credentials.AdminKey, "pfk_live_") {
		return "live"
	}
	return "test"
}

func apiKeyName(i int) string     { return fmt.Sprintf("ak-%05d", i) }
func revioTokenName(i int) string { return fmt.Sprintf("rt-%05d", i) }

// newApiKey is the benchmark's i-th ApiKey, of the ClusterReevitIssuer: one
// scope, rotation every 720h with a short grace period, so a rotation's
// revocation can be measured. With -sharded it carries its shard's label.
func (cl *cluster) newApiKey(i int) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Name: apiKeyName(i), Namespace: cl.objNS(i), Labels: cl.shardLabels(i)},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:   v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: issuerName},
			Scopes:      []v1alpha1.Scope{"payments:read"},
			Environment: cl.environment(),
			Rotation: &v1alpha1.Rotation{
				Every:       &metav1.Duration{Duration: 720 * time.Hour},
				GracePeriod: &metav1.Duration{Duration: cl.o.grace},
			},
		},
	}
}

// newRevioToken is the benchmark's i-th RevioToken, of the
// ClusterRevioIssuer, refreshed at the default third of the token's
// lifetime before it expires. With -sharded it carries its shard's label.
func (cl *cluster) newRevioToken(i int) *v1alpha1.RevioToken {
	return &v1alpha1.RevioToken{
		ObjectMeta: metav1.ObjectMeta{Name: revioTokenName(i), Namespace: cl.objNS(i), Labels: cl.shardLabels(i)},
		Spec: v1alpha1.RevioTokenSpec{
			IssuerRef: v1alpha1.RevioIssuerReference{Kind: v1alpha1.KindClusterRevioIssuer, Name: issuerName},
		},
	}
}

// pool runs fn for 0..n-1 on `workers` goroutines and returns the first error.
func pool(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// annotate sets an annotation on an object with a merge patch.
func (cl *cluster) annotate(ctx context.Context, obj client.Object, key, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	return cl.c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(patch)))
}

// keepLogs copies the audit log and the manager's logs into dir.
func (cl *cluster) keepLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := []string{cl.audit.path}
	if cl.env != nil {
		logs, _ := filepath.Glob(filepath.Join(cl.env.Dir, "logs", "*.log"))
		files = append(files, logs...)
	}
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600))
	}
	return errors.Join(errs...)
}
