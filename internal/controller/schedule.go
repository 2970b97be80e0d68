package controller

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// mtime truncates to seconds, the precision status keeps (see cert-manager PR 4399).
func mtime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t.Truncate(time.Second))
	return &m
}

// until is the delay from now to t, at least one second.
func until(now, t time.Time) time.Duration {
	return max(t.Sub(now), time.Second)
}

// jitter is a fraction in [0,1) that spreads work scheduled together
// (refreshes, drift checks); tests fix it through Options.Jitter.
func (o Options) jitter() float64 {
	if o.Jitter != nil {
		return o.Jitter()
	}
	return rand.Float64()
}

func optTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return mtime(t)
}

// gracePeriod is the grace period in effect.
func gracePeriod(r *v1alpha1.Rotation) time.Duration {
	if r != nil && r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	if r != nil && r.Every != nil && r.Every.Duration < defaultGracePeriod {
		return r.Every.Duration
	}
	return defaultGracePeriod
}

// nextRotation is when a key active since activeSince is rotated; zero when
// no rotation is configured. A slot missed while the manager was down yields
// a time in the past: one rotation, after which the next is counted from then.
func nextRotation(r *v1alpha1.Rotation, activeSince time.Time) (time.Time, error) {
	switch {
	case r == nil:
		return time.Time{}, nil
	case r.Every != nil:
		return activeSince.Add(r.Every.Duration), nil
	case r.Schedule != "":
		loc := time.UTC
		if r.TimeZone != "" {
			l, err := time.LoadLocation(r.TimeZone)
			if err != nil {
				return time.Time{}, fmt.Errorf("rotation.timeZone %q is not a known IANA time zone", r.TimeZone)
			}
			loc = l
		}
		sched, err := cron.ParseStandard(r.Schedule)
		if err != nil {
			return time.Time{}, fmt.Errorf("rotation.schedule %q is not a valid cron expression: %w", r.Schedule, err)
		}
		next := sched.Next(activeSince.In(loc))
		if next.IsZero() {
			return time.Time{}, fmt.Errorf("rotation.schedule %q never fires", r.Schedule)
		}
		return next.UTC(), nil
	}
	return time.Time{}, nil
}

// earliest returns the smallest positive delay.
func earliest(ds ...time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// rotationInterval is the longest time a key lives under a rotation: every,
// or the longest gap between the next firings of schedule (sampled over a
// year of firings from a fixed instant, so the answer is pure).
func rotationInterval(r *v1alpha1.Rotation) (time.Duration, bool) {
	if r == nil {
		return 0, false
	}
	if r.Every != nil {
		return r.Every.Duration, true
	}
	if r.Schedule == "" {
		return 0, false
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var longest time.Duration
	for i := 0; i < 400; i++ {
		next, err := nextRotation(r, t)
		if err != nil || next.IsZero() {
			return 0, false
		}
		longest = max(longest, next.Sub(t))
		if next.After(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
			break
		}
		t = next
	}
	return longest, true
}
