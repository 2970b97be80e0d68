package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a command started by the Env in a process group of its own,
// its output (stdout and stderr) written to a log file.
type Process struct {
	// Name names the process in errors.
	Name string
	// LogPath is the file receiving its output.
	LogPath string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	err     error
	w       *watchdog
	stop    sync.Once
}

// startProcess starts bin with args in its own process group, its log in
// the Env's logs directory, and tracks it (Stop stops it; the watchdog
// kills it if this process dies).
func (e *Env) startProcess(name, bin string, args, env []string) (*Process, error) {
	p, err := startProcessIn(e.Dir, name, bin, args, env)
	if err != nil {
		return nil, err
	}
	p.w = e.watchdog
	e.track(p)
	return p, nil
}

// startProcessIn starts bin with args in its own process group, working in
// dir. The log file is created 0600 in dir/logs; a name already used gets a
// numbered file.
func startProcessIn(dir, name, bin string, args, env []string) (*Process, error) {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "logs", name+".log")
	for i := 2; fileExists(logPath); i++ {
		logPath = filepath.Join(dir, "logs", fmt.Sprintf("%s-%d.log", name, i))
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// A group of its own: the terminal's Ctrl-C reaches only the owner,
	// which stops everything in order, and a signal to the group reaches
	// any child the process starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	err := syscall.Kill(-p.Pid(), sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Stop sends SIGTERM to the process group and waits up to grace for the
// process to exit, then sends SIGKILL. A grace of 0 kills at once. It
// returns an error only when the process does not go away; an exit status
// caused by the signal is not an error.
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.stop.Do(func() {
		if grace > 0 {
			_ = p.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		// Also after a clean exit: nothing the process started outlives it.
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.Pid())
		}
		if err == nil && p.w != nil {
			p.w.forget(p.Pid())
		}
	})
	return err
}

// Kill sends SIGKILL to the process group and waits for the exit, as a
// crash would end it.
func (p *Process) Kill() error { return p.Stop(0) }

// Wait waits for the process to exit, at most timeout.
func (p *Process) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Log returns what the process wrote so far.
func (p *Process) Log() ([]byte, error) { return os.ReadFile(p.LogPath) }

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	b, err := p.Log()
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitError is the error a process exited with, also for a clean exit.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// environ is the current environment without the variables that would
// point a child at another cluster or a user's kubectl cache.
func environ(extra ...string) []string {
	return EnvironWithout([]string{"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECACHEDIR"}, extra...)
}

// EnvironWithout is the current environment without the variables named
// in drop, then extra.
func EnvironWithout(drop []string, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(drop, k) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// watchdog is a small shell process that outlives its owner: if the owner
// dies without Stop (a panic, a test timeout, SIGKILL), the pipe to the
// watchdog closes, and it kills every registered process group and removes
// the temporary directory. Stop releases it.
type watchdog struct {
	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// watchdogScript reads "add PGID", "forget PGID" and "exit" lines; at end of
// input it kills what is registered and removes the directory ($1).
const watchdogScript = `trap '' INT HUP TERM
dir=$1
pgids=' '
while IFS=' ' read -r cmd arg; do
  case $cmd in
    add) pgids="$pgids$arg " ;;
    forget) pgids=$(printf '%s' "$pgids" | sed "s/ $arg / /") ;;
    exit) exit 0 ;;
  esac
done
for p in $pgids; do kill -KILL "-$p" 2>/dev/null; done
rm -rf -- "$dir"
`

func startWatchdog(dir string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "keywarden-watchdog", dir)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return &watchdog{cmd: cmd, stdin: in}, nil
}

func (w *watchdog) send(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stdin != nil {
		_, _ = io.WriteString(w.stdin, line+"\n")
	}
}

func (w *watchdog) add(pgid int) {
	if w != nil && pgid > 0 && pgid != w.cmd.Process.Pid {
		w.send("add " + strconv.Itoa(pgid))
	}
}

func (w *watchdog) forget(pgid int) { w.send("forget " + strconv.Itoa(pgid)) }

// release ends the watchdog without it killing anything.
func (w *watchdog) release() {
	w.send("exit")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stdin != nil {
		_ = w.stdin.Close()
		w.stdin = nil
	}
}

// childPIDs lists the live children of this process that lead their own
// process group and mention dir on their command line: etcd and
// kube-apiserver, started by envtest with their directories in dir. Linux
// only; elsewhere it returns nothing.
func childPIDs(dir string) []int {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		st, ok := readProcStat(pid)
		if !ok || st.ppid != self || st.pgrp != pid || st.state == 'Z' {
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(dir)) {
			out = append(out, pid)
		}
	}
	return out
}

// procStat is what the package reads of /proc/PID/stat.
type procStat struct {
	state      byte
	ppid, pgrp int
}

// readProcStat parses /proc/PID/stat: pid (comm) state ppid pgrp ...; comm
// may hold spaces and parentheses. ok is false when there is no such process.
func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp}, true
}
