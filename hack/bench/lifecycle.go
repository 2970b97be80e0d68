package main

import (
	"context"
	"fmt"
	"time"
)

// idleCounts waits until the manager has been idle for -idle, then reads
// both simulators' counts: the baseline a measure of the idle manager
// starts from.
func (b *bench) idleCounts(ctx context.Context) (extCounts, error) {
	cl := b.cl
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return nil, err
	}
	return cl.externalCounts(ctx)
}

// steady counts what the manager does while nothing is due.
func (b *bench) steady(ctx context.Context) error {
	cl, r := b.cl, b.res
	ext0, err := b.idleCounts(ctx)
	if err != nil {
		return err
	}
	b.logf("steady state: watching for %s", b.o.steady)
	t0 := time.Now()
	if err := sleepAlive(ctx, b.o.steady, cl.alive); err != nil {
		return err
	}
	t1 := time.Now()
	if r.steadyExt, err = cl.externalSince(ctx, ext0); err != nil {
		return err
	}
	r.steadyDur = t1.Sub(t0)
	r.steadyReqs = tallyAll(cl.audit.between(t0, t1))
	return nil
}

// restart stops the manager with SIGTERM and starts it again with every
// object Ready, and counts what it does until it is idle.
func (b *bench) restart(ctx context.Context) error {
	cl, r := b.cl, b.res
	ext0, err := b.idleCounts(ctx)
	if err != nil {
		return err
	}
	b.logf("restart: SIGTERM to the manager")
	ts := time.Now()
	if err := cl.stopManager(); err != nil {
		return err
	}
	r.restartStop = time.Since(ts)
	t0 := time.Now()
	if _, err := cl.startManager(ctx); err != nil {
		return err
	}
	r.restartReady = time.Since(t0)
	// Quiet on the API server is not enough at scale: the new process can
	// spend longer than -idle taking in its watches' initial events before
	// the first reconcile sends anything.
	if err := b.waitReconciled(ctx); err != nil {
		return err
	}
	r.restartReconciled = time.Since(t0)
	last, err := cl.audit.waitIdle(ctx, t0, b.o.idle, cl.alive)
	if err != nil {
		return err
	}
	if r.restartExt, err = cl.externalSince(ctx, ext0); err != nil {
		return err
	}
	r.restartIdle = last.Sub(t0)
	r.restartReqs = tallyAll(cl.audit.between(t0, last.Add(time.Microsecond)))
	for _, s := range b.tr.snapshot("") {
		if s.Ready {
			r.restartReadyN++
		}
	}
	if r.restartReadyN != r.nAK+r.n {
		return fmt.Errorf("after the restart only %d of %d objects are Ready", r.restartReadyN, r.nAK+r.n)
	}
	b.logf("restart: idle %s after the start", r.restartIdle.Round(time.Millisecond))
	return nil
}

// waitReconciled waits until the running manager has reconciled every
// object at least once (controller_runtime_reconcile_total of the apikey
// and reviotoken controllers, which start at 0 in a new process).
func (b *bench) waitReconciled(ctx context.Context) error {
	r, deadline := b.res, time.Now().Add(b.o.timeout)
	for {
		m, err := b.cl.scrapeMetrics(ctx)
		if err != nil {
			return err
		}
		ak := m.sum("controller_runtime_reconcile_total", `controller="apikey"`)
		rt := m.sum("controller_runtime_reconcile_total", `controller="reviotoken"`)
		if ak >= float64(r.nAK) && rt >= float64(r.n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after the restart %.0f of %d ApiKeys and %.0f of %d RevioTokens reconciled within %s", ak, r.nAK, rt, r.n, b.o.timeout)
		}
		if err := sleepAlive(ctx, 250*time.Millisecond, b.cl.alive); err != nil {
			return err
		}
	}
}
