package httpcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		body   string // the raw retry_after field; "" for none
		header string
		want   time.Duration
	}{
		{name: "nothing: default", want: DefaultRetryAfter},
		{name: "body seconds", body: `12`, want: 12 * time.Second},
		{name: "body fractional seconds", body: `2.5`, want: 2500 * time.Millisecond},
		{name: "body numeric string", body: `"30"`, want: 30 * time.Second},
		{name: "body wins over header", body: `12`, header: "5", want: 12 * time.Second},
		{name: "header seconds", header: "7", want: 7 * time.Second},
		{name: "header seconds with spaces", header: " 7 ", want: 7 * time.Second},
		{name: "header HTTP date", header: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "header date in the past: default", header: now.Add(-time.Hour).Format(http.TimeFormat), want: DefaultRetryAfter},
		{name: "header date far ahead: cap", header: "Fri, 31 Dec 9999 23:59:59 GMT", want: MaxRetryAfter},
		{name: "exactly the cap", body: `3600`, want: MaxRetryAfter},
		{name: "one over the cap", body: `3601`, want: MaxRetryAfter},
		{name: "999999999 (31.7 years): cap", body: `999999999`, want: MaxRetryAfter},
		{name: "9999999999 must not overflow to a negative duration", body: `9999999999`, want: MaxRetryAfter},
		{name: "1e30: cap", body: `1e30`, want: MaxRetryAfter},
		{name: "largest float: cap", body: `1.7976931348623157e308`, want: MaxRetryAfter},
		{name: "huge header: cap", header: "99999999999999999999999", want: MaxRetryAfter},
		{name: "huge string: cap", body: `"9999999999"`, want: MaxRetryAfter},
		{name: "below the floor", body: `0.000001`, want: MinRetryAfter},
		{name: "zero falls to the header", body: `0`, header: "9", want: 9 * time.Second},
		{name: "negative falls to the default", body: `-5`, want: DefaultRetryAfter},
		{name: "negative header: default", header: "-5", want: DefaultRetryAfter},
		{name: "NaN string: default", body: `"NaN"`, want: DefaultRetryAfter},
		{name: "Inf string: default", body: `"+Inf"`, want: DefaultRetryAfter},
		{name: "Inf header: default", header: "Inf", want: DefaultRetryAfter},
		{name: "not a number: default", body: `{"x":1}`, header: "soon", want: DefaultRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RetryAfter(json.RawMessage(tt.body), tt.header, now)
			if got != tt.want {
				t.Fatalf("RetryAfter(%s, %q) = %v, want %v", tt.body, tt.header, got, tt.want)
			}
			if got < MinRetryAfter || got > MaxRetryAfter {
				t.Fatalf("RetryAfter = %v outside [%v, %v]", got, MinRetryAfter, MaxRetryAfter)
			}
		})
	}
}

func TestSecondsNeverOverflows(t *testing.T) {
	for _, f := range []float64{1, 3599.999, 3600, 9223372036.854775807, 9223372037, 1e19, math.MaxFloat64} {
		d, ok := seconds(f)
		if !ok || d <= 0 || d > MaxRetryAfter {
			t.Errorf("seconds(%g) = %v, %v", f, d, ok)
		}
	}
}

func TestDecodeErrorBody(t *testing.T) {
	eb := DecodeErrorBody([]byte(`{"error":"rate_limited","message":"Too many requests","retry_after":60}`))
	if eb.Error != "rate_limited" || eb.Message != "Too many requests" || string(eb.RetryAfter) != "60" {
		t.Fatalf("decoded %+v", eb)
	}
	if eb := DecodeErrorBody([]byte(`<html>`)); eb.Error != "" || eb.Message != "" || eb.RetryAfter != nil {
		t.Fatalf("non-JSON decoded as %+v", eb)
	}
}

func TestSanitize(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
	tests := []struct {
		name    string
		msg     string
		secrets []string
		want    string
	}{
		{name: "plain prose is kept", msg: "API key missing required scope: payments:write", want: "API key missing required scope: payments:write"},
		{name: "a given secret", msg: "bad key s3cr3t!", secrets: []string{"s3cr3t!"}, want: "bad key [REDACTED]"},
		{name: "a secret with a trailing newline is matched trimmed", msg: "bad key s3cr3t!", secrets: []string{"s3cr3t!\n"}, want: "bad key [REDACTED]"},
		{name: "empty secrets are ignored", msg: "fine", secrets: []string{"", " "}, want: "fine"},
		{name: "Reevit key shape", msg: "key pfk_live_abc123 is revoked", want: "key [REDACTED] is revoked"},
		{name: "JWT shape", msg: "token " + jwt + " expired", want: "token [REDACTED] expired"},
		{name: "long key-like run", msg: "key rvk_0123456789abcdefghijklmn unknown", want: "key [REDACTED] unknown"},
		{name: "control characters become spaces", msg: "line1\nline2\x00\x7f", want: "line1 line2"},
		{name: "surrounding space trimmed", msg: "  hi \t", want: "hi"},
		{name: "long text is bounded", msg: strings.Repeat("ab ", 200), want: strings.TrimSpace(strings.Repeat("ab ", 200)[:MaxMessageLen]) + "..."},
		{name: "cut on a character boundary", msg: strings.Repeat("é", 200), want: strings.Repeat("é", MaxMessageLen/2) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sanitize(tt.msg, tt.secrets...); got != tt.want {
				t.Fatalf("Sanitize(%q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}

func TestCheckHeaderValue(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"plain", "org_123", true},
		{"inner space and tab", "a b\tc", true},
		{"empty", "", false},
		{"trailing newline", "pfk_live_abc\n", false},
		{"inner newline (header injection)", "user\r\nX-Evil: 1", false},
		{"leading space", " org", false},
		{"trailing space", "org ", false},
		{"NUL", "a\x00b", false},
		{"DEL", "a\x7fb", false},
		{"too long", strings.Repeat("a", 4097), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHeaderValue("X-Test", tt.value)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckHeaderValue(%q) = %v, want ok %v", tt.value, err, tt.ok)
			}
			var he *HeaderError
			if err != nil && (!errors.As(err, &he) || he.Name != "X-Test") {
				t.Fatalf("want a *HeaderError for X-Test, got %T %v", err, err)
			}
			if err != nil && tt.value != "" && strings.Contains(err.Error(), tt.value) {
				t.Fatalf("the error quotes the value: %v", err)
			}
		})
	}
}

func TestDo(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", MaxBodyBytes+1)))
		case "/limit":
			_, _ = w.Write([]byte(strings.Repeat("x", MaxBodyBytes)))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/cut":
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write([]byte("short"))
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		default:
			w.Header().Set("X-Echo-UA", r.Header.Get("User-Agent"))
			w.Header().Set("X-Echo-Accept", r.Header.Get("Accept"))
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(`{"error":"teapot"}`))
		}
	}))
	defer ok.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	type want struct {
		status   int
		network  bool
		timeout  bool
		tooLarge bool
		header   bool
		observed int
	}
	tests := []struct {
		name    string
		url     string
		header  http.Header
		timeout time.Duration
		want    want
	}{
		{name: "any status is an answer", url: ok.URL + "/x", want: want{status: 418, observed: 418}},
		{name: "exactly 1 MiB is read", url: ok.URL + "/limit", want: want{status: 200, observed: 200}},
		{name: "over 1 MiB", url: ok.URL + "/big", want: want{tooLarge: true, observed: 200}},
		{name: "redirects are not followed", url: ok.URL + "/redirect", want: want{status: 307, observed: 307}},
		{name: "refused connection", url: closedURL, want: want{network: true}},
		{name: "deadline", url: ok.URL + "/slow", timeout: 50 * time.Millisecond, want: want{network: true, timeout: true}},
		{name: "answer cut short", url: ok.URL + "/cut", want: want{network: true}},
		{name: "header with a newline is never sent", url: ok.URL + "/x", header: http.Header{"X-Actor-Id": {"a\nb"}}, want: want{header: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			observed := -1
			c := &Caller{Service: "svc", HTTP: Client(nil), Timeout: tt.timeout, UserAgent: "test-agent",
				Observe: func(op string, code int, _ time.Duration) {
					if op != "op" {
						t.Errorf("Observe op = %q", op)
					}
					observed = code
				}}
			resp, err := c.Do(context.Background(), Request{Operation: "op", Method: http.MethodGet, URL: tt.url, Header: tt.header})
			var (
				ne *NetworkError
				tl *BodyTooLargeError
				he *HeaderError
			)
			if got := errors.As(err, &ne); got != tt.want.network {
				t.Fatalf("NetworkError = %v (%v), want %v", got, err, tt.want.network)
			}
			if ne != nil && (ne.Service != "svc" || ne.Operation != "op") {
				t.Errorf("NetworkError names %q %q", ne.Service, ne.Operation)
			}
			if ne != nil && ne.Timeout != tt.want.timeout {
				t.Errorf("Timeout = %v, want %v (%v)", ne.Timeout, tt.want.timeout, err)
			}
			if got := errors.As(err, &tl); got != tt.want.tooLarge {
				t.Fatalf("BodyTooLargeError = %v (%v)", got, err)
			}
			if got := errors.As(err, &he); got != tt.want.header {
				t.Fatalf("HeaderError = %v (%v)", got, err)
			}
			if tt.want.status != 0 && (err != nil || resp.Status != tt.want.status) {
				t.Fatalf("Do = %+v, %v; want status %d", resp, err, tt.want.status)
			}
			if tt.want.observed != observed && !(tt.want.header && observed == 0) {
				t.Errorf("observed code %d, want %d", observed, tt.want.observed)
			}
			if tt.name == "any status is an answer" && (resp.Header.Get("X-Echo-UA") != "test-agent" || resp.Header.Get("X-Echo-Accept") != "application/json") {
				t.Errorf("User-Agent / Accept not sent: %v", resp.Header)
			}
		})
	}
}

// The shared transport dials briefly and bounds connections per host, so a
// black-holed host fails in seconds and cannot take every socket.
func TestTransportLimits(t *testing.T) {
	tr := NewTransport()
	if tr.MaxConnsPerHost != MaxConnsPerHost || tr.MaxIdleConnsPerHost != MaxIdleConnsPerHost ||
		tr.TLSHandshakeTimeout != TLSHandshakeTimeout || tr.TLSClientConfig.MinVersion == 0 || tr.Proxy == nil {
		t.Fatalf("transport settings: %+v", tr)
	}
	if DialTimeout > 5*time.Second {
		t.Fatalf("DialTimeout %v is not short", DialTimeout)
	}
}

func TestClientNeverFollowsRedirects(t *testing.T) {
	orig := &http.Client{Timeout: time.Second}
	c := Client(orig)
	if c == orig || orig.CheckRedirect != nil || c.Timeout != time.Second {
		t.Fatal("Client must copy its argument and keep its settings")
	}
	if err := c.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Fatalf("CheckRedirect = %v", err)
	}
	if Client(nil) != shared || shared.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("the shared client must not follow redirects")
	}
}

func TestNetworkErrorText(t *testing.T) {
	base := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	if got := (&NetworkError{Service: "svc", Operation: "op", Err: base}).Error(); !strings.HasPrefix(got, "svc op: network error: ") {
		t.Errorf("Error() = %q", got)
	}
	if got := (&NetworkError{Service: "svc", Operation: "op", Timeout: true, Err: base}).Error(); !strings.HasPrefix(got, "svc op: timed out: ") {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(&NetworkError{Err: context.DeadlineExceeded}, context.DeadlineExceeded) {
		t.Error("NetworkError must unwrap")
	}
}

func TestMapError(t *testing.T) {
	network := func(e *NetworkError) error { return errors.New("net") }
	tooLarge := func(e *BodyTooLargeError) error { return errors.New("large") }
	header := func(e *HeaderError) error { return errors.New("header") }
	other := errors.New("other")
	for in, want := range map[error]string{
		&NetworkError{Err: other}:            "net",
		&BodyTooLargeError{StatusCode: 200}:  "large",
		&HeaderError{Name: "X", Reason: "r"}: "header",
		other:                                "other",
	} {
		if got := MapError(in, network, tooLarge, header); got.Error() != want {
			t.Errorf("MapError(%T) = %v, want %s", in, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	if got := Describe("reevit", "list", "server error", 503, "down"); got != "reevit list: server error (HTTP 503 Service Unavailable): down" {
		t.Errorf("Describe = %q", got)
	}
	if got := Describe("revio", "call", "odd", 599, ""); got != "revio call: odd (HTTP 599)" {
		t.Errorf("Describe = %q", got)
	}
}

type secretThing struct{ Secret string }

type printableThing struct{ Secret string }

func (s secretThing) Format(f fmt.State, verb rune) {
	FormatRedacted(f, verb, `thing{Secret:"[REDACTED]"}`, printableThing{Secret: "[REDACTED]"})
}

func TestFormatRedacted(t *testing.T) {
	v := secretThing{Secret: "s3cr3t"}
	for format, want := range map[string]string{
		"%v": "{[REDACTED]}", "%+v": "{Secret:[REDACTED]}", "%#v": `thing{Secret:"[REDACTED]"}`,
		"%s": "{[REDACTED]}", "%q": "{[REDACTED]}", "%d": "{[REDACTED]}",
	} {
		if got := fmt.Sprintf(format, v); got != want || strings.Contains(got, "s3cr3t") {
			t.Errorf("Sprintf(%s) = %s, want %s", format, got, want)
		}
	}
}

// A network error reads "service operation: what: cause", with no stray
// space when a name is missing.
func TestNetworkErrorMessage(t *testing.T) {
	cause := errors.New("connection refused")
	for _, tc := range []struct {
		e    NetworkError
		want string
	}{
		{NetworkError{Service: "revio", Operation: "exchange", Err: cause}, "revio exchange: network error: connection refused"},
		{NetworkError{Operation: "exchange", Err: cause}, "exchange: network error: connection refused"},
		{NetworkError{Timeout: true, Err: cause}, "timed out: connection refused"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}
