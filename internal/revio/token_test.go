package revio_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/revio"
)

func jwtWith(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestParseClaims(t *testing.T) {
	t0 := time.Unix(1767268800, 0).UTC()
	tests := []struct {
		name     string
		jwt      string
		iat, exp time.Time
		ok       bool
	}{
		{name: "iat and exp", jwt: jwtWith(`{"iat":1767268800,"exp":1767272400}`), iat: t0, exp: t0.Add(time.Hour), ok: true},
		{name: "fractional exp", jwt: jwtWith(`{"exp":1767268800.5}`), exp: t0.Add(500 * time.Millisecond), ok: true},
		{name: "no exp", jwt: jwtWith(`{"iat":1767268800,"sub":"x"}`), iat: t0, ok: true},
		{name: "padded payload", jwt: jwtWith(`{"exp":1767268800}`) + "", exp: t0, ok: true},
		{name: "exp as a string is ignored", jwt: jwtWith(`{"exp":"1767268800"}`), ok: true},
		{name: "negative exp is ignored", jwt: jwtWith(`{"exp":-5}`), ok: true},
		{name: "exp past year 9999 is ignored", jwt: jwtWith(`{"exp":1e300}`), ok: true},
		{name: "payload is an array", jwt: jwtWith(`[1,2]`)},
		{name: "payload is null", jwt: jwtWith(`null`)},
		{name: "payload not JSON", jwt: jwtWith(`nope`)},
		{name: "payload not base64", jwt: "eyJhbGciOiJIUzI1NiJ9.@@@.sig"},
		{name: "two parts", jwt: "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9"},
		{name: "opaque", jwt: "opaque-token"},
		{name: "empty", jwt: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iat, exp, ok := revio.ParseClaims(tt.jwt)
			if ok != tt.ok || !iat.Equal(tt.iat) || !exp.Equal(tt.exp) {
				t.Errorf("ParseClaims = %v, %v, %v; want %v, %v, %v", iat, exp, ok, tt.iat, tt.exp, tt.ok)
			}
		})
	}
}
