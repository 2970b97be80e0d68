// Command demo shows Keywarden at work without a cluster (`make demo`): a
// local control plane, both API simulators (apisim), the CRDs and RBAC
// installed with kubectl from config/default, and the built manager running
// as its ServiceAccount. As a platform team would, it makes a
// ClusterReevitIssuer and a ClusterRevioIssuer whose credentials live in
// keywarden-system; in the namespace demo, a team's ApiKey that rotates every
// minute and RevioToken whose tokens live a minute name them and hold no
// credential of their own. The ClusterReevitIssuer rotates its own admin key
// every two minutes (spec.adminKeyRotation). It then shows them changing,
// live: key prefixes and ids, rotations, pending revocations, token expiry,
// the issuer's admin key and its previous one until revoked, and events. It
// never prints a full key or token.
//
// Ctrl-C (or -duration) stops the manager, apisim and the control plane and
// removes every temporary file.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keywarden/keywarden/internal/testenv"
)

// demoNamespace holds the demo's resources.
const demoNamespace = "demo"

type options struct {
	duration, tokenLifetime, every, grace, interval time.Duration
	adminEvery, adminGrace                          time.Duration
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	flag.DurationVar(&o.tokenLifetime, "token-lifetime", time.Minute, "lifetime of the Rev.io tokens apisim issues")
	flag.DurationVar(&o.every, "rotate-every", time.Minute, "the ApiKey's rotation.every (at least 1m)")
	flag.DurationVar(&o.grace, "grace-period", 20*time.Second, "the ApiKey's rotation.gracePeriod")
	flag.DurationVar(&o.adminEvery, "admin-rotate-every", 2*time.Minute, "the ClusterReevitIssuer's adminKeyRotation.every (at least 1m)")
	flag.DurationVar(&o.adminGrace, "admin-grace-period", 20*time.Second, "the ClusterReevitIssuer's adminKeyRotation.gracePeriod")
	flag.DurationVar(&o.interval, "interval", 2*time.Second, "how often the view is redrawn")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		// After the first signal, a second one ends the process at once
		// (the testenv watchdog still removes what it leaves behind).
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, o, os.Stdout))
}

func run(ctx context.Context, o options, out io.Writer) int {
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(out, format+"\n", args...) }
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}

	env, err := testenv.Start(ctx, testenv.Options{Log: out})
	if env != nil {
		defer func() {
			say("\nstopping the manager, apisim and the control plane...")
			dir := env.Dir
			if err := env.Stop(); err != nil {
				say("demo: stop: %v", err)
				return
			}
			say("stopped; removed %s", dir)
		}()
	}
	if err != nil {
		say("demo: %v", err)
		return 1
	}
	if err := setUp(ctx, env, o, say); err != nil {
		if ctx.Err() != nil {
			return 0
		}
		say("demo: %v", err)
		return 1
	}
	v := newView(env, out, o)
	v.run(ctx)
	return 0
}

// setUp builds and starts everything and applies the demo resources.
func setUp(ctx context.Context, env *testenv.Env, o options, say func(string, ...any)) error {
	if err := env.Build(ctx); err != nil {
		return err
	}
	sim, err := env.StartApisim(ctx, testenv.ApisimOptions{TokenLifetime: o.tokenLifetime})
	if err != nil {
		return err
	}
	if _, err := env.Install(ctx); err != nil {
		return err
	}
	mgr, err := env.StartManager(ctx, testenv.ManagerOptions{ClusterResourceNamespace: testenv.ClusterResourceNamespace, AllowedEndpoints: sim.Endpoints()})
	if err != nil {
		return err
	}
	if _, err := env.WaitLeader(ctx, time.Minute); err != nil {
		return err
	}
	manifest := testenv.DemoManifest(sim.Credentials, testenv.DemoSetup{Namespace: demoNamespace, Issuer: issuerName,
		Every: o.every, Grace: o.grace, AdminEvery: o.adminEvery, AdminGrace: o.adminGrace})
	// The manifest carries the simulators' keys: it goes through stdin only.
	if _, err := env.AdminKubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
		return err
	}
	say("")
	say("applied: ClusterReevitIssuer and ClusterRevioIssuer %s, their Secrets reevit-admin and revio-api-key", issuerName)
	say("  (apisim's credentials) in %s, the manager's --cluster-resource-namespace;", testenv.ClusterResourceNamespace)
	say("  in namespace %s: ApiKey payments (rotation.every %s, gracePeriod %s) and RevioToken billing", demoNamespace, o.every, o.grace)
	say("  (tokens live %s), naming the issuers and holding no credential of their own", o.tokenLifetime)
	say("the ClusterReevitIssuer rotates its own admin key every %s (gracePeriod %s): a new key with the", o.adminEvery, o.adminGrace)
	say("  same scopes into the Secret, the old one revoked after the grace period (AdminKeyRotated, Revoked events)")
	say("audit records (one JSON line per credential event): grep '\"logger\":\"audit\"' %s", mgr.LogPath)
	say("manager log: %s", mgr.LogPath)
	say("")
	say("Run kubectl beside the demo:")
	say("  export KUBECONFIG=%s", env.AdminKubeconfig)
	say("  kubectl get clusterreevitissuers,clusterrevioissuers")
	say("  kubectl get apikeys,reviotokens -n %s -o wide", demoNamespace)
	say("  kubectl get events -n %s --watch", demoNamespace)
	say("  kubectl annotate apikey payments -n %s keywarden.dev/rotate=$(date +%%s)   # rotate now", demoNamespace)
	say("and the kubectl plugin make built (bin/kubectl-keywarden; README, Quickstart):")
	say("  export PATH=$PWD/bin:$PATH")
	say("  kubectl keywarden status ak/payments rt/billing -n %s", demoNamespace)
	say("  kubectl keywarden rotate payments -n %s --wait", demoNamespace)
	say("  kubectl keywarden rotate cri/%s --wait          # rotate the issuer's admin key now", issuerName)
	say("  kubectl keywarden compromised cri/%s --wait     # replace it and revoke the old one at once", issuerName)
	say("  kubectl keywarden report -A                       # every live key, admin keys included")
	say("")
	return nil
}

// issuerName names the demo's two cluster issuers.
const issuerName = "demo"
