package controller

import (
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/httpcore"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

// TestClassifyHostGuardRefusals: a request the per-host guard refused (an
// open circuit, a host at its limit) is an API-unavailable failure that
// backs off, like any network error.
func TestClassifyHostGuardRefusals(t *testing.T) {
	g := NewWithT(t)
	for _, cause := range []error{
		&httpcore.CircuitOpenError{Host: "api.example", Failures: 5, Cooldown: 10 * time.Second},
		&httpcore.HostBusyError{Host: "api.example", Limit: 8},
	} {
		wrapped := &url.Error{Op: "Post", URL: "https://api.example/x", Err: cause}
		for _, f := range []*failure{
			classifyReevit(&reevit.NetworkError{Operation: reevit.OpRevoke, Err: wrapped}),
			classifyRevio(&revio.NetworkError{Operation: revio.OpExchange, Err: wrapped}),
		} {
			g.Expect(f.Reason).To(Equal(v1alpha1.ReasonAPIUnavailable), cause.Error())
			g.Expect(f.Transient).To(BeTrue(), cause.Error())
			g.Expect(f.Message).To(ContainSubstring("api.example"), cause.Error())
		}
	}
}
