package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

const (
	kindApiKey     = "ApiKey"
	kindRevioToken = "RevioToken"
)

// objState is what the benchmark observed of one ApiKey or RevioToken,
// updated from a watch (an informer) as the API server sends changes.
type objState struct {
	Kind, Name string
	// CreateSent is when the benchmark sent the create request.
	CreateSent time.Time
	// ReadyAt is when Ready=True was first observed.
	ReadyAt time.Time
	Ready   bool
	Reason  string

	// RevioToken.
	Refreshes          int64
	LastRefreshRequest string
	NextRefresh        time.Time
	ExpiresAt          time.Time

	// ApiKey.
	Rotations          int64
	LastRotateRequest  string
	PendingRevocations int
	PendingCreate      bool
}

// tracker keeps objState for every benchmark object (in the namespaces
// isObjNS names).
type tracker struct {
	mu   sync.Mutex
	objs map[string]*objState // kind/name
}

func stateKey(kind, name string) string { return kind + "/" + name }

// startTracker starts informers on ApiKeys and RevioTokens.
func startTracker(ctx context.Context, cfg *rest.Config) (*tracker, error) {
	t := &tracker{objs: map[string]*objState{}}
	if err := watch(ctx, cfg, cache.Options{Scheme: testenv.Scheme()}, t.observe, &v1alpha1.ApiKey{}, &v1alpha1.RevioToken{}); err != nil {
		return nil, err
	}
	return t, nil
}

// watch starts informers on objs with the cache options opts, calls
// observe with every object added or updated, and waits for their sync.
func watch(ctx context.Context, cfg *rest.Config, opts cache.Options, observe func(any), objs ...client.Object) error {
	c, err := cache.New(cfg, opts)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { observe(o) },
			UpdateFunc: func(_, o any) { observe(o) },
		}); err != nil {
			return err
		}
	}
	go func() { _ = c.Start(ctx) }()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(sctx) {
		return fmt.Errorf("benchmark watch did not sync")
	}
	return nil
}

// expect registers an object about to be created.
func (t *tracker) expect(kind, name string, sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(kind, name)
	s.CreateSent = sent
}

func (t *tracker) get(kind, name string) *objState {
	k := stateKey(kind, name)
	s := t.objs[k]
	if s == nil {
		s = &objState{Kind: kind, Name: name}
		t.objs[k] = s
	}
	return s
}

func (t *tracker) observe(o any) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		s     *objState
		conds []metav1.Condition
	)
	if m, ok := o.(metav1.Object); !ok || !isObjNS(m.GetNamespace()) {
		return
	}
	switch obj := o.(type) {
	case *v1alpha1.ApiKey:
		s = t.get(kindApiKey, obj.Name)
		st := obj.Status
		conds = st.Conditions
		s.Rotations, s.LastRotateRequest = st.Rotations, st.LastRotateRequest
		s.PendingRevocations, s.PendingCreate = len(st.PendingRevocations), st.PendingCreate != nil
	case *v1alpha1.RevioToken:
		s = t.get(kindRevioToken, obj.Name)
		st := obj.Status
		conds = st.Conditions
		s.Refreshes, s.LastRefreshRequest = st.Refreshes, st.LastRefreshRequest
		s.NextRefresh, s.ExpiresAt = timeOf(st.NextRefreshTime), timeOf(st.ExpiresAt)
	default:
		return
	}
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	s.Ready = c != nil && c.Status == metav1.ConditionTrue
	if c != nil {
		s.Reason = c.Reason
	}
	if s.Ready && s.ReadyAt.IsZero() {
		s.ReadyAt = now
	}
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// snapshot copies the states of kind (all kinds when empty), sorted by name.
func (t *tracker) snapshot(kind string) []objState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]objState, 0, len(t.objs))
	for _, s := range t.objs {
		if kind == "" || s.Kind == kind {
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// waitFor waits until pred holds for every named object of kind, and
// returns when it first held for all. alive reports a broken run (the
// manager died). On timeout the error says how many are missing and why.
func (t *tracker) waitFor(ctx context.Context, kind string, names []string, timeout time.Duration, alive func() error, pred func(objState) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		missing, example := 0, objState{}
		t.mu.Lock()
		for _, n := range names {
			s := t.objs[stateKey(kind, n)]
			if s == nil || !pred(*s) {
				if missing == 0 && s != nil {
					example = *s
				}
				missing++
			}
		}
		t.mu.Unlock()
		if missing == 0 {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d %ss not there within %s (e.g. %s: ready=%v reason=%q)", missing, len(names), kind, timeout, example.Name, example.Ready, example.Reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
