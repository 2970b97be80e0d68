// Command apisim runs both API simulators, Reevit's API-key service and
// Rev.io's exchange and billing API, as one local process for the demo, the
// e2e suite and the benchmarks, with a JSON control API on loopback. The
// wiring lives in internal/apisim; this is flags only.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/simfault"
)

// shutdownGrace bounds how long requests in flight may finish at exit.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, serves until ctx ends, and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apisim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg        apisim.Config
		printCreds bool
		failRate   float64
		latency    time.Duration
		rateLimit  int
		rateWindow time.Duration
	)
	fs.StringVar(&cfg.ReevitAddr, "reevit-addr", apisim.DefaultReevitAddr, "listen address of the Reevit simulator")
	fs.StringVar(&cfg.RevioAddr, "revio-addr", apisim.DefaultRevioAddr, "listen address of the Rev.io simulator")
	fs.StringVar(&cfg.ControlAddr, "control-addr", apisim.DefaultControlAddr, "listen address of the control API (loopback only)")
	fs.StringVar(&cfg.TLSDir, "tls-dir", "", "serve HTTPS with a self-signed certificate for 127.0.0.1/localhost and write its CA to DIR/ca.crt")
	fs.StringVar(&cfg.OrgID, "org-id", apisim.DefaultOrgID, "Reevit organization of the admin key")
	fs.StringVar(&cfg.AdminKey, "admin-key", "", "Reevit admin key to accept (default: generated, with all 16 scopes)")
	fs.StringVar(&cfg.AdminEnv, "admin-env", apisim.DefaultAdminEnv, `env of the generated admin key: "test" or "live"`)
	fs.StringVar(&cfg.RevioAPIKey, "revio-api-key", "", "Rev.io API key to accept (default: generated)")
	fs.StringVar(&cfg.RevioHost, "revio-host", apisim.DefaultRevioHost, "X-Revio-Host the Rev.io API key is bound to")
	fs.DurationVar(&cfg.TokenLifetime, "token-lifetime", apisim.DefaultTokenLifetime, "lifetime of issued Rev.io tokens")
	fs.StringVar(&cfg.CredentialsFile, "credentials-file", "", "write the keys and URLs as JSON to this file (mode 0600)")
	fs.BoolVar(&printCreds, "print-credentials", false, "also print the credentials, keys included, to stdout")
	fs.Float64Var(&failRate, "fail-rate", 0, "probability in [0,1] that a request to either simulator fails with 500")
	fs.DurationVar(&latency, "latency", 0, "latency added to every simulator request")
	fs.IntVar(&rateLimit, "rate-limit", 0, "requests allowed per --rate-window by each simulator (0: unlimited)")
	fs.DurationVar(&rateWindow, "rate-window", time.Minute, "rate-limit window")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed for generated keys and failure-rate faults (0: random)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "apisim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if failRate < 0 || failRate > 1 {
		_, _ = fmt.Fprintln(stderr, "apisim: --fail-rate must be within [0, 1]")
		return 2
	}
	cfg.Faults = simfault.Settings{
		FailureRate: failRate,
		Latency:     simfault.Duration(latency),
		RateLimit:   rateLimit,
		RateWindow:  simfault.Duration(rateWindow),
	}
	cfg.Log = stdout

	srv, err := apisim.Start(cfg)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "apisim: %v\n", err)
		return 1
	}
	if printCreds {
		b, _ := json.MarshalIndent(srv.Credentials(), "", "  ")
		_, _ = fmt.Fprintf(stdout, "%s\n", b)
	}

	code := 0
	select {
	case <-ctx.Done():
	case err := <-srv.Err():
		_, _ = fmt.Fprintf(stderr, "apisim: serve: %v\n", err)
		code = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_, _ = fmt.Fprintf(stderr, "apisim: shutdown: %v\n", err)
		code = 1
	}
	_, _ = fmt.Fprintln(stdout, "apisim: stopped")
	return code
}
