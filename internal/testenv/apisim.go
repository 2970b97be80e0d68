package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keywarden/keywarden/internal/apisim"
)

// ApisimOptions configure StartApisim.
type ApisimOptions struct {
	// TokenLifetime of issued Rev.io tokens; 0 keeps apisim's default.
	TokenLifetime time.Duration
	// Args are further apisim flags (fault flags, --seed, ...).
	Args []string
}

// Apisim is a running apisim process.
type Apisim struct {
	*Process
	// Credentials are the keys and URLs apisim wrote to its credentials file.
	Credentials apisim.Credentials
	// Control is a client of its control API.
	Control *apisim.Client
}

// StartApisim runs the built apisim on free loopback ports (port 0: apisim
// binds and reports them) and waits until its control API answers.
func (e *Env) StartApisim(ctx context.Context, o ApisimOptions) (*Apisim, error) {
	if e.ApisimBin == "" {
		return nil, fmt.Errorf("apisim is not built: call Build first")
	}
	credsFile := filepath.Join(e.Dir, "apisim-credentials.json")
	args := []string{
		"--reevit-addr=127.0.0.1:0", "--revio-addr=127.0.0.1:0", "--control-addr=127.0.0.1:0",
		"--credentials-file=" + credsFile,
	}
	if o.TokenLifetime > 0 {
		args = append(args, "--token-lifetime="+o.TokenLifetime.String())
	}
	args = append(args, o.Args...)
	// A file left by an earlier apisim of this Env would be read as ours.
	if err := os.Remove(credsFile); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	p, err := e.startProcess("apisim", e.ApisimBin, args, environ())
	if err != nil {
		return nil, err
	}
	a := &Apisim{Process: p}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := apisim.ReadCredentials(credsFile); err == nil {
			a.Credentials = c
			break
		}
		if exited, werr := p.Exited(); exited {
			return nil, fmt.Errorf("apisim exited before it was ready: %w\n%s", exitError(werr), p.LogTail(20))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("apisim wrote no credentials within 30s:\n%s", p.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	a.Control = apisim.NewClient(a.Credentials.ControlURL)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Control.WaitHealthy(hctx); err != nil {
		return nil, err
	}
	e.logf("apisim up: reevit %s, revio %s, control %s", a.Credentials.ReevitURL, a.Credentials.RevioURL, a.Credentials.ControlURL)
	return a, nil
}

// Endpoints are apisim's Reevit and Rev.io base URLs, for a manager's
// --allowed-endpoints (ManagerOptions.AllowedEndpoints).
func (a *Apisim) Endpoints() []string {
	return []string{a.Credentials.ReevitURL, a.Credentials.RevioURL}
}
