package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// These tests prove the CRD schemas on the real API server started by
// TestMain: the samples are accepted, every admission rule rejects what it
// should with a message a person can act on, and defaults are applied.

var (
	samplesDir = filepath.Join("..", "..", "config", "samples")
	crdDir     = filepath.Join("..", "..", "config", "crd", "bases")
)

// readYAMLDocs splits a multi-document YAML file into objects, skipping
// empty documents (comments only).
func readYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var docs []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return docs
			}
			t.Fatalf("decode %s: %v", path, err)
		}
		if len(m) > 0 {
			docs = append(docs, m)
		}
	}
}

// sampleFiles waits for config/samples to hold YAML files and returns them,
// kustomization.yaml excluded.
func sampleFiles(t *testing.T) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		files, err := filepath.Glob(filepath.Join(samplesDir, "*.yaml"))
		if err != nil {
			t.Fatalf("glob samples: %v", err)
		}
		files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "kustomization.yaml" })
		if len(files) > 0 {
			return files
		}
		if time.Now().After(deadline) {
			t.Fatalf("no samples in %s", samplesDir)
		}
		time.Sleep(5 * time.Second)
	}
}

func TestSamplesAccepted(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	files := sampleFiles(t)

	kinds := map[string]int{}
	for _, f := range files {
		docs := readYAMLDocs(t, f)
		g.Expect(docs).NotTo(BeEmpty(), "%s holds no object", f)
		for i, doc := range docs {
			u := &unstructured.Unstructured{Object: doc}
			u.SetNamespace(ns)
			what := fmt.Sprintf("%s document %d (%s %s)", filepath.Base(f), i, u.GetKind(), u.GetName())
			// Strict: a misspelt field fails instead of being pruned silently.
			g.Expect(k8s.Create(ctx, u, client.FieldValidation("Strict"))).To(Succeed(), what)
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed(), what)
			kinds[u.GetKind()]++
		}
	}
	g.Expect(kinds).To(HaveKey("ApiKey"), "the samples show an ApiKey")
	g.Expect(kinds).To(HaveKey("RevioToken"), "the samples show a RevioToken")

	// kubectl apply -k config/samples applies what kustomization.yaml lists:
	// every sample file must be listed there.
	kust := filepath.Join(samplesDir, "kustomization.yaml")
	if _, err := os.Stat(kust); err == nil {
		docs := readYAMLDocs(t, kust)
		g.Expect(docs).To(HaveLen(1))
		var listed []string
		res, _ := docs[0]["resources"].([]any)
		for _, r := range res {
			listed = append(listed, fmt.Sprint(r))
		}
		for _, f := range files {
			g.Expect(listed).To(ContainElement(filepath.Base(f)), "kustomization.yaml lists %s", filepath.Base(f))
		}
	}
}

// baseObject is a v1alpha1 object of kind with the given spec.
func baseObject(kind string, spec map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       kind,
		"spec":       spec,
	}
}

// baseApiKey is a valid ApiKey with only the required fields.
func baseApiKey() map[string]any {
	return baseObject("ApiKey", map[string]any{
		"issuerRef":   map[string]any{"name": "reevit"},
		"scopes":      []any{"payments:read"},
		"environment": "test",
	})
}

// baseRevioToken is a valid RevioToken with only the required fields.
func baseRevioToken() map[string]any {
	return baseObject("RevioToken", map[string]any{
		"issuerRef": map[string]any{"name": "revio"},
	})
}

// baseReevitIssuer is a valid ReevitIssuer with only the required fields.
func baseReevitIssuer() map[string]any {
	return baseObject("ReevitIssuer", map[string]any{
		"orgId":             "org_acme",
		"adminKeySecretRef": map[string]any{"name": "reevit-admin"},
	})
}

// baseRevioIssuer is a valid RevioIssuer with only the required fields.
func baseRevioIssuer() map[string]any {
	return baseObject("RevioIssuer", map[string]any{
		"host":            "acme.psarev.io",
		"apiKeySecretRef": map[string]any{"name": "revio-api-key"},
	})
}

// specMutation changes one field of an object given by a dotted path below spec.
type specMutation func(obj map[string]any)

func specSet(path string, v any) specMutation {
	return func(obj map[string]any) {
		if err := unstructured.SetNestedField(obj, v, append([]string{"spec"}, strings.Split(path, ".")...)...); err != nil {
			panic(err)
		}
	}
}

func specUnset(path string) specMutation {
	return func(obj map[string]any) {
		unstructured.RemoveNestedField(obj, append([]string{"spec"}, strings.Split(path, ".")...)...)
	}
}

func anyStrs(ss ...string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var allReevitScopes = []string{
	"connections:read", "connections:write", "payments:read", "payments:write",
	"fraud:read", "fraud:write", "webhooks:read", "webhooks:write",
	"subscriptions:read", "subscriptions:write", "invoices:read", "invoices:write",
	"api_keys:read", "api_keys:write", "workflows:read", "workflows:write",
}

type schemaCase struct {
	name string
	kind string // ApiKey or RevioToken
	muts []specMutation
	// want holds substrings the API server's message must contain; empty
	// means the object must be accepted.
	want []string
}

func newSchemaObject(kind string, muts []specMutation) *unstructured.Unstructured {
	var obj map[string]any
	switch kind {
	case "ApiKey":
		obj = baseApiKey()
	case "RevioToken":
		obj = baseRevioToken()
	case "ReevitIssuer":
		obj = baseReevitIssuer()
	case "RevioIssuer":
		obj = baseRevioIssuer()
	default:
		panic("unknown kind " + kind)
	}
	for _, m := range muts {
		m(obj)
	}
	return &unstructured.Unstructured{Object: obj}
}

func akCase(name string, want []string, muts ...specMutation) schemaCase {
	return schemaCase{name: name, kind: "ApiKey", muts: muts, want: want}
}

func riCase(name string, want []string, muts ...specMutation) schemaCase {
	return schemaCase{name: name, kind: "ReevitIssuer", muts: muts, want: want}
}

func rviCase(name string, want []string, muts ...specMutation) schemaCase {
	return schemaCase{name: name, kind: "RevioIssuer", muts: muts, want: want}
}

func rtCase(name string, want []string, muts ...specMutation) schemaCase {
	return schemaCase{name: name, kind: "RevioToken", muts: muts, want: want}
}

func wantMsg(s ...string) []string { return s }

// runSchemaCases creates each case's object in ns as a dry run, in a
// subtest "<kind>/<name>". A case without want must be accepted; one with
// want must be rejected with every string of want in the message, and the
// error must then pass rejected's checks (nil: none further).
func runSchemaCases(t *testing.T, ns string, cases []schemaCase, rejected func(t *testing.T, g Gomega, err error)) {
	for i, c := range cases {
		t.Run(c.kind+"/"+c.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := newSchemaObject(c.kind, c.muts)
			obj.SetNamespace(ns)
			obj.SetName(fmt.Sprintf("case-%d", i))
			err := k8s.Create(context.Background(), obj, client.DryRunAll)
			if len(c.want) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred(), "the API server accepted the object")
			for _, w := range c.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
			if rejected != nil {
				rejected(t, g, err)
			}
		})
	}
}

func TestSchemaRejects(t *testing.T) {
	ns := newNamespace(t)

	cases := []schemaCase{
		// Scopes.
		akCase("unknown scope", wantMsg(`spec.scopes[1]`, `Unsupported value: "payments:delete"`, `"payments:read"`),
			specSet("scopes", anyStrs("payments:read", "payments:delete"))),
		akCase("duplicate scope", wantMsg(`spec.scopes[1]`, `Duplicate value: "payments:read"`),
			specSet("scopes", anyStrs("payments:read", "payments:read"))),
		akCase("zero scopes", wantMsg(`spec.scopes`, `should have at least 1 items`),
			specSet("scopes", []any{})),
		akCase("no scopes", wantMsg(`spec.scopes`, `Required value`),
			specUnset("scopes")),
		akCase("17 scopes", wantMsg(`spec.scopes`, `must have at most 16 items`),
			specSet("scopes", anyStrs(append(slices.Clone(allReevitScopes), "payments:read")...))),

		// Rotation.
		akCase("every and schedule", wantMsg(`spec.rotation`, `rotation.every and rotation.schedule are mutually exclusive`),
			specSet("rotation.every", "24h"), specSet("rotation.schedule", "0 3 * * *")),
		akCase("timeZone without schedule", wantMsg(`spec.rotation`, `rotation.timeZone applies only to rotation.schedule`),
			specSet("rotation.every", "24h"), specSet("rotation.timeZone", "Europe/Berlin")),
		akCase("timeZone alone", wantMsg(`spec.rotation`, `rotation.timeZone applies only to rotation.schedule`),
			specSet("rotation.timeZone", "Europe/Berlin")),
		akCase("malformed timeZone", wantMsg(`spec.rotation.timeZone: Invalid value: "Europe Berlin": rotation.timeZone must be an IANA time zone name (Area/Location) such as Europe/Berlin or UTC`),
			specSet("rotation.schedule", "0 3 * * *"), specSet("rotation.timeZone", "Europe Berlin")),
		akCase("timeZone Local", wantMsg(`spec.rotation.timeZone: Invalid value: "Local": rotation.timeZone must be an IANA time zone`),
			specSet("rotation.schedule", "0 3 * * *"), specSet("rotation.timeZone", "Local")),
		akCase("timeZone not a name", wantMsg(`spec.rotation.timeZone: Invalid value: "+01:00": rotation.timeZone must be an IANA time zone`),
			specSet("rotation.schedule", "0 3 * * *"), specSet("rotation.timeZone", "+01:00")),
		akCase("cron minute out of range", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "61 * * * *")),
		akCase("cron with three fields", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "* * *")),
		akCase("cron in words", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "every day")),
		akCase("cron with six fields", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "0 0 3 * * *")),
		akCase("cron hour 24", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "0 24 * * *")),
		akCase("cron day of week 7", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "0 3 * * 7")),
		akCase("cron unknown month name", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "0 3 1 FOO *")),
		akCase("cron step zero", wantMsg(`spec.rotation.schedule`, `5-field cron`),
			specSet("rotation.schedule", "*/0 * * * *")),
		akCase("every below 1m", wantMsg(`spec.rotation`, `rotation.every must be at least 1m`),
			specSet("rotation.every", "59s")),
		akCase("every not a duration", wantMsg(`spec.rotation.every`, `Go duration`),
			specSet("rotation.every", "1d")),
		akCase("every with a space", wantMsg(`spec.rotation.every`, `Go duration`),
			specSet("rotation.every", "1 h")),
		akCase("gracePeriod not a duration", wantMsg(`spec.rotation.gracePeriod`, `Go duration`),
			specSet("rotation.every", "24h"), specSet("rotation.gracePeriod", "ten minutes")),
		akCase("gracePeriod longer than every", wantMsg(`spec.rotation`, `rotation.gracePeriod must not be longer than rotation.every`),
			specSet("rotation.every", "1h"), specSet("rotation.gracePeriod", "61m")),

		// Reevit endpoint.
		riCase("http url to a remote host", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "http://api.reevit.com")),
		riCase("http url to a host starting with localhost", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "http://localhost.evil.example")),
		riCase("http url with localhost as user info", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "http://localhost@evil.example")),
		riCase("http url to a private address", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "http://10.0.0.1:8080")),
		riCase("url not a URL", wantMsg(`spec.url`, `url must be an absolute URL`),
			specSet("url", "https://exa mple.com")),
		riCase("url without scheme", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "api.reevit.com")),
		riCase("url without host", wantMsg(`spec.url`, `url must be an absolute URL`),
			specSet("url", "https://")),
		riCase("empty orgId", wantMsg(`spec.orgId`, `should be at least 1 chars long`),
			specSet("orgId", "")),
		riCase("missing orgId", wantMsg(`spec.orgId`, `Required value`),
			specUnset("orgId")),
		riCase("orgId with a space", wantMsg(`spec.orgId`, `should match`),
			specSet("orgId", "org acme")),
		riCase("orgId with a slash", wantMsg(`spec.orgId`, `should match`),
			specSet("orgId", "org/acme")),
		riCase("admin secret name not a DNS name", wantMsg(`spec.adminKeySecretRef.name`, `should match`),
			specSet("adminKeySecretRef.name", "Reevit_Admin")),
		riCase("admin secret key with a slash", wantMsg(`spec.adminKeySecretRef.key`, `should match`),
			specSet("adminKeySecretRef.key", "a/b")),

		// The rest of the ApiKey spec.
		akCase("unknown environment", wantMsg(`spec.environment`, `Unsupported value: "prod"`, `"live"`, `"test"`),
			specSet("environment", "prod")),
		akCase("unknown rolloutRestart kind", wantMsg(`spec.rolloutRestart[0].kind`, `Unsupported value: "Job"`, `"Deployment"`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "Job", "name": "migrate"}})),
		akCase("rolloutRestart without name", wantMsg(`spec.rolloutRestart[0]`, `exactly one of name or selector must be set`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "Deployment"}})),
		akCase("unknown deletionPolicy", wantMsg(`spec.deletionPolicy`, `Unsupported value: "Delete"`, `"Revoke"`, `"Retain"`),
			specSet("deletionPolicy", "Delete")),
		akCase("secret name with upper case", wantMsg(`spec.secret.name`, `should match`),
			specSet("secret.name", "Payments-Key")),
		akCase("secret name with underscore", wantMsg(`spec.secret.name`, `should match`),
			specSet("secret.name", "payments_key")),
		akCase("historyLimit negative", wantMsg(`spec.historyLimit`, `should be greater than or equal to 0`),
			specSet("historyLimit", int64(-1))),
		akCase("historyLimit above 100", wantMsg(`spec.historyLimit`, `should be less than or equal to 100`),
			specSet("historyLimit", int64(101))),

		// RevioToken.
		rviCase("http url to a remote host", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "http://api.psarev.io")),
		rviCase("url not a URL", wantMsg(`spec.url`, `url must be an absolute URL`),
			specSet("url", "https://api psarev.io")),
		rviCase("url without scheme", wantMsg(`spec.url`, `url must use https://`),
			specSet("url", "api.psarev.io")),
		rviCase("empty host", wantMsg(`spec.host`, `should be at least 1 chars long`),
			specSet("host", "")),
		rviCase("host with underscore and capitals", wantMsg(`spec.host`, `DNS name`),
			specSet("host", "Acme_Host")),
		rviCase("host with scheme", wantMsg(`spec.host`, `DNS name`),
			specSet("host", "http://acme.psarev.io")),
		rviCase("host with port", wantMsg(`spec.host`, `DNS name`),
			specSet("host", "acme.psarev.io:443")),
		rviCase("host with path", wantMsg(`spec.host`, `DNS name`),
			specSet("host", "acme.psarev.io/billing")),
		rviCase("host label longer than 63", wantMsg(`spec.host`, `DNS name`),
			specSet("host", strings.Repeat("a", 64)+".psarev.io")),
		rtCase("refresh.interval below 10s", wantMsg(`spec.refresh.interval`, `refresh.interval must be at least 10s`),
			specSet("refresh.interval", "9s")),
		rtCase("refresh.interval not a duration", wantMsg(`spec.refresh.interval`, `Go duration`),
			specSet("refresh.interval", "1 hour")),
		rtCase("refresh.before not a duration", wantMsg(`spec.refresh.before`, `Go duration`),
			specSet("refresh.before", "-5m")),
		rtCase("verify.path relative", wantMsg(`spec.verify.path`, `should match`),
			specSet("verify.path", "billing/api/v1/customers")),
		rtCase("verify.path a full URL", wantMsg(`spec.verify.path`, `should match`),
			specSet("verify.path", "https://api.psarev.io/billing")),
		rtCase("unknown rolloutRestart kind", wantMsg(`spec.rolloutRestart[0].kind`, `Unsupported value: "CronJob"`),
			specSet("rolloutRestart", []any{map[string]any{"kind": "CronJob", "name": "sync"}})),
		rtCase("secret name with upper case", wantMsg(`spec.secret.name`, `should match`),
			specSet("secret.name", "Billing")),
		rviCase("api key secret without name", wantMsg(`spec.apiKeySecretRef.name`, `Required value`),
			specUnset("apiKeySecretRef.name")),

		// Issuers and references.
		akCase("issuerRef to an unknown kind", wantMsg(`spec.issuerRef.kind`, `Unsupported value: "Issuer"`),
			specSet("issuerRef.kind", "Issuer")),
		akCase("issuerRef without name", wantMsg(`spec.issuerRef.name`, `Required value`),
			specUnset("issuerRef.name")),
		akCase("no issuerRef", wantMsg(`spec.issuerRef`, `Required value`),
			specUnset("issuerRef")),
		rtCase("issuerRef to a Reevit issuer", wantMsg(`spec.issuerRef.kind`, `Unsupported value: "ReevitIssuer"`),
			specSet("issuerRef.kind", "ReevitIssuer")),
		riCase("namespaceSelector on a namespaced issuer", wantMsg(`namespaceSelector applies only to ClusterReevitIssuer`),
			specSet("policy.namespaceSelector", map[string]any{"matchLabels": map[string]any{"team": "a"}})),
		riCase("policy scope unknown", wantMsg(`spec.policy.allowedScopes[0]`, `Unsupported value`),
			specSet("policy.allowedScopes", anyStrs("payments:admin"))),
		riCase("policy environment unknown", wantMsg(`spec.policy.environments[0]`, `Unsupported value`),
			specSet("policy.environments", anyStrs("prod"))),
		riCase("policy maxKeyAge not a duration", wantMsg(`spec.policy.maxKeyAge`, `Go duration`),
			specSet("policy.maxKeyAge", "30 days")),
		riCase("actorId with a newline", wantMsg(`spec.actorId`, `should match`),
			specSet("actorId", "ops\nX-Injected: 1")),
		rviCase("namespaceSelector on a namespaced issuer", wantMsg(`namespaceSelector applies only to ClusterRevioIssuer`),
			specSet("namespaceSelector", map[string]any{"matchLabels": map[string]any{"team": "a"}})),
		riCase("policy accepted", nil, specSet("policy.allowedScopes", anyStrs("payments:read")), specSet("policy.environments", anyStrs("test")),
			specSet("policy.maxKeyAge", "720h"), specSet("policy.maxGracePeriod", "1h")),

		// Accepted: loopback http for the simulators, the edges of each range.
		riCase("http://localhost accepted", nil, specSet("url", "http://localhost:8080")),
		riCase("http://127.0.0.1 accepted", nil, specSet("url", "http://127.0.0.1:39123/base")),
		riCase("http://[::1] accepted", nil, specSet("url", "http://[::1]:9000")),
		akCase("all 16 scopes accepted", nil, specSet("scopes", anyStrs(allReevitScopes...))),
		akCase("every 1m accepted", nil, specSet("rotation.every", "1m")),
		akCase("gracePeriod equal to every accepted", nil, specSet("rotation.every", "1h"), specSet("rotation.gracePeriod", "1h")),
		akCase("schedule with time zone accepted", nil, specSet("rotation.schedule", "30 2 * * MON-FRI"), specSet("rotation.timeZone", "America/New_York")),
		akCase("schedule in UTC accepted", nil, specSet("rotation.schedule", "0 3 * * 1"), specSet("rotation.timeZone", "UTC")),
		akCase("schedule in Etc/GMT+5 accepted", nil, specSet("rotation.schedule", "0 3 * * 1"), specSet("rotation.timeZone", "Etc/GMT+5")),
		akCase("schedule with lists and steps accepted", nil, specSet("rotation.schedule", "*/15 0,12 1-7 JAN,jul ?")),
		akCase("schedule descriptor accepted", nil, specSet("rotation.schedule", "@weekly")),
		akCase("historyLimit 0 accepted", nil, specSet("historyLimit", int64(0))),
		akCase("historyLimit 100 accepted", nil, specSet("historyLimit", int64(100))),
		rviCase("http://localhost accepted", nil, specSet("url", "http://localhost:8443")),
		rviCase("http://[::1] accepted", nil, specSet("url", "http://[::1]:8443/")),
		rviCase("refresh.interval 10s accepted", nil, specSet("refresh.interval", "10s")),
		rviCase("host with many labels accepted", nil, specSet("host", "acme-2.eu.psarev.io")),
	}

	runSchemaCases(t, ns, cases, func(t *testing.T, g Gomega, err error) {
		t.Log(err)
		g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want 422 Invalid, got %v", err)
		// A rule that cannot evaluate on a malformed value must not add
		// noise to the message that names the real problem.
		g.Expect(err.Error()).NotTo(ContainSubstring("type conversion error"))
		g.Expect(err.Error()).NotTo(ContainSubstring("no such overload"))
		// Nor fail to evaluate: the API server then shows the field's
		// type (Invalid value: "string") in place of the value.
		g.Expect(err.Error()).NotTo(ContainSubstring(`Invalid value: "string"`))
		g.Expect(err.Error()).NotTo(ContainSubstring("evaluating rule"))
	})
}

func TestSchemaDefaults(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)

	key := newSchemaObject("ApiKey", nil)
	key.SetNamespace(ns)
	key.SetName("defaults")
	g.Expect(k8s.Create(ctx, key, client.FieldValidation("Strict"))).To(Succeed())
	got := &v1alpha1.ApiKey{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), got)).To(Succeed())
	g.Expect(got.Spec.IssuerRef.Kind).To(Equal(v1alpha1.KindReevitIssuer))
	g.Expect(got.Spec.DeletionPolicy).To(Equal(v1alpha1.DeletionPolicyRevoke))
	g.Expect(got.Spec.HistoryLimit).NotTo(BeNil())
	g.Expect(*got.Spec.HistoryLimit).To(BeEquivalentTo(10))
	g.Expect(got.Spec.Rotation).To(BeNil(), "no rotation unless asked for")

	// Explicit values are kept.
	key = newSchemaObject("ApiKey", []specMutation{
		specSet("issuerRef.kind", "ClusterReevitIssuer"),
		specSet("deletionPolicy", "Retain"), specSet("historyLimit", int64(3)),
	})
	key.SetNamespace(ns)
	key.SetName("explicit")
	g.Expect(k8s.Create(ctx, key, client.FieldValidation("Strict"))).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(key), got)).To(Succeed())
	g.Expect(got.Spec.IssuerRef.Kind).To(Equal(v1alpha1.KindClusterReevitIssuer))
	g.Expect(got.Spec.DeletionPolicy).To(Equal(v1alpha1.DeletionPolicyRetain))
	g.Expect(*got.Spec.HistoryLimit).To(BeEquivalentTo(3))

	// A RevioToken written as a user writes YAML: no refresh block at all.
	tok := newSchemaObject("RevioToken", nil)
	tok.SetNamespace(ns)
	tok.SetName("defaults")
	g.Expect(k8s.Create(ctx, tok, client.FieldValidation("Strict"))).To(Succeed())
	gotTok := &v1alpha1.RevioToken{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tok), gotTok)).To(Succeed())
	g.Expect(gotTok.Spec.IssuerRef.Kind).To(Equal(v1alpha1.KindRevioIssuer))

	// Issuers default their URL and the credential's data key.
	ri := newSchemaObject("ReevitIssuer", nil)
	ri.SetNamespace(ns)
	ri.SetName("defaults")
	g.Expect(k8s.Create(ctx, ri, client.FieldValidation("Strict"))).To(Succeed())
	gotRi := &v1alpha1.ReevitIssuer{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ri), gotRi)).To(Succeed())
	g.Expect(gotRi.Spec.URL).To(Equal("https://api.reevit.com"))
	g.Expect(gotRi.Spec.AdminKeySecretRef.Key).To(Equal("apiKey"))
	rvi := newSchemaObject("RevioIssuer", nil)
	rvi.SetNamespace(ns)
	rvi.SetName("defaults")
	g.Expect(k8s.Create(ctx, rvi, client.FieldValidation("Strict"))).To(Succeed())
	gotRvi := &v1alpha1.RevioIssuer{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rvi), gotRvi)).To(Succeed())
	g.Expect(gotRvi.Spec.URL).To(Equal("https://api.psarev.io"))
	g.Expect(gotRvi.Spec.APIKeySecretRef.Key).To(Equal("apiKey"))
	g.Expect(gotTok.Spec.Refresh.Interval).NotTo(BeNil(), "refresh.interval defaults even without a refresh block")
	g.Expect(gotTok.Spec.Refresh.Interval.Duration).To(Equal(time.Hour))
	g.Expect(gotTok.Spec.Refresh.Before).To(BeNil(), "refresh.before defaults to a third of the lifetime, computed per token")

	// Unknown fields are refused under strict validation (typos do not vanish).
	typo := newSchemaObject("ApiKey", []specMutation{specSet("rotaton", map[string]any{"every": "24h"})})
	typo.SetNamespace(ns)
	typo.SetName("typo")
	err := k8s.Create(ctx, typo, client.FieldValidation("Strict"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(`unknown field "spec.rotaton"`))
}

// TestSchemaDescriptions walks every CRD: every property below the root
// carries a description, since `kubectl explain` is the user's reference.
func TestSchemaDescriptions(t *testing.T) {
	g := NewWithT(t)
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).To(HaveLen(6))

	for _, f := range files {
		docs := readYAMLDocs(t, f)
		g.Expect(docs).To(HaveLen(1))
		versions, found, err := unstructured.NestedSlice(docs[0], "spec", "versions")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(found).To(BeTrue())
		for _, v := range versions {
			vm := v.(map[string]any)
			root, found, err := unstructured.NestedMap(vm, "schema", "openAPIV3Schema")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(found).To(BeTrue(), "%s has an openAPIV3Schema", f)
			g.Expect(root["description"]).NotTo(BeEmpty(), "%s: the kind has a description", f)

			var missing []string
			checked := 0
			var walk func(path string, s map[string]any)
			walk = func(path string, s map[string]any) {
				if props, ok := s["properties"].(map[string]any); ok {
					for name, p := range props {
						pm := p.(map[string]any)
						sub := path + "." + name
						if path == "" && (name == "metadata" || name == "apiVersion" || name == "kind") {
							continue
						}
						checked++
						if d, _ := pm["description"].(string); strings.TrimSpace(d) == "" {
							missing = append(missing, sub)
						}
						walk(sub, pm)
					}
				}
				if items, ok := s["items"].(map[string]any); ok {
					walk(path+"[]", items)
				}
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					walk(path+"{}", ap)
				}
			}
			walk("", root)
			g.Expect(checked).To(BeNumerically(">", 20), "%s: the walk found the properties", f)
			slices.Sort(missing)
			g.Expect(missing).To(BeEmpty(), "%s %s: properties without a description", f, vm["name"])
		}
	}
}
