package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// credentials remembers every key and token the suite saw, so the last test
// can look for them in the manager's log, in events and in status.
type credentials struct {
	mu     sync.Mutex
	values map[string]string // value -> where it was seen
}

var seen = &credentials{values: map[string]string{}}

func (c *credentials) add(where string, values ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range values {
		if v != "" {
			if _, ok := c.values[v]; !ok {
				c.values[v] = where
			}
		}
	}
}

// needles returns what must not appear anywhere: each value, and the part a
// truncated print would still show (a key without its public prefix, a
// JWT's signature), with where each was seen. Never the values themselves
// in messages: callers print the "where".
func (c *credentials) needles() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for v, where := range c.values {
		out[v] = where
		v = strings.TrimPrefix(v, "Bearer ")
		if strings.HasPrefix(v, "pfk_") && len(v) > 13+12 {
			out[v[13:]] = where + " (without its prefix)"
		}
		if parts := strings.Split(v, "."); len(parts) == 3 && len(parts[2]) >= 16 {
			out[parts[2]] = where + " (JWT signature)"
		}
	}
	return out
}

// secretData reads a Secret as the administrator and remembers the
// credentials it holds. It returns nil when the Secret does not exist.
func secretData(ctx context.Context, ns, name string) (map[string][]byte, error) {
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	where := "Secret " + ns + "/" + name
	for _, k := range []string{"apiKey", "previousApiKey", "token", "authorization"} {
		seen.add(where+" "+k, string(s.Data[k]))
	}
	return s.Data, nil
}

// newNamespace creates a namespace for one test. Namespaces are not deleted:
// the control plane goes away with the suite.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// createSecret creates an input Secret with one data key, apiKey.
func createSecret(t *testing.T, ns, name, value string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"apiKey": value}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatalf("create Secret %s/%s: %v", ns, name, err)
	}
}

// apply applies a manifest with kubectl as the administrator, the way a
// user would. Manifests with credentials go through stdin.
func apply(t *testing.T, ns string, manifest []byte) {
	t.Helper()
	args := []string{"apply", "-f", "-"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	if _, err := env.AdminKubectl(context.Background(), manifest, args...); err != nil {
		t.Fatal(err)
	}
}

// condition returns the condition of type typ, or a zero one.
func condition(conds []metav1.Condition, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return *c
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown, Reason: "NotSet"}
}

// expectReady fails g unless the Ready condition is True for the current
// generation.
func expectReady(g Gomega, conds []metav1.Condition, generation int64) {
	c := condition(conds, v1alpha1.ConditionReady)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Ready is %s (%s): %s", c.Status, c.Reason, c.Message)
	g.Expect(c.ObservedGeneration).To(Equal(generation), "Ready describes generation %d, not %d", c.ObservedGeneration, generation)
}

// getApiKey and getRevioToken read the current object.
func getApiKey(g Gomega, ns, name string) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ak)).To(Succeed())
	return ak
}

// secretWith reads the Secret ns/name, checks that it holds key and
// returns its data.
func secretWith(g Gomega, ns, name, key string) map[string][]byte {
	data, err := secretData(context.Background(), ns, name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(HaveKey(key))
	return data
}

func getRevioToken(g Gomega, ns, name string) *v1alpha1.RevioToken {
	rt := &v1alpha1.RevioToken{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, rt)).To(Succeed())
	return rt
}

// issuerConditions reads an issuer of any of the four kinds (ns empty for
// the cluster kinds) and returns its conditions and generation.
func issuerConditions(g Gomega, kind, ns, name string) ([]metav1.Condition, int64) {
	obj := v1alpha1.NewIssuer(kind)
	if obj == nil {
		g.Expect(kind).To(BeElementOf(v1alpha1.IssuerKinds), "not an issuer kind")
	}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj.IssuerStatus().Conditions, obj.GetGeneration()
}

// adminEnvironment is the Reevit environment of apisim's admin key: Reevit
// issues keys in the environment of the key that asks.
func adminEnvironment() string { return testenv.EnvironmentOf(sim.Credentials.AdminKey) }

// The namespaced issuers apiKeyManifest and revioTokenManifest bring: in
// the namespace of the manifest, naming the Secrets reevit-admin and
// revio-api-key there (createSecret).
const (
	reevitIssuerName = "reevit"
	revioIssuerName  = "revio"
)

// apiKeyManifest is an ApiKey against apisim with an every rotation, and the
// ReevitIssuer it names (reevitIssuerName, naming the Secret reevit-admin of
// the namespace). Applying it for a second ApiKey of a namespace leaves the
// issuer as it is.
func apiKeyManifest(name string, every, grace time.Duration) []byte {
	c := sim.Credentials
	return fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: ReevitIssuer
metadata:
  name: %s
spec:
  url: %s
  orgId: %s
  adminKeySecretRef:
    name: reevit-admin
---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: ApiKey
metadata:
  name: %s
spec:
  issuerRef:
    name: %s
  scopes: [payments:read]
  environment: %s
  rotation:
    every: %s
    gracePeriod: %s
`, reevitIssuerName, c.ReevitURL, c.OrgID, name, reevitIssuerName, adminEnvironment(), every, grace)
}

// revioTokenManifest is a RevioToken against apisim, and the RevioIssuer it
// names (revioIssuerName, naming the Secret revio-api-key of the namespace).
func revioTokenManifest(name string) []byte {
	return revioManifest(revioIssuerName, "revio-api-key", "", name)
}

// revioManifest is a RevioToken name against apisim and the issuer it
// names, whose Rev.io API key is in the Secret secretName: with selectNS
// empty, a RevioIssuer, both in the namespace the manifest is applied to;
// else a ClusterRevioIssuer (its Secret in the manager's cluster-resource
// namespace) selecting namespace selectNS only, and a RevioToken of
// selectNS.
func revioManifest(issuer, secretName, selectNS, name string) []byte {
	c := sim.Credentials
	kind, selector, namespace, kindRef := v1alpha1.KindRevioIssuer, "", "", ""
	if selectNS != "" {
		kind = v1alpha1.KindClusterRevioIssuer
		selector = "  namespaceSelector:\n    matchLabels: {kubernetes.io/metadata.name: " + selectNS + "}\n"
		namespace = "  namespace: " + selectNS + "\n"
		kindRef = "    kind: " + kind + "\n"
	}
	return fmt.Appendf(nil, `apiVersion: credentials.keywarden.dev/v1alpha1
kind: %s
metadata:
  name: %s
spec:
  url: %s
  host: %s
  apiKeySecretRef:
    name: %s
%s---
apiVersion: credentials.keywarden.dev/v1alpha1
kind: RevioToken
metadata:
  name: %s
%sspec:
  issuerRef:
%s    name: %s
`, kind, issuer, c.RevioURL, c.RevioHost, secretName, selector, name, namespace, kindRef, issuer)
}

// permission is one row of a table of what an identity may do: whether
// (want) it may do verb on resource (a subresource after a slash, where the
// table's loop reads one) in namespace ns ("" for all namespaces or a
// cluster-scoped resource).
type permission struct {
	verb, resource, ns string
	want               bool
}

// canI asks the API server whether the manager's identity may do verb on
// resource in ns (kubectl auth can-i, as the manager itself).
func canI(ctx context.Context, verb, resource, ns string) (bool, error) {
	args := []string{"auth", "can-i", verb, resource}
	if ns != "" {
		args = append(args, "-n", ns)
	} else {
		args = append(args, "--all-namespaces")
	}
	res, err := env.ManagerKubectl(ctx, nil, args...)
	switch strings.TrimSpace(string(res.Stdout)) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("kubectl auth can-i %s %s: %v", verb, resource, err)
}

// managerLog returns everything the manager processes of the suite wrote.
func managerLog(t *testing.T) string {
	t.Helper()
	b, err := mgr.Log()
	if err != nil {
		t.Fatalf("read manager log: %v", err)
	}
	return string(b)
}

// parallelCredentialTest starts a parallel test whose keys the log check
// waits for (credentialTests) and returns its Gomega.
func parallelCredentialTest(t *testing.T) Gomega {
	t.Helper()
	credentialTests.Add(1)
	t.Cleanup(credentialTests.Done)
	t.Parallel()
	return NewWithT(t)
}

// credentialTest is parallelCredentialTest in a new namespace of its own.
func credentialTest(t *testing.T, prefix string) (Gomega, string) {
	t.Helper()
	g := parallelCredentialTest(t)
	return g, newNamespace(t, prefix)
}

// minuteWaits makes g's Eventually wait up to a minute, polling every
// 250 ms, unless a call says otherwise.
func minuteWaits(g Gomega) {
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
}
