package controller

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

// Every client error maps to one reason, a transient flag and a message
// that says what to do; a server-dictated delay is capped.
func TestClassifyReevit(t *testing.T) {
	g := NewWithT(t)
	for _, c := range []struct {
		name      string
		err       error
		reason    string
		transient bool
		retry     time.Duration
		msg       string
	}{
		{"401", &reevit.UnauthorizedError{StatusCode: 401}, v1alpha1.ReasonUnauthorized, false, 0, "admin-key Secret"},
		{"403 with scope", &reevit.ForbiddenError{StatusCode: 403, Scope: "api_keys:write"}, v1alpha1.ReasonMissingScope, false, 0, "api_keys:write"},
		{"403 without scope", &reevit.ForbiddenError{StatusCode: 403}, v1alpha1.ReasonMissingScope, false, 0, "spec.scopes"},
		{"429", &reevit.RateLimitedError{StatusCode: 429, RetryAfter: 30 * time.Second}, v1alpha1.ReasonRateLimited, true, 30 * time.Second, "30s"},
		{"429 for 31 years", &reevit.RateLimitedError{StatusCode: 429, RetryAfter: 999999999 * time.Second}, v1alpha1.ReasonRateLimited, true, time.Hour, "1h0m0s"},
		{"429 overflowed", &reevit.RateLimitedError{StatusCode: 429, RetryAfter: -2562047 * time.Hour}, v1alpha1.ReasonRateLimited, true, backoffBase, "5s"},
		{"500", &reevit.ServerError{StatusCode: 500}, v1alpha1.ReasonAPIUnavailable, true, 0, "500"},
		{"400", &reevit.BadRequestError{StatusCode: 400, Message: "bad"}, v1alpha1.ReasonBadRequest, false, 0, "spec.scopes"},
		{"http", &reevit.InsecureURLError{URL: "http://x"}, v1alpha1.ReasonInsecureEndpoint, false, 0, "--allow-http-endpoints"},
		{"wrapped", errors.Join(errors.New("ctx"), &reevit.ServerError{StatusCode: 502}), v1alpha1.ReasonAPIUnavailable, true, 0, "502"},
		{"unknown", errors.New("boom"), v1alpha1.ReasonAPIUnavailable, true, 0, "boom"},
	} {
		f := classifyReevit(c.err)
		g.Expect(f.Reason).To(Equal(c.reason), c.name)
		g.Expect(f.Transient).To(Equal(c.transient), c.name)
		g.Expect(f.RetryAfter).To(Equal(c.retry), c.name)
		g.Expect(f.Message).To(ContainSubstring(c.msg), c.name)
		g.Expect(f.Message).NotTo(ContainSubstring("-2562047h"), c.name)
	}
}

func TestClassifyRevio(t *testing.T) {
	g := NewWithT(t)
	f := classifyRevio(&revio.RateLimitedError{StatusCode: 429, RetryAfter: time.Duration(1<<63 - 1)})
	g.Expect(f.RetryAfter).To(Equal(time.Hour))
	g.Expect(f.Message).To(ContainSubstring("retrying after 1h0m0s"))
	f = classifyRevio(&revio.InvalidAPIKeyError{StatusCode: 401})
	g.Expect(f.Reason).To(Equal(v1alpha1.ReasonInvalidAPIKey))
	g.Expect(f.Transient).To(BeFalse())
	f = classifyRevio(&revio.ServerError{StatusCode: 503})
	g.Expect(f.Reason).To(Equal(v1alpha1.ReasonAPIUnavailable))
	g.Expect(f.Transient).To(BeTrue())
}

func TestCapRetryAfter(t *testing.T) {
	g := NewWithT(t)
	g.Expect(capRetryAfter(0)).To(Equal(backoffBase))
	g.Expect(capRetryAfter(-time.Second)).To(Equal(backoffBase))
	g.Expect(capRetryAfter(time.Minute)).To(Equal(time.Minute))
	g.Expect(capRetryAfter(time.Duration(1 << 62))).To(Equal(maxRetryAfter))
}
