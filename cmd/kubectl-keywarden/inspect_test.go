package main

import (
	"strings"
	"testing"
)

// inspect with anything but "secret" fails and says what to type, instead
// of printing help and exiting 0.
func TestInspectUnknownKindFails(t *testing.T) {
	c := newFake()
	for args, want := range map[string]string{
		"inspect apikey x": `cannot inspect "apikey": only secrets`,
		"inspect":          "inspect what?",
	} {
		_, _, err := run(t, c, "", strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", args, err, want)
		}
	}
}
