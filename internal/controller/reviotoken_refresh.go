package controller

import (
	"time"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// refreshAt is when a token issued at iat and expiring at exp is refreshed:
// exp - before (default: a third of its lifetime), pulled earlier by up to 10%
// of before (at most a minute) with jitter in [0,1) so tokens issued together
// spread out. A token without exp is refreshed after interval.
// minExchangeInterval is the shortest time between two scheduled exchanges
// for one RevioToken, whatever the token's lifetime.
const minExchangeInterval = 10 * time.Second

func refreshAt(now, iat, exp time.Time, spec v1alpha1.Refresh, jitter float64) time.Time {
	if exp.IsZero() {
		interval := time.Hour
		if spec.Interval != nil && spec.Interval.Duration > 0 {
			interval = spec.Interval.Duration
		}
		return now.Add(interval)
	}
	if iat.IsZero() || iat.After(exp) {
		iat = now
	}
	lifetime := exp.Sub(iat)
	before := lifetime / 3
	if spec.Before != nil && spec.Before.Duration > 0 && spec.Before.Duration < lifetime {
		// A refresh.before as long as the token's life would refresh at
		// once, again and again: a third of the lifetime applies instead.
		before = spec.Before.Duration
	}
	spread := min(before/10, time.Minute)
	t := exp.Add(-before).Add(-time.Duration(jitter * float64(spread)))
	// Never sooner than a tenth of the lifetime (at least
	// minExchangeInterval) from now, so a token that arrives already near
	// its refresh point (clock skew) or lives a second cannot make the
	// refreshes spin: a server handing out one-second tokens gets one
	// exchange per object every 10 s, not every second.
	if floor := now.Add(max(lifetime/10, minExchangeInterval)); t.Before(floor) {
		t = floor
	}
	return t
}

// exchangeDue decides whether a RevioToken exchanges now; when not, wait is
// the delay until the next look (0: nothing is scheduled, an event brings it
// back). The last failure's hold comes first (held); a changed input, or a
// failure whose hold has ended, is due at once; otherwise the schedule: at
// next, or at once when the Secret does not hold the token (missing,
// edited, or another output name).
func exchangeDue(r v1alpha1.RetryStatus, waitedOn, inputs string, secretIntact bool, next, now time.Time) (due bool, wait time.Duration) {
	if wait, isHeld := held(r, waitedOn, inputs, now); isHeld {
		return false, wait
	}
	if waitedOn != inputs || r.FailedAttempts > 0 || !secretIntact || next.IsZero() || !now.Before(next) {
		return true, 0
	}
	return false, next.Sub(now)
}
