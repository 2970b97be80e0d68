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

// refreshState is what the refresh decision looks at.
type refreshState struct {
	Now time.Time
	// SecretIntact: the output Secret exists, is ours and holds what we wrote.
	SecretIntact bool
	// Changed: the spec, the API-key Secret or the refresh annotation changed
	// since the last attempt. Changes bypass any backoff.
	Changed bool
	// NextRefresh is the scheduled refresh; zero when none.
	NextRefresh time.Time
	// ExpiresAt of the token in the Secret; zero when unknown.
	ExpiresAt time.Time
	// LastFailure and Attempts describe consecutive failures.
	LastFailure time.Time
	Attempts    int32
	// Permanent: the last failure needs a person (InvalidAPIKey, ...).
	Permanent bool
	// RetryAfter asked by the API with the last failure (429).
	RetryAfter time.Duration
}

// refreshDue decides whether to exchange now; when not, wait is the delay
// until the next look (0 means nothing is scheduled: wait for an event).
func refreshDue(s refreshState) (due bool, wait time.Duration) {
	if s.Changed {
		return true, 0
	}
	if s.Attempts > 0 {
		if s.Permanent {
			return false, 0
		}
		retry := s.LastFailure.Add(retryDelay(s.Attempts, s.RetryAfter, s.LastFailure, s.ExpiresAt))
		if s.Now.Before(retry) {
			return false, retry.Sub(s.Now)
		}
		return true, 0
	}
	if !s.SecretIntact || s.NextRefresh.IsZero() || !s.Now.Before(s.NextRefresh) {
		return true, 0
	}
	return false, s.NextRefresh.Sub(s.Now)
}

// expiredRetryCap bounds retries while the token in the Secret has expired.
const expiredRetryCap = 10 * time.Second

// retryDelay is the wait after a transient failure: retryAfter when the API
// asked for one, else exponential backoff, and in both cases no later than a
// third of the time the current token has left, so a retry always comes well
// before it expires.
func retryDelay(attempts int32, retryAfter time.Duration, failedAt, expiresAt time.Time) time.Duration {
	d := backoff(attempts)
	if retryAfter > 0 {
		d = retryAfter
	}
	if !expiresAt.IsZero() {
		left := expiresAt.Sub(failedAt)
		switch {
		case left > 0 && d > left/3:
			d = max(left/3, time.Second)
		case left <= 0 && retryAfter == 0:
			// The Secret holds an expired token: every minute without a
			// new one is an outage for its workloads.
			d = min(d, expiredRetryCap)
		}
	}
	return d
}
