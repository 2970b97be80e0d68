package revio

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// TestHostGuardRefusalIsANetworkError: once a host's circuit is open, an
// exchange fails at once with a retryable *NetworkError whose cause is the
// guard's typed error, and the API key is in no error text.
func TestHostGuardRefusalIsANetworkError(t *testing.T) {
	const apiKey = "rk_hostguard_secret_value_0123456789"
	guard := httpcore.NewHostGuard(nil, clocktesting.NewFakeClock(time.Now()), httpcore.HostLimits{FailureThreshold: 1})
	// Nothing listens on port 1 of loopback: the connection is refused.
	c, err := New(Config{BaseURL: "http://127.0.0.1:1", AllowHTTP: true, Timeout: time.Second, HTTPClient: &http.Client{Transport: guard}})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantOpen := range []bool{false, true, true} {
		_, err := c.Exchange(context.Background(), apiKey)
		var ne *NetworkError
		if !errors.As(err, &ne) || !IsRetryable(err) {
			t.Fatalf("exchange %d: %v, want a retryable *NetworkError", i, err)
		}
		if got := errors.Is(err, httpcore.ErrHostUnavailable); got != wantOpen {
			t.Fatalf("exchange %d: refused by the guard %v, want %v (%v)", i, got, wantOpen, err)
		}
		if strings.Contains(err.Error(), apiKey) {
			t.Fatalf("exchange %d: the error shows the API key", i)
		}
	}
}
