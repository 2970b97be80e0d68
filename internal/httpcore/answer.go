package httpcore

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxRetryAfter caps any delay a server asks for: a 429 never parks a
	// caller for more than an hour, whatever the server says.
	MaxRetryAfter = time.Hour
	// MinRetryAfter is the least delay taken from a server, so a server
	// asking for microseconds cannot make a caller retry in a hot loop.
	MinRetryAfter = time.Second
	// DefaultRetryAfter is used when a 429 names no usable delay.
	DefaultRetryAfter = 60 * time.Second
)

// ErrorBody is the error shape both APIs answer with:
// {"error": "rate_limited", "message": "...", "retry_after": 60}.
type ErrorBody struct {
	Error      string          `json:"error"`
	Message    string          `json:"message"`
	RetryAfter json.RawMessage `json:"retry_after"`
}

// DecodeErrorBody reads an error body; a body that is not that JSON object
// leaves the fields empty.
func DecodeErrorBody(raw []byte) ErrorBody {
	var eb ErrorBody
	_ = json.Unmarshal(raw, &eb)
	return eb
}

// RetryAfter is the delay a 429 asks for: the body's retry_after (seconds,
// a JSON number or a numeric string), else the Retry-After header (seconds
// or an HTTP date after now), else DefaultRetryAfter. A value that is not a
// positive finite number is ignored; the result is always within
// [MinRetryAfter, MaxRetryAfter], and no arithmetic on the server's value
// can overflow (retry_after 9999999999 gives MaxRetryAfter).
func RetryAfter(bodyField json.RawMessage, header string, now time.Time) time.Duration {
	if len(bodyField) > 0 {
		var secs float64
		if err := json.Unmarshal(bodyField, &secs); err == nil {
			if d, ok := seconds(secs); ok {
				return d
			}
		}
		var s string
		if err := json.Unmarshal(bodyField, &s); err == nil {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				if d, ok := seconds(f); ok {
					return d
				}
			}
		}
	}
	if header = strings.TrimSpace(header); header != "" {
		if f, err := strconv.ParseFloat(header, 64); err == nil {
			if d, ok := seconds(f); ok {
				return d
			}
		} else if t, err := http.ParseTime(header); err == nil && t.After(now) {
			// Time.Sub saturates instead of overflowing.
			return clamp(t.Sub(now))
		}
	}
	return DefaultRetryAfter
}

// seconds converts a server's delay in seconds, comparing before any
// multiplication so a huge value cannot overflow a Duration.
func seconds(f float64) (time.Duration, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	if f >= MaxRetryAfter.Seconds() {
		return MaxRetryAfter, true
	}
	return clamp(time.Duration(f * float64(time.Second))), true
}

func clamp(d time.Duration) time.Duration { return min(max(d, MinRetryAfter), MaxRetryAfter) }

// Redacted stands in for a secret wherever one would be printed: in
// sanitised server text, and in the clients' values printed with fmt.
const Redacted = "[REDACTED]"

var (
	// reevitKey matches anything shaped like a Reevit API key.
	reevitKey = regexp.MustCompile(`pfk_[A-Za-z0-9]+_[A-Za-z0-9]+`)
	// jwtShaped matches anything shaped like a JWT (base64url JSON header
	// and payload).
	jwtShaped = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?`)
	// secretShaped matches long unbroken runs of key-like characters: a
	// server echoing a key the client does not hold, or a piece of a token.
	// Words of prose are never this long.
	secretShaped = regexp.MustCompile(`[A-Za-z0-9_+=-]{24,}`)
)

// MaxMessageLen bounds server text copied into errors.
const MaxMessageLen = 256

// Sanitize makes server text safe to put in an error, a condition or a log:
// it redacts the given secrets, anything shaped like a Reevit key or a JWT
// and any long run of key-like characters, replaces control characters by
// spaces, and bounds the length to MaxMessageLen bytes (cut on a character
// boundary, "..." appended).
func Sanitize(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s = strings.TrimSpace(s); s != "" {
			msg = strings.ReplaceAll(msg, s, Redacted)
		}
	}
	msg = reevitKey.ReplaceAllString(msg, Redacted)
	msg = jwtShaped.ReplaceAllString(msg, Redacted)
	msg = secretShaped.ReplaceAllString(msg, Redacted)
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > MaxMessageLen {
		msg = strings.ToValidUTF8(msg[:MaxMessageLen], "") + "..."
	}
	return strings.TrimSpace(msg)
}

// FormatRedacted is the body of a Format method for a value holding a
// secret: %#v prints goString, every other verb prints printable (a
// method-less copy of the value with the secret replaced by "[REDACTED]")
// as %v, or %+v with the + flag.
func FormatRedacted(f fmt.State, verb rune, goString string, printable any) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, goString)
	case f.Flag('+'):
		_, _ = fmt.Fprintf(f, "%+v", printable)
	default:
		_, _ = fmt.Fprintf(f, "%v", printable)
	}
}
