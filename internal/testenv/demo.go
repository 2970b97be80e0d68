package testenv

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywarden/keywarden/internal/apisim"
)

// DemoSetup is what `make demo` (hack/demo) makes, as a platform team and a
// team would: the two credential Secrets reevit-admin and revio-api-key in
// ClusterResourceNamespace, a ClusterReevitIssuer and a ClusterRevioIssuer
// named Issuer (the Reevit one with a policy selecting Namespace), and in
// Namespace an ApiKey payments rotating every Every with Grace, and a
// RevioToken billing. With AdminEvery set, the ClusterReevitIssuer rotates
// its own admin key that often, with AdminGrace (spec.adminKeyRotation).
type DemoSetup struct {
	Namespace, Issuer      string
	Every, Grace           time.Duration
	AdminEvery, AdminGrace time.Duration
}

// DemoManifest renders the setup with apisim's credentials. It carries the
// simulators' keys: pass it through stdin only.
func DemoManifest(c apisim.Credentials, s DemoSetup) []byte {
	return fmt.Appendf(nil, demoManifest, s.Namespace,
		c.AdminKey, c.RevioAPIKey,
		c.ReevitURL, c.OrgID, EnvironmentOf(c.AdminKey), s.Every, s.Grace,
		c.RevioURL, c.RevioHost, ClusterResourceNamespace, s.Issuer, adminKeyRotation(s))
}

// adminKeyRotation is the ClusterReevitIssuer's spec.adminKeyRotation, or
// nothing without AdminEvery.
func adminKeyRotation(s DemoSetup) string {
	if s.AdminEvery == 0 {
		return ""
	}
	return fmt.Sprintf("\n  adminKeyRotation:\n    every: %s\n    gracePeriod: %s", s.AdminEvery, s.AdminGrace)
}

// EnvironmentOf is the Reevit environment of a key, from its prefix:
// Reevit issues keys in the environment of the admin key that asks.
func EnvironmentOf(key string) string {
	if strings.HasPrefix(key, "pfk_live_") {
		return "live"
	}
	return "test"
}

// demoManifest: the platform's part (the two credential Secrets in the
// cluster-resource namespace, the two cluster issuers, the Reevit one
// rotating its admin key when asked, a policy bounding
// what the team may ask for) and the team's (namespace, ApiKey, RevioToken).
const demoManifest = `apiVersion: v1
kind: Secret
metadata:
  name: reevit-admin
  namespace: %[11]s
type: Opaque
stringData:
  apiKey: %[2]q
---
apiVersion: v1
kind: Secret
metadata:
  name: revio-api-key
  namespace: %[11]s
type: Opaque
stringData:
  apiKey: %[3]q
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: ClusterReevitIssuer
metadata:
  name: %[12]s
spec:
  url: %[4]s
  orgId: %[5]s
  actorId: keywarden-demo
  adminKeySecretRef:
    name: reevit-admin%[13]s
  policy:
    allowedScopes: [payments:read, payments:write]
    environments: [%[6]s]
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: %[1]s
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: ClusterRevioIssuer
metadata:
  name: %[12]s
spec:
  url: %[9]s
  host: %[10]s
  apiKeySecretRef:
    name: revio-api-key
---
apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: payments
  namespace: %[1]s
spec:
  issuerRef:
    kind: ClusterReevitIssuer
    name: %[12]s
  scopes: [payments:read, payments:write]
  environment: %[6]s
  rotation:
    every: %[7]s
    gracePeriod: %[8]s
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioToken
metadata:
  name: billing
  namespace: %[1]s
spec:
  issuerRef:
    kind: ClusterRevioIssuer
    name: %[12]s
  verify:
    path: /billing/api/v1/customers
`
