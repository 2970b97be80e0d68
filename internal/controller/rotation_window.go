package controller

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// windowHorizon bounds the search for the next window: every window opens
// at least weekly, and a day a daylight-saving change swallows is followed
// a week later by one it does not.
const windowHorizon = 15

var weekdays = map[v1alpha1.Weekday]time.Weekday{
	"Sun": time.Sunday, "Mon": time.Monday, "Tue": time.Tuesday, "Wed": time.Wednesday,
	"Thu": time.Thursday, "Fri": time.Friday, "Sat": time.Saturday,
}

// windowZone loads a window's time zone (UTC when empty).
func windowZone(w v1alpha1.RotationWindow) (*time.Location, error) {
	if w.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil || w.TimeZone == "Local" {
		return nil, fmt.Errorf("rotation window time zone %q is not a time zone this manager knows", w.TimeZone)
	}
	return loc, nil
}

// parseClock parses "HH:MM" (24:00 allowed).
func parseClock(s string) (h, m int, err error) {
	if _, err := fmt.Sscanf(s, "%2d:%2d", &h, &m); err != nil || len(s) != 5 || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, 0, fmt.Errorf("rotation window time %q is not HH:MM", s)
	}
	return h, m, nil
}

// windowJitter is the fixed delay of one object into a window of length
// long: within its first half, from seed, whole seconds.
func windowJitter(long time.Duration, seed uint64) time.Duration {
	half := int64(long / 2 / time.Second)
	if half <= 0 {
		return 0
	}
	return time.Duration(seed%uint64(half)) * time.Second
}

// nextWindowStart is when a rotation due at now may start under windows:
// now itself when now falls inside a window, else the earliest opening of
// a window after now plus a jitter within its first half drawn from
// jitterSeed (the same seed always gives the same delay, so an object's
// schedule is stable, and objects with different seeds spread out). Each
// window's days, start and end are read on the wall clock of its time zone,
// so a window follows daylight-saving changes; a day whose change skips the
// window's times has no window. No windows: now. A zone that does not load,
// a malformed time or no window within windowHorizon days is an error.
func nextWindowStart(now time.Time, windows []v1alpha1.RotationWindow, jitterSeed uint64) (time.Time, error) {
	if len(windows) == 0 {
		return now, nil
	}
	type parsed struct {
		loc            *time.Location
		sh, sm, eh, em int
		days           map[time.Weekday]bool
	}
	// Every window is checked, not only up to one that holds now.
	ws := make([]parsed, len(windows))
	for i, w := range windows {
		p := &ws[i]
		var err error
		if p.loc, err = windowZone(w); err != nil {
			return time.Time{}, fmt.Errorf("windows[%d]: %w", i, err)
		}
		if p.sh, p.sm, err = parseClock(w.Start); err != nil {
			return time.Time{}, fmt.Errorf("windows[%d].start: %w", i, err)
		}
		if p.eh, p.em, err = parseClock(w.End); err != nil {
			return time.Time{}, fmt.Errorf("windows[%d].end: %w", i, err)
		}
		p.days = map[time.Weekday]bool{}
		for _, d := range w.Days {
			p.days[weekdays[d]] = true
		}
	}
	var best time.Time
	for _, w := range ws {
		y, mo, d := now.In(w.loc).Date()
		// From the day before: a window of yesterday may still be open
		// (24:00 is the next day's midnight).
		for k := -1; k <= windowHorizon; k++ {
			if !w.days[time.Date(y, mo, d+k, 12, 0, 0, 0, w.loc).Weekday()] {
				continue
			}
			start := time.Date(y, mo, d+k, w.sh, w.sm, 0, 0, w.loc)
			end := time.Date(y, mo, d+k, w.eh, w.em, 0, 0, w.loc)
			if !end.After(start) {
				continue // a daylight-saving change skipped the window's times
			}
			if !now.Before(start) && now.Before(end) {
				return now, nil
			}
			if start.After(now) {
				at := start.Add(windowJitter(end.Sub(start), jitterSeed))
				if best.IsZero() || at.Before(best) {
					best = at
				}
				break
			}
		}
	}
	if best.IsZero() {
		return time.Time{}, fmt.Errorf("no rotation window opens within %d days", windowHorizon)
	}
	return best.UTC(), nil
}

// windowSeed is an ApiKey's jitter seed: from its UID, so it never changes.
func windowSeed(ak *v1alpha1.ApiKey) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(ak.UID))
	return h.Sum64()
}

// rotationWindows are the windows an ApiKey's rotations follow: its own,
// else its issuer's policy's.
func rotationWindows(ak *v1alpha1.ApiKey, policy *v1alpha1.ReevitIssuerPolicy) []v1alpha1.RotationWindow {
	if ak.Spec.Rotation != nil && len(ak.Spec.Rotation.Windows) > 0 {
		return ak.Spec.Rotation.Windows
	}
	if policy != nil {
		return policy.RotationWindows
	}
	return nil
}

// windowVerdict is what the RotationWindow condition says.
type windowVerdict struct {
	ok      bool
	reason  string
	message string
}

// windowedRotation moves a rotation due at due into the windows: to the
// next window's start (nextWindowStart) unless that is past activeSince +
// maxAge (maxAge 0: no limit), when age wins and the key rotates when due.
// A rotation whose window start has passed (missed while the manager was
// down) is moved from now, so it does not start outside a window either.
// A window that cannot be read (an unknown time zone) is ignored: a key
// still rotates. The verdict is nil when no windows apply.
func windowedRotation(due, now, activeSince time.Time, windows []v1alpha1.RotationWindow, maxAge time.Duration, seed uint64) (time.Time, *windowVerdict) {
	if due.IsZero() || len(windows) == 0 {
		return due, nil
	}
	from := due
	at, err := nextWindowStart(from, windows, seed)
	if err == nil && at.Before(now) {
		// Missed while the manager was down: the next window from now.
		from = now.Truncate(time.Second)
		at, err = nextWindowStart(from, windows, seed)
	}
	if err != nil {
		return due, &windowVerdict{reason: v1alpha1.ReasonInvalidTimeZone, message: fmt.Sprintf(
			"rotation windows ignored: %v; the key rotates when due, at %s. Fix the windows (spec.rotation.windows or the issuer's policy.rotationWindows)", err, stamp(due))}
	}
	if maxAge > 0 && at.After(activeSince.Add(maxAge)) {
		return due, &windowVerdict{reason: v1alpha1.ReasonNoWindowBeforeMaxKeyAge, message: fmt.Sprintf(
			"no rotation window opens between %s, when the rotation is due, and %s, when the key reaches the issuer's policy.maxKeyAge (%s): it rotates when due, outside the windows; rotate more often or widen the windows",
			stamp(due), stamp(activeSince.Add(maxAge)), maxAge)}
	}
	if at.Equal(from) {
		return at, &windowVerdict{ok: true, reason: v1alpha1.ReasonInWindow, message: "the next rotation, due " + stamp(due) + ", falls inside a rotation window"}
	}
	return at, &windowVerdict{ok: true, reason: v1alpha1.ReasonInWindow, message: fmt.Sprintf(
		"the next rotation, due %s outside the rotation windows, waits for the next window: it starts at %s", stamp(due), stamp(at))}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// applyWindows moves the rotation due at due into the ApiKey's windows and
// sets the RotationWindow condition (removed when no windows apply).
func applyWindows(ak *v1alpha1.ApiKey, policy *v1alpha1.ReevitIssuerPolicy, due, now time.Time) time.Time {
	var maxAge time.Duration
	if policy != nil && policy.MaxKeyAge != nil {
		maxAge = policy.MaxKeyAge.Duration
	}
	var since time.Time
	if ak.Status.ActiveSince != nil {
		since = ak.Status.ActiveSince.Time
	}
	at, v := windowedRotation(due, now, since, rotationWindows(ak, policy), maxAge, windowSeed(ak))
	if v == nil {
		meta.RemoveStatusCondition(&ak.Status.Conditions, v1alpha1.ConditionRotationWindow)
		return at
	}
	setCondition(&ak.Status.Conditions, ak.Generation, v1alpha1.ConditionRotationWindow, v.ok, v.reason, v.message)
	return at
}

// stepReschedule recomputes the next rotation after this pass made a key:
// the schedule step ran before it, for the key being replaced.
func (r *ApiKeyReconciler) stepReschedule(_ context.Context, p *apiKeyPass) (stepResult, error) {
	st := &p.ak.Status
	if !p.created || st.ActiveSince == nil {
		return next(0)
	}
	at, err := nextRotation(p.ak.Spec.Rotation, st.ActiveSince.Time)
	if err != nil {
		return next(0) // told by switchTo's event; the next pass's schedule step records it
	}
	st.NextRotationTime = optTime(applyWindows(p.ak, p.policy, at, p.now))
	return next(0)
}
