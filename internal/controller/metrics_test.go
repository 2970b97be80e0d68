package controller

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// scrape reads the running manager's /metrics over HTTP.
func scrape(g Gomega) string {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// seriesValue finds one sample line by metric name and label fragments.
func seriesValue(body, name string, labels ...string) (string, bool) {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
				break
			}
		}
		if ok {
			f := strings.Fields(line)
			return f[len(f)-1], true
		}
	}
	return "", false
}

func asFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// The manager's metrics endpoint carries Keywarden's series with the right
// values after a refresh and a rotation, and an object's series go away when
// it is deleted. No label or value carries a secret.
func TestMetricsScrapedOverHTTP(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)

	apiKey := revioSim.GenerateAPIKey("metrics.psarev.io")
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "revio", Namespace: ns}, StringData: map[string]string{"apiKey": apiKey}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: "revio", Namespace: ns}, Spec: v1alpha1.RevioIssuerSpec{
		URL: revioSim.URL, Host: "metrics.psarev.io", APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio"}}})).To(Succeed())
	rt := &v1alpha1.RevioToken{ObjectMeta: metav1.ObjectMeta{Name: "tok", Namespace: ns}, Spec: v1alpha1.RevioTokenSpec{
		IssuerRef: v1alpha1.RevioIssuerReference{Name: "revio"}}}
	g.Expect(k8s.Create(ctx, rt)).To(Succeed())

	org := "org_" + ns
	reevitSim.AddOrg(org)
	_, admin := reevitSim.SeedKey(org, "test", "admin", []string{"api_keys:read", "api_keys:write", "payments:read"})
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admin", Namespace: ns}, StringData: map[string]string{"apiKey": admin}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "reevit", Namespace: ns}, Spec: v1alpha1.ReevitIssuerSpec{
		URL: reevitSim.URL, OrgID: org, AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "admin"}}})).To(Succeed())
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "key", Namespace: ns}, Spec: v1alpha1.ApiKeySpec{
		IssuerRef: v1alpha1.ReevitIssuerReference{Name: "reevit"},
		Scopes:    []v1alpha1.Scope{"payments:read"}, Environment: "test",
		Rotation: &v1alpha1.Rotation{Every: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: 5 * time.Minute}}}}
	g.Expect(k8s.Create(ctx, ak)).To(Succeed())

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "tok"}, rt)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(rt.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "key"}, ak)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())

	// Refresh the token now, rotate the key now (merge patches: the
	// reconcilers may still be writing status, which an update of a read
	// copy would conflict with).
	annotate := func(obj client.Object, key string) {
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"1"}}}`, key)
		g.Expect(k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	}
	annotate(rt, v1alpha1.AnnotationRefresh)
	annotate(ak, v1alpha1.AnnotationRotate)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rt), rt)).To(Succeed())
		g.Expect(rt.Status.Refreshes).To(BeEquivalentTo(2))
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ak), ak)).To(Succeed())
		g.Expect(ak.Status.Rotations).To(BeEquivalentTo(1))
		g.Expect(ak.Status.PendingRevocations).To(HaveLen(1))
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())

	rtLabels := []string{`kind="RevioToken"`, `namespace="` + ns + `"`, `name="tok"`}
	akLabels := []string{`kind="ApiKey"`, `namespace="` + ns + `"`, `name="key"`}
	g.Eventually(func(g Gomega) {
		body := scrape(g)
		v, ok := seriesValue(body, "keywarden_credential_expiry_timestamp_seconds", rtLabels...)
		g.Expect(ok).To(BeTrue(), "token expiry series")
		g.Expect(asFloat(v)).To(BeNumerically("==", rt.Status.ExpiresAt.Unix()))
		v, ok = seriesValue(body, "keywarden_credential_next_renewal_timestamp_seconds", rtLabels...)
		g.Expect(ok).To(BeTrue())
		g.Expect(asFloat(v)).To(BeNumerically("==", rt.Status.NextRefreshTime.Unix()))
		v, ok = seriesValue(body, "keywarden_credential_next_renewal_timestamp_seconds", akLabels...)
		g.Expect(ok).To(BeTrue())
		g.Expect(asFloat(v)).To(BeNumerically("==", ak.Status.NextRotationTime.Unix()))
		v, ok = seriesValue(body, "keywarden_pending_revocations", `namespace="`+ns+`"`, `name="key"`)
		g.Expect(ok).To(BeTrue())
		g.Expect(asFloat(v)).To(BeNumerically("==", 1))
		_, ok = seriesValue(body, "keywarden_renewals_total", `kind="ApiKey"`, `result="success"`)
		g.Expect(ok).To(BeTrue())
		_, ok = seriesValue(body, "keywarden_renewals_total", `kind="RevioToken"`, `result="success"`)
		g.Expect(ok).To(BeTrue())
		_, ok = seriesValue(body, "keywarden_external_requests_total", `api="revio"`, `operation="exchange"`, `code="200"`)
		g.Expect(ok).To(BeTrue())
		_, ok = seriesValue(body, "keywarden_external_requests_total", `api="reevit"`, `operation="create"`, `code="201"`)
		g.Expect(ok).To(BeTrue())
		_, ok = seriesValue(body, "keywarden_external_request_duration_seconds_count", `api="reevit"`, `operation="create"`)
		g.Expect(ok).To(BeTrue())
		// controller-runtime's standard series come along.
		g.Expect(body).To(ContainSubstring(`controller_runtime_reconcile_total{controller="apikey"`))
		// No secret in any label or value.
		g.Expect(body).NotTo(ContainSubstring(admin))
		g.Expect(body).NotTo(ContainSubstring(apiKey))
		g.Expect(body).NotTo(ContainSubstring("pfk_"))
		g.Expect(body).NotTo(ContainSubstring("eyJ"))
	}, 20*time.Second, 200*time.Millisecond).Should(Succeed())

	g.Expect(k8s.Delete(ctx, rt)).To(Succeed())
	g.Expect(k8s.Delete(ctx, ak)).To(Succeed())
	g.Eventually(func(g Gomega) {
		body := scrape(g)
		for _, name := range []string{"keywarden_credential_expiry_timestamp_seconds", "keywarden_credential_next_renewal_timestamp_seconds"} {
			_, ok := seriesValue(body, name, `namespace="`+ns+`"`)
			g.Expect(ok).To(BeFalse(), name+" gone after deletion")
		}
		_, ok := seriesValue(body, "keywarden_pending_revocations", `namespace="`+ns+`"`)
		g.Expect(ok).To(BeFalse())
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
}
