package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestPrinterColumns reads every kind as a person does, with kubectl get
// and -o wide: future times (next rotation, expiry, next refresh) print as
// RFC 3339 times, not <invalid>, and no column is empty when its value is
// known.
func TestPrinterColumns(t *testing.T) {
	g, ns := credentialTest(t, "columns")
	ctx := context.Background()
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)
	createSecret(t, ns, "revio-api-key", sim.Credentials.RevioAPIKey)
	apply(t, ns, apiKeyManifest("cols", 24*time.Hour, time.Hour))
	apply(t, ns, revioTokenManifest("cols-token"))
	// The issuers' checks are written by their own reconciler, beside the
	// ApiKey's and RevioToken's: either may be Ready first.
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "cols")
		expectReady(g, ak.Status.Conditions, ak.Generation)
		rt := getRevioToken(g, ns, "cols-token")
		expectReady(g, rt.Status.Conditions, rt.Generation)
		for kind, name := range map[string]string{"ReevitIssuer": reevitIssuerName, "RevioIssuer": revioIssuerName} {
			conds, gen := issuerConditions(g, kind, ns, name)
			expectReady(g, conds, gen)
		}
	}, time.Minute, 250*time.Millisecond).Should(Succeed())
	ak := getApiKey(g, ns, "cols")
	rt := getRevioToken(g, ns, "cols-token")
	_, _ = secretData(ctx, ns, "cols")
	_, _ = secretData(ctx, ns, "cols-token")

	// The Issuer column names the kind with the name: issuerRef {name: x}
	// means the namespaced kind, and a cluster issuer may share the name.
	for _, c := range []struct {
		resource string
		want     []string
		wideOnly []string
	}{
		{"apikeys", []string{"True", ak.Status.KeyPrefix, "ReevitIssuer/" + reevitIssuerName, ak.Status.NextRotationTime.UTC().Format(time.RFC3339)}, nil},
		{"reviotokens", []string{"True", rt.Status.ExpiresAt.UTC().Format(time.RFC3339), rt.Status.NextRefreshTime.UTC().Format(time.RFC3339)},
			[]string{"RevioIssuer/" + revioIssuerName}},
		{"reevitissuers", []string{"True", sim.Credentials.OrgID, "Succeeded"}, nil},
		{"revioissuers", []string{"True", sim.Credentials.RevioHost, "Succeeded"}, nil},
	} {
		for _, wide := range []bool{false, true} {
			args := []string{"get", c.resource, "-n", ns}
			if wide {
				args = append(args, "-o", "wide")
			}
			res, err := env.AdminKubectl(ctx, nil, args...)
			g.Expect(err).NotTo(HaveOccurred())
			out := string(res.Stdout)
			t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
			g.Expect(out).NotTo(ContainSubstring("<invalid>"), c.resource)
			g.Expect(out).NotTo(ContainSubstring("<none>"), "%s: a known value is missing", c.resource)
			for _, w := range c.want {
				g.Expect(out).To(ContainSubstring(w), c.resource)
			}
			for _, w := range c.wideOnly {
				if wide {
					g.Expect(out).To(ContainSubstring(w), c.resource)
				}
			}
		}
	}
}
