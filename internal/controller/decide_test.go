package controller

import (
	"math"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// Table tests of the pure decision functions, with fixed times. They need no
// API server; they run in the suite's process only because the package's
// TestMain starts one.

var decideT0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func mt(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

func TestRefreshAt(t *testing.T) {
	now := decideT0
	cases := []struct {
		name     string
		now      time.Time
		iat, exp time.Time
		spec     v1alpha1.Refresh
		jitter   float64
		want     time.Time
	}{
		{name: "default before is a third of the lifetime",
			now: now, iat: now, exp: now.Add(3 * time.Hour), want: now.Add(2 * time.Hour)},
		{name: "default before counts from iat, not from now",
			now: now.Add(30 * time.Minute), iat: now, exp: now.Add(3 * time.Hour), want: now.Add(2 * time.Hour)},
		{name: "explicit before",
			now: now, iat: now, exp: now.Add(time.Hour), spec: v1alpha1.Refresh{Before: dur(10 * time.Minute)}, want: now.Add(50 * time.Minute)},
		{name: "explicit zero before falls back to the default",
			now: now, iat: now, exp: now.Add(time.Hour), spec: v1alpha1.Refresh{Before: dur(0)}, want: now.Add(40 * time.Minute)},
		{name: "interval is ignored when the token has exp",
			now: now, iat: now, exp: now.Add(time.Hour), spec: v1alpha1.Refresh{Interval: dur(5 * time.Minute)}, want: now.Add(40 * time.Minute)},
		{name: "no iat: lifetime counted from now",
			now: now, exp: now.Add(90 * time.Minute), want: now.Add(60 * time.Minute)},
		{name: "iat after exp is ignored",
			now: now, iat: now.Add(5 * time.Hour), exp: now.Add(90 * time.Minute), want: now.Add(60 * time.Minute)},
		{name: "no exp: default interval 1h",
			now: now, iat: now, want: now.Add(time.Hour)},
		{name: "no exp: spec interval",
			now: now, iat: now, spec: v1alpha1.Refresh{Interval: dur(15 * time.Minute)}, want: now.Add(15 * time.Minute)},
		{name: "no exp: before is irrelevant",
			now: now, spec: v1alpha1.Refresh{Before: dur(10 * time.Minute), Interval: dur(2 * time.Hour)}, want: now.Add(2 * time.Hour)},
		{name: "refresh point already past: a tenth of the lifetime from now, never a spin",
			now: now.Add(2*time.Hour + 50*time.Minute), iat: now, exp: now.Add(3 * time.Hour), want: now.Add(2*time.Hour + 50*time.Minute + 18*time.Minute)},
		{name: "token already expired: a tenth of the lifetime from now",
			now: now.Add(4 * time.Hour), iat: now, exp: now.Add(3 * time.Hour), want: now.Add(4*time.Hour + 18*time.Minute)},
		{name: "before as long as the lifetime: a third of the lifetime applies",
			now: now, iat: now, exp: now.Add(time.Hour), spec: v1alpha1.Refresh{Before: dur(time.Hour)}, want: now.Add(40 * time.Minute)},
		{name: "tiny lifetime: at least minExchangeInterval from now",
			now: now, iat: now, exp: now.Add(5 * time.Second), want: now.Add(10 * time.Second)},
		{name: "one-second tokens: one exchange per 10 s, not per second",
			now: now, iat: now, exp: now.Add(time.Second), want: now.Add(minExchangeInterval)},
		{name: "jitter pulls earlier by its fraction of the spread (before/10, at most 1m)",
			now: now, iat: now, exp: now.Add(time.Hour), spec: v1alpha1.Refresh{Before: dur(10 * time.Minute)}, jitter: 0.5,
			want: now.Add(50*time.Minute - 30*time.Second)},
		{name: "jitter spread capped at a minute",
			now: now, iat: now, exp: now.Add(30 * time.Hour), jitter: 0.5, want: now.Add(20*time.Hour - 30*time.Second)},
		{name: "jitter spread for a short token is a tenth of before",
			now: now, iat: now, exp: now.Add(15 * time.Minute), jitter: 0.5, want: now.Add(10*time.Minute - 15*time.Second)},
		{name: "jitter never goes before the floor",
			now: now.Add(2 * time.Hour), iat: now, exp: now.Add(3 * time.Hour), jitter: 0.99, want: now.Add(2*time.Hour + 18*time.Minute)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(refreshAt(c.now, c.iat, c.exp, c.spec, c.jitter)).To(BeTemporally("==", c.want))
		})
	}

	t.Run("jitter bounds", func(t *testing.T) {
		g := NewWithT(t)
		for _, tc := range []struct {
			exp            time.Duration
			before, spread time.Duration
			spec           v1alpha1.Refresh
		}{
			{exp: 3 * time.Hour, before: time.Hour, spread: time.Minute},
			{exp: time.Hour, before: 10 * time.Minute, spread: time.Minute, spec: v1alpha1.Refresh{Before: dur(10 * time.Minute)}},
			{exp: 6 * time.Minute, before: 2 * time.Minute, spread: 12 * time.Second},
			{exp: time.Hour, before: 2 * time.Minute, spread: 12 * time.Second, spec: v1alpha1.Refresh{Before: dur(2 * time.Minute)}},
		} {
			exp := now.Add(tc.exp)
			latest := exp.Add(-tc.before)
			prev := latest
			for _, j := range []float64{0, 0.1, 0.5, 0.9, 0.999999} {
				got := refreshAt(now, now, exp, tc.spec, j)
				g.Expect(got).To(BeTemporally("<=", latest), "jitter %v with lifetime %v", j, tc.exp)
				g.Expect(got).To(BeTemporally(">", latest.Add(-tc.spread)), "jitter %v with lifetime %v", j, tc.exp)
				g.Expect(got).To(BeTemporally("<=", prev), "more jitter is never later")
				prev = got
			}
			g.Expect(refreshAt(now, now, exp, tc.spec, 0)).To(BeTemporally("==", latest))
		}
	})
}

// tokenCase is a RevioToken's state as the exchange decision sees it; a
// failure is recorded as fail records it (recordRetry at LastFailure).
type tokenCase struct {
	Now          time.Time
	SecretIntact bool
	Changed      bool
	NextRefresh  time.Time
	ExpiresAt    time.Time
	LastFailure  time.Time
	Attempts     int32
	Permanent    bool
	RetryAfter   time.Duration
}

func (c tokenCase) decide() (bool, time.Duration) {
	var r v1alpha1.RetryStatus
	if c.Attempts > 0 {
		r.FailedAttempts = c.Attempts - 1
		recordRetry(&r, &failure{Transient: !c.Permanent, RetryAfter: c.RetryAfter}, c.Permanent, c.LastFailure, c.ExpiresAt)
	}
	inputs := "v1"
	if c.Changed {
		inputs = "v2"
	}
	return exchangeDue(r, "v1", inputs, c.SecretIntact, c.NextRefresh, c.Now)
}

func TestExchangeDue(t *testing.T) {
	now := decideT0
	exp := now.Add(time.Hour)
	cases := []struct {
		name     string
		s        tokenCase
		due      bool
		wait     time.Duration
		waitDesc string
	}{
		{name: "intact Secret before the next refresh waits until it",
			s:   tokenCase{Now: now, SecretIntact: true, NextRefresh: now.Add(40 * time.Minute), ExpiresAt: exp},
			due: false, wait: 40 * time.Minute},
		{name: "next refresh reached",
			s:   tokenCase{Now: now, SecretIntact: true, NextRefresh: now, ExpiresAt: exp},
			due: true},
		{name: "next refresh passed (manager was down)",
			s:   tokenCase{Now: now, SecretIntact: true, NextRefresh: now.Add(-3 * time.Hour), ExpiresAt: exp},
			due: true},
		{name: "missing or edited Secret is due at once",
			s:   tokenCase{Now: now, SecretIntact: false, NextRefresh: now.Add(40 * time.Minute), ExpiresAt: exp},
			due: true},
		{name: "nothing scheduled yet (first exchange)",
			s:   tokenCase{Now: now, SecretIntact: true},
			due: true},
		{name: "change is due at once",
			s:   tokenCase{Now: now, SecretIntact: true, Changed: true, NextRefresh: now.Add(40 * time.Minute)},
			due: true},
		{name: "change bypasses transient backoff",
			s:   tokenCase{Now: now, SecretIntact: true, Changed: true, Attempts: 6, LastFailure: now.Add(-time.Second), NextRefresh: now.Add(40 * time.Minute)},
			due: true},
		{name: "change lifts a permanent failure",
			s:   tokenCase{Now: now, SecretIntact: true, Changed: true, Attempts: 1, Permanent: true, LastFailure: now.Add(-time.Second)},
			due: true},
		{name: "permanent failure waits for a change, with nothing scheduled",
			s:   tokenCase{Now: now, SecretIntact: true, Attempts: 1, Permanent: true, LastFailure: now.Add(-time.Hour), NextRefresh: now.Add(-time.Minute)},
			due: false, wait: 0},
		{name: "permanent failure with the Secret gone still waits for a change",
			s:   tokenCase{Now: now, SecretIntact: false, Attempts: 3, Permanent: true, LastFailure: now.Add(-time.Hour)},
			due: false, wait: 0},
		{name: "transient failure backs off (first retry after 5s)",
			s:   tokenCase{Now: now, SecretIntact: true, Attempts: 1, LastFailure: now.Add(-2 * time.Second), NextRefresh: now.Add(-time.Minute), ExpiresAt: exp},
			due: false, wait: 3 * time.Second},
		{name: "transient failure retried when the backoff has passed",
			s:   tokenCase{Now: now, SecretIntact: true, Attempts: 1, LastFailure: now.Add(-5 * time.Second), NextRefresh: now.Add(-time.Minute), ExpiresAt: exp},
			due: true},
		{name: "transient backoff grows with attempts",
			s:   tokenCase{Now: now, SecretIntact: true, Attempts: 4, LastFailure: now.Add(-10 * time.Second), ExpiresAt: exp},
			due: false, wait: 30 * time.Second},
		{name: "transient backoff ignores a missing Secret until the retry",
			s:   tokenCase{Now: now, SecretIntact: false, Attempts: 2, LastFailure: now.Add(-time.Second), ExpiresAt: exp},
			due: false, wait: 9 * time.Second},
		{name: "429 waits for retryAfter",
			s:   tokenCase{Now: now, SecretIntact: true, Attempts: 1, RetryAfter: 30 * time.Second, LastFailure: now.Add(-10 * time.Second), ExpiresAt: exp},
			due: false, wait: 20 * time.Second},
		{name: "backoff capped by the token's remaining life",
			s: tokenCase{Now: now, SecretIntact: true, Attempts: 10, LastFailure: now.Add(-10 * time.Second),
				ExpiresAt: now.Add(-10*time.Second + 90*time.Second)},
			due: false, wait: 20 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			due, wait := c.s.decide()
			g.Expect(due).To(Equal(c.due))
			g.Expect(wait).To(Equal(c.wait))
		})
	}
}

func TestRefreshRetryDelay(t *testing.T) {
	failedAt := decideT0
	cases := []struct {
		name       string
		attempts   int32
		retryAfter time.Duration
		expiresAt  time.Time
		want       time.Duration
	}{
		{name: "first retry, no expiry known", attempts: 1, want: 5 * time.Second},
		{name: "exponential, no expiry known", attempts: 4, want: 40 * time.Second},
		{name: "capped at 1m, no expiry known", attempts: 30, want: time.Minute},
		{name: "long-lived token does not cap", attempts: 30, expiresAt: failedAt.Add(24 * time.Hour), want: time.Minute},
		{name: "capped at a third of the remaining life", attempts: 30, expiresAt: failedAt.Add(90 * time.Second), want: 30 * time.Second},
		{name: "below the cap is unchanged", attempts: 2, expiresAt: failedAt.Add(3 * time.Minute), want: 10 * time.Second},
		{name: "never below a second", attempts: 1, expiresAt: failedAt.Add(2 * time.Second), want: time.Second},
		{name: "expired token: short retries", attempts: 3, expiresAt: failedAt.Add(-time.Minute), want: 10 * time.Second},
		{name: "expired token: first retry unchanged", attempts: 1, expiresAt: failedAt.Add(-time.Minute), want: 5 * time.Second},
		{name: "expired token: retryAfter still honoured", attempts: 3, retryAfter: 30 * time.Second, expiresAt: failedAt.Add(-time.Minute), want: 30 * time.Second},
		{name: "retryAfter honoured", attempts: 1, retryAfter: 42 * time.Second, want: 42 * time.Second},
		{name: "retryAfter replaces a longer backoff", attempts: 20, retryAfter: 7 * time.Second, want: 7 * time.Second},
		{name: "retryAfter honoured within the token's life", attempts: 1, retryAfter: 42 * time.Second, expiresAt: failedAt.Add(time.Hour), want: 42 * time.Second},
		{name: "retryAfter capped at a third of the remaining life", attempts: 1, retryAfter: 10 * time.Minute, expiresAt: failedAt.Add(6 * time.Minute), want: 2 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(retryDelay(c.attempts, c.retryAfter, failedAt, c.expiresAt)).To(Equal(c.want))
		})
	}

	t.Run("a retry always comes well before expiry", func(t *testing.T) {
		g := NewWithT(t)
		for _, life := range []time.Duration{2 * time.Second, 30 * time.Second, 5 * time.Minute, time.Hour} {
			for a := int32(1); a <= 40; a++ {
				d := retryDelay(a, 0, failedAt, failedAt.Add(life))
				g.Expect(d).To(BeNumerically(">", 0))
				if life >= 3*time.Second {
					g.Expect(d).To(BeNumerically("<=", life/3), "attempt %d, life %v", a, life)
				}
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	g := NewWithT(t)
	want := map[int32]time.Duration{
		-3: 5 * time.Second,
		0:  5 * time.Second,
		1:  5 * time.Second,
		2:  10 * time.Second,
		3:  20 * time.Second,
		4:  40 * time.Second,
		5:  time.Minute,
		6:  time.Minute,
		64: time.Minute,
		// Far past any float overflow.
		math.MaxInt32: time.Minute,
	}
	for attempts, d := range want {
		g.Expect(backoff(attempts)).To(Equal(d), "attempt %d", attempts)
	}
	prev := time.Duration(0)
	for a := int32(1); a < 100; a++ {
		d := backoff(a)
		g.Expect(d).To(BeNumerically(">=", prev), "backoff never shrinks")
		g.Expect(d).To(BeNumerically("<=", backoffCap))
		prev = d
	}
	g.Expect(backoffCap).To(BeNumerically("<", 1000*time.Second), "below the workqueue's default cap")
}

func TestDecideNextRotation(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("tzdata: %v", err)
	}
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	cases := []struct {
		name  string
		r     *v1alpha1.Rotation
		since time.Time
		want  time.Time
	}{
		{name: "no rotation", r: nil, since: decideT0},
		{name: "empty rotation", r: &v1alpha1.Rotation{}, since: decideT0},
		{name: "every counts from activeSince", r: &v1alpha1.Rotation{Every: dur(720 * time.Hour)}, since: decideT0, want: decideT0.Add(720 * time.Hour)},
		{name: "every 1m", r: &v1alpha1.Rotation{Every: dur(time.Minute), GracePeriod: dur(30 * time.Second)}, since: decideT0, want: decideT0.Add(time.Minute)},
		{name: "cron without time zone is UTC", r: &v1alpha1.Rotation{Schedule: "0 3 * * *"}, since: decideT0, want: utc(2026, 3, 3, 3, 0)},
		{name: "cron slot is strictly after activeSince", r: &v1alpha1.Rotation{Schedule: "0 10 * * *"}, since: decideT0, want: utc(2026, 3, 3, 10, 0)},
		{name: "cron weekday in Berlin (CET, UTC+1)", r: &v1alpha1.Rotation{Schedule: "0 3 * * 1", TimeZone: "Europe/Berlin"}, since: decideT0, want: utc(2026, 3, 9, 2, 0)},
		{name: "cron in Berlin the day before spring DST (CET)", r: &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Europe/Berlin"},
			since: utc(2026, 3, 27, 10, 0), want: utc(2026, 3, 28, 2, 0)},
		{name: "cron in Berlin on the spring DST day (CEST, UTC+2)", r: &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Europe/Berlin"},
			since: utc(2026, 3, 28, 2, 0), want: utc(2026, 3, 29, 1, 0)},
		{name: "cron in Berlin after spring DST", r: &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Europe/Berlin"},
			since: utc(2026, 3, 29, 1, 0), want: utc(2026, 3, 30, 1, 0)},
		{name: "cron in Berlin on the autumn DST day (back to CET)", r: &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Europe/Berlin"},
			since: utc(2026, 10, 24, 1, 0), want: utc(2026, 10, 25, 2, 0)},
		{name: "cron in New York across its DST change", r: &v1alpha1.Rotation{Schedule: "30 2 * * MON-FRI", TimeZone: "America/New_York"},
			since: utc(2026, 3, 6, 12, 0), want: utc(2026, 3, 9, 6, 30)},
		{name: "cron descriptor", r: &v1alpha1.Rotation{Schedule: "@weekly"}, since: decideT0, want: utc(2026, 3, 8, 0, 0)},
		{name: "grace period does not move the schedule", r: &v1alpha1.Rotation{Every: dur(time.Hour), GracePeriod: dur(time.Hour)}, since: decideT0, want: decideT0.Add(time.Hour)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := nextRotation(c.r, c.since)
			g.Expect(err).NotTo(HaveOccurred())
			if c.want.IsZero() {
				g.Expect(got.IsZero()).To(BeTrue(), "no rotation configured, got %v", got)
				return
			}
			g.Expect(got).To(BeTemporally("==", c.want))
			g.Expect(got.Location()).To(Equal(time.UTC), "status times are UTC")
		})
	}

	t.Run("Berlin slots read 03:00 local on both sides of the DST changes", func(t *testing.T) {
		g := NewWithT(t)
		r := &v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Europe/Berlin"}
		since := utc(2026, 3, 25, 12, 0)
		var gaps []time.Duration
		for range 8 {
			next, err := nextRotation(r, since)
			g.Expect(err).NotTo(HaveOccurred())
			local := next.In(berlin)
			g.Expect(local.Hour()).To(Equal(3))
			g.Expect(local.Minute()).To(Equal(0))
			gaps = append(gaps, next.Sub(since))
			since = next
		}
		// Mar 28 -> Mar 29 is the short (23h) day.
		g.Expect(gaps).To(ContainElement(23 * time.Hour))
	})

	t.Run("a missed slot rotates once, then the next counts from the new key", func(t *testing.T) {
		for _, r := range []*v1alpha1.Rotation{
			{Every: dur(24 * time.Hour)},
			{Schedule: "0 3 * * 1", TimeZone: "Europe/Berlin"},
		} {
			g := NewWithT(t)
			now := decideT0
			// The manager was down for five weeks: many slots were missed.
			activeSince := now.Add(-5 * 7 * 24 * time.Hour)
			next, err := nextRotation(r, activeSince)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(next).To(BeTemporally("<", now), "a missed slot gives a past time")

			a := decideApiKey()
			a.Spec.Rotation = r
			decideActive(a, activeSince)
			a.Status.NextRotationTime = mt(next)
			sec := decideSecret(a)
			g.Expect(newKeyReason(a, sec, keySpecHash(a, decideIssuer()), now)).To(Equal(createRotation), "one rotation")

			// The rotation at now makes the new key active since now.
			next, err = nextRotation(r, now)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(next).To(BeTemporally(">", now), "the next slot is in the future, not the next missed one")
			decideActive(a, now)
			a.Status.NextRotationTime = mt(next)
			g.Expect(newKeyReason(a, sec, keySpecHash(a, decideIssuer()), now)).To(BeEmpty(), "no second rotation for the other missed slots")
			g.Expect(newKeyReason(a, sec, keySpecHash(a, decideIssuer()), next.Add(-time.Second))).To(BeEmpty())
			g.Expect(newKeyReason(a, sec, keySpecHash(a, decideIssuer()), next)).To(Equal(createRotation))
		}
	})

	t.Run("schedules the schema accepts parse", func(t *testing.T) {
		g := NewWithT(t)
		for _, s := range []string{
			"0 3 * * 1", "30 2 * * MON-FRI", "*/15 0,12 1-7 JAN,jul ?", "0 03 * * *", "0-59/5 */2 1,15 */3 SUN",
			"5/10 * * * *", "0 0 1 * ?", "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually",
		} {
			next, err := nextRotation(&v1alpha1.Rotation{Schedule: s, TimeZone: "Europe/Berlin"}, decideT0)
			g.Expect(err).NotTo(HaveOccurred(), s)
			g.Expect(next).To(BeTemporally(">", decideT0), s)
		}
	})

	t.Run("errors name the field", func(t *testing.T) {
		g := NewWithT(t)
		_, err := nextRotation(&v1alpha1.Rotation{Schedule: "0 3 * * *", TimeZone: "Mars/Olympus_Mons"}, decideT0)
		g.Expect(err).To(MatchError(ContainSubstring("rotation.timeZone")))
		_, err = nextRotation(&v1alpha1.Rotation{Schedule: "61 * * * *"}, decideT0)
		g.Expect(err).To(MatchError(ContainSubstring("rotation.schedule")))
		_, err = nextRotation(&v1alpha1.Rotation{Schedule: "0 3 * * 7"}, decideT0)
		g.Expect(err).To(HaveOccurred(), "weekday 7 is not valid for the cron parser (the schema rejects it too)")
	})
}

// decideApiKey is a valid ApiKey as the API server returns it (defaults set).
func decideApiKey() *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "reevit", UID: types.UID("0b6a3f1e-8a55-4c1e-9d3a-2f4b5c6d7e8f")},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:      v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindReevitIssuer, Name: "reevit"},
			Scopes:         []v1alpha1.Scope{"payments:read", "payments:write"},
			Environment:    "live",
			DeletionPolicy: v1alpha1.DeletionPolicyRevoke,
		},
	}
}

// decideIssuer is the issuer record of decideApiKey's keys.
func decideIssuer() *v1alpha1.IssuerRecord {
	return &v1alpha1.IssuerRecord{Kind: v1alpha1.KindReevitIssuer, Name: "reevit", UID: "issuer-uid", OrgID: "org_acme", URL: "https://api.reevit.com"}
}

// decideActive records key_1 as the active key since t, as switchTo does.
func decideActive(a *v1alpha1.ApiKey, t time.Time) {
	st := &a.Status
	st.KeyID, st.KeyPrefix = "key_1", "pfk_live_a1b2"
	st.ActiveSince = mt(t)
	st.KeySpecHash = keySpecHash(a, decideIssuer())
	st.SecretName = outputSecretName(a.Name, a.Spec.Secret)
	st.LastRotateRequest = a.Annotations[v1alpha1.AnnotationRotate]
	st.LastCompromisedRequest = a.Annotations[v1alpha1.AnnotationCompromised]
}

// decideSecret is the intact output Secret for the active key.
func decideSecret(a *v1alpha1.ApiKey) *corev1.Secret {
	data := map[string][]byte{
		"apiKey": []byte("pfk_live_a1b2c3d4e5f6"), "keyId": []byte(a.Status.KeyID),
		"orgId": []byte(decideIssuer().OrgID), "url": []byte(decideIssuer().URL),
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: outputSecretName(a.Name, a.Spec.Secret),
			Annotations: map[string]string{secretsync.AnnotationDataHash: secretsync.Hash(data)}},
		Data: data,
	}
}

func TestDecideNewKeyReason(t *testing.T) {
	now := decideT0
	// Each case sets its trigger and every lower-priority trigger, so the
	// expected reason proves the priority order.
	type setup func(a *v1alpha1.ApiKey, s **corev1.Secret)
	rotationDue := func(a *v1alpha1.ApiKey, _ **corev1.Secret) { a.Status.NextRotationTime = mt(now.Add(-time.Minute)) }
	manual := func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
		a.Annotations = map[string]string{v1alpha1.AnnotationRotate: "2026-03-02"}
	}
	secretGone := func(_ *v1alpha1.ApiKey, s **corev1.Secret) { *s = nil }
	specChanged := func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
		a.Spec.Scopes = append(a.Spec.Scopes, "invoices:read")
	}
	compromised := func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Annotations[v1alpha1.AnnotationCompromised] = "leaked-in-ci"
	}
	noKey := func(a *v1alpha1.ApiKey, _ **corev1.Secret) { a.Status.KeyID = "" }

	cases := []struct {
		name  string
		steps []setup
		want  string
	}{
		{name: "nothing to do", want: ""},
		{name: "no key yet", steps: []setup{rotationDue, manual, secretGone, specChanged, compromised, noKey}, want: createInitial},
		{name: "compromised", steps: []setup{rotationDue, manual, secretGone, specChanged, compromised}, want: createCompromised},
		{name: "spec change", steps: []setup{rotationDue, manual, secretGone, specChanged}, want: createSpecChange},
		{name: "secret gone", steps: []setup{rotationDue, manual, secretGone}, want: createSecretLost},
		{name: "secret data edited by hand", steps: []setup{rotationDue, manual, func(_ *v1alpha1.ApiKey, s **corev1.Secret) {
			(*s).Data["apiKey"] = []byte("something else")
		}}, want: createSecretLost},
		{name: "secret without Keywarden's hash", steps: []setup{func(_ *v1alpha1.ApiKey, s **corev1.Secret) {
			(*s).Annotations = nil
		}}, want: createSecretLost},
		{name: "secret holds another key id (hash recomputed)", steps: []setup{func(_ *v1alpha1.ApiKey, s **corev1.Secret) {
			(*s).Data["keyId"] = []byte("key_0")
			(*s).Annotations[secretsync.AnnotationDataHash] = secretsync.Hash((*s).Data)
		}}, want: createSecretLost},
		{name: "output secret renamed in the spec", steps: []setup{rotationDue, func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Spec.Secret.Name = "payments-reevit-key"
		}}, want: createSecretLost},
		{name: "manual rotation", steps: []setup{rotationDue, manual}, want: createManual},
		{name: "rotation due", steps: []setup{rotationDue}, want: createRotation},
		{name: "rotation due exactly now", steps: []setup{func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Status.NextRotationTime = mt(now)
		}}, want: createRotation},
		{name: "rotation not yet due", steps: []setup{func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Status.NextRotationTime = mt(now.Add(time.Second))
		}}, want: ""},
		{name: "rotate annotation already acted on", steps: []setup{manual, func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Status.LastRotateRequest = "2026-03-02"
		}}, want: ""},
		{name: "compromised annotation already acted on", steps: []setup{compromised, func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Status.LastCompromisedRequest = "leaked-in-ci"
		}}, want: ""},
		{name: "changes that need no key", steps: []setup{func(a *v1alpha1.ApiKey, _ **corev1.Secret) {
			a.Spec.Secret.Labels = map[string]string{"team": "payments"}
			a.Spec.Rotation = &v1alpha1.Rotation{Schedule: "0 3 * * *", GracePeriod: dur(time.Hour)}
			a.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain
			a.Labels = map[string]string{"x": "y"}
		}}, want: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			a := decideApiKey()
			decideActive(a, now.Add(-time.Hour))
			a.Status.NextRotationTime = mt(now.Add(time.Hour))
			sec := decideSecret(a)
			g.Expect(secretsync.Intact(sec)).To(BeTrue())
			for _, s := range c.steps {
				s(a, &sec)
			}
			g.Expect(newKeyReason(a, sec, keySpecHash(a, decideIssuer()), now)).To(Equal(c.want))
		})
	}
}

func TestDecideKeySpecHash(t *testing.T) {
	base := decideApiKey()
	h0 := keySpecHash(base, decideIssuer())
	g := NewWithT(t)
	g.Expect(h0).To(MatchRegexp(`^[0-9a-f]{16}$`))
	g.Expect(keySpecHash(decideApiKey(), decideIssuer())).To(Equal(h0), "deterministic")

	changes := map[string]func(a *v1alpha1.ApiKey){
		"scope added":                          func(a *v1alpha1.ApiKey) { a.Spec.Scopes = append(a.Spec.Scopes, "invoices:read") },
		"scope removed":                        func(a *v1alpha1.ApiKey) { a.Spec.Scopes = a.Spec.Scopes[:1] },
		"scope swapped":                        func(a *v1alpha1.ApiKey) { a.Spec.Scopes[1] = "fraud:read" },
		"environment":                          func(a *v1alpha1.ApiKey) { a.Spec.Environment = "test" },
		"displayName":                          func(a *v1alpha1.ApiKey) { a.Spec.DisplayName = "payments (prod)" },
		"default displayName follows the name": func(a *v1alpha1.ApiKey) { a.Name = "reevit-2" },
	}
	for name, change := range changes {
		a := decideApiKey()
		change(a)
		g.Expect(keySpecHash(a, decideIssuer())).NotTo(Equal(h0), name)
	}

	same := map[string]func(a *v1alpha1.ApiKey){
		"scope order": func(a *v1alpha1.ApiKey) {
			a.Spec.Scopes = []v1alpha1.Scope{"payments:write", "payments:read"}
		},
		"object labels and annotations": func(a *v1alpha1.ApiKey) {
			a.Labels = map[string]string{"a": "b"}
			a.Annotations = map[string]string{v1alpha1.AnnotationRotate: "now"}
		},
		"secret labels, annotations and name": func(a *v1alpha1.ApiKey) {
			a.Spec.Secret = v1alpha1.SecretTemplate{Name: "other", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}}
		},
		"grace period": func(a *v1alpha1.ApiKey) {
			a.Spec.Rotation = &v1alpha1.Rotation{Every: dur(time.Hour), GracePeriod: dur(time.Minute)}
		},
		"schedule": func(a *v1alpha1.ApiKey) {
			a.Spec.Rotation = &v1alpha1.Rotation{Schedule: "0 3 * * 1", TimeZone: "Europe/Berlin"}
		},
		"rolloutRestart": func(a *v1alpha1.ApiKey) {
			a.Spec.RolloutRestart = []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "x"}}
		},
		"deletionPolicy and historyLimit": func(a *v1alpha1.ApiKey) {
			a.Spec.DeletionPolicy = v1alpha1.DeletionPolicyRetain
			a.Spec.HistoryLimit = ptr.To[int32](3)
		},
		"status": func(a *v1alpha1.ApiKey) { decideActive(a, decideT0); a.Status.Rotations = 7 },
	}
	for name, change := range same {
		a := decideApiKey()
		change(a)
		g.Expect(keySpecHash(a, decideIssuer())).To(Equal(h0), name)
	}

	// An explicit displayName equal to the default is the same key name.
	a := decideApiKey()
	a.Spec.DisplayName = "payments/reevit"
	g.Expect(keySpecHash(a, decideIssuer())).To(Equal(h0))
	// ...and with an explicit displayName the object name no longer matters.
	b := decideApiKey()
	b.Spec.DisplayName = "payments/reevit"
	b.Name = "renamed"
	g.Expect(keySpecHash(b, decideIssuer())).To(Equal(h0))
}

func TestDecideKeyNameMarker(t *testing.T) {
	g := NewWithT(t)
	a := decideApiKey()
	uid := string(a.UID)

	name := keyName(a, 0)
	g.Expect(name).To(Equal("payments/reevit [kw:" + uid + ":0]"))
	for _, gen := range []int64{0, 1, 7, 1234567890123} {
		for _, dn := range []string{"", "payments service (production)", "odd [kw:name] with brackets", "trailing space "} {
			a.Spec.DisplayName = dn
			n := keyName(a, gen)
			g.Expect(n).To(HavePrefix(displayName(a)))
			gotUID, gotGen, ok := reevit.ParseMarker(n)
			g.Expect(ok).To(BeTrue(), n)
			g.Expect(gotUID).To(Equal(uid), n)
			g.Expect(gotGen).To(Equal(gen), n)
		}
	}

	upper := "payments [kw:" + strings.ToUpper(uid) + ":3]"
	gotUID, gotGen, ok := reevit.ParseMarker(upper)
	g.Expect(ok).To(BeTrue())
	g.Expect(gotUID).To(Equal(strings.ToUpper(uid)))
	g.Expect(gotGen).To(BeEquivalentTo(3))

	for _, bad := range []string{
		"",
		"payments/reevit",
		"payments/reevit [kw:" + uid + ":3] copy",               // marker not at the end
		"payments/reevit [kw:" + uid + "]",                      // no generation
		"payments/reevit [kw:" + uid + ":-1]",                   // negative
		"payments/reevit [kw:not-a-uid:3]",                      // not a UID
		"payments/reevit [kw:" + uid[:35] + ":3]",               // short UID
		"payments/reevit [kw:" + uid + ":99999999999999999999]", // overflows int64
	} {
		_, _, ok := reevit.ParseMarker(bad)
		g.Expect(ok).To(BeFalse(), bad)
	}

	// Another object's marker does not parse as this one's.
	other := decideApiKey()
	other.UID = types.UID("11111111-2222-3333-4444-555555555555")
	gotUID, _, ok = reevit.ParseMarker(keyName(other, 1))
	g.Expect(ok).To(BeTrue())
	g.Expect(gotUID).NotTo(Equal(uid))
}

func TestDecideGracePeriod(t *testing.T) {
	cases := []struct {
		name string
		r    *v1alpha1.Rotation
		want time.Duration
	}{
		{name: "no rotation", r: nil, want: 10 * time.Minute},
		{name: "empty rotation", r: &v1alpha1.Rotation{}, want: 10 * time.Minute},
		{name: "long every", r: &v1alpha1.Rotation{Every: dur(720 * time.Hour)}, want: 10 * time.Minute},
		{name: "every equal to the default", r: &v1alpha1.Rotation{Every: dur(10 * time.Minute)}, want: 10 * time.Minute},
		{name: "capped at a shorter every", r: &v1alpha1.Rotation{Every: dur(5 * time.Minute)}, want: 5 * time.Minute},
		{name: "capped at every 1m", r: &v1alpha1.Rotation{Every: dur(time.Minute)}, want: time.Minute},
		{name: "schedule", r: &v1alpha1.Rotation{Schedule: "*/5 * * * *"}, want: 10 * time.Minute},
		{name: "explicit", r: &v1alpha1.Rotation{Every: dur(24 * time.Hour), GracePeriod: dur(30 * time.Minute)}, want: 30 * time.Minute},
		{name: "explicit with schedule", r: &v1alpha1.Rotation{Schedule: "0 3 * * *", GracePeriod: dur(2 * time.Hour)}, want: 2 * time.Hour},
		{name: "explicit below every", r: &v1alpha1.Rotation{Every: dur(5 * time.Minute), GracePeriod: dur(time.Minute)}, want: time.Minute},
		{name: "explicit zero revokes at once", r: &v1alpha1.Rotation{GracePeriod: dur(0)}, want: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			NewWithT(t).Expect(gracePeriod(c.r)).To(Equal(c.want))
		})
	}
}

func TestDecideDueRevocations(t *testing.T) {
	now := decideT0
	p := func(id string, after time.Duration) v1alpha1.PendingRevocation {
		return v1alpha1.PendingRevocation{KeyID: id, RevokeAfter: metav1.NewTime(now.Add(after))}
	}
	ids := func(ps []v1alpha1.PendingRevocation) []string {
		out := []string{}
		for _, x := range ps {
			out = append(out, x.KeyID)
		}
		return out
	}
	cases := []struct {
		name    string
		pending []v1alpha1.PendingRevocation
		due     []string
		next    time.Time
	}{
		{name: "none", pending: nil, due: []string{}},
		{name: "all due, in order", pending: []v1alpha1.PendingRevocation{p("a", -time.Hour), p("b", -time.Second)}, due: []string{"a", "b"}},
		{name: "due exactly at revokeAfter", pending: []v1alpha1.PendingRevocation{p("a", 0)}, due: []string{"a"}},
		{name: "none due: earliest next", pending: []v1alpha1.PendingRevocation{p("a", 5*time.Minute), p("b", 2*time.Minute), p("c", 9*time.Minute)},
			due: []string{}, next: now.Add(2 * time.Minute)},
		{name: "mixed", pending: []v1alpha1.PendingRevocation{p("a", 5*time.Minute), p("b", -time.Minute), p("c", time.Second), p("d", 0)},
			due: []string{"b", "d"}, next: now.Add(time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			due, next := dueRevocations(c.pending, now)
			g.Expect(ids(due)).To(Equal(c.due))
			if c.next.IsZero() {
				g.Expect(next.IsZero()).To(BeTrue(), "nothing left to wait for, got %v", next)
			} else {
				g.Expect(next).To(BeTemporally("==", c.next))
			}
		})
	}
}

func TestDecideIdempotencyKeys(t *testing.T) {
	g := NewWithT(t)
	a := decideApiKey()
	h := keySpecHash(a, decideIssuer())
	k := createIdempotencyKey(a, 3, h)
	g.Expect(k).To(Equal(createIdempotencyKey(decideApiKey(), 3, keySpecHash(decideApiKey(), decideIssuer()))), "same object, generation and spec: same key")
	g.Expect(k).To(HavePrefix("keywarden-create-"))
	g.Expect(k).To(ContainSubstring(string(a.UID)))

	g.Expect(createIdempotencyKey(a, 4, h)).NotTo(Equal(k), "generation")
	other := decideApiKey()
	other.UID = types.UID("11111111-2222-3333-4444-555555555555")
	g.Expect(createIdempotencyKey(other, 3, keySpecHash(other, decideIssuer()))).NotTo(Equal(k), "object UID")
	changed := decideApiKey()
	changed.Spec.Environment = "test"
	g.Expect(createIdempotencyKey(changed, 3, keySpecHash(changed, decideIssuer()))).NotTo(Equal(k), "key spec")
	// Fields that do not need a new key keep the replay key stable.
	stable := decideApiKey()
	stable.Spec.Rotation = &v1alpha1.Rotation{Every: dur(time.Hour)}
	stable.Annotations = map[string]string{v1alpha1.AnnotationRotate: "x"}
	g.Expect(createIdempotencyKey(stable, 3, keySpecHash(stable, decideIssuer()))).To(Equal(k))

	g.Expect(revokeIdempotencyKey("key_1")).To(Equal(revokeIdempotencyKey("key_1")))
	g.Expect(revokeIdempotencyKey("key_1")).NotTo(Equal(revokeIdempotencyKey("key_2")))
	g.Expect(revokeIdempotencyKey("key_1")).To(HavePrefix("keywarden-revoke-"))
}

func TestDecideKeyPrefixAndEarliest(t *testing.T) {
	g := NewWithT(t)
	g.Expect(keyPrefix("pfk_live_a1b2c3d4e5f6g7h8")).To(Equal("pfk_live_a1b2"))
	g.Expect(keyPrefix("pfk_live_a1b2c3d4e5f6g7h8")).To(HaveLen(13))
	// Hostile answers: nothing of an odd value reaches status.
	for _, k := range []string{"short", "pfk_t", "pfk_live_", "pfk_live_a1b2c3d4e5f6g7h", "pfk_prod_a1b2c3d4e5f6g7h8", "pfk_live_a1b2c3d4e5f6g7h8\n", "pfk_live_a1b2c3d4 e5f6g7h8i9"} {
		g.Expect(keyPrefix(k)).To(BeEmpty(), k)
		g.Expect(wellFormedKey(k)).To(BeFalse(), k)
	}
	g.Expect(wellFormedKey("pfk_test_a1b2c3d4e5f6g7h8")).To(BeTrue())

	g.Expect(earliest()).To(BeZero())
	g.Expect(earliest(0, 0)).To(BeZero())
	g.Expect(earliest(0, 5*time.Second, 3*time.Second, -time.Second)).To(Equal(3 * time.Second))
	g.Expect(until(decideT0, decideT0.Add(time.Hour))).To(Equal(time.Hour))
	g.Expect(until(decideT0, decideT0.Add(-time.Hour))).To(Equal(time.Second), "never a zero or negative requeue")
}
