package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// memory samples the manager's RSS, creates S unrelated Secrets of the
// given size in another namespace, and samples again.
func (b *bench) memory(ctx context.Context) error {
	cl, r := b.cl, b.res
	r.memSecrets, r.memSecretSize = b.o.secrets, b.o.secretSize
	if _, err := cl.audit.waitIdle(ctx, time.Time{}, b.o.idle, cl.alive); err != nil {
		return err
	}
	b.logf("memory: baseline RSS")
	var err error
	if r.baseRSS, err = b.sampleRSS(ctx, b.o.rssSamples); err != nil {
		return err
	}
	if m, err := cl.scrapeMetrics(ctx); err == nil {
		r.baseHeap = m.sum("go_gc_heap_live_bytes")
	}
	if err := cl.profileManager(ctx, "heap", "manager-heap-baseline.pprof"); err != nil {
		b.logf("profile: %v", err)
	}
	if err := cl.createNamespace(ctx, unrelatedNS); err != nil {
		return err
	}
	b.logf("memory: creating %d unrelated Secrets of %d bytes", r.memSecrets, r.memSecretSize)
	t0 := time.Now()
	if err := pool(ctx, r.memSecrets, b.o.writers, func(ctx context.Context, i int) error {
		data := make([]byte, r.memSecretSize)
		_, _ = rand.Read(data)
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%06d", i), Namespace: unrelatedNS,
				Labels: map[string]string{"app.kubernetes.io/name": "unrelated"}},
			Data: map[string][]byte{"blob": data},
		}
		return cl.c.Create(ctx, s)
	}); err != nil {
		return err
	}
	r.memCreate = time.Since(t0)
	// Let the watch events arrive and the heap settle.
	if err := sleepAlive(ctx, 10*time.Second, cl.alive); err != nil {
		return err
	}
	b.logf("memory: RSS with the Secrets")
	if r.withRSS, err = b.sampleRSS(ctx, b.o.rssSamples); err != nil {
		return err
	}
	if m, err := cl.scrapeMetrics(ctx); err == nil {
		r.withHeap = m.sum("go_gc_heap_live_bytes")
	}
	if err := cl.profileManager(ctx, "heap", "manager-heap-secrets.pprof"); err != nil {
		b.logf("profile: %v", err)
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	r.memReqs = tally{}
	for _, q := range cl.audit.between(t0, time.Now()) {
		r.memReqs.add(q)
	}
	return nil
}

// sampleRSS reads the manager's RSS n times, a second apart.
func (b *bench) sampleRSS(ctx context.Context, n int) ([]int64, error) {
	var out []int64
	for i := range n {
		rss, err := procRSS(b.cl.managerPid())
		if err != nil {
			return nil, fmt.Errorf("read the manager's RSS: %w", err)
		}
		out = append(out, rss)
		if i < n-1 {
			if err := sleepAlive(ctx, time.Second, b.cl.alive); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
