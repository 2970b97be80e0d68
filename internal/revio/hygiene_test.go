package revio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/revio/reviotest"
)

// secretKey and its pieces are recognisable in any output.
const secretKey = "rvk_SUPERSECRETAPIKEY0123456789"

// printed returns every way an error or value is commonly printed.
func printed(v any) []string {
	out := []string{
		fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprintf("%s", v), fmt.Sprintf("%q", v),
	}
	if err, ok := v.(error); ok && err != nil {
		out = append(out, err.Error(), fmt.Errorf("wrapped: %w", err).Error())
	}
	return out
}

func assertClean(t *testing.T, what string, v any, secrets ...string) {
	t.Helper()
	for _, s := range printed(v) {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(s, secret) {
				t.Errorf("%s leaks a secret: %s", what, s)
			}
		}
		if strings.Contains(s, "SUPERSECRET") {
			t.Errorf("%s leaks the API key: %s", what, s)
		}
	}
}

// TestNoSecretsInErrors drives every failing path with a recognisable API
// key and token, including servers that echo them back.
func TestNoSecretsInErrors(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	sim := reviotest.NewServer(reviotest.WithClock(clock), reviotest.WithSeed(7))
	defer sim.Close()
	sim.AddAPIKey(secretKey, testHost)
	c := newClient(t, sim.URL, nil)
	tok, err := c.Exchange(ctx, secretKey)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	jwt := tok.JWT
	sig := jwt[strings.LastIndexByte(jwt, '.')+1:]
	secrets := []string{secretKey, jwt, sig}

	var errs []error
	collect := func(err error) {
		if err == nil {
			t.Fatalf("expected an error (case %d)", len(errs))
		}
		errs = append(errs, err)
	}
	_, err = c.Exchange(ctx, secretKey+"x") // unknown
	collect(err)
	sim.Faults().FailNext(1, 429)
	_, err = c.Exchange(ctx, secretKey)
	collect(err)
	sim.Faults().FailNext(1, 503)
	_, err = c.Exchange(ctx, secretKey)
	collect(err)
	sim.Faults().DropAfterCommit(1)
	_, err = c.Exchange(ctx, secretKey)
	collect(err)
	sim.Faults().SetLatency(time.Second)
	_, err = newClient(t, sim.URL, func(c *revio.Config) { c.Timeout = 20 * time.Millisecond }).Exchange(ctx, secretKey)
	collect(err)
	_, _, err = newClient(t, sim.URL, func(c *revio.Config) { c.Timeout = 20 * time.Millisecond }).Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)
	sim.Faults().Reset()
	_, _, err = newClient(t, sim.URL, func(c *revio.Config) { c.Host = "other.psarev.io" }).Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)
	sim.Faults().FailNext(1, 429)
	_, _, err = c.Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)
	sim.Faults().FailNext(1, 500)
	_, _, err = c.Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)
	_, _, err = c.Get(ctx, jwt+"\n", "/billing/api/v1/contacts")
	collect(err)
	clock.Step(2 * time.Hour)
	_, _, err = c.Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)
	sim.RevokeAPIKey(secretKey)
	_, err = c.Exchange(ctx, secretKey)
	collect(err)

	// A hostile server echoing the key and the token in every field.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := 401
		switch r.URL.Path {
		case "/429/api/v1/auth/api-key/exchange", "/429/x":
			status = 429
		case "/500/api/v1/auth/api-key/exchange", "/500/x":
			status = 500
		case "/403/api/v1/auth/api-key/exchange":
			status = 403
		}
		body, _ := json.Marshal(map[string]any{
			"error":       "bad " + secretKey + " " + jwt,
			"message":     "you sent " + secretKey + " and " + jwt + " with sig " + sig,
			"retry_after": secretKey,
		})
		w.Header().Set("Retry-After", secretKey)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	defer echo.Close()
	for _, prefix := range []string{"/401", "/429", "/500", "/403"} {
		ec := newClient(t, echo.URL+prefix, nil)
		_, err := ec.Exchange(ctx, secretKey)
		collect(err)
		if prefix != "/403" {
			_, _, err = ec.Get(ctx, jwt, "/x")
			collect(err)
		}
	}
	// A server answering 200 with garbage around the key.
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"key":"` + secretKey + `"}}`))
	}))
	defer garbage.Close()
	_, err = newClient(t, garbage.URL, nil).Exchange(ctx, secretKey)
	collect(err)

	// A closed server: the error carries the URL, never the body.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err = newClient(t, closed.URL, nil).Exchange(ctx, secretKey)
	collect(err)
	_, _, err = newClient(t, closed.URL, nil).Get(ctx, jwt, "/billing/api/v1/contacts")
	collect(err)

	for i, err := range errs {
		assertClean(t, fmt.Sprintf("error %d (%T)", i, err), err, secrets...)
	}
}

func TestTokenPrintsRedacted(t *testing.T) {
	jwt := jwtWith(`{"iat":1767268800,"exp":1767272400,"sub":"SUPERSECRET"}`)
	iat, exp, _ := revio.ParseClaims(jwt)
	tok := revio.Token{JWT: jwt, IssuedAt: iat, ExpiresAt: exp}
	for _, v := range []any{tok, &tok, []revio.Token{tok}, map[string]*revio.Token{"t": &tok}} {
		assertClean(t, "Token", v, jwt)
		if s := fmt.Sprintf("%+v", v); !strings.Contains(s, "[REDACTED]") || !strings.Contains(s, "2026") {
			t.Errorf("printed token %q should show [REDACTED] and the times", s)
		}
	}
	b, err := json.Marshal(tok)
	if err != nil || strings.Contains(string(b), jwt) || !strings.Contains(string(b), "[REDACTED]") {
		t.Errorf("JSON of a token = %s, %v", b, err)
	}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("token", "t", tok)
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("token", "t", tok)
	if strings.Contains(sb.String(), jwt) {
		t.Errorf("slog leaks the token: %s", sb.String())
	}
	if got := fmt.Sprintf("%v", revio.Token{}); strings.Contains(got, "REDACTED") {
		t.Errorf("an empty token prints %q; nothing to redact", got)
	}
}
