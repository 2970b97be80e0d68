package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ManagerOptions configure StartManager.
type ManagerOptions struct {
	// AllowedEndpoints are passed as --allowed-endpoints: the base URLs of
	// the simulators the test's issuers name (Apisim.Endpoints). The
	// manager runs with --allow-http-endpoints, which only lets these be
	// http://; no other loopback URL passes. StartManager refuses to start
	// without them unless Args sets --allowed-endpoints itself.
	AllowedEndpoints []string
	// Args are added after the defaults (a flag given twice: the last wins).
	Args []string
	// NoLeaderElection runs without --leader-elect.
	NoLeaderElection bool
	// ClusterResourceNamespace is passed as --cluster-resource-namespace:
	// where the credential Secrets of ClusterReevitIssuers and
	// ClusterRevioIssuers live. Empty means ClusterResourceNamespace.
	ClusterResourceNamespace string
	// Kubeconfig is who the manager runs as; empty: ManagerKubeconfig (the
	// ServiceAccount config/default installs). ServiceAccountKubeconfig
	// makes one for another ServiceAccount, such as a Helm release's.
	Kubeconfig string
}

// Manager is a running manager process.
type Manager struct {
	*Process
	// MetricsAddr and ProbeAddr are the loopback addresses it serves on.
	MetricsAddr, ProbeAddr string
}

// StartManager runs the built manager as its ServiceAccount (the manager
// kubeconfig: only the RBAC config/default grants), with the simulators
// o.AllowedEndpoints names as --allowed-endpoints and http:// allowed for
// them (--allow-http-endpoints), the cluster issuers' Secrets in
// keywarden-system (--cluster-resource-namespace, given explicitly: the
// process has neither POD_NAMESPACE nor a service-account namespace file),
// leader election in keywarden-system, and metrics and probes on free
// loopback ports. It waits until /readyz answers.
func (e *Env) StartManager(ctx context.Context, o ManagerOptions) (*Manager, error) {
	if e.ManagerBin == "" {
		return nil, fmt.Errorf("the manager is not built: call Build first")
	}
	if len(o.AllowedEndpoints) == 0 && !slices.ContainsFunc(o.Args, func(a string) bool { return strings.HasPrefix(a, "--allowed-endpoints=") }) {
		return nil, fmt.Errorf("no --allowed-endpoints: list the simulators' base URLs in ManagerOptions.AllowedEndpoints")
	}
	metricsPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	probePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	clusterNS := o.ClusterResourceNamespace
	if clusterNS == "" {
		clusterNS = ClusterResourceNamespace
	}
	m := &Manager{
		MetricsAddr: "127.0.0.1:" + strconv.Itoa(metricsPort),
		ProbeAddr:   "127.0.0.1:" + strconv.Itoa(probePort),
	}
	kubeconfig := e.ManagerKubeconfig
	if o.Kubeconfig != "" {
		kubeconfig = o.Kubeconfig
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--allow-http-endpoints",
		"--cluster-resource-namespace=" + clusterNS,
		"--metrics-bind-address=" + m.MetricsAddr,
		"--health-probe-bind-address=" + m.ProbeAddr,
	}
	if len(o.AllowedEndpoints) > 0 {
		args = append(args, "--allowed-endpoints="+strings.Join(o.AllowedEndpoints, ","))
	}
	if !o.NoLeaderElection {
		args = append(args, "--leader-elect", "--leader-election-namespace="+ManagerNamespace)
	}
	args = append(args, o.Args...)
	if m.Process, err = e.startProcess("manager", e.ManagerBin, args, environ()); err != nil {
		return nil, err
	}
	if err := m.waitReady(ctx, time.Minute); err != nil {
		return m, err
	}
	e.logf("manager up (pid %d, log %s)", m.Pid(), m.LogPath)
	return m, nil
}

// waitReady polls /readyz until it answers 200 and the metrics server
// accepts connections: the two servers start separately, and a scrape right
// after the start must not find the metrics port closed.
func (m *Manager) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.ProbeAddr+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && m.metricsListening() {
				return nil
			}
		}
		if exited, err := m.Exited(); exited {
			return fmt.Errorf("manager exited before it was ready: %w\n%s", exitError(err), m.LogTail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("manager not ready within %s:\n%s", timeout, m.LogTail(30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metricsListening says whether the metrics server accepts connections.
func (m *Manager) metricsListening() bool {
	c, err := net.DialTimeout("tcp", m.MetricsAddr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// FastFailover is the leader-election profile the fault suite measures and
// the benchmark runs under load: a SIGKILLed leader's successor holds the
// Lease after at most about LeaseDuration + 2 x RetryPeriod (4 s), and a
// healthy leader renews every RetryPeriod, with RenewDeadline (4 tries) to
// get one through a busy API server before it gives the Lease up.
var FastFailover = struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}{3 * time.Second, 2 * time.Second, 500 * time.Millisecond}

// FastFailoverArgs are the manager flags of FastFailover.
func FastFailoverArgs() []string {
	return []string{
		"--leader-election-lease-duration=" + FastFailover.LeaseDuration.String(),
		"--leader-election-renew-deadline=" + FastFailover.RenewDeadline.String(),
		"--leader-election-retry-period=" + FastFailover.RetryPeriod.String(),
	}
}

// WaitLeader waits until a holder owns the manager's leader-election
// Lease and returns the holder's identity.
func (e *Env) WaitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		var l coordinationv1.Lease
		err := e.Client.Get(ctx, client.ObjectKey{Namespace: ManagerNamespace, Name: LeaderElectionID}, &l)
		if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			return *l.Spec.HolderIdentity, nil
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("no leader-election Lease %s/%s held within %s", ManagerNamespace, LeaderElectionID, timeout)
			if err != nil {
				return "", fmt.Errorf("%s: %w", msg, err)
			}
			return "", errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
