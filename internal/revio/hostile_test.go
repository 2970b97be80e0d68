package revio_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/revio"
)

// A key read from a Secret written with `echo` ends in a newline: it is
// trimmed, not sent as a different key and refused as invalid.
func TestExchangeTrimsTheAPIKey(t *testing.T) {
	e := newEnv(t)
	c := newClient(t, e.srv.URL, nil)
	for _, k := range []string{e.key + "\n", e.key + "\r\n", "  " + e.key + "\t"} {
		if _, err := c.Exchange(context.Background(), k); err != nil {
			t.Fatalf("Exchange(%q): %v", strings.ReplaceAll(k, e.key, "<key>"), err)
		}
	}
}

// A key holding a control character is refused before anything is sent.
func TestExchangeRefusesControlCharacters(t *testing.T) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent.Add(1) }))
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	for _, k := range []string{"rvk_abc\ndef", "rvk_abc\x00", "rvk\x7fabc", " \n "} {
		_, err := c.Exchange(context.Background(), k)
		var ik *revio.InvalidAPIKeyError
		if !errors.As(err, &ik) || ik.StatusCode != 0 {
			t.Errorf("Exchange(%q) = %T %v, want *InvalidAPIKeyError refused before sending", k, err, err)
		}
		if err != nil && strings.Contains(err.Error(), "rvk") {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests were sent", n)
	}
}

func TestConfigHostIsAHeaderValue(t *testing.T) {
	for _, h := range []string{"acme.psarev.io\n", " acme.psarev.io", "acme.psarev.io\r\nX-Evil: 1", "acme\x00.psarev.io", "https://acme.psarev.io", "acme.psarev.io/x"} {
		_, err := revio.New(revio.Config{Host: h})
		var ce *revio.ConfigError
		if !errors.As(err, &ce) || ce.Field != "Host" {
			t.Errorf("Host %q: want *ConfigError for Host, got %T %v", h, err, err)
		}
		if revio.IsRetryable(err) {
			t.Errorf("Host %q: a config error must not be retryable", h)
		}
	}
	for _, u := range []string{"api.psarev.io", "https://u:p@api.psarev.io", "https://api.psarev.io/?x=1"} {
		var ce *revio.ConfigError
		if _, err := revio.New(revio.Config{BaseURL: u}); !errors.As(err, &ce) || ce.Field != "BaseURL" {
			t.Errorf("BaseURL %q: want *ConfigError for BaseURL, got %T %v", u, err, err)
		}
	}
	noHost, err := revio.New(revio.Config{BaseURL: "http://127.0.0.1:1", AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	var ce *revio.ConfigError
	if _, _, err := noHost.Get(context.Background(), "tok", "/billing/api/v1/contacts"); !errors.As(err, &ce) {
		t.Errorf("Get without Host: want *ConfigError, got %T %v", err, err)
	}
}

// One cap for both clients: a 429 never parks a caller for more than an hour.
func TestRetryAfterCapIsOneHour(t *testing.T) {
	tests := []struct {
		name   string
		header string
		body   string
	}{
		{name: "retry_after 9999999999", body: `{"error":"rate_limited","retry_after":9999999999}`},
		{name: "retry_after one day", body: `{"error":"rate_limited","retry_after":86400}`},
		{name: "Retry-After date in year 9999", header: "Fri, 31 Dec 9999 23:59:59 GMT", body: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			_, err := newClient(t, srv.URL, nil).Exchange(context.Background(), "rvk_key")
			if d, ok := revio.RetryAfter(err); !ok || d != time.Hour {
				t.Fatalf("RetryAfter = %v, %v; want 1h", d, ok)
			}
		})
	}
}
