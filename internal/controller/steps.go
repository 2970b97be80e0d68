package controller

import (
	"context"
	"errors"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// stepResult is what one reconcile step asks of its pass.
type stepResult struct {
	// RequeueAfter > 0 asks for another look within that delay; the pass
	// takes the lowest of its steps'.
	RequeueAfter time.Duration
	// Stop ends the pass's main path: the steps after it run only when
	// they are marked always (revocations).
	Stop bool
}

// stop ends the main path, with an optional requeue.
func stop(res ctrl.Result, err error) (stepResult, error) {
	return stepResult{RequeueAfter: res.RequeueAfter, Stop: true}, err
}

// next lets the pass go on, asking for a look within d (0: no ask).
func next(d time.Duration) (stepResult, error) { return stepResult{RequeueAfter: d}, nil }

// failed ends the main path with a typed failure: the runner records it
// into the condition the step owns (or the one the failure names), the
// retry record and one event, through the pass's failure hook.
func failed(f *failure) (stepResult, error) { return stepResult{}, f }

// halted says whether a helper's answer ends its step: a stop, a typed
// failure or an error.
func halted(out stepResult, err error) bool { return out.Stop || err != nil }

// step is one reconcile step over a pass's state S. Steps share one
// signature and run in order (Flux's reconcile steps): a Stop or an error
// skips the rest of the main path, never the steps marked always.
type step[S any] struct {
	name string
	// owns is the condition the step's typed failures are recorded into
	// (a failure naming its own Condition, a Secret write's, goes there).
	owns   string
	run    func(context.Context, S) (stepResult, error)
	always bool
}

// failHook records a typed failure of a step into condition cond of the
// pass's object, with its retry record and event, and says when to look
// again. Each kind has one.
type failHook[S any] func(ctx context.Context, s S, cond string, f *failure) stepResult

// runSteps runs steps in order and merges their results: the lowest
// RequeueAfter, the first error. A step's typed failure (*failure) is
// recorded by fail into the condition the step owns and ends the main path
// without an error: the pass's status write keeps it. A simulated crash
// (tests) returns at once, as a dead process would.
func runSteps[S any](ctx context.Context, s S, steps []step[S], fail failHook[S]) (ctrl.Result, error) {
	var (
		res     ctrl.Result
		first   error
		stopped bool
	)
	for _, st := range steps {
		if stopped && !st.always {
			continue
		}
		out, err := st.run(ctx, s)
		if errors.Is(err, errCrash) {
			return ctrl.Result{}, err
		}
		if f := (*failure)(nil); errors.As(err, &f) {
			cond := f.Condition
			if cond == "" {
				cond = st.owns
			}
			out, err = fail(ctx, s, cond, f), nil
			out.Stop = true
		}
		res.RequeueAfter = earliest(res.RequeueAfter, out.RequeueAfter)
		if err != nil && first == nil {
			first = err
		}
		stopped = stopped || out.Stop || err != nil
	}
	return res, first
}
