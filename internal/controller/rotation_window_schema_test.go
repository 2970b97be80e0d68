package controller

import (
	"testing"

	. "github.com/onsi/gomega"
)

// TestRotationWindowSchema: malformed rotation windows, on an ApiKey or in
// an issuer's policy, are refused at admission with a message naming the
// field.
func TestRotationWindowSchema(t *testing.T) {
	ns := newNamespace(t)
	win := func(days []any, start, end, zone string) map[string]any {
		w := map[string]any{"days": days, "start": start, "end": end}
		if zone != "" {
			w["timeZone"] = zone
		}
		return w
	}
	weekdays := anyStrs("Mon", "Tue", "Wed", "Thu", "Fri")
	every := specSet("rotation.every", "720h")
	windows := func(ws ...any) specMutation { return specSet("rotation.windows", ws) }
	policy := func(ws ...any) specMutation { return specSet("policy.rotationWindows", ws) }
	cases := []schemaCase{
		akCase("office hours accepted", nil, every, windows(win(weekdays, "09:00", "17:00", "Europe/Berlin"))),
		akCase("until midnight accepted", nil, specSet("rotation.schedule", "0 3 * * *"), windows(win(anyStrs("Sat"), "22:00", "24:00", ""))),
		akCase("windows without every or schedule", wantMsg(`spec.rotation`, `rotation.windows applies only to rotation.every or rotation.schedule`),
			windows(win(weekdays, "09:00", "17:00", ""))),
		akCase("start not HH:MM", wantMsg(`spec.rotation.windows[0].start`, `windows[].start must be HH:MM on a 24-hour clock`),
			every, windows(win(weekdays, "9:00", "17:00", ""))),
		akCase("start 24:00", wantMsg(`spec.rotation.windows[0].start`, `windows[].start must be HH:MM`),
			every, windows(win(weekdays, "24:00", "24:00", ""))),
		akCase("end not HH:MM", wantMsg(`spec.rotation.windows[1].end`, `windows[].end must be HH:MM on a 24-hour clock, such as 17:00, or 24:00`),
			every, windows(win(weekdays, "09:00", "17:00", ""), win(weekdays, "09:00", "17:60", ""))),
		akCase("end before start (across midnight)", wantMsg(`spec.rotation.windows[0]`, `windows[].end must be later than windows[].start`, `two windows`),
			every, windows(win(weekdays, "22:00", "02:00", ""))),
		akCase("empty window", wantMsg(`spec.rotation.windows[0]`, `windows[].end must be later than windows[].start`),
			every, windows(win(weekdays, "09:00", "09:00", ""))),
		akCase("unknown day", wantMsg(`spec.rotation.windows[0].days[0]`, `Unsupported value: "Monday"`),
			every, windows(win(anyStrs("Monday"), "09:00", "17:00", ""))),
		akCase("no days", wantMsg(`spec.rotation.windows[0].days`),
			every, windows(win([]any{}, "09:00", "17:00", ""))),
		akCase("a day twice", wantMsg(`spec.rotation.windows[0].days[1]`, `Duplicate value`),
			every, windows(win(anyStrs("Mon", "Mon"), "09:00", "17:00", ""))),
		// The message names the field and the value, never the field's
		// type (Invalid value: "string"), which a CEL evaluation error shows.
		akCase("malformed time zone", wantMsg(`spec.rotation.windows[0].timeZone: Invalid value: "Europe Berlin": windows[].timeZone must be an IANA time zone name (Area/Location) such as Europe/Berlin or UTC`),
			every, windows(win(weekdays, "09:00", "17:00", "Europe Berlin"))),
		akCase("Local", wantMsg(`spec.rotation.windows[0].timeZone: Invalid value: "Local": windows[].timeZone must be an IANA time zone name`),
			every, windows(win(weekdays, "09:00", "17:00", "Local"))),
		akCase("offset", wantMsg(`spec.rotation.windows[0].timeZone: Invalid value: "+01:00": windows[].timeZone must be an IANA time zone name`),
			every, windows(win(weekdays, "09:00", "17:00", "+01:00"))),
		// A well-formed name the time zone database lacks passes the API
		// server; the manager says so on RotationWindow (InvalidTimeZone).
		akCase("unknown but well-formed time zone accepted", nil,
			every, windows(win(weekdays, "09:00", "17:00", "Mars/Olympus_Mons"))),
		riCase("issuer policy accepted", nil, policy(win(weekdays, "09:00", "17:00", "America/New_York"))),
		riCase("issuer policy end before start", wantMsg(`spec.policy.rotationWindows[0]`, `windows[].end must be later than windows[].start`),
			policy(win(weekdays, "17:00", "09:00", ""))),
		riCase("issuer policy malformed zone", wantMsg(`spec.policy.rotationWindows[0].timeZone: Invalid value: "Europe/": windows[].timeZone must be an IANA time zone name`),
			policy(win(weekdays, "09:00", "17:00", "Europe/"))),
	}
	runSchemaCases(t, ns, cases, func(_ *testing.T, g Gomega, err error) {
		g.Expect(err.Error()).NotTo(ContainSubstring(`Invalid value: "string"`), "a CEL rule failed to evaluate")
	})
}
