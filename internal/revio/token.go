package revio

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// Token is a Rev.io JWT obtained by Exchange.
//
// Printing a Token with any fmt verb (%v, %+v, %#v, %s, ...) or encoding it
// as JSON shows "[REDACTED]" instead of the JWT; read the JWT field directly
// to use or store it.
type Token struct {
	// JWT is the bearer token, sent as "Authorization: Bearer <JWT>".
	JWT string
	// IssuedAt is the token's iat claim; zero when unknown.
	IssuedAt time.Time
	// ExpiresAt is the token's exp claim; zero when unknown (the token is
	// not a JWT or carries no exp), in which case the caller decides when
	// to exchange again.
	ExpiresAt time.Time
}

// HasExpiry reports whether the token's expiry is known.
func (t Token) HasExpiry() bool { return !t.ExpiresAt.IsZero() }

// printableToken is Token without any methods, so fmt can print it
// without recursing into Token.Format.
type printableToken Token

func (t Token) printable() printableToken {
	p := printableToken(t)
	if p.JWT != "" {
		p.JWT = httpcore.Redacted
	}
	return p
}

// String returns the token's times with the JWT redacted.
func (t Token) String() string { return fmt.Sprintf("%+v", t.printable()) }

// GoString returns Go syntax for the token with the JWT redacted.
func (t Token) GoString() string {
	p := t.printable()
	return fmt.Sprintf("revio.Token{JWT:%q, IssuedAt:%#v, ExpiresAt:%#v}", p.JWT, p.IssuedAt, p.ExpiresAt)
}

// Format prints the token with the JWT redacted for every verb.
func (t Token) Format(f fmt.State, verb rune) {
	httpcore.FormatRedacted(f, verb, t.GoString(), t.printable())
}

// MarshalJSON encodes the token with the JWT redacted, so structured loggers
// that encode values as JSON cannot leak it.
func (t Token) MarshalJSON() ([]byte, error) {
	p := t.printable()
	out := struct {
		JWT       string     `json:"jwt,omitempty"`
		IssuedAt  *time.Time `json:"issuedAt,omitempty"`
		ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	}{JWT: p.JWT}
	if !p.IssuedAt.IsZero() {
		out.IssuedAt = &p.IssuedAt
	}
	if !p.ExpiresAt.IsZero() {
		out.ExpiresAt = &p.ExpiresAt
	}
	return json.Marshal(out)
}

// maxNumericDate is the last second of year 9999, beyond which a claim is
// treated as absent rather than overflowing.
const maxNumericDate = 253402300799

// ParseClaims reads the iat and exp claims of a JWT WITHOUT verifying its
// signature: the client only needs to know when to exchange again, and
// Rev.io verifies the token on every call. ok reports whether jwt is a
// three-part JWS whose payload is a JSON object; iat and exp are zero (UTC)
// when the claim is absent or not a valid NumericDate.
func ParseClaims(jwt string) (iat, exp time.Time, ok bool) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return time.Time{}, time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return time.Time{}, time.Time{}, false
	}
	return numericDate(claims["iat"]), numericDate(claims["exp"]), true
}

// numericDate decodes a JWT NumericDate (seconds since the epoch, possibly
// fractional); zero when absent or invalid.
func numericDate(raw json.RawMessage) time.Time {
	if len(raw) == 0 {
		return time.Time{}
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || f <= 0 || f > maxNumericDate {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC()
}
