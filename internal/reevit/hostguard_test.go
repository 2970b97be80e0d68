package reevit

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// TestHostGuardRefusalIsANetworkError: once a host's circuit is open, a
// revocation fails at once with a retryable *NetworkError whose cause is
// the guard's typed error.
func TestHostGuardRefusalIsANetworkError(t *testing.T) {
	guard := httpcore.NewHostGuard(nil, clocktesting.NewFakeClock(time.Now()), httpcore.HostLimits{FailureThreshold: 1})
	// Nothing listens on port 1 of loopback: the connection is refused.
	c, err := New(Config{BaseURL: "http://127.0.0.1:1", OrgID: "org_1", AdminKey: "pfk_test_admin", AllowHTTP: true,
		Timeout: time.Second, HTTPClient: &http.Client{Transport: guard}})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantOpen := range []bool{false, true} {
		err := c.RevokeKey(context.Background(), "key_1", "idem-1")
		var ne *NetworkError
		if !errors.As(err, &ne) || !IsRetryable(err) {
			t.Fatalf("revoke %d: %v, want a retryable *NetworkError", i, err)
		}
		if got := errors.Is(err, httpcore.ErrHostUnavailable); got != wantOpen {
			t.Fatalf("revoke %d: refused by the guard %v, want %v (%v)", i, got, wantOpen, err)
		}
	}
}
