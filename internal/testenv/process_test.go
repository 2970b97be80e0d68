package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanHelperEnv makes the test binary play an Env owner that dies
// without Stop: it starts two sleeping processes through the Env, prints
// their pids and kills itself.
const orphanHelperEnv = "TESTENV_ORPHAN_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(orphanHelperEnv); dir != "" {
		orphanHelper(dir)
		return
	}
	os.Exit(m.Run())
}

func orphanHelper(dir string) {
	w, err := startWatchdog(dir)
	if err != nil {
		panic(err)
	}
	e := &Env{Dir: dir, watchdog: w}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		panic(err)
	}
	var pids []string
	for i := 0; i < 2; i++ {
		p, err := e.startProcess("sleeper", "/bin/sleep", []string{"300"}, nil)
		if err != nil {
			panic(err)
		}
		pids = append(pids, strconv.Itoa(p.Pid()))
	}
	// One stopped normally: the watchdog forgets it.
	p, err := e.startProcess("stopped", "/bin/sleep", []string{"300"}, nil)
	if err != nil {
		panic(err)
	}
	if err := p.Stop(time.Second); err != nil {
		panic(err)
	}
	fmt.Println(strings.Join(pids, " "))
	_ = os.Stdout.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// TestWatchdogCleansUpAfterOwnerDies kills an Env owner with SIGKILL and
// expects its processes gone and its directory removed.
func TestWatchdogCleansUpAfterOwnerDies(t *testing.T) {
	dir, err := os.MkdirTemp("", "keywarden-watchdog-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanHelperEnv+"="+dir)
	out, _ := cmd.Output() // killed by design
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		t.Fatalf("helper printed %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range fields {
		pid, _ := strconv.Atoi(f)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlived its owner", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for fileExists(dir) {
		if time.Now().After(deadline) {
			t.Fatalf("%s outlived its owner", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper counts
// as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}
