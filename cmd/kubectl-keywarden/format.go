package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// when prints a time as an absolute RFC 3339 time in UTC followed by where
// it lies from now: "2026-12-01T13:00:00Z (in 3h)" or "... (5m ago)".
// A missing time prints as "-".
func when(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return whenTime(t.Time, now)
}

func whenTime(t, now time.Time) string {
	return t.UTC().Format(time.RFC3339) + " (" + relative(t, now) + ")"
}

// relative says how far t is from now, the way kubectl prints ages:
// "in 3h", "5m ago", "now" within a second.
func relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d >= time.Second:
		return "in " + duration.HumanDuration(d)
	case d <= -time.Second:
		return duration.HumanDuration(-d) + " ago"
	}
	return "now"
}

// fingerprint identifies a credential without revealing it
// (v1alpha1.Fingerprint, as status.credential records it).
func fingerprint(value []byte) string { return v1alpha1.Fingerprint(value) }

// jwtClaims are the only claims inspect reads from a token.
type jwtClaims struct {
	IssuedAt  *time.Time
	ExpiresAt *time.Time
}

// errNotJWT is deliberately vague: an error quoting the input (as
// encoding/json's do, character by character) would print part of a token.
var errNotJWT = errors.New("not a JWT (three base64url parts with a JSON payload)")

// decodeJWT reads the exp and iat claims of a compact JWT (an optional
// "Bearer " prefix is dropped). The signature is not verified: this only
// tells a person what the token says about itself. Errors never quote the
// token.
func decodeJWT(token string) (jwtClaims, error) {
	token = strings.TrimPrefix(strings.TrimSpace(token), "Bearer ")
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return jwtClaims{}, errNotJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return jwtClaims{}, errNotJWT
	}
	var raw struct {
		Exp *json.Number `json:"exp"`
		Iat *json.Number `json:"iat"`
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return jwtClaims{}, errNotJWT
	}
	var c jwtClaims
	for _, f := range []struct {
		n   *json.Number
		dst **time.Time
	}{{raw.Exp, &c.ExpiresAt}, {raw.Iat, &c.IssuedAt}} {
		if f.n == nil {
			continue
		}
		secs, err := f.n.Float64()
		if err != nil {
			return jwtClaims{}, errNotJWT
		}
		t := time.Unix(int64(secs), 0).UTC()
		*f.dst = &t
	}
	return c, nil
}

// table writes aligned "label: value" lines.
type table struct {
	rows [][2]string
}

func (t *table) add(label, format string, args ...any) {
	t.rows = append(t.rows, [2]string{label, fmt.Sprintf(format, args...)})
}

func (t *table) String() string {
	width := 0
	for _, r := range t.rows {
		width = max(width, len(r[0]))
	}
	var b strings.Builder
	for _, r := range t.rows {
		fmt.Fprintf(&b, "%-*s  %s\n", width+1, r[0]+":", r[1])
	}
	return b.String()
}
