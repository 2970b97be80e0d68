package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestRunSteps: steps run in order; a Stop or an error skips the rest of the
// main path but never a step marked always; the lowest RequeueAfter and the
// first error win; a typed failure goes to the fail hook with the condition
// the step owns (or the one it names), ends the main path and is no error;
// a simulated crash returns at once.
func TestRunSteps(t *testing.T) {
	boom, later := errors.New("boom"), errors.New("later")
	quota := &failure{Reason: "RateLimited"}
	secretWrite := &failure{Reason: "SecretWriteFailed", Condition: "SecretSynced"}
	type spec struct {
		res    stepResult
		err    error
		always bool
	}
	for _, tc := range []struct {
		name    string
		steps   []spec
		ran     []int
		requeue time.Duration
		err     error
		// failed is what the fail hook recorded: "condition/reason".
		failed []string
	}{
		{"all run, lowest requeue", []spec{{res: stepResult{RequeueAfter: 3 * time.Second}}, {}, {res: stepResult{RequeueAfter: time.Second}}}, []int{0, 1, 2}, time.Second, nil, nil},
		{"stop skips main path, not always", []spec{{res: stepResult{Stop: true, RequeueAfter: 5 * time.Second}}, {}, {always: true, res: stepResult{RequeueAfter: 2 * time.Second}}, {}}, []int{0, 2}, 2 * time.Second, nil, nil},
		{"error stops, first error kept", []spec{{err: boom}, {}, {always: true, err: later}}, []int{0, 2}, 0, boom, nil},
		{"always step's stop skips the rest", []spec{{}, {always: true, res: stepResult{Stop: true}}, {}}, []int{0, 1}, 0, nil, nil},
		{"zero requeue asks nothing", []spec{{}, {res: stepResult{RequeueAfter: 0}}}, []int{0, 1}, 0, nil, nil},
		{"crash returns at once", []spec{{err: fmt.Errorf("%w at x", errCrash), res: stepResult{RequeueAfter: time.Second}}, {always: true}}, []int{0}, 0, errCrash, nil},
		{"failure recorded in the owned condition", []spec{{}, {err: quota}, {}, {always: true, res: stepResult{RequeueAfter: 9 * time.Second}}}, []int{0, 1, 3}, 7 * time.Second, nil, []string{"Owned1/RateLimited"}},
		{"failure naming its condition goes there", []spec{{err: secretWrite}, {}}, []int{0}, 7 * time.Second, nil, []string{"SecretSynced/SecretWriteFailed"}},
		{"wrapped failure is still typed", []spec{{err: fmt.Errorf("create: %w", quota)}}, []int{0}, 7 * time.Second, nil, []string{"Owned0/RateLimited"}},
		{"always step's failure recorded too", []spec{{err: quota}, {always: true, err: secretWrite}}, []int{0, 1}, 7 * time.Second, nil, []string{"Owned0/RateLimited", "SecretSynced/SecretWriteFailed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran []int
			var steps []step[*[]int]
			var recorded []string
			for i, s := range tc.steps {
				steps = append(steps, step[*[]int]{name: fmt.Sprint(i), owns: fmt.Sprint("Owned", i), always: s.always, run: func(_ context.Context, r *[]int) (stepResult, error) {
					*r = append(*r, i)
					return s.res, s.err
				}})
			}
			res, err := runSteps(context.Background(), &ran, steps, func(_ context.Context, _ *[]int, cond string, f *failure) stepResult {
				recorded = append(recorded, cond+"/"+f.Reason)
				return stepResult{RequeueAfter: 7 * time.Second}
			})
			if !slices.Equal(recorded, tc.failed) {
				t.Errorf("failures recorded %v, want %v", recorded, tc.failed)
			}
			if !slices.Equal(ran, tc.ran) {
				t.Errorf("ran %v, want %v", ran, tc.ran)
			}
			if res.RequeueAfter != tc.requeue {
				t.Errorf("RequeueAfter %s, want %s", res.RequeueAfter, tc.requeue)
			}
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("err %v, want %v", err, tc.err)
			}
		})
	}
}

// TestNeedsPerson: only failures no retry can fix wait for a change; gates
// (a missing issuer, a policy) and transient failures never do.
func TestNeedsPerson(t *testing.T) {
	for reason, want := range map[string]bool{
		"InvalidAPIKey": true, "SecretNotFound": true, "Unauthorized": true, "MissingScope": true, "SecretConflict": true,
		"BadRequest": true, "EnvironmentMismatch": true, "EndpointNotAllowed": true, "SecretTypeNotAllowed": true, "InsecureEndpoint": true,
		"IssuerNotFound": false, "PolicyViolation": false, "IssuerInUse": false, "APIUnavailable": false,
	} {
		if got := needsPerson(&failure{Reason: reason}); got != want {
			t.Errorf("needsPerson(%s) = %v, want %v", reason, got, want)
		}
		if needsPerson(&failure{Reason: reason, Transient: true}) {
			t.Errorf("needsPerson(transient %s) = true", reason)
		}
	}
}
