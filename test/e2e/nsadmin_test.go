package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// A namespace admin (the aggregated admin role) under the chart's RBAC
// cannot use --allow-http-endpoints to reach a loopback listener the
// manager's --allowed-endpoints does not list: its ReevitIssuer and
// RevioIssuer there are EndpointNotAllowed and the listener sees no
// connection. Nor can it get Keywarden to write to a Secret its issuers
// refuse: a service-account token, a TLS and a basic-auth Secret named by
// its issuers carry no Keywarden finalizer, annotation or label. Before the
// fix the listener got the credential and each Secret got
// keywarden.dev/in-use.
func TestNamespaceAdminCannotWidenEndpointsOrMarkRefusedSecrets(t *testing.T) {
	g := parallelCredentialTest(t)
	ctx := context.Background()
	minuteWaits(g)

	// A loopback listener the manager's --allowed-endpoints does not list.
	other, conns := testenv.CountingListener()
	defer other.Close()

	ns := newNamespace(t, "nsadmin")
	// A namespace admin: the built-in "admin" ClusterRole there (Keywarden's
	// issuer roles aggregate into it), nothing more.
	admin := boundServiceAccount(t, ns, "ns-admin", "ns-admin", "admin")
	g.Eventually(func() string {
		out, _ := asTeam(admin, nil, "auth", "can-i", "create", "reevitissuers.credentials.keywarden.dev", "-n", ns)
		return strings.TrimSpace(out)
	}).Should(Equal("yes"), "the aggregated admin role lets a namespace admin create issuers")

	run := func(manifest string) {
		t.Helper()
		out, ok := asTeam(admin, []byte(manifest), "apply", "-n", ns, "-f", "-")
		g.Expect(ok).To(BeTrue(), out)
	}
	c := sim.Credentials
	run(fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: tok}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
stringData: {apiKey: %q}
---
apiVersion: v1
kind: Secret
metadata:
  name: sa-token
  annotations: {kubernetes.io/service-account.name: tok}
type: kubernetes.io/service-account-token
stringData: {apiKey: %q}
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
stringData: {tls.crt: c, tls.key: k, apiKey: %q}
---
apiVersion: v1
kind: Secret
metadata: {name: basic}
type: kubernetes.io/basic-auth
stringData: {username: u, password: p, apiKey: %q}
`, c.AdminKey, c.AdminKey, c.AdminKey, c.AdminKey))
	run(fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ReevitIssuer
metadata: {name: elsewhere}
spec:
  url: %s
  orgId: %s
  adminKeySecretRef: {name: creds}
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioIssuer
metadata: {name: elsewhere}
spec:
  url: %s
  host: %s
  apiKeySecretRef: {name: creds, key: apiKey}
`, other.URL, c.OrgID, other.URL, c.RevioHost))
	refused := []string{"sa-token", "tls", "basic"}
	for _, s := range refused {
		run(fmt.Sprintf(`apiVersion: credentials.keywarden.dev/v1alpha1
kind: ReevitIssuer
metadata: {name: by-%s}
spec:
  url: %s
  orgId: %s
  adminKeySecretRef: {name: %s}
`, s, c.ReevitURL, c.OrgID, s))
	}

	reason := func(kind, name string) func(g Gomega) string {
		return func(g Gomega) string {
			conds, _ := issuerConditions(g, kind, ns, name)
			return condition(conds, v1alpha1.ConditionReady).Reason
		}
	}
	g.Eventually(reason(v1alpha1.KindReevitIssuer, "elsewhere")).Should(Equal(v1alpha1.ReasonEndpointNotAllowed))
	g.Eventually(reason(v1alpha1.KindRevioIssuer, "elsewhere")).Should(Equal(v1alpha1.ReasonEndpointNotAllowed))
	for _, s := range refused {
		g.Eventually(reason(v1alpha1.KindReevitIssuer, "by-"+s)).Should(Equal(v1alpha1.ReasonSecretTypeNotAllowed), s)
	}
	g.Expect(conns.Load()).To(BeZero(), "connections to the unlisted loopback listener")
	for _, s := range refused {
		got := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s}, got)).To(Succeed())
		var marks []string
		for _, f := range got.Finalizers {
			if strings.Contains(f, "keywarden") {
				marks = append(marks, "finalizer "+f)
			}
		}
		for k := range got.Annotations {
			if strings.Contains(k, "keywarden") {
				marks = append(marks, "annotation "+k)
			}
		}
		for k := range got.Labels {
			if strings.Contains(k, "keywarden") {
				marks = append(marks, "label "+k)
			}
		}
		g.Expect(marks).To(BeEmpty(), "Secret %s of type %s", s, got.Type)
	}
}
