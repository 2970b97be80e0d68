package faults

import (
	"cmp"
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// lagTracker measures RevioToken refresh lag in one namespace: the moment a
// watch sees the output Secret's token change, against the
// status.nextRefreshTime the token had before (which is truncated to the
// second, so a lag includes up to 1 s of that).
type lagTracker struct {
	mu      sync.Mutex
	token   map[string]string    // last token seen per Secret
	changed map[string]time.Time // when it last changed
	seen    map[string]tokenSeen // per RevioToken, at the last poll
	lags    []time.Duration

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type tokenSeen struct {
	refreshes int64
	next      time.Time
	changed   time.Time // the Secret's last change known then
}

func startLagTracker(s *suite, ns string) (*lagTracker, error) {
	wc, err := client.NewWithWatch(s.env.AdminConfig, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	lt := &lagTracker{token: map[string]string{}, changed: map[string]time.Time{}, seen: map[string]tokenSeen{}, cancel: cancel}
	lt.wg.Add(2)
	go func() { defer lt.wg.Done(); lt.watchSecrets(ctx, s, wc, ns) }()
	go func() { defer lt.wg.Done(); lt.pollTokens(ctx, s, ns) }()
	return lt, nil
}

// overdue counts the tokens whose scheduled refresh is more than late ago
// and has not happened: a lag that take cannot show yet.
func (lt *lagTracker) overdue(late time.Duration) int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	n := 0
	for _, st := range lt.seen {
		if !st.next.IsZero() && time.Since(st.next) > late {
			n++
		}
	}
	return n
}

func (lt *lagTracker) stop() {
	lt.cancel()
	lt.wg.Wait()
}

// take returns the lags measured since the last take.
func (lt *lagTracker) take() []time.Duration {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	out := lt.lags
	lt.lags = nil
	return out
}

// watchSecrets records when each Secret's token changes.
func (lt *lagTracker) watchSecrets(ctx context.Context, s *suite, wc client.WithWatch, ns string) {
	for ctx.Err() == nil {
		w, err := wc.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			sec, ok := ev.Object.(*corev1.Secret)
			if !ok || len(sec.Data["token"]) == 0 {
				continue
			}
			now := time.Now()
			s.needles.addSecret(sec)
			tok := string(sec.Data["token"])
			lt.mu.Lock()
			if prev, ok := lt.token[sec.Name]; ok && prev != tok {
				lt.changed[sec.Name] = now
			}
			lt.token[sec.Name] = tok
			lt.mu.Unlock()
		}
		w.Stop()
	}
}

// pollTokens reads the RevioTokens every 250 ms; a token whose refresh
// count went up by one was refreshed: its lag is the Secret's change (or,
// when the watch has not delivered it yet, now) minus the refresh time
// scheduled before.
func (lt *lagTracker) pollTokens(ctx context.Context, s *suite, ns string) {
	for ctx.Err() == nil {
		var list v1alpha1.RevioTokenList
		if err := s.env.Client.List(ctx, &list, client.InNamespace(ns)); err == nil {
			now := time.Now()
			lt.mu.Lock()
			for _, rt := range list.Items {
				st := rt.Status
				name := cmp.Or(rt.Spec.Secret.Name, rt.Name)
				prev, ok := lt.seen[rt.Name]
				if ok && st.Refreshes == prev.refreshes+1 && !prev.next.IsZero() {
					at := lt.changed[name]
					if !at.After(prev.changed) {
						at = now
					}
					lt.lags = append(lt.lags, at.Sub(prev.next))
				}
				next := time.Time{}
				if st.NextRefreshTime != nil {
					next = st.NextRefreshTime.Time
				}
				lt.seen[rt.Name] = tokenSeen{refreshes: st.Refreshes, next: next, changed: lt.changed[name]}
			}
			lt.mu.Unlock()
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// rssSampler scrapes a manager's process_resident_memory_bytes every
// 250 ms and keeps the maximum.
type rssSampler struct {
	mu     sync.Mutex
	peak   float64
	cancel context.CancelFunc
	done   chan struct{}
}

func startRSSSampler(m *testenv.Manager) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	r := &rssSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			if v, err := scrape(ctx, m, "process_resident_memory_bytes"); err == nil {
				r.mu.Lock()
				r.peak = max(r.peak, v)
				r.mu.Unlock()
			}
			sleep(ctx, 250*time.Millisecond)
		}
	}()
	return r
}

// takeMax returns the peak since the last take and starts a new one.
func (r *rssSampler) takeMax() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.peak
	r.peak = 0
	return p
}

func (r *rssSampler) stop() {
	r.cancel()
	<-r.done
}
