package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/apisim"
)

var loopbackFlags = []string{"--reevit-addr=127.0.0.1:0", "--revio-addr=127.0.0.1:0", "--control-addr=127.0.0.1:0"}

// waitCredentials waits for apisim to write its credentials file.
func waitCredentials(t *testing.T, path string, done <-chan struct{}) apisim.Credentials {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := apisim.ReadCredentials(path); err == nil {
			return c
		}
		select {
		case <-done:
			t.Fatal("apisim exited before writing its credentials")
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("no credentials file")
	return apisim.Credentials{}
}

func TestRun(t *testing.T) {
	credFile := filepath.Join(t.TempDir(), "creds.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	code := -1
	go func() {
		defer close(done)
		code = run(ctx, append(loopbackFlags, "--credentials-file="+credFile, "--token-lifetime=90s", "--latency=1ms"), &stdout, &stderr)
	}()
	creds := waitCredentials(t, credFile, done)

	cc := apisim.NewClient(creds.ControlURL)
	if err := cc.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	if f, err := cc.RevioFaults(ctx); err != nil || time.Duration(f.Latency) != time.Millisecond || f.RateLimit != 0 {
		t.Errorf("faults from flags = %+v, %v", f, err)
	}
	if fi, err := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v %v", fi, err)
	}

	cancel()
	<-done
	if code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, creds.AdminKey) || strings.Contains(out, creds.RevioAPIKey) {
		t.Errorf("stdout shows a key without --print-credentials: %s", out)
	}
	for _, u := range []string{creds.ReevitURL, creds.RevioURL, creds.ControlURL, "stopped"} {
		if !strings.Contains(out, u) {
			t.Errorf("stdout lacks %q: %s", u, out)
		}
	}
}

func TestRunPrintCredentials(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = run(ctx, append(loopbackFlags, "--print-credentials", "--revio-api-key=rvk_printed_key"), &stdout, &stderr)
	}()
	cancel()
	<-done
	if !strings.Contains(stdout.String(), "rvk_printed_key") || !strings.Contains(stdout.String(), `"adminKey": "pfk_test_`) {
		t.Errorf("--print-credentials did not print the keys: %s %s", stdout.String(), stderr.String())
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--fail-rate=1.5"},
		{"extra"},
		{"--token-lifetime=oops"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append(loopbackFlags, "--admin-env=prod"), &stdout, &stderr); code != 1 {
		t.Errorf("bad admin env: exit %d", code)
	}
}

// TestSignals builds the command and checks SIGINT and SIGTERM stop it
// cleanly.
func TestSignals(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "apisim")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			credFile := filepath.Join(t.TempDir(), "creds.json")
			cmd := exec.Command(bin, append(loopbackFlags, "--credentials-file="+credFile)...)
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(done) }()
			creds := waitCredentials(t, credFile, done)
			if err := apisim.NewClient(creds.ControlURL).Healthz(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("apisim did not stop")
			}
			if waitErr != nil {
				t.Errorf("exit: %v", waitErr)
			}
			if !strings.Contains(stdout.String(), "apisim: stopped") {
				t.Errorf("stdout: %s", stdout.String())
			}
		})
	}
}
