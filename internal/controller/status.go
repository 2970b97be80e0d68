package controller

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// setCondition sets one condition with the object's generation.
func setCondition(conds *[]metav1.Condition, gen int64, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// writeStatus writes obj's status if it differs from orig's, with
// optimistic locking so a stale read can never overwrite newer state. It
// is the one status write of every kind, with one conflict policy:
//   - a conflict caused by metadata alone (an annotation, a label, a
//     finalizer: the generation and the status the pass started from are
//     still the server's) is not a stale read, so the same status is written
//     once more onto the new version: what the pass did (a failed call, a
//     revocation) is recorded, not done again;
//   - any other conflict means the pass worked from a stale copy: nothing is
//     an error, and again asks for a pass shortly (staleRequeue) on the
//     newer object;
//   - an object already gone needs nothing more.
func writeStatus(ctx context.Context, c client.Client, sup *supersededSet, obj, orig client.Object, status, origStatus any) (again bool, err error) {
	if equality.Semantic.DeepEqual(status, origStatus) {
		return false, nil
	}
	for try := 0; ; try++ {
		before := orig.GetResourceVersion()
		err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case err == nil:
			sup.add(obj.GetUID(), before)
			return false, nil
		case apierrors.IsNotFound(err):
			return false, nil
		case !apierrors.IsConflict(err):
			return false, err
		case try > 0:
			return true, nil
		}
		fresh, ok := metadataMoved(ctx, c, orig)
		if !ok {
			return true, nil
		}
		if err := withStatusOf(obj, fresh, obj); err != nil {
			return false, err
		}
		orig = fresh
	}
}

// statusWritten turns writeStatus's answer into the pass's result: ok when
// the status is stored (or needed no write); otherwise the result to return
// (a stale read looks again shortly).
func statusWritten(again bool, err error) (res ctrl.Result, ok bool, werr error) {
	switch {
	case err != nil:
		return ctrl.Result{}, false, fmt.Errorf("patch status: %w", err)
	case again:
		return ctrl.Result{RequeueAfter: staleRequeue}, false, nil
	}
	return ctrl.Result{}, true, nil
}

// metadataMoved reads obj's current version and reports whether only its
// metadata moved since orig: same generation, same status.
func metadataMoved(ctx context.Context, c client.Client, orig client.Object) (client.Object, bool) {
	fresh := orig.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(orig), fresh); err != nil ||
		fresh.GetResourceVersion() == orig.GetResourceVersion() || fresh.GetGeneration() != orig.GetGeneration() {
		return nil, false
	}
	a, err1 := runtime.DefaultUnstructuredConverter.ToUnstructured(fresh)
	b, err2 := runtime.DefaultUnstructuredConverter.ToUnstructured(orig)
	if err1 != nil || err2 != nil || !equality.Semantic.DeepEqual(a["status"], b["status"]) {
		return nil, false
	}
	return fresh, true
}

// withStatusOf sets out to base with the status of src (objects of one type).
func withStatusOf(src, base, out client.Object) error {
	s, err := runtime.DefaultUnstructuredConverter.ToUnstructured(src)
	if err != nil {
		return err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(base)
	if err != nil {
		return err
	}
	u["status"] = s["status"]
	merged := reflect.New(reflect.TypeOf(base).Elem()).Interface().(client.Object)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, merged); err != nil {
		return err
	}
	reflect.ValueOf(out).Elem().Set(reflect.ValueOf(merged).Elem())
	return nil
}

// staleRequeue is how soon a reconcile that read a superseded object looks again.
const staleRequeue = 200 * time.Millisecond

// superseded remembers, per object, the last few resourceVersions this
// process replaced with its own writes. A reconcile started by an event (our
// own Secret write, say) can read the object from the cache before the cache
// has seen our status write; acting on that stale status would repeat an
// exchange or replay a create. Such a read is recognised and retried shortly
// instead. Status writes are filtered from the watch, hence the short requeue.
//
// One set per manager (Options.superseded, made by Setup), shared by its
// reconcilers: a restarted manager starts with none, as a new process does.
func newSupersededSet() *supersededSet { return &supersededSet{m: map[types.UID][]string{}} }

type supersededSet struct {
	mu sync.Mutex
	m  map[types.UID][]string
}

func (s *supersededSet) add(uid types.UID, rv string) {
	if rv == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append(s.m[uid], rv)
	if len(l) > 8 {
		l = l[len(l)-8:]
	}
	s.m[uid] = l
}

// stale reports whether obj is a version this process has already replaced.
func (s *supersededSet) stale(obj client.Object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.m[obj.GetUID()], obj.GetResourceVersion())
}

// forget drops an object's entries once it is deleted.
func (s *supersededSet) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, uid)
}

// hasReason reports whether a condition of the type has the reason.
func hasReason(conds []metav1.Condition, typ, reason string) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Reason == reason
}
