package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
)

// rotateAndStorm runs the rotation and the refresh storm at the same time
// (they touch different objects and different APIs, so their counts stay
// apart), which saves a grace period of waiting.
func (b *bench) rotateAndStorm(ctx context.Context, rotate, storm bool) error {
	if _, err := b.cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, b.cl.alive); err != nil {
		return err
	}
	var (
		wg         sync.WaitGroup
		errR, errS error
	)
	if rotate {
		wg.Add(1)
		go func() { defer wg.Done(); errR = b.rotation(ctx) }()
	}
	if storm {
		wg.Add(1)
		go func() { defer wg.Done(); errS = b.storm(ctx) }()
	}
	wg.Wait()
	if errR != nil {
		return fmt.Errorf("rotation: %w", errR)
	}
	if errS != nil {
		return fmt.Errorf("refresh storm: %w", errS)
	}
	return nil
}

// rotation rotates M ApiKeys with the keywarden.dev/rotate annotation and
// waits until the previous keys are revoked after the grace period.
func (b *bench) rotation(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.rotM = min(b.o.n, b.o.rotations)
	ns := names(r.rotM, apiKeyName)
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	v := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.logf("rotation: rotating %d ApiKeys (grace period %s)", r.rotM, b.o.grace)
	t0 := time.Now()
	if err := pool(ctx, r.rotM, b.o.writers, func(ctx context.Context, i int) error {
		return cl.annotate(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: ns[i], Namespace: cl.objNS(i)}}, v1alpha1.AnnotationRotate, v)
	}); err != nil {
		return err
	}
	done := func(s objState) bool {
		return s.LastRotateRequest == v && s.Rotations >= 1 && s.PendingRevocations == 0 && !s.PendingCreate && s.Ready
	}
	if err := b.tr.waitFor(ctx, kindApiKey, ns, b.o.grace+5*time.Minute, cl.alive, done); err != nil {
		return err
	}
	r.rotDur = time.Since(t0)
	// Events are sent asynchronously: let the last ones land.
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	ext, err := cl.externalSince(ctx, ext0)
	if err != nil {
		return err
	}
	r.rotExt = ext.api("reevit")
	r.rotReqs = countFor(cl.audit.between(t0, time.Now()), nameSet(ns))
	b.logf("rotation: %d rotations complete, previous keys revoked, in %s", r.rotM, r.rotDur.Round(time.Millisecond))
	return nil
}

// storm gives K tokens a short lifetime at once (apisim's token lifetime
// and a keywarden.dev/refresh on all), then watches their next, scheduled
// refreshes: spread, lag behind status.nextRefreshTime, cost.
func (b *bench) storm(ctx context.Context) error {
	r := b.res
	r.refK = min(b.o.n, b.o.storm)
	r.lifetime = b.o.stormLifetime
	st := &stormRun{names: names(r.refK, revioTokenName)}
	st.set = nameSet(st.names)
	if err := b.stormTrigger(ctx, st); err != nil {
		return err
	}
	return b.stormScheduled(ctx, st)
}

// stormRun is what the two halves of the storm share.
type stormRun struct {
	names []string
	set   map[string]bool
	// after is each token's refresh count after the triggered refresh,
	// sched its status.nextRefreshTime then.
	after    map[string]int64
	sched    map[string]time.Time
	maxNext  time.Time
	boundary time.Time // between triggered and scheduled refreshes
	ext      extCounts // apisim's counts at the boundary
}

// stormTrigger refreshes the tokens on request with short-lived tokens and
// counts the cost of a refresh on request.
func (b *bench) stormTrigger(ctx context.Context, st *stormRun) error {
	cl, r := b.cl, b.res
	before := map[string]int64{}
	for _, s := range b.tr.snapshot(kindRevioToken) {
		before[s.Name] = s.Refreshes
	}
	if err := cl.sim.Control.SetTokenLifetime(ctx, r.lifetime); err != nil {
		return err
	}
	ext0, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	v := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.logf("refresh storm: refreshing %d RevioTokens now with %s tokens", r.refK, r.lifetime)
	t0 := time.Now()
	if err := pool(ctx, r.refK, b.o.writers, func(ctx context.Context, i int) error {
		return cl.annotate(ctx, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Name: st.names[i], Namespace: cl.objNS(i)}}, v1alpha1.AnnotationRefresh, v)
	}); err != nil {
		return err
	}
	triggered := func(s objState) bool {
		return s.LastRefreshRequest == v && s.Refreshes > before[s.Name] && s.Ready
	}
	if err := b.tr.waitFor(ctx, kindRevioToken, st.names, 5*time.Minute, cl.alive, triggered); err != nil {
		return err
	}
	r.triggerDur = time.Since(t0)
	// Tokens issued from now on live apisim's default again, so the
	// scheduled refreshes settle the tokens for the rest of the run.
	if err := cl.sim.Control.SetTokenLifetime(ctx, apisim.DefaultTokenLifetime); err != nil {
		return err
	}
	st.after, st.sched = map[string]int64{}, map[string]time.Time{}
	var minNext, minExp, maxExp time.Time
	for _, s := range b.tr.snapshot(kindRevioToken) {
		if !st.set[s.Name] {
			continue
		}
		st.after[s.Name], st.sched[s.Name] = s.Refreshes, s.NextRefresh
		minNext, st.maxNext = minT(minNext, s.NextRefresh), maxT(st.maxNext, s.NextRefresh)
		minExp, maxExp = minT(minExp, s.ExpiresAt), maxT(maxExp, s.ExpiresAt)
	}
	r.nextSpread, r.expirySpread = st.maxNext.Sub(minNext), maxExp.Sub(minExp)
	b.logf("refresh storm: %d refreshed on request in %s; next refreshes due %s to %s",
		r.refK, r.triggerDur.Round(time.Millisecond), minNext.Format(time.TimeOnly), st.maxNext.Format(time.TimeOnly))

	// The request-triggered refreshes are over well before the first
	// scheduled one (a third of the lifetime before expiry).
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	st.boundary = time.Now()
	if !st.boundary.Before(minNext) {
		return fmt.Errorf("the first scheduled refresh (%s) came before the request-triggered ones settled (%s): use a longer -storm-lifetime", minNext.Format(time.TimeOnly), st.boundary.Format(time.TimeOnly))
	}
	if st.ext, err = cl.externalCounts(ctx); err != nil {
		return err
	}
	r.refExt = st.ext.minus(ext0).api("revio")
	r.refReqs = countFor(cl.audit.between(t0, st.boundary), st.set)
	return nil
}

// stormScheduled waits for every token's scheduled refresh and measures
// its lag, the spread and the cost of a scheduled refresh.
func (b *bench) stormScheduled(ctx context.Context, st *stormRun) error {
	cl, r := b.cl, b.res
	refreshed := func(s objState) bool { return s.Refreshes > st.after[s.Name] && s.Ready }
	if err := b.tr.waitFor(ctx, kindRevioToken, st.names, time.Until(st.maxNext)+3*time.Minute, cl.alive, refreshed); err != nil {
		return err
	}
	if err := sleepAlive(ctx, 3*time.Second, cl.alive); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	end := time.Now()
	ext, err := cl.externalCounts(ctx)
	if err != nil {
		return err
	}
	r.schedExt = ext.minus(st.ext).api("revio")
	reqs := cl.audit.between(st.boundary, end)
	r.schedReqs = countFor(reqs, st.set)
	// A refresh happened when its Secret was written: the first Secret
	// write of each token after the boundary.
	actual := map[string]time.Time{}
	for _, q := range reqs {
		if q.Resource == "secrets" && q.isWrite() && st.set[q.Name] {
			if t, ok := actual[q.Name]; !ok || q.At.Before(t) {
				actual[q.Name] = q.At
			}
		}
	}
	if len(actual) != r.refK {
		return fmt.Errorf("found the scheduled Secret write of %d of %d tokens in the audit log", len(actual), r.refK)
	}
	var first, last time.Time
	for name, at := range actual {
		r.lags = append(r.lags, at.Sub(st.sched[name]))
		first, last = minT(first, at), maxT(last, at)
	}
	r.refreshSpread = last.Sub(first)
	b.logf("refresh storm: %d scheduled refreshes between %s and %s", r.refK, first.Format(time.TimeOnly), last.Format(time.TimeOnly))
	return nil
}
