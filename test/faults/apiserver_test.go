package faults

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

// testenv keeps envtest's Environment to itself and has no way to restart
// the API server, so the suite does it from the outside: it finds the
// kube-apiserver process envtest started (a child of this test process),
// records its command line, environment and working directory, stops it
// with SIGTERM and starts the same command again. The new process serves the
// same port with the same certificates (they are files in testenv's
// directory) on the same etcd, so every client, the managers included, only
// sees the API server go away and come back.
type apiServerProc struct {
	pid  int
	args []string
	env  []string
	dir  string
	cmd  *exec.Cmd // nil for envtest's own process
	done chan struct{}
	// killed is set when SIGTERM was not enough within the grace period.
	killed bool
}

// findAPIServer returns envtest's kube-apiserver.
func findAPIServer() (*apiServerProc, error) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("no /proc: %w", err)
	}
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "kube-apiserver" || parentOf(pid) != self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			return nil, err
		}
		environ, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil {
			return nil, err
		}
		dir, err := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd"))
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

// parentOf reads a process's parent pid from /proc (0 when unknown).
func parentOf(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// gone reports whether pid has exited (no process, or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] == 'Z'
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *apiServerProc) stop(grace time.Duration) error {
	exited := func() bool {
		if p.cmd != nil {
			select {
			case <-p.done:
				return true
			default:
				return false
			}
		}
		return gone(p.pid)
	}
	if exited() {
		return nil
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for !exited() {
		if time.Now().After(deadline) {
			p.killed = true
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
			for !exited() {
				if time.Now().After(deadline) {
					return fmt.Errorf("kube-apiserver (pid %d) did not exit", p.pid)
				}
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// start runs the same command again; its output goes to logPath. The child
// dies with this process (Pdeathsig), as testenv's watchdog would see to.
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

// restartAPIServer stops the API server (SIGTERM, SIGKILL after 10 s),
// leaves it down for down, starts it again and waits until it serves; it
// returns how long the stop took, whether it needed SIGKILL, and how long
// the API server was unavailable in all.
func (s *suite) restartAPIServer(ctx context.Context, down time.Duration, n int) (stopped time.Duration, killed bool, unavailable time.Duration, err error) {
	s.mu.Lock()
	cur := s.apiServer
	s.mu.Unlock()
	if cur == nil {
		if cur, err = findAPIServer(); err != nil {
			return 0, false, 0, err
		}
	}
	t0 := time.Now()
	if err := cur.stop(10 * time.Second); err != nil {
		return 0, false, 0, err
	}
	stopped, killed = time.Since(t0), cur.killed
	sleep(ctx, down)
	next, err := cur.start(filepath.Join(s.env.Dir, "logs", fmt.Sprintf("kube-apiserver-restart-%d.log", n)))
	if err != nil {
		return stopped, killed, 0, err
	}
	s.mu.Lock()
	s.apiServer = next
	s.mu.Unlock()
	err = poll(ctx, 2*time.Minute, 250*time.Millisecond, func() (bool, string) {
		select {
		case <-next.done:
			return false, "kube-apiserver exited"
		default:
		}
		var nss corev1.NamespaceList
		if err := s.env.Client.List(ctx, &nss); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return stopped, killed, time.Since(t0), err
}
