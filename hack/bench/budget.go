package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
	"github.com/keywarden/keywarden/internal/testenv"
)

// budgetLabel marks the budget measure's Deployments.
const budgetLabel = "bench.keywarden.dev/budget"

func deploymentName(i int) string { return fmt.Sprintf("dep-%05d", i) }

// rollouts plays the Deployment controller for the budget measure's
// Deployments (the control plane runs none): a Deployment whose pod
// template changed (generation past status.observedGeneration) rolls out
// -rollout-time later, when its status is written as the controller would.
// It counts the Deployments rolling out at once: patched and not yet
// rolled out. That is never more than the manager counts in flight (it
// sees a rollout finish only when it next looks).
type rollouts struct {
	c    client.Client
	wait time.Duration

	mu         sync.Mutex
	started    map[string]int64 // ns/name -> generation rolling out
	inFlight   int
	most       int
	firstPatch time.Time
	done       map[string]time.Time // ns/name -> last rollout finished
	errs       []error
}

// startRollouts watches the Deployments carrying budgetLabel.
func startRollouts(ctx context.Context, cl *cluster, wait time.Duration) (*rollouts, error) {
	r := &rollouts{c: cl.c, wait: wait, started: map[string]int64{}, done: map[string]time.Time{}}
	opts := cache.Options{Scheme: testenv.Scheme(), DefaultLabelSelector: labels.SelectorFromSet(labels.Set{budgetLabel: "true"})}
	if err := watch(ctx, cl.cfg, opts, func(o any) { r.observe(ctx, o) }, &appsv1.Deployment{}); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rollouts) observe(ctx context.Context, o any) {
	d, ok := o.(*appsv1.Deployment)
	if !ok || d.Generation <= d.Status.ObservedGeneration {
		return
	}
	key, gen := d.Namespace+"/"+d.Name, d.Generation
	r.mu.Lock()
	defer r.mu.Unlock()
	if g, ok := r.started[key]; ok && g >= gen {
		return
	}
	if _, ok := r.started[key]; !ok {
		r.inFlight++
		r.most = max(r.most, r.inFlight)
	}
	r.started[key] = gen
	if r.firstPatch.IsZero() && gen > 1 {
		r.firstPatch = time.Now()
	}
	time.AfterFunc(r.wait, func() { r.finish(ctx, d.Namespace, d.Name, gen) })
}

// finish writes the rollout's status: every replica updated and available.
func (r *rollouts) finish(ctx context.Context, ns, name string, gen int64) {
	patch := fmt.Sprintf(`{"status":{"observedGeneration":%d,"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}`, gen)
	err := r.c.Status().Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch("application/merge-patch+json", []byte(patch)))
	key := ns + "/" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		r.errs = append(r.errs, fmt.Errorf("roll out Deployment %s: %w", key, err))
	}
	if r.started[key] != gen {
		return // patched again meanwhile: that rollout finishes it
	}
	delete(r.started, key)
	r.inFlight--
	r.done[key] = time.Now()
}

// reset starts counting afresh (nothing rolling out).
func (r *rollouts) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.most, r.firstPatch, r.done = r.inFlight, time.Time{}, map[string]time.Time{}
}

type rolloutState struct {
	inFlight, most, done int
	firstPatch, lastDone time.Time
	err                  error
}

func (r *rollouts) state() rolloutState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := rolloutState{inFlight: r.inFlight, most: r.most, done: len(r.done), firstPatch: r.firstPatch}
	for _, t := range r.done {
		s.lastDone = maxT(s.lastDone, t)
	}
	if len(r.errs) > 0 {
		s.err = r.errs[0]
	}
	return s
}

// budget runs the restart budget measure: the manager restarted with
// --max-concurrent-restarts=-restart-budget, N Deployments each reading
// one RevioToken's Secret through envFrom (and recording its current
// version, so nothing restarts before the measure), each token naming its
// Deployment in rolloutRestart; then keywarden.dev/refresh on every token
// at once. It fails when more Deployments roll out at once than the
// budget, or when a Deployment does not end with its Secret's current
// version, rolled out.
func (b *bench) budget(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.budgetN, r.budgetB, r.budgetRollout = r.n, b.o.restartBudget, b.o.rolloutTime
	tokens := names(r.n, revioTokenName)

	b.logf("restart budget: restarting the manager with --max-concurrent-restarts=%d", r.budgetB)
	if err := cl.stopManager(); err != nil {
		return err
	}
	cl.budgetArgs = []string{fmt.Sprintf("--max-concurrent-restarts=%d", r.budgetB)}
	if _, err := cl.startManager(ctx); err != nil {
		return err
	}
	if err := b.waitReconciled(ctx); err != nil {
		return err
	}
	ro, err := startRollouts(ctx, cl, r.budgetRollout)
	if err != nil {
		return err
	}

	// Each token names its Deployment first: a spec change refreshes a
	// token, and its Deployment does not exist yet (a Warning event, no
	// restart). Then the Deployments, recording the version of the Secret
	// they read, so that nothing restarts before the measure.
	b.logf("restart budget: %d RevioTokens name a Deployment in rolloutRestart (a spec change: each refreshes)", r.n)
	before := map[string]int64{}
	for _, s := range b.tr.snapshot(kindRevioToken) {
		before[s.Name] = s.Refreshes
	}
	if err := pool(ctx, r.n, b.o.writers, func(ctx context.Context, i int) error {
		patch := fmt.Sprintf(`{"spec":{"rolloutRestart":[{"kind":"Deployment","name":%q}]}}`, deploymentName(i))
		return cl.c.Patch(ctx, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Namespace: cl.objNS(i), Name: tokens[i]}},
			client.RawPatch("application/merge-patch+json", []byte(patch)))
	}); err != nil {
		return err
	}
	if err := b.tr.waitFor(ctx, kindRevioToken, tokens, b.o.timeout, cl.alive, func(s objState) bool { return s.Refreshes > before[s.Name] && s.Ready }); err != nil {
		return err
	}
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	b.logf("restart budget: creating %d Deployments, one reading each RevioToken's Secret", r.n)
	if err := pool(ctx, r.n, b.o.writers, func(ctx context.Context, i int) error {
		var s corev1.Secret
		if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(i), Name: tokens[i]}, &s); err != nil {
			return err
		}
		// Rolled out by the watch, as a patched one.
		return cl.c.Create(ctx, budgetDeployment(cl.objNS(i), deploymentName(i), tokens[i], secretsync.RestartHash(s.Data)))
	}); err != nil {
		return err
	}
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	for ro.state().inFlight > 0 {
		if err := sleepAlive(ctx, 200*time.Millisecond, cl.alive); err != nil {
			return err
		}
	}
	if s := ro.state(); !s.firstPatch.IsZero() {
		return fmt.Errorf("a Deployment was restarted before the measure")
	}
	ro.reset()
	m0, err := cl.scrapeMetrics(ctx)
	if err != nil {
		return err
	}
	pid := cl.managerPid()
	cpu0, _ := procCPU(pid)
	stopPeak := b.samplePeak(ctx, cl.managerPid, &r.budgetPeak)
	// The manager's own count, sampled.
	sctx, stopScrape := context.WithCancel(ctx)
	var scraped sync.WaitGroup
	scraped.Add(1)
	go func() {
		defer scraped.Done()
		for sctx.Err() == nil {
			if m, err := cl.scrapeMetrics(sctx); err == nil {
				r.budgetMostGauge = max(r.budgetMostGauge, int(m.sum("keywarden_restarts_in_flight")))
				r.budgetMostQueue = max(r.budgetMostQueue, int(m.sum("keywarden_restart_queue_length")))
			}
			select {
			case <-sctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	v := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	b.logf("restart budget: refreshing %d RevioTokens at once; Deployments roll out %s after their patch", r.n, r.budgetRollout)
	t0 := time.Now()
	err = pool(ctx, r.n, b.o.writers, func(ctx context.Context, i int) error {
		return cl.annotate(ctx, &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Name: tokens[i], Namespace: cl.objNS(i)}}, v1alpha1.AnnotationRefresh, v)
	})
	deadline := time.Now().Add(b.o.timeout)
	for err == nil {
		s := ro.state()
		if s.err != nil {
			err = s.err
			break
		}
		if s.done == r.n && s.inFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("%d of %d Deployments rolled out within %s (%d rolling out)", s.done, r.n, b.o.timeout, s.inFlight)
			break
		}
		err = sleepAlive(ctx, 200*time.Millisecond, cl.alive)
	}
	stopPeak()
	if cpu1, cerr := procCPU(pid); cerr == nil {
		r.budgetCPU = cpu1 - cpu0
	}
	if err != nil {
		stopScrape()
		scraped.Wait()
		return err
	}
	s := ro.state()
	r.budgetMostSeen, r.budgetDone = s.most, s.done
	r.budgetDrain, r.budgetFirstPatch = s.lastDone.Sub(t0), s.firstPatch.Sub(t0)
	// The manager lets a rollout go when it next looks (every 5 s).
	for cl.alive() == nil {
		m, err := cl.scrapeMetrics(ctx)
		if err == nil && m.sum("keywarden_restarts_in_flight") == 0 && m.sum("keywarden_restart_queue_length") == 0 {
			d := m.minus(m0)
			r.budgetRequested = d.sum("keywarden_restarts_requested_total")
			r.budgetQueued = d.sum("keywarden_restarts_queued_total")
			r.budgetFinished = d.sum("keywarden_restarts_finished_total", `result="done"`)
			r.budgetFailed = d.sum("keywarden_restarts_finished_total", `result="failed"`)
			break
		}
		if err := sleepAlive(ctx, 250*time.Millisecond, cl.alive); err != nil {
			stopScrape()
			scraped.Wait()
			return err
		}
	}
	stopScrape()
	scraped.Wait()
	b.logf("restart budget: %d Deployments rolled out in %s; at most %d at once (the manager counted %d)", s.done, r.budgetDrain.Round(time.Millisecond), s.most, r.budgetMostGauge)

	// Every Deployment records its Secret's current version, rolled out.
	stale := 0
	if err := pool(ctx, r.n, b.o.writers, func(ctx context.Context, i int) error {
		var sec corev1.Secret
		if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(i), Name: tokens[i]}, &sec); err != nil {
			return err
		}
		var d appsv1.Deployment
		if err := cl.c.Get(ctx, client.ObjectKey{Namespace: cl.objNS(i), Name: deploymentName(i)}, &d); err != nil {
			return err
		}
		if d.Spec.Template.Annotations[secretsync.HashAnnotation(tokens[i])] != secretsync.RestartHash(sec.Data) || d.Status.ObservedGeneration != d.Generation {
			ro.mu.Lock()
			stale++
			ro.mu.Unlock()
		}
		return nil
	}); err != nil {
		return err
	}
	r.budgetStale = stale
	if r.budgetMostSeen > r.budgetB || r.budgetMostGauge > r.budgetB {
		return fmt.Errorf("restart budget exceeded: %d Deployments rolled out at once (the manager counted %d), budget %d", r.budgetMostSeen, r.budgetMostGauge, r.budgetB)
	}
	if stale > 0 {
		return fmt.Errorf("%d of %d Deployments do not run their Secret's current version", stale, r.n)
	}
	return nil
}

// budgetDeployment reads Secret secret through envFrom and records its
// version hash (as after a restart for it).
func budgetDeployment(ns, name, secret, hash string) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{budgetLabel: "true"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel, Annotations: map[string]string{secretsync.HashAnnotation(secret): hash}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/" + name + ":1",
					EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}},
			},
		},
	}
}
