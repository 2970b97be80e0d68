package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// metricSample maps a series ("name{labels}") to its value, as the
// manager's /metrics endpoint (plain HTTP on loopback) serves them.
type metricSample map[string]float64

// scrapeMetrics reads the manager's metrics.
func (cl *cluster) scrapeMetrics(ctx context.Context) (metricSample, error) {
	addr := cl.metricsAddr()
	if addr == "" {
		return nil, fmt.Errorf("no manager")
	}
	return scrapeAddr(ctx, addr)
}

// metricsAddr is where the running manager serves /metrics.
func (cl *cluster) metricsAddr() string {
	cl.mgrMu.Lock()
	defer cl.mgrMu.Unlock()
	if cl.mgr == nil {
		return ""
	}
	return cl.mgr.MetricsAddr
}

// scrapeAddr reads the metrics a manager serves at addr (plain HTTP).
func scrapeAddr(ctx context.Context, addr string) (metricSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape the manager's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := metricSample{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[l[:i]] = v
	}
	return out, sc.Err()
}

// sum adds the series of name whose labels contain every given label
// (`key="value"`).
func (s metricSample) sum(name string, labels ...string) float64 {
	total := 0.0
	for k, v := range s {
		series, rest, _ := strings.Cut(k, "{")
		if series != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// minus is the change since an earlier sample.
func (s metricSample) minus(before metricSample) metricSample {
	out := metricSample{}
	for k, v := range s {
		out[k] = v - before[k]
	}
	return out
}

// controllerStats summarises one controller's work from a metrics delta:
// reconciles, errors and requeues, mean reconcile time, and the mean time
// items waited in the work queue for a worker.
type controllerStats struct {
	reconciles, errors, requeues float64
	meanReconcile, meanQueueWait time.Duration
}

func (s metricSample) controller(name string) controllerStats {
	c := `controller="` + name + `"`
	st := controllerStats{
		reconciles: s.sum("controller_runtime_reconcile_total", c),
		errors:     s.sum("controller_runtime_reconcile_total", c, `result="error"`),
		requeues:   s.sum("controller_runtime_reconcile_total", c, `result="requeue"`),
	}
	if n := s.sum("controller_runtime_reconcile_time_seconds_count", c); n > 0 {
		st.meanReconcile = time.Duration(s.sum("controller_runtime_reconcile_time_seconds_sum", c) / n * float64(time.Second))
	}
	q := `name="` + name + `"`
	if n := s.sum("workqueue_queue_duration_seconds_count", q); n > 0 {
		st.meanQueueWait = time.Duration(s.sum("workqueue_queue_duration_seconds_sum", q) / n * float64(time.Second))
	}
	return st
}

// cpuMeter reads the CPU time of the processes of the run and of the
// whole machine, to tell whether a phase was bound by the 2 cores.
type cpuMeter struct {
	pids map[string]int
}

// newCPUMeter finds kube-apiserver, etcd and kube-controller-manager among
// the processes whose command line names the run's directories, beside the
// manager, apisim and the benchmark itself.
func (cl *cluster) newCPUMeter() *cpuMeter {
	m := &cpuMeter{pids: map[string]int{"manager": cl.managerPid(), "apisim": cl.sim.Pid(), "bench": os.Getpid()}}
	for _, rp := range cl.replicas[min(1, len(cl.replicas)):] { // the first is "manager"
		m.pids["manager "+rp.name] = rp.mgr.Pid()
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(string(b), "\x00")
		cmd := string(b)
		if !strings.Contains(cmd, cl.env.Dir) && !strings.Contains(cmd, cl.tmp) {
			continue
		}
		switch filepath.Base(args[0]) {
		case "kube-apiserver", "etcd", "kube-controller-manager":
			m.pids[filepath.Base(args[0])] = pid
		}
	}
	return m
}

// read returns each process's CPU time and the machine's busy and total
// CPU time (all cores).
func (m *cpuMeter) read() (procs map[string]time.Duration, busy, total time.Duration) {
	procs = map[string]time.Duration{}
	for name, pid := range m.pids {
		if d, err := procCPU(pid); err == nil {
			procs[name] = d
		}
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return procs, 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var sum, idle int64
	for i, x := range f[1:] {
		v, _ := strconv.ParseInt(x, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		sum += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	tick := time.Second / clockTicks
	return procs, time.Duration(sum-idle) * tick, time.Duration(sum) * tick
}

// cpuUse is the CPU used over a phase.
type cpuUse struct {
	procs       map[string]time.Duration
	busy, total time.Duration
}

func (m *cpuMeter) since(p0 map[string]time.Duration, b0, t0 time.Duration) cpuUse {
	p1, b1, t1 := m.read()
	u := cpuUse{procs: map[string]time.Duration{}, busy: b1 - b0, total: t1 - t0}
	for k, v := range p1 {
		u.procs[k] = v - p0[k]
	}
	return u
}

func (u cpuUse) String() string {
	var parts []string
	for _, k := range []string{"kube-apiserver", "etcd", "manager", "manager shard1", "manager shard2", "apisim", "bench", "kube-controller-manager"} {
		if d, ok := u.procs[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f s", k, d.Seconds()))
		}
	}
	busy := 0.0
	if u.total > 0 {
		busy = 100 * u.busy.Seconds() / u.total.Seconds()
	}
	ours := time.Duration(0)
	for _, d := range u.procs {
		ours += d
	}
	// Other engineers' builds and tests share the machine.
	others := max(u.busy-ours, 0)
	return fmt.Sprintf("machine %.0f%% busy; %s; other processes %.1f s", busy, strings.Join(parts, ", "), others.Seconds())
}

// machineBusy samples how busy the machine is over d, before the run.
func machineBusy(d time.Duration) float64 {
	m := &cpuMeter{}
	_, b0, t0 := m.read()
	time.Sleep(d)
	_, b1, t1 := m.read()
	if t1 <= t0 {
		return 0
	}
	return 100 * (b1 - b0).Seconds() / (t1 - t0).Seconds()
}

// profileAPIServer captures a CPU profile of kube-apiserver (its
// /debug/pprof, as the admin) for d and writes it to path.
func (cl *cluster) profileAPIServer(ctx context.Context, d time.Duration, path string) error {
	hc, err := rest.HTTPClientFor(cl.cfg)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimRight(cl.cfg.Host, "/"), int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kube-apiserver profile: HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
