package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BuildFlags are the go build flags of `make build` (the Makefile's
// GO_BUILD_FLAGS) and of the Dockerfile, with CGO_ENABLED=0: the binaries
// under test are the static binaries Keywarden ships. The e2e suite checks
// the three agree.
var BuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// Build compiles cmd/manager, cmd/apisim and cmd/kubectl-keywarden into the
// Env's directory with BuildFlags and sets ManagerBin, ApisimBin and
// PluginBin.
func (e *Env) Build(ctx context.Context) error {
	start := time.Now()
	bin := filepath.Join(e.Dir, "bin")
	args := append([]string{"build"}, BuildFlags...)
	args = append(args, "-o", bin+string(filepath.Separator), "./cmd/manager", "./cmd/apisim", "./cmd/kubectl-keywarden")
	e.logf("building the manager, apisim and the kubectl plugin (go %s)", strings.Join(args, " "))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.RepoRoot
	cmd.Env = environ("CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out.String())
	}
	e.ManagerBin = filepath.Join(bin, "manager")
	e.ApisimBin = filepath.Join(bin, "apisim")
	e.PluginBin = filepath.Join(bin, "kubectl-keywarden")
	e.logf("built in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
