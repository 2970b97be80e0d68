package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("load Europe/Berlin: %v", err)
	}
	return loc
}

func weekdaysWindow(start, end, zone string) v1alpha1.RotationWindow {
	return v1alpha1.RotationWindow{Days: []v1alpha1.Weekday{"Mon", "Tue", "Wed", "Thu", "Fri"}, Start: start, End: end, TimeZone: zone}
}

// TestNextWindowStart: a time inside a window is kept; otherwise the next
// opening, read on the window zone's wall clock (daylight-saving changes in
// Europe/Berlin on the last Sundays of March and October 2026), plus a
// jitter within the window's first half.
func TestNextWindowStart(t *testing.T) {
	b := berlin(t)
	office := []v1alpha1.RotationWindow{weekdaysWindow("09:00", "17:00", "Europe/Berlin")}
	sunNight := []v1alpha1.RotationWindow{{Days: []v1alpha1.Weekday{"Sun"}, Start: "02:00", End: "03:00", TimeZone: "Europe/Berlin"}}
	late := []v1alpha1.RotationWindow{{Days: []v1alpha1.Weekday{"Mon"}, Start: "22:00", End: "24:00"}}
	cases := []struct {
		name    string
		now     time.Time
		windows []v1alpha1.RotationWindow
		seed    uint64
		want    time.Time
		err     string
	}{
		{name: "no windows: now", now: decideT0, want: decideT0},
		{name: "inside a window: now", now: time.Date(2026, 3, 10, 10, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 10, 10, 0, 0, 0, b)},
		{name: "at the opening: now", now: time.Date(2026, 3, 10, 9, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 10, 9, 0, 0, 0, b)},
		{name: "at the closing: the next day's opening", now: time.Date(2026, 3, 10, 17, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 11, 9, 0, 0, 0, b)},
		{name: "evening: the next morning", now: time.Date(2026, 3, 10, 20, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 11, 9, 0, 0, 0, b)},
		{name: "Friday evening: Monday", now: time.Date(2026, 3, 13, 18, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 16, 9, 0, 0, 0, b)},
		{name: "weekend across the spring change: 09:00 CEST is 07:00 UTC", now: time.Date(2026, 3, 28, 12, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC)},
		{name: "weekend across the autumn change: 09:00 CET is 08:00 UTC", now: time.Date(2026, 10, 24, 12, 0, 0, 0, b), windows: office,
			want: time.Date(2026, 10, 26, 8, 0, 0, 0, time.UTC)},
		{name: "a window the spring change skips does not happen that day", now: time.Date(2026, 3, 28, 12, 0, 0, 0, b), windows: sunNight,
			want: time.Date(2026, 4, 5, 0, 0, 0, 0, time.UTC)}, // 02:00 CEST a week later
		{name: "before the repeated hour: its second occurrence (02:00 CET)", now: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), windows: sunNight,
			want: time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC)},
		{name: "inside the repeated hour's second occurrence: now", now: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC), windows: sunNight,
			want: time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC)},
		{name: "until 24:00: inside at 23:59", now: time.Date(2026, 3, 2, 23, 59, 0, 0, time.UTC), windows: late,
			want: time.Date(2026, 3, 2, 23, 59, 0, 0, time.UTC)},
		{name: "until 24:00: midnight is outside", now: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC), windows: late,
			want: time.Date(2026, 3, 9, 22, 0, 0, 0, time.UTC)},
		{name: "several zones: the earliest opening", now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), windows: []v1alpha1.RotationWindow{
			weekdaysWindow("09:00", "10:00", "America/New_York"), weekdaysWindow("09:00", "10:00", "Europe/Berlin")},
			want: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)},
		{name: "jitter within the first half: 12345 s into an 8 h window", now: time.Date(2026, 3, 10, 20, 0, 0, 0, b), windows: office, seed: 12345,
			want: time.Date(2026, 3, 11, 9, 0, 0, 0, b).Add(12345 * time.Second)},
		{name: "jitter wraps at half the window", now: time.Date(2026, 3, 10, 20, 0, 0, 0, b), windows: office, seed: 4*3600 + 7,
			want: time.Date(2026, 3, 11, 9, 0, 7, 0, b)},
		{name: "no jitter inside a window", now: time.Date(2026, 3, 10, 10, 0, 0, 0, b), windows: office, seed: 12345,
			want: time.Date(2026, 3, 10, 10, 0, 0, 0, b)},
		{name: "unknown zone", now: decideT0, windows: []v1alpha1.RotationWindow{weekdaysWindow("09:00", "17:00", "Mars/Olympus_Mons")},
			err: `windows[0]: rotation window time zone "Mars/Olympus_Mons" is not a time zone this manager knows`},
		{name: "Local is not a zone", now: decideT0, windows: []v1alpha1.RotationWindow{office[0], weekdaysWindow("09:00", "17:00", "Local")},
			err: `windows[1]: rotation window time zone "Local"`},
		{name: "malformed start", now: decideT0, windows: []v1alpha1.RotationWindow{weekdaysWindow("9:00", "17:00", "")},
			err: `windows[0].start`},
		{name: "24:30 end", now: decideT0, windows: []v1alpha1.RotationWindow{weekdaysWindow("09:00", "24:30", "")},
			err: `windows[0].end`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := nextWindowStart(c.now, c.windows, c.seed)
			if c.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(c.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(BeTemporally("==", c.want), "got %s", got.In(b))
		})
	}
}

// The jitter always lands in the window's first half, whatever the seed.
func TestWindowJitterBounded(t *testing.T) {
	b := berlin(t)
	office := []v1alpha1.RotationWindow{weekdaysWindow("09:00", "17:00", "Europe/Berlin")}
	open := time.Date(2026, 3, 11, 9, 0, 0, 0, b)
	for seed := uint64(0); seed < 1<<40; seed = seed*7 + 1 {
		got, err := nextWindowStart(time.Date(2026, 3, 10, 20, 0, 0, 0, b), office, seed)
		if err != nil || got.Before(open) || !got.Before(open.Add(4*time.Hour)) {
			t.Fatalf("seed %d: %s, %v; want within [%s, +4h)", seed, got, err, open)
		}
	}
}

// TestWindowedRotation: windows move a due rotation, age wins over them,
// a window that cannot be read is ignored and told, and a rotation missed
// while the manager was down waits for a window from now.
func TestWindowedRotation(t *testing.T) {
	b := berlin(t)
	office := []v1alpha1.RotationWindow{weekdaysWindow("09:00", "17:00", "Europe/Berlin")}
	since := time.Date(2026, 3, 6, 20, 0, 0, 0, b) // a Friday evening
	due := since.Add(24 * time.Hour)               // Saturday evening
	monday := time.Date(2026, 3, 9, 9, 0, 0, 0, b)
	cases := []struct {
		name    string
		due     time.Time
		now     time.Time
		windows []v1alpha1.RotationWindow
		maxAge  time.Duration
		want    time.Time
		reason  string
		ok      bool
	}{
		{name: "no windows", due: due, now: since, want: due},
		{name: "waits for Monday", due: due, now: since, windows: office, want: monday, reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "within maxKeyAge", due: due, now: since, windows: office, maxAge: 72 * time.Hour, want: monday, reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "past maxKeyAge: rotates when due", due: due, now: since, windows: office, maxAge: 48 * time.Hour, want: due,
			reason: v1alpha1.ReasonNoWindowBeforeMaxKeyAge},
		{name: "due inside a window", due: monday.Add(time.Hour), now: since, windows: office, want: monday.Add(time.Hour), reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "waiting past the due time keeps the window start", due: due, now: due.Add(time.Hour), windows: office, want: monday, reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "missed while down, now outside: the next window from now", due: due, now: monday.Add(10 * time.Hour), windows: office,
			want: monday.Add(24 * time.Hour), reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "missed while down, now inside: now", due: due, now: monday.Add(25 * time.Hour), windows: office,
			want: monday.Add(25 * time.Hour), reason: v1alpha1.ReasonInWindow, ok: true},
		{name: "unknown zone: rotates when due", due: due, now: since, windows: []v1alpha1.RotationWindow{weekdaysWindow("09:00", "17:00", "Nowhere/Atlantis")},
			want: due, reason: v1alpha1.ReasonInvalidTimeZone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got, v := windowedRotation(c.due, c.now, since, c.windows, c.maxAge, 0)
			g.Expect(got).To(BeTemporally("==", c.want), "got %s", got.In(b))
			if c.reason == "" {
				g.Expect(v).To(BeNil())
				return
			}
			g.Expect(v).NotTo(BeNil())
			g.Expect(v.reason).To(Equal(c.reason))
			g.Expect(v.ok).To(Equal(c.ok))
		})
	}
}

// An ApiKey's own windows win over its issuer's; the issuer's apply to an
// ApiKey without any.
func TestRotationWindowsInherit(t *testing.T) {
	g := NewWithT(t)
	own := []v1alpha1.RotationWindow{weekdaysWindow("09:00", "12:00", "UTC")}
	policy := &v1alpha1.ReevitIssuerPolicy{RotationWindows: []v1alpha1.RotationWindow{weekdaysWindow("13:00", "17:00", "UTC")}}
	ak := &v1alpha1.ApiKey{Spec: v1alpha1.ApiKeySpec{Rotation: &v1alpha1.Rotation{Every: dur(time.Hour), Windows: own}}}
	g.Expect(rotationWindows(ak, policy)).To(Equal(own))
	ak.Spec.Rotation.Windows = nil
	g.Expect(rotationWindows(ak, policy)).To(Equal(policy.RotationWindows))
	g.Expect(rotationWindows(ak, nil)).To(BeEmpty())
	ak.Spec.Rotation = nil
	g.Expect(rotationWindows(ak, policy)).To(Equal(policy.RotationWindows))
}
