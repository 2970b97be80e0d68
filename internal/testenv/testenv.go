// Package testenv runs Keywarden the way a user does, on one machine and
// without a cluster: a local control plane (kube-apiserver and etcd through
// envtest, with RBAC authorization), the built manager and apisim binaries
// as separate processes, kubectl and the kustomize install. make demo, the
// e2e suite and the benchmarks share it.
//
// Everything an Env starts lives in one temporary directory and in process
// groups of its own; Stop ends them all and removes the directory. A helper
// process (the watchdog) does the same if the owning process dies without
// calling Stop, so a killed test or demo leaves no orphan behind.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// The manager's identity, as config/default installs it.
const (
	// ManagerNamespace is the namespace config/default installs into.
	ManagerNamespace = "keywarden-system"
	// ManagerServiceAccount is the manager's ServiceAccount.
	ManagerServiceAccount = "keywarden-controller-manager"
	// ManagerRole is the ClusterRole generated from the kubebuilder markers.
	ManagerRole = "keywarden-manager-role"
	// LeaderElectionID is the manager's default leader-election Lease name.
	LeaderElectionID = "keywarden.keywarden.dev"
	// ClusterResourceNamespace is where the managers StartManager runs look
	// for the credential Secrets of ClusterReevitIssuers and
	// ClusterRevioIssuers (--cluster-resource-namespace): the manager's own
	// namespace, as in a cluster.
	ClusterResourceNamespace = ManagerNamespace
)

// ManagerUser is the user name the API server gives the manager's
// ServiceAccount.
var ManagerUser = "system:serviceaccount:" + ManagerNamespace + ":" + ManagerServiceAccount

// ManagerGroups are the groups of a ServiceAccount token of the manager.
var ManagerGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ManagerNamespace, "system:authenticated"}

const modulePath = "github.com/keywarden/keywarden"

// Options configure Start.
type Options struct {
	// RepoRoot is the Keywarden module's root; empty finds it from the
	// working directory upwards.
	RepoRoot string
	// Log receives one line per step; nil discards.
	Log io.Writer
	// APIServerFlags are added to kube-apiserver's command line, each
	// "name=value" ("--name=value" too); a flag given twice is passed twice.
	APIServerFlags []string
}

// Env is a running control plane and the processes started beside it.
type Env struct {
	// RepoRoot is the module root: go build and kubectl kustomize run there.
	RepoRoot string
	// Dir is the temporary directory holding everything; Stop removes it.
	Dir string
	// AdminConfig and AdminKubeconfig reach the API server as system:masters.
	AdminConfig     *rest.Config
	AdminKubeconfig string
	// ManagerConfig and ManagerKubeconfig reach it as the manager's
	// ServiceAccount (a client certificate issued by the control plane),
	// with only the rights its RBAC grants.
	ManagerConfig     *rest.Config
	ManagerKubeconfig string
	// Client is an admin client that knows Keywarden's types.
	Client client.Client
	// ManagerBin and ApisimBin are set by Build.
	ManagerBin, ApisimBin string
	// PluginBin is the kubectl plugin (kubectl-keywarden), set by Build.
	PluginBin string

	log            io.Writer
	apiServerFlags []string
	env            *envtest.Environment
	watchdog       *watchdog

	mu    sync.Mutex
	procs []*Process
	// apiServer is the kube-apiserver RestartAPIServer started (nil: envtest's).
	apiServer *apiServerProc
	restarts  int
	stopOnce  sync.Once
	stopErr   error
}

// Scheme returns a scheme with the Kubernetes and Keywarden types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// Start creates the temporary directory, starts the control plane from the
// binaries in KUBEBUILDER_ASSETS and writes the admin and manager
// kubeconfigs. Call Stop when done. After an error, what Start started is
// already stopped (the returned Env, if any, may still be stopped again).
func Start(ctx context.Context, o Options) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run through make (make test, make demo), or export KUBEBUILDER_ASSETS=$(hack/controlplane.sh)")
	}
	root := o.RepoRoot
	if root == "" {
		var err error
		if root, err = FindRepoRoot(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "keywarden-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	e := &Env{RepoRoot: root, Dir: dir, log: o.Log, apiServerFlags: o.APIServerFlags}
	if e.log == nil {
		e.log = io.Discard
	}
	if e.watchdog, err = startWatchdog(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := e.startControlPlane(ctx); err != nil {
		return e, errors.Join(err, e.Stop())
	}
	return e, nil
}

func (e *Env) startControlPlane(ctx context.Context) error {
	for _, d := range []string{"etcd", "apiserver", "logs", "bin", "kube-cache"} {
		if err := os.MkdirAll(filepath.Join(e.Dir, d), 0o700); err != nil {
			return err
		}
	}
	e.logf("starting the control plane (kube-apiserver, etcd)")
	e.env = &envtest.Environment{
		Scheme: Scheme(),
		// Both in our directory, so Stop (or the watchdog) removes them.
		ControlPlane: envtest.ControlPlane{
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(e.Dir, "etcd")},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(e.Dir, "apiserver")},
		},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// OwnerReferencesPermissionEnforcement refuses an owner reference with
	// blockOwnerDeletion from a client that may not update the owner's
	// finalizers: the output Secrets carry such references, so the suite
	// proves the manager's RBAC grants exactly that.
	args := e.env.ControlPlane.GetAPIServer().Configure()
	args.Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	for _, f := range e.apiServerFlags {
		name, value, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return fmt.Errorf("APIServerFlags: %q is not name=value", f)
		}
		args.Append(strings.TrimLeft(name, "-"), value)
	}
	cfg, err := e.env.Start()
	// etcd and kube-apiserver are children of this process, each leading
	// its own process group: hand them to the watchdog.
	for _, pid := range childPIDs(e.Dir) {
		e.watchdog.add(pid)
	}
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	e.AdminConfig = cfg
	e.AdminKubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	if err := os.WriteFile(e.AdminKubeconfig, e.env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("write admin kubeconfig: %w", err)
	}
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.env.Scheme}); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}

	user, err := e.env.AddUser(envtest.User{Name: ManagerUser, Groups: ManagerGroups}, cfg)
	if err != nil {
		return fmt.Errorf("add manager user: %w", err)
	}
	e.ManagerConfig = user.Config()
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("manager kubeconfig: %w", err)
	}
	e.ManagerKubeconfig = filepath.Join(e.Dir, "manager.kubeconfig")
	if err := os.WriteFile(e.ManagerKubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("write manager kubeconfig: %w", err)
	}
	if err := e.startControllerManager(); err != nil {
		return err
	}
	e.logf("control plane up at %s", cfg.Host)
	return ctx.Err()
}

// startControllerManager runs kube-controller-manager for the Env.
func (e *Env) startControllerManager() error {
	p, err := startControllerManagerIn(e.Dir, e.AdminKubeconfig)
	if err != nil {
		return err
	}
	p.w = e.watchdog
	e.track(p)
	return nil
}

// StartControllerManager runs kube-controller-manager against the API
// server cfg reaches (an admin config), its files in dir, for suites that
// start envtest themselves. Stop the Process when done.
func StartControllerManager(cfg *rest.Config, dir string) (*Process, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return nil, err
	}
	return startControllerManagerIn(dir, path)
}

// startControllerManagerIn runs kube-controller-manager with the namespace,
// garbage-collector and clusterrole-aggregation controllers, so that
// deleting a namespace or an owner (an ApiKey and its Secret) behaves as in
// a cluster. The one starter of the suites, the demo and the bench.
func startControllerManagerIn(dir, kubeconfig string) (*Process, error) {
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-controller-manager is not in KUBEBUILDER_ASSETS (hack/controlplane.sh builds it): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "kube-controller-manager")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	return startProcessIn(dir, "kube-controller-manager", bin, []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=namespace,garbagecollector,clusterrole-aggregation",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--concurrent-gc-syncs=5",
	}, environ())
}

// Stop ends every process the Env started (managers and apisim with
// SIGTERM, then SIGKILL after 10 s), stops the control plane and removes
// the temporary directory. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		e.mu.Lock()
		procs := e.procs
		e.procs = nil
		e.mu.Unlock()
		// Last started first: managers before the simulators they call.
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			if err := p.Stop(10 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
			}
		}
		e.stopRestartedAPIServer()
		if e.env != nil {
			e.logf("stopping the control plane")
			if err := e.env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop control plane: %w", err))
			}
		}
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", e.Dir, err))
		}
		if e.watchdog != nil {
			e.watchdog.release()
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// track registers a started process for Stop and the watchdog.
func (e *Env) track(p *Process) {
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	e.watchdog.add(p.Pid())
}

func (e *Env) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(e.log, "testenv: "+format+"\n", args...)
}

// FindRepoRoot walks up from the working directory to Keywarden's go.mod.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}
