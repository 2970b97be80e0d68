package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// APIServerRestart is what RestartAPIServer measured.
type APIServerRestart struct {
	// Stopped is how long the stop took; Killed is set when SIGTERM was not
	// enough within the grace period.
	Stopped time.Duration
	Killed  bool
	// Unavailable is how long the API server did not serve, in all.
	Unavailable time.Duration
}

// apiServerProc is a running kube-apiserver: envtest's own, or one this Env
// restarted.
type apiServerProc struct {
	pid  int
	args []string
	env  []string
	dir  string
	cmd  *exec.Cmd // nil for envtest's own process
	done chan struct{}
}

// RestartAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 10 s),
// leaves it down for down, starts the same command again and waits until it
// serves. The new process serves the same port with the same certificates on
// the same etcd, so every client only sees the API server go away and come
// back. Stop stops a restarted API server too.
func (e *Env) RestartAPIServer(ctx context.Context, down time.Duration) (APIServerRestart, error) {
	e.mu.Lock()
	cur := e.apiServer
	e.restarts++
	n := e.restarts
	e.mu.Unlock()
	var out APIServerRestart
	if cur == nil {
		var err error
		if cur, err = e.findAPIServer(); err != nil {
			return out, err
		}
	}
	t0 := time.Now()
	killed, err := cur.stop(10 * time.Second)
	if err != nil {
		return out, err
	}
	out.Stopped, out.Killed = time.Since(t0), killed
	select {
	case <-ctx.Done():
		return out, ctx.Err()
	case <-time.After(down):
	}
	next, err := cur.start(filepath.Join(e.Dir, "logs", fmt.Sprintf("kube-apiserver-restart-%d.log", n)))
	if err != nil {
		return out, err
	}
	e.mu.Lock()
	e.apiServer = next
	e.mu.Unlock()
	e.watchdog.add(next.pid)
	err = e.waitServing(ctx, next)
	out.Unavailable = time.Since(t0)
	return out, err
}

func (e *Env) waitServing(ctx context.Context, p *apiServerProc) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			return errors.New("the restarted kube-apiserver exited")
		default:
		}
		var nss corev1.NamespaceList
		err := e.Client.List(ctx, &nss)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not serving 2m after its restart: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stopRestartedAPIServer stops an API server RestartAPIServer started.
func (e *Env) stopRestartedAPIServer() {
	e.mu.Lock()
	p := e.apiServer
	e.apiServer = nil
	e.mu.Unlock()
	if p != nil {
		_, _ = p.stop(30 * time.Second)
	}
}

// findAPIServer returns envtest's kube-apiserver: the child of this process
// (see childPIDs) named kube-apiserver, with its command line, environment
// and working directory.
func (e *Env) findAPIServer() (*apiServerProc, error) {
	for _, pid := range childPIDs(e.Dir) {
		base := filepath.Join("/proc", strconv.Itoa(pid))
		comm, err := os.ReadFile(filepath.Join(base, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "kube-apiserver" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(base, "cmdline"))
		if err != nil {
			return nil, err
		}
		environ, err := os.ReadFile(filepath.Join(base, "environ"))
		if err != nil {
			return nil, err
		}
		dir, err := os.Readlink(filepath.Join(base, "cwd"))
		if err != nil {
			return nil, err
		}
		return &apiServerProc{pid: pid, args: splitNUL(cmdline), env: splitNUL(environ), dir: dir}, nil
	}
	return nil, errors.New("no kube-apiserver child of this process")
}

func splitNUL(b []byte) []string {
	var out []string
	for _, f := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		out = append(out, string(f))
	}
	return out
}

func (p *apiServerProc) exited() bool {
	if p.cmd != nil {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	st, ok := readProcStat(p.pid)
	return !ok || st.state == 'Z'
}

// stop sends SIGTERM and waits up to grace, then SIGKILL; killed says
// whether SIGKILL was needed.
func (p *apiServerProc) stop(grace time.Duration) (killed bool, err error) {
	if p.exited() {
		return false, nil
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	if waitExit(p, grace) {
		return false, nil
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	if waitExit(p, 10*time.Second) {
		return true, nil
	}
	return true, fmt.Errorf("kube-apiserver (pid %d) did not exit", p.pid)
}

func waitExit(p *apiServerProc, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !p.exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// start runs the same command again; its output goes to logPath. The child
// dies with this process (Pdeathsig), as the watchdog would see to.
func (p *apiServerProc) start(logPath string) (*apiServerProc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env, cmd.Dir = p.env, p.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	next := &apiServerProc{pid: cmd.Process.Pid, args: p.args, env: p.env, dir: p.dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(next.done)
	}()
	return next, nil
}
