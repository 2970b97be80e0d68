package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/testenv"
)

// testBadInput feeds the API server and the manager input that cannot work:
// objects the schema must reject, and valid objects that point at something
// wrong, each of which must end with its reason and a message a person can
// act on, without spinning.
func testBadInput(t *testing.T, s *suite) {
	t.Run("SchemaSweep", func(t *testing.T) { schemaSweep(t, s) })
	t.Run("WrongObjects", func(t *testing.T) { wrongObjects(t, s) })
}

// mutation is one way to break a valid object.
type mutation struct {
	what  string
	field string // the error must name this field path
	apply []func(map[string]any)
}

func set(path string, v any) func(map[string]any) {
	return func(o map[string]any) {
		if err := unstructured.SetNestedField(o, v, strings.Split(path, ".")...); err != nil {
			panic(err)
		}
	}
}

func del(path string) func(map[string]any) {
	return func(o map[string]any) { unstructured.RemoveNestedField(o, strings.Split(path, ".")...) }
}

func mut(what, field string, apply ...func(map[string]any)) mutation {
	return mutation{what: what, field: field, apply: apply}
}

// validApiKey, validRevioToken and the valid issuers use every field, so
// every rule has something to break.
func validApiKey() *v1alpha1.ApiKey {
	limit := int32(10)
	return &v1alpha1.ApiKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ApiKey"},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:      v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: "acme"},
			DisplayName:    "payments service",
			Scopes:         []v1alpha1.Scope{"payments:read", "payments:write"},
			Environment:    "live",
			Rotation:       &v1alpha1.Rotation{Every: &metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: 10 * time.Minute}},
			Secret:         v1alpha1.SecretTemplate{Name: "payments-key", Labels: map[string]string{"app": "payments"}},
			RolloutRestart: []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "payments"}},
			DeletionPolicy: v1alpha1.DeletionPolicyRevoke,
			HistoryLimit:   &limit,
		},
	}
}

func validRevioToken() *v1alpha1.RevioToken {
	return &v1alpha1.RevioToken{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RevioToken"},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec: v1alpha1.RevioTokenSpec{
			IssuerRef:      v1alpha1.RevioIssuerReference{Kind: v1alpha1.KindClusterRevioIssuer, Name: "acme"},
			Refresh:        v1alpha1.Refresh{Before: &metav1.Duration{Duration: 10 * time.Minute}, Interval: &metav1.Duration{Duration: time.Hour}},
			Verify:         &v1alpha1.Verify{Path: "/billing/api/v1/customers"},
			Secret:         v1alpha1.SecretTemplate{Name: "billing-token"},
			RolloutRestart: []v1alpha1.RolloutTarget{{Kind: "StatefulSet", Name: "billing"}},
		},
	}
}

func validReevitIssuerSpec() v1alpha1.ReevitIssuerSpec {
	return v1alpha1.ReevitIssuerSpec{
		URL: "https://api.reevit.com", OrgID: "org_acme", ActorID: "keywarden",
		AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-admin", Key: "apiKey"},
		Policy: v1alpha1.ReevitIssuerPolicy{
			AllowedScopes:  []v1alpha1.Scope{"payments:read", "payments:write"},
			Environments:   []v1alpha1.Environment{"live", "test"},
			MaxKeyAge:      &metav1.Duration{Duration: 720 * time.Hour},
			MaxGracePeriod: &metav1.Duration{Duration: time.Hour},
		},
	}
}

func validReevitIssuer() *v1alpha1.ReevitIssuer {
	return &v1alpha1.ReevitIssuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindReevitIssuer},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec:       validReevitIssuerSpec(),
	}
}

func validClusterReevitIssuer() *v1alpha1.ClusterReevitIssuer {
	spec := validReevitIssuerSpec()
	spec.Policy.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}
	return &v1alpha1.ClusterReevitIssuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindClusterReevitIssuer},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec:       spec,
	}
}

func validRevioIssuerSpec() v1alpha1.RevioIssuerSpec {
	return v1alpha1.RevioIssuerSpec{
		URL: "https://api.psarev.io", Host: "acme.psarev.io",
		APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio-api-key", Key: "apiKey"},
	}
}

func validRevioIssuer() *v1alpha1.RevioIssuer {
	return &v1alpha1.RevioIssuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindRevioIssuer},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec:       validRevioIssuerSpec(),
	}
}

func validClusterRevioIssuer() *v1alpha1.ClusterRevioIssuer {
	spec := validRevioIssuerSpec()
	spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}}
	return &v1alpha1.ClusterRevioIssuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindClusterRevioIssuer},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec:       spec,
	}
}

func apiKeyMutations() []mutation {
	long := func(n int) string { return strings.Repeat("a", n) }
	targets33 := make([]any, 33)
	for i := range targets33 {
		targets33[i] = map[string]any{"kind": "Deployment", "name": fmt.Sprintf("d%d", i)}
	}
	return []mutation{
		mut("environment not in the enum", "spec.environment", set("spec.environment", "prod")),
		mut("environment of the wrong type", "spec.environment", set("spec.environment", int64(42))),
		mut("environment missing", "spec.environment", del("spec.environment")),
		mut("no scopes", "spec.scopes", set("spec.scopes", []any{})),
		mut("scopes missing", "spec.scopes", del("spec.scopes")),
		mut("unknown scope", "spec.scopes", set("spec.scopes", []any{"payments:admin"})),
		mut("duplicate scope", "spec.scopes", set("spec.scopes", []any{"payments:read", "payments:read"})),
		mut("issuerRef missing", "spec.issuerRef", del("spec.issuerRef")),
		mut("issuerRef kind of the other API", "spec.issuerRef.kind", set("spec.issuerRef.kind", v1alpha1.KindRevioIssuer)),
		mut("issuerRef kind of another project", "spec.issuerRef.kind", set("spec.issuerRef.kind", "ClusterIssuer")),
		mut("issuerRef name empty", "spec.issuerRef.name", set("spec.issuerRef.name", "")),
		mut("issuerRef name missing", "spec.issuerRef.name", del("spec.issuerRef.name")),
		mut("issuerRef name with capitals", "spec.issuerRef.name", set("spec.issuerRef.name", "Reevit_Admin")),
		mut("issuerRef name too long", "spec.issuerRef.name", set("spec.issuerRef.name", long(254))),
		mut("the removed inline endpoint", "spec.reevit", set("spec.reevit", map[string]any{"orgId": "org_acme", "adminKeySecretRef": map[string]any{"name": "reevit-admin"}})),
		mut("displayName too long", "spec.displayName", set("spec.displayName", long(201))),
		mut("rotation.every below 1m", "spec.rotation.every", set("spec.rotation.every", "30s")),
		mut("rotation.every in days", "spec.rotation.every", set("spec.rotation.every", "30d")),
		mut("rotation.every and schedule together", "spec.rotation", set("spec.rotation.schedule", "0 3 * * 1")),
		mut("rotation.timeZone without schedule", "spec.rotation", set("spec.rotation.timeZone", "Europe/Berlin")),
		mut("rotation.schedule minute 61", "spec.rotation.schedule", del("spec.rotation.every"), del("spec.rotation.gracePeriod"), set("spec.rotation.schedule", "61 * * * *")),
		mut("rotation.schedule with three fields", "spec.rotation.schedule", del("spec.rotation.every"), del("spec.rotation.gracePeriod"), set("spec.rotation.schedule", "0 3 *")),
		mut("rotation.timeZone not a zone name", "spec.rotation.timeZone", del("spec.rotation.every"), del("spec.rotation.gracePeriod"),
			set("spec.rotation.schedule", "@daily"), set("spec.rotation.timeZone", "../etc/passwd")),
		mut("gracePeriod longer than every", "spec.rotation", set("spec.rotation.gracePeriod", "2h")),
		mut("gracePeriod in words", "spec.rotation.gracePeriod", set("spec.rotation.gracePeriod", "ten minutes")),
		mut("deletionPolicy not in the enum", "spec.deletionPolicy", set("spec.deletionPolicy", "Delete")),
		mut("historyLimit above 100", "spec.historyLimit", set("spec.historyLimit", int64(101))),
		mut("historyLimit negative", "spec.historyLimit", set("spec.historyLimit", int64(-1))),
		mut("rollout target of kind Pod", "spec.rolloutRestart", set("spec.rolloutRestart", []any{map[string]any{"kind": "Pod", "name": "web"}})),
		mut("rollout target without a name", "spec.rolloutRestart", set("spec.rolloutRestart", []any{map[string]any{"kind": "Deployment", "name": ""}})),
		mut("33 rollout targets", "spec.rolloutRestart", set("spec.rolloutRestart", targets33)),
		mut("output Secret name with capitals", "spec.secret.name", set("spec.secret.name", "Payments-Key")),
	}
}

func revioTokenMutations() []mutation {
	return []mutation{
		mut("issuerRef missing", "spec.issuerRef", del("spec.issuerRef")),
		mut("issuerRef kind of the other API", "spec.issuerRef.kind", set("spec.issuerRef.kind", v1alpha1.KindClusterReevitIssuer)),
		mut("issuerRef name with a slash", "spec.issuerRef.name", set("spec.issuerRef.name", "a/b")),
		mut("issuerRef name empty", "spec.issuerRef.name", set("spec.issuerRef.name", "")),
		mut("the removed inline API-key reference", "spec.apiKeySecretRef", set("spec.apiKeySecretRef", map[string]any{"name": "revio-api-key"})),
		mut("refresh.interval below 10s", "spec.refresh.interval", set("spec.refresh.interval", "5s")),
		mut("refresh.before in words", "spec.refresh.before", set("spec.refresh.before", "ten minutes")),
		mut("verify.path without a leading slash", "spec.verify.path", set("spec.verify.path", "billing/api")),
		mut("verify.path empty", "spec.verify.path", set("spec.verify.path", "")),
		mut("rollout target of kind Job", "spec.rolloutRestart", set("spec.rolloutRestart", []any{map[string]any{"kind": "Job", "name": "x"}})),
		mut("output Secret name starting with a dash", "spec.secret.name", set("spec.secret.name", "-token")),
	}
}

// reevitIssuerMutations break either Reevit issuer kind: the endpoint,
// credential and policy rules that moved from ApiKey.spec.reevit.
func reevitIssuerMutations() []mutation {
	long := func(n int) string { return strings.Repeat("a", n) }
	return []mutation{
		mut("orgId empty", "spec.orgId", set("spec.orgId", "")),
		mut("orgId missing", "spec.orgId", del("spec.orgId")),
		mut("orgId with a space", "spec.orgId", set("spec.orgId", "org acme")),
		mut("orgId starting with a dash", "spec.orgId", set("spec.orgId", "-acme")),
		mut("orgId too long", "spec.orgId", set("spec.orgId", long(129))),
		mut("http:// URL to a remote host", "spec.url", set("spec.url", "http://api.reevit.com")),
		mut("ftp:// URL", "spec.url", set("spec.url", "ftp://127.0.0.1/")),
		mut("URL without a host", "spec.url", set("spec.url", "https://")),
		mut("URL not a URL", "spec.url", set("spec.url", "api.reevit.com")),
		mut("admin Secret name with capitals", "spec.adminKeySecretRef.name", set("spec.adminKeySecretRef.name", "Reevit_Admin")),
		mut("admin Secret name empty", "spec.adminKeySecretRef.name", set("spec.adminKeySecretRef.name", "")),
		mut("admin Secret key with a space", "spec.adminKeySecretRef.key", set("spec.adminKeySecretRef.key", "api key")),
		mut("admin Secret reference missing", "spec.adminKeySecretRef", del("spec.adminKeySecretRef")),
		mut("actorId too long", "spec.actorId", set("spec.actorId", long(129))),
		mut("actorId with a space", "spec.actorId", set("spec.actorId", "key warden")),
		mut("policy scope unknown", "spec.policy.allowedScopes", set("spec.policy.allowedScopes", []any{"payments:admin"})),
		mut("policy scope twice", "spec.policy.allowedScopes", set("spec.policy.allowedScopes", []any{"payments:read", "payments:read"})),
		mut("policy environment not in the enum", "spec.policy.environments", set("spec.policy.environments", []any{"prod"})),
		mut("policy maxKeyAge in days", "spec.policy.maxKeyAge", set("spec.policy.maxKeyAge", "90d")),
		mut("policy maxGracePeriod in words", "spec.policy.maxGracePeriod", set("spec.policy.maxGracePeriod", "one hour")),
	}
}

// revioIssuerMutations break either Rev.io issuer kind: the rules that moved
// from RevioToken.spec.
func revioIssuerMutations() []mutation {
	return []mutation{
		mut("host with capitals", "spec.host", set("spec.host", "Acme.psarev.io")),
		mut("host with a port", "spec.host", set("spec.host", "acme.psarev.io:443")),
		mut("host with a scheme", "spec.host", set("spec.host", "https://acme.psarev.io")),
		mut("host empty", "spec.host", set("spec.host", "")),
		mut("host missing", "spec.host", del("spec.host")),
		mut("API-key Secret reference missing", "spec.apiKeySecretRef", del("spec.apiKeySecretRef")),
		mut("API-key Secret name with a slash", "spec.apiKeySecretRef.name", set("spec.apiKeySecretRef.name", "a/b")),
		mut("http:// URL to a remote host", "spec.url", set("spec.url", "http://api.psarev.io")),
	}
}

// A namespaced issuer serves its own namespace: a namespace selector is
// refused on it (the message names the field).
var (
	reevitIssuerOnlyMutations = []mutation{
		mut("namespaceSelector on a namespaced issuer", "spec.policy.namespaceSelector",
			set("spec.policy.namespaceSelector", map[string]any{"matchLabels": map[string]any{"team": "payments"}})),
	}
	revioIssuerOnlyMutations = []mutation{
		mut("namespaceSelector on a namespaced issuer", "spec.namespaceSelector",
			set("spec.namespaceSelector", map[string]any{"matchLabels": map[string]any{"team": "billing"}})),
	}
)

// schemaSweep creates (server-side dry run, so admission and validation run
// in full; strict field validation, so a field that no longer exists is
// refused instead of pruned) every mutation of a valid ApiKey, RevioToken
// and issuer of each kind; the valid ones must pass and every mutation must
// be rejected naming its field.
func schemaSweep(t *testing.T, s *suite) {
	ctx := context.Background()
	ns := s.newNamespace(t, "schema")
	sweep := func(base client.Object, cluster bool, muts []mutation) int {
		kind := base.GetObjectKind().GroupVersionKind().Kind
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(base)
		if err != nil {
			t.Fatal(err)
		}
		valid := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(raw)}
		if !cluster {
			valid.SetNamespace(ns)
		}
		if err := s.env.Client.Create(ctx, valid, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("the valid %s is rejected: %v", kind, err)
		}
		rejected := 0
		for i, m := range muts {
			u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(raw)}
			if !cluster {
				u.SetNamespace(ns)
			}
			u.SetName(fmt.Sprintf("sweep-%d", i))
			for _, f := range m.apply {
				f(u.Object)
			}
			err := s.env.Client.Create(ctx, u, client.DryRunAll, client.FieldValidation("Strict"))
			switch {
			case err == nil:
				t.Errorf("%s %q: accepted", kind, m.what)
			case !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err):
				t.Errorf("%s %q: rejected, but not as invalid: %v", kind, m.what, err)
			case !strings.Contains(err.Error(), m.field):
				t.Errorf("%s %q: rejected without naming %s: %v", kind, m.what, m.field, err)
			default:
				rejected++
			}
		}
		return rejected
	}
	n, total := 0, 0
	for _, x := range []struct {
		base    client.Object
		cluster bool
		muts    []mutation
	}{
		{validApiKey(), false, apiKeyMutations()},
		{validRevioToken(), false, revioTokenMutations()},
		{validReevitIssuer(), false, append(reevitIssuerMutations(), reevitIssuerOnlyMutations...)},
		{validClusterReevitIssuer(), true, reevitIssuerMutations()},
		{validRevioIssuer(), false, append(revioIssuerMutations(), revioIssuerOnlyMutations...)},
		{validClusterRevioIssuer(), true, revioIssuerMutations()},
	} {
		n += sweep(x.base, x.cluster, x.muts)
		total += len(x.muts)
	}
	s.sum.fault("invalid objects (schema sweep), rejected", n)
	t.Logf("schema sweep: %d of %d invalid objects rejected naming their field", n, total)
	if total < 30 {
		t.Errorf("the sweep has only %d mutations", total)
	}
}

// wrongCase is a valid object that cannot work, and what it must report.
type wrongCase struct {
	obj     client.Object
	reason  string
	mention string // the message must contain this
	mgr     int    // 0: the manager allowing http://, 1: the one refusing it
}

// wrongObjects creates valid objects that point at something wrong (most of
// them through an issuer naming a wrong credential) and checks each one's
// Ready reason, message and Warning event, and the issuers' own, then that
// the managers stay quiet, then that fixing the input is noticed.
func wrongObjects(t *testing.T, s *suite) {
	ctx := context.Background()
	sim := s.startApisim(t, 10*time.Minute)
	ns := s.newNamespace(t, "wrong")
	nsHTTP := s.newNamespace(t, "insecure")
	s.createInputSecrets(t, ns, sim)
	s.createInputSecrets(t, nsHTTP, sim)

	seed := func(name string, scopes ...string) string {
		_, key, err := sim.Control.SeedReevitKey(ctx, apisim.SeedKeyRequest{OrgID: sim.Credentials.OrgID, Env: adminEnv(sim), Name: name, Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		s.needles.add("seeded key "+name, key)
		return key
	}
	s.createSecret(t, ns, "limited-admin", "apiKey", seed("limited admin", "api_keys:read", "api_keys:write", "payments:read"))
	s.createSecret(t, ns, "readonly-admin", "apiKey", seed("read-only admin", "api_keys:read", "payments:read"))
	s.createSecret(t, ns, "bogus-admin", "apiKey", "pfk_"+adminEnv(sim)+"_"+randomHex(16))
	s.createSecret(t, ns, "bogus-revio", "apiKey", "rvk_"+randomHex(20))
	s.createSecret(t, ns, "taken-ak", "note", "a Secret someone else owns")
	s.createSecret(t, ns, "taken-rt", "note", "a Secret someone else owns")
	// The working credentials in Secrets of another type (the confused
	// deputy of issue 14: a service-account token sent as an admin key):
	// refused for the type alone.
	for name, value := range map[string]string{"sa-token-admin": sim.Credentials.AdminKey, "sa-token-revio": sim.Credentials.RevioAPIKey} {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type:       corev1.SecretTypeServiceAccountToken,
			Data:       map[string][]byte{"apiKey": []byte(value)},
		}
		if err := s.env.Client.Create(ctx, sec); err != nil {
			t.Fatalf("create Secret %s/%s: %v", ns, name, err)
		}
	}

	// The issuers the wrong objects name, each wrong in one way.
	ref := func(name, key string) v1alpha1.SecretKeyReference {
		return v1alpha1.SecretKeyReference{Name: name, Key: key}
	}
	reevitIssuers := map[string]*v1alpha1.ReevitIssuer{
		"absent-admin":   newReevitIssuer(ns, "absent-admin", sim, ref("absent-admin", "apiKey")),
		"wrong-key":      newReevitIssuer(ns, "wrong-key", sim, ref(adminSecret, "token")),
		"limited-admin":  newReevitIssuer(ns, "limited-admin", sim, ref("limited-admin", "apiKey")),
		"readonly-admin": newReevitIssuer(ns, "readonly-admin", sim, ref("readonly-admin", "apiKey")),
		"bogus-admin":    newReevitIssuer(ns, "bogus-admin", sim, ref("bogus-admin", "apiKey")),
		"sa-token":       newReevitIssuer(ns, "sa-token", sim, ref("sa-token-admin", "apiKey")),
		"read-only":      newReevitIssuer(ns, "read-only", sim, ref(adminSecret, "apiKey")),
		"elsewhere":      newReevitIssuer(ns, "elsewhere", sim, ref(adminSecret, "apiKey")),
	}
	reevitIssuers["read-only"].Spec.Policy.AllowedScopes = []v1alpha1.Scope{"payments:read"}
	// Outside --allowed-endpoints: the manager must not send the admin key there.
	reevitIssuers["elsewhere"].Spec.URL = "https://keys.example.com"
	revioIssuers := map[string]*v1alpha1.RevioIssuer{
		"absent-revio": newRevioIssuer(ns, "absent-revio", sim, ref("absent-revio", "apiKey")),
		"wrong-key":    newRevioIssuer(ns, "wrong-key", sim, ref(revioSecret, "key")),
		"bogus-revio":  newRevioIssuer(ns, "bogus-revio", sim, ref("bogus-revio", "apiKey")),
		"sa-token":     newRevioIssuer(ns, "sa-token", sim, ref("sa-token-revio", "apiKey")),
	}
	for _, i := range reevitIssuers {
		s.createIssuer(t, i)
	}
	for _, i := range revioIssuers {
		s.createIssuer(t, i)
	}

	ak := func(name, issuer string, edit func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		o := newApiKey(ns, name, sim, 0, 0)
		o.Spec.IssuerRef.Name = issuer
		if edit != nil {
			edit(o)
		}
		return o
	}
	rt := func(name, issuer string, edit func(*v1alpha1.RevioToken)) *v1alpha1.RevioToken {
		o := newRevioToken(ns, name, sim)
		o.Spec.IssuerRef.Name = issuer
		if edit != nil {
			edit(o)
		}
		return o
	}
	cases := []wrongCase{
		{obj: ak("ak-missing-secret", "absent-admin", nil), reason: v1alpha1.ReasonSecretNotFound, mention: "absent-admin"},
		{obj: ak("ak-wrong-key", "wrong-key", nil), reason: v1alpha1.ReasonSecretNotFound, mention: `"token"`},
		{obj: ak("ak-missing-scope", "limited-admin", func(o *v1alpha1.ApiKey) {
			o.Spec.Scopes = []v1alpha1.Scope{"payments:read", "invoices:write"}
		}), reason: v1alpha1.ReasonMissingScope, mention: "invoices:write"},
		{obj: ak("ak-missing-write", "readonly-admin", nil), reason: v1alpha1.ReasonMissingScope, mention: "api_keys:write"},
		{obj: ak("ak-unauthorized", "bogus-admin", nil), reason: v1alpha1.ReasonUnauthorized, mention: "admin key"},
		{obj: ak("ak-conflict", reevitIssuer, func(o *v1alpha1.ApiKey) { o.Spec.Secret.Name = "taken-ak" }),
			reason: v1alpha1.ReasonSecretConflict, mention: "taken-ak"},
		{obj: ak("ak-no-issuer", "absent", nil), reason: v1alpha1.ReasonIssuerNotFound, mention: "absent"},
		{obj: ak("ak-secret-type", "sa-token", nil), reason: v1alpha1.ReasonSecretTypeNotAllowed, mention: "Opaque"},
		{obj: ak("ak-policy", "read-only", func(o *v1alpha1.ApiKey) {
			o.Spec.Scopes = []v1alpha1.Scope{"payments:read", "payments:write"}
		}), reason: v1alpha1.ReasonPolicyViolation, mention: "payments:write"},
		{obj: ak("ak-endpoint", "elsewhere", nil), reason: v1alpha1.ReasonEndpointNotAllowed, mention: "https://keys.example.com"},
		{obj: rt("rt-missing-secret", "absent-revio", nil), reason: v1alpha1.ReasonSecretNotFound, mention: "absent-revio"},
		{obj: rt("rt-wrong-key", "wrong-key", nil), reason: v1alpha1.ReasonSecretNotFound, mention: `"key"`},
		{obj: rt("rt-invalid-key", "bogus-revio", nil), reason: v1alpha1.ReasonInvalidAPIKey, mention: "valid key"},
		{obj: rt("rt-conflict", revioIssuer, func(o *v1alpha1.RevioToken) { o.Spec.Secret.Name = "taken-rt" }),
			reason: v1alpha1.ReasonSecretConflict, mention: "taken-rt"},
		{obj: rt("rt-no-issuer", "absent", nil), reason: v1alpha1.ReasonIssuerNotFound, mention: "absent"},
		{obj: rt("rt-secret-type", "sa-token", nil), reason: v1alpha1.ReasonSecretTypeNotAllowed, mention: "Opaque"},
	}
	httpAK := newApiKey(nsHTTP, "ak-http", sim, 0, 0)
	httpRT := newRevioToken(nsHTTP, "rt-http", sim)
	cases = append(cases,
		wrongCase{obj: httpAK, reason: v1alpha1.ReasonInsecureEndpoint, mention: "https://", mgr: 1},
		wrongCase{obj: httpRT, reason: v1alpha1.ReasonInsecureEndpoint, mention: "https://", mgr: 1})
	// The issuers report what is wrong with their credential themselves (a
	// Rev.io issuer makes no exchange of its own: the key of bogus-revio is
	// found invalid by the RevioToken's exchange alone).
	issuerCases := []wrongCase{
		{obj: reevitIssuers["absent-admin"], reason: v1alpha1.ReasonSecretNotFound, mention: "absent-admin"},
		{obj: reevitIssuers["wrong-key"], reason: v1alpha1.ReasonSecretNotFound, mention: `"token"`},
		{obj: reevitIssuers["bogus-admin"], reason: v1alpha1.ReasonUnauthorized, mention: "admin key"},
		{obj: reevitIssuers["sa-token"], reason: v1alpha1.ReasonSecretTypeNotAllowed, mention: "Opaque"},
		{obj: reevitIssuers["elsewhere"], reason: v1alpha1.ReasonEndpointNotAllowed, mention: "https://keys.example.com"},
		{obj: revioIssuers["absent-revio"], reason: v1alpha1.ReasonSecretNotFound, mention: "absent-revio"},
		{obj: revioIssuers["wrong-key"], reason: v1alpha1.ReasonSecretNotFound, mention: `"key"`},
		{obj: revioIssuers["sa-token"], reason: v1alpha1.ReasonSecretTypeNotAllowed, mention: "Opaque"},
	}

	mgrs := []*testenv.Manager{
		s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns), AllowedEndpoints: sim.Endpoints()}),
		// testenv passes --allow-http-endpoints; the last value wins. apisim's
		// URLs are listed as allowed endpoints, so what refuses them is
		// http:// itself.
		s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(nsHTTP, "--allow-http-endpoints=false"),
			AllowedEndpoints: sim.Endpoints()}),
	}
	defer func() {
		for _, m := range mgrs {
			_ = m.Stop(10 * time.Second)
		}
	}()
	takenBefore := map[string]string{}
	for _, name := range []string{"taken-ak", "taken-rt"} {
		sec := &corev1.Secret{}
		if err := s.env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			t.Fatal(err)
		}
		takenBefore[name] = sec.ResourceVersion
	}
	for _, c := range cases {
		if err := s.create(ctx, c.obj); err != nil {
			t.Fatalf("create %s: %v", c.obj.GetName(), err)
		}
	}
	for _, c := range append(append([]wrongCase{}, cases...), issuerCases...) {
		err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) {
			return reportsReason(ctx, s, c)
		})
		if err != nil {
			t.Errorf("%s %s: %v", kindOf(c.obj), c.obj.GetName(), err)
		}
	}
	s.sum.fault("valid but wrong objects, each with its reason", len(cases))
	s.sum.fault("issuers with a wrong credential or endpoint, each with its reason", len(issuerCases))

	// Quiet: nothing retries what needs a person.
	counts := func() (r, ri [2]float64, api apisim.Counts) {
		for i, m := range mgrs {
			a, b, err := reconcileCounts(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			r[i] = a + b
			for _, k := range []string{v1alpha1.KindReevitIssuer, v1alpha1.KindRevioIssuer} {
				n, err := reconciles(ctx, m, strings.ToLower(k))
				if err != nil {
					t.Fatal(err)
				}
				ri[i] += n
			}
		}
		api, err := sim.Control.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r, ri, api
	}
	r0, ri0, api0 := counts()
	sleep(ctx, s.mode.badQuiet)
	r1, ri1, api1 := counts()
	d := countDelta(api1, api0)
	t.Logf("wrong objects: %v reconciles in total, %v during a %s quiet window (issuers: %v, %v during the window); API calls in total: Reevit %d, Rev.io %d; during the window: %d",
		r1, [2]float64{r1[0] - r0[0], r1[1] - r0[1]}, s.mode.badQuiet, ri1, [2]float64{ri1[0] - ri0[0], ri1[1] - ri0[1]},
		countStatus(api1.Reevit), countStatus(api1.Revio), countStatus(d.Reevit)+countStatus(d.Revio))
	for i := range mgrs {
		if r1[i]-r0[i] > 2 {
			t.Errorf("manager %d reconciled %.0f times in a %s quiet window: objects that need a person must not spin", i, r1[i]-r0[i], s.mode.badQuiet)
		}
		if ri1[i]-ri0[i] > 2 {
			t.Errorf("manager %d reconciled issuers %.0f times in a %s quiet window: issuers that need a person must not spin", i, ri1[i]-ri0[i], s.mode.badQuiet)
		}
	}
	if r1[0] > float64(15*len(cases)) {
		t.Errorf("%.0f reconciles for %d wrong objects: unbounded", r1[0], len(cases))
	}
	if calls := countStatus(d.Reevit) + countStatus(d.Revio); calls > 0 {
		t.Errorf("%d API calls during the quiet window", calls)
	}
	if creates := countStatus(map[string]map[int]int{"create": api1.Reevit["create"]}); creates > 8 {
		t.Errorf("%d Reevit create calls for three ApiKeys that cannot create a key", creates)
	}
	if ex := countStatus(map[string]map[int]int{"exchange": api1.Revio["exchange"]}); ex > 4 {
		t.Errorf("%d Rev.io exchanges for one invalid API key", ex)
	}
	for name, rv := range takenBefore {
		sec := &corev1.Secret{}
		if err := s.env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			t.Fatal(err)
		}
		if sec.ResourceVersion != rv || len(sec.OwnerReferences) > 0 {
			t.Errorf("the foreign Secret %s was modified", name)
		}
	}

	// Fixing the input is noticed without a restart: the missing Secret
	// created, the key name corrected (on the issuer, where it lives now),
	// the missing issuers created, the foreign Secrets deleted.
	byName := map[string]client.Object{}
	for _, c := range cases {
		byName[c.obj.GetName()] = c.obj
	}
	s.createSecret(t, ns, "absent-admin", "apiKey", sim.Credentials.AdminKey)
	fixKey := []byte(`{"spec":{"apiKeySecretRef":{"key":"apiKey"}}}`)
	if err := s.env.Client.Patch(ctx, revioIssuers["wrong-key"], client.RawPatch(types.MergePatchType, fixKey)); err != nil {
		t.Fatal(err)
	}
	s.createIssuer(t, newReevitIssuer(ns, "absent", sim, ref(adminSecret, "apiKey")))
	s.createIssuer(t, newRevioIssuer(ns, "absent", sim, ref(revioSecret, "apiKey")))
	for _, name := range []string{"taken-ak", "taken-rt"} {
		if err := s.env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"ak-missing-secret", "rt-wrong-key", "ak-conflict", "rt-conflict", "ak-no-issuer", "rt-no-issuer"} {
		if err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) { return isReady(ctx, s, byName[name]) }); err != nil {
			t.Errorf("%s after the fix: %v", name, err)
		}
	}
	for _, i := range []client.Object{reevitIssuers["absent-admin"], revioIssuers["wrong-key"]} {
		if err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) { return isReady(ctx, s, i) }); err != nil {
			t.Errorf("%s %s after the fix: %v", kindOf(i), i.GetName(), err)
		}
	}
}

// kindOf names the kind of one of Keywarden's objects.
func kindOf(obj client.Object) string {
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		return "ApiKey"
	case *v1alpha1.RevioToken:
		return "RevioToken"
	case v1alpha1.GenericIssuer: // the four issuer kinds
		return o.IssuerKind()
	}
	return fmt.Sprintf("%T", obj)
}

// currentConditions reads obj (any of Keywarden's kinds) and returns its
// conditions and generation; the status is kept for the hygiene scan.
func currentConditions(ctx context.Context, s *suite, obj client.Object) ([]metav1.Condition, int64, error) {
	cur := obj.DeepCopyObject().(client.Object)
	if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
		return nil, 0, err
	}
	switch o := cur.(type) {
	case *v1alpha1.ApiKey:
		s.statuses.add(o, o.Status)
		return o.Status.Conditions, o.Generation, nil
	case *v1alpha1.RevioToken:
		s.statuses.add(o, o.Status)
		return o.Status.Conditions, o.Generation, nil
	case v1alpha1.GenericIssuer: // the four issuer kinds
		st := o.IssuerStatus()
		s.statuses.add(o, *st)
		return st.Conditions, o.GetGeneration(), nil
	}
	return nil, 0, fmt.Errorf("%T is not one of Keywarden's kinds", obj)
}

// reportsReason checks the Ready condition (False, reason, message naming
// the problem, current generation) and a Warning event with the reason.
func reportsReason(ctx context.Context, s *suite, c wrongCase) (bool, string) {
	conds, gen, err := currentConditions(ctx, s, c.obj)
	if err != nil {
		return false, err.Error()
	}
	r := condition(conds, v1alpha1.ConditionReady)
	switch {
	case r == nil || r.Status != metav1.ConditionFalse || r.Reason != c.reason:
		return false, fmt.Sprintf("want Ready=False %s, have %s", c.reason, describeReady(conds))
	case r.ObservedGeneration != gen:
		return false, fmt.Sprintf("Ready describes generation %d, not %d", r.ObservedGeneration, gen)
	case !strings.Contains(r.Message, c.mention):
		return false, fmt.Sprintf("the message %q does not mention %q", r.Message, c.mention)
	}
	var evs eventsv1.EventList
	if err := s.env.Client.List(ctx, &evs, client.InNamespace(c.obj.GetNamespace())); err != nil {
		return false, err.Error()
	}
	kind := kindOf(c.obj)
	for _, e := range evs.Items {
		if e.Regarding.Name == c.obj.GetName() && e.Regarding.Kind == kind && e.Reason == c.reason && e.Type == corev1.EventTypeWarning && e.Note != "" {
			return true, ""
		}
	}
	return false, "no Warning event with reason " + c.reason
}

// isReady reports whether obj is Ready for its generation.
func isReady(ctx context.Context, s *suite, obj client.Object) (bool, string) {
	conds, gen, err := currentConditions(ctx, s, obj)
	if err != nil {
		return false, err.Error()
	}
	return readyFor(conds, gen), describeReady(conds)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
