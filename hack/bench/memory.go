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
	var err error
	if r.baseRSS, r.baseHeap, err = b.sampleMemory(ctx, "baseline RSS", "manager-heap-baseline.pprof"); err != nil {
		return err
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
	if r.withRSS, r.withHeap, err = b.sampleMemory(ctx, "RSS with the Secrets", "manager-heap-secrets.pprof"); err != nil {
		return err
	}
	if err := cl.syncAudit(ctx); err != nil {
		return err
	}
	r.memReqs = tallyAll(cl.audit.between(t0, time.Now()))
	return nil
}

// sampleMemory logs "memory: <what>", reads the manager's RSS -rss-samples
// times, its live heap (0 when the metrics do not answer) and writes a heap
// profile to the file profile (a failure there is only logged).
func (b *bench) sampleMemory(ctx context.Context, what, profile string) (rss []int64, heap float64, err error) {
	b.logf("memory: %s", what)
	if rss, err = b.sampleRSS(ctx, b.o.rssSamples); err != nil {
		return nil, 0, err
	}
	if m, err := b.cl.scrapeMetrics(ctx); err == nil {
		heap = m.sum("go_gc_heap_live_bytes")
	}
	if err := b.cl.profileManager(ctx, "heap", profile); err != nil {
		b.logf("profile: %v", err)
	}
	return rss, heap, nil
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

// memSample is where a manager's memory is, idle: RSS from /proc (anonymous
// memory, and file pages: mostly the binary's text) and the Go runtime's
// own accounting (runtime/metrics, as the manager's /metrics exports it).
type memSample struct {
	rss, anon, file int64
	// go_gc_heap_live_bytes: the heap marked live by the last GC.
	heapLive float64
	// go_memory_classes_*: heap objects (live and not yet swept), free
	// heap not returned to the OS, goroutine stacks, GC and runtime
	// metadata; released heap is not resident.
	heapObjects, heapFree, heapUnused, stacks, metadata, other float64
	gogc                                                       float64
}

// idleMemory samples pid's memory: RSS three times a second apart (once
// with -quick; the last kept), then the runtime's figures from scrape.
func (b *bench) idleMemory(ctx context.Context, pid int, scrape func(context.Context) (metricSample, error), out *memSample) error {
	n := 3
	if b.o.quick {
		n = 1
	}
	for i := range n {
		if i > 0 {
			if err := sleepAlive(ctx, time.Second, b.cl.alive); err != nil {
				return err
			}
		}
		st, err := procStatus(pid, "VmRSS", "RssAnon", "RssFile")
		if err != nil {
			return fmt.Errorf("read the manager's memory: %w", err)
		}
		out.rss, out.anon, out.file = st["VmRSS"], st["RssAnon"], st["RssFile"]
	}
	m, err := scrape(ctx)
	if err != nil {
		return err
	}
	out.heapLive = m.sum("go_gc_heap_live_bytes")
	out.heapObjects = m.sum("go_memory_classes_heap_objects_bytes")
	out.heapFree = m.sum("go_memory_classes_heap_free_bytes")
	out.heapUnused = m.sum("go_memory_classes_heap_unused_bytes")
	out.stacks = m.sum("go_memory_classes_heap_stacks_bytes") + m.sum("go_memory_classes_os_stacks_bytes")
	out.metadata = m.sum("go_memory_classes_metadata_mcache_free_bytes") + m.sum("go_memory_classes_metadata_mcache_inuse_bytes") +
		m.sum("go_memory_classes_metadata_mspan_free_bytes") + m.sum("go_memory_classes_metadata_mspan_inuse_bytes") +
		m.sum("go_memory_classes_metadata_other_bytes")
	out.other = m.sum("go_memory_classes_other_bytes") + m.sum("go_memory_classes_profiling_buckets_bytes")
	out.gogc = m.sum("go_gc_gogc_percent")
	return nil
}

// String says where the RSS goes.
func (s memSample) String() string {
	f := func(v float64) string { return mib(int64(v)) }
	return fmt.Sprintf("RSS %s (anonymous %s, file %s); Go heap: live %s, objects incl. garbage %s, free not returned %s, fragmentation %s; stacks %s; runtime metadata %s; other %s; GOGC %.0f",
		mib(s.rss), mib(s.anon), mib(s.file), f(s.heapLive), f(s.heapObjects), f(s.heapFree), f(s.heapUnused), f(s.stacks), f(s.metadata), f(s.other), s.gogc)
}
