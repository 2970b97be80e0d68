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

// validApiKey and validRevioToken use every field, so every rule has
// something to break.
func validApiKey() *v1alpha1.ApiKey {
	limit := int32(10)
	return &v1alpha1.ApiKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ApiKey"},
		ObjectMeta: metav1.ObjectMeta{Name: "sweep"},
		Spec: v1alpha1.ApiKeySpec{
			Reevit: v1alpha1.ReevitEndpoint{URL: "https://api.reevit.com", OrgID: "org_acme", ActorID: "keywarden",
				AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-admin", Key: "apiKey"}},
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
			URL: "https://api.psarev.io", Host: "acme.psarev.io",
			APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio-api-key", Key: "apiKey"},
			Refresh:         v1alpha1.Refresh{Before: &metav1.Duration{Duration: 10 * time.Minute}, Interval: &metav1.Duration{Duration: time.Hour}},
			Verify:          &v1alpha1.Verify{Path: "/billing/api/v1/customers"},
			Secret:          v1alpha1.SecretTemplate{Name: "billing-token"},
			RolloutRestart:  []v1alpha1.RolloutTarget{{Kind: "StatefulSet", Name: "billing"}},
		},
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
		mut("orgId empty", "spec.reevit.orgId", set("spec.reevit.orgId", "")),
		mut("orgId missing", "spec.reevit.orgId", del("spec.reevit.orgId")),
		mut("orgId with a space", "spec.reevit.orgId", set("spec.reevit.orgId", "org acme")),
		mut("orgId starting with a dash", "spec.reevit.orgId", set("spec.reevit.orgId", "-acme")),
		mut("orgId too long", "spec.reevit.orgId", set("spec.reevit.orgId", long(129))),
		mut("http:// URL to a remote host", "spec.reevit.url", set("spec.reevit.url", "http://api.reevit.com")),
		mut("ftp:// URL", "spec.reevit.url", set("spec.reevit.url", "ftp://127.0.0.1/")),
		mut("URL without a host", "spec.reevit.url", set("spec.reevit.url", "https://")),
		mut("URL not a URL", "spec.reevit.url", set("spec.reevit.url", "api.reevit.com")),
		mut("admin Secret name with capitals", "spec.reevit.adminKeySecretRef.name", set("spec.reevit.adminKeySecretRef.name", "Reevit_Admin")),
		mut("admin Secret name empty", "spec.reevit.adminKeySecretRef.name", set("spec.reevit.adminKeySecretRef.name", "")),
		mut("admin Secret key with a space", "spec.reevit.adminKeySecretRef.key", set("spec.reevit.adminKeySecretRef.key", "api key")),
		mut("admin Secret reference missing", "spec.reevit.adminKeySecretRef", del("spec.reevit.adminKeySecretRef")),
		mut("actorId too long", "spec.reevit.actorId", set("spec.reevit.actorId", long(129))),
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
		mut("host with capitals", "spec.host", set("spec.host", "Acme.psarev.io")),
		mut("host with a port", "spec.host", set("spec.host", "acme.psarev.io:443")),
		mut("host with a scheme", "spec.host", set("spec.host", "https://acme.psarev.io")),
		mut("host empty", "spec.host", set("spec.host", "")),
		mut("host missing", "spec.host", del("spec.host")),
		mut("API-key Secret reference missing", "spec.apiKeySecretRef", del("spec.apiKeySecretRef")),
		mut("API-key Secret name with a slash", "spec.apiKeySecretRef.name", set("spec.apiKeySecretRef.name", "a/b")),
		mut("http:// URL to a remote host", "spec.url", set("spec.url", "http://api.psarev.io")),
		mut("refresh.interval below 10s", "spec.refresh.interval", set("spec.refresh.interval", "5s")),
		mut("refresh.before in words", "spec.refresh.before", set("spec.refresh.before", "ten minutes")),
		mut("verify.path without a leading slash", "spec.verify.path", set("spec.verify.path", "billing/api")),
		mut("verify.path empty", "spec.verify.path", set("spec.verify.path", "")),
		mut("rollout target of kind Job", "spec.rolloutRestart", set("spec.rolloutRestart", []any{map[string]any{"kind": "Job", "name": "x"}})),
		mut("output Secret name starting with a dash", "spec.secret.name", set("spec.secret.name", "-token")),
	}
}

// schemaSweep creates (server-side dry run, so admission and validation run
// in full) every mutation of a valid ApiKey and RevioToken; the valid ones
// must pass and every mutation must be rejected naming its field.
func schemaSweep(t *testing.T, s *suite) {
	ctx := context.Background()
	ns := s.newNamespace(t, "schema")
	sweep := func(base client.Object, muts []mutation) int {
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(base)
		if err != nil {
			t.Fatal(err)
		}
		valid := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(raw)}
		valid.SetNamespace(ns)
		if err := s.env.Client.Create(ctx, valid, client.DryRunAll); err != nil {
			t.Fatalf("the valid %s is rejected: %v", base.GetObjectKind().GroupVersionKind().Kind, err)
		}
		rejected := 0
		for i, m := range muts {
			u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(raw)}
			u.SetNamespace(ns)
			u.SetName(fmt.Sprintf("sweep-%d", i))
			for _, f := range m.apply {
				f(u.Object)
			}
			err := s.env.Client.Create(ctx, u, client.DryRunAll)
			switch {
			case err == nil:
				t.Errorf("%s %q: accepted", u.GetKind(), m.what)
			case !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err):
				t.Errorf("%s %q: rejected, but not as invalid: %v", u.GetKind(), m.what, err)
			case !strings.Contains(err.Error(), m.field):
				t.Errorf("%s %q: rejected without naming %s: %v", u.GetKind(), m.what, m.field, err)
			default:
				rejected++
			}
		}
		return rejected
	}
	n := sweep(validApiKey(), apiKeyMutations()) + sweep(validRevioToken(), revioTokenMutations())
	total := len(apiKeyMutations()) + len(revioTokenMutations())
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

// wrongObjects creates valid objects that point at something wrong and
// checks each one's Ready reason, message and Warning event, then that the
// managers stay quiet, then that fixing the input is noticed.
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

	ak := func(name string, edit func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		o := newApiKey(ns, name, sim, 0, 0)
		edit(o)
		return o
	}
	rt := func(name string, edit func(*v1alpha1.RevioToken)) *v1alpha1.RevioToken {
		o := newRevioToken(ns, name, sim)
		edit(o)
		return o
	}
	cases := []wrongCase{
		{obj: ak("ak-missing-secret", func(o *v1alpha1.ApiKey) { o.Spec.Reevit.AdminKeySecretRef.Name = "absent-admin" }),
			reason: v1alpha1.ReasonSecretNotFound, mention: "absent-admin"},
		{obj: ak("ak-wrong-key", func(o *v1alpha1.ApiKey) { o.Spec.Reevit.AdminKeySecretRef.Key = "token" }),
			reason: v1alpha1.ReasonSecretNotFound, mention: `"token"`},
		{obj: ak("ak-missing-scope", func(o *v1alpha1.ApiKey) {
			o.Spec.Reevit.AdminKeySecretRef.Name = "limited-admin"
			o.Spec.Scopes = []v1alpha1.Scope{"payments:read", "invoices:write"}
		}), reason: v1alpha1.ReasonMissingScope, mention: "invoices:write"},
		{obj: ak("ak-missing-write", func(o *v1alpha1.ApiKey) { o.Spec.Reevit.AdminKeySecretRef.Name = "readonly-admin" }),
			reason: v1alpha1.ReasonMissingScope, mention: "api_keys:write"},
		{obj: ak("ak-unauthorized", func(o *v1alpha1.ApiKey) { o.Spec.Reevit.AdminKeySecretRef.Name = "bogus-admin" }),
			reason: v1alpha1.ReasonUnauthorized, mention: "admin key"},
		{obj: ak("ak-conflict", func(o *v1alpha1.ApiKey) { o.Spec.Secret.Name = "taken-ak" }),
			reason: v1alpha1.ReasonSecretConflict, mention: "taken-ak"},
		{obj: rt("rt-missing-secret", func(o *v1alpha1.RevioToken) { o.Spec.APIKeySecretRef.Name = "absent-revio" }),
			reason: v1alpha1.ReasonSecretNotFound, mention: "absent-revio"},
		{obj: rt("rt-wrong-key", func(o *v1alpha1.RevioToken) { o.Spec.APIKeySecretRef.Key = "key" }),
			reason: v1alpha1.ReasonSecretNotFound, mention: `"key"`},
		{obj: rt("rt-invalid-key", func(o *v1alpha1.RevioToken) { o.Spec.APIKeySecretRef.Name = "bogus-revio" }),
			reason: v1alpha1.ReasonInvalidAPIKey, mention: "valid key"},
		{obj: rt("rt-conflict", func(o *v1alpha1.RevioToken) { o.Spec.Secret.Name = "taken-rt" }),
			reason: v1alpha1.ReasonSecretConflict, mention: "taken-rt"},
	}
	httpAK := newApiKey(nsHTTP, "ak-http", sim, 0, 0)
	httpRT := newRevioToken(nsHTTP, "rt-http", sim)
	cases = append(cases,
		wrongCase{obj: httpAK, reason: v1alpha1.ReasonInsecureEndpoint, mention: "https://", mgr: 1},
		wrongCase{obj: httpRT, reason: v1alpha1.ReasonInsecureEndpoint, mention: "https://", mgr: 1})

	mgrs := []*testenv.Manager{
		s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(ns)}),
		// testenv passes --allow-http-endpoints; the last value wins.
		s.startManager(t, testenv.ManagerOptions{NoLeaderElection: true, Args: managerArgs(nsHTTP, "--allow-http-endpoints=false")}),
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
	for _, c := range cases {
		err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) {
			return reportsReason(ctx, s, c)
		})
		if err != nil {
			t.Errorf("%s: %v", c.obj.GetName(), err)
		}
	}
	s.sum.fault("valid but wrong objects, each with its reason", len(cases))

	// Quiet: nothing retries what needs a person.
	counts := func() (r [2]float64, api apisim.Counts) {
		for i, m := range mgrs {
			a, b, err := reconcileCounts(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			r[i] = a + b
		}
		api, err := sim.Control.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r, api
	}
	r0, api0 := counts()
	sleep(ctx, s.mode.badQuiet)
	r1, api1 := counts()
	d := countDelta(api1, api0)
	t.Logf("wrong objects: %v reconciles in total, %v during a %s quiet window; API calls in total: Reevit %d, Rev.io %d; during the window: %d",
		r1, [2]float64{r1[0] - r0[0], r1[1] - r0[1]}, s.mode.badQuiet, countStatus(api1.Reevit), countStatus(api1.Revio), countStatus(d.Reevit)+countStatus(d.Revio))
	for i := range mgrs {
		if r1[i]-r0[i] > 2 {
			t.Errorf("manager %d reconciled %.0f times in a %s quiet window: objects that need a person must not spin", i, r1[i]-r0[i], s.mode.badQuiet)
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
	// created, the key name corrected, the foreign Secrets deleted.
	byName := map[string]client.Object{}
	for _, c := range cases {
		byName[c.obj.GetName()] = c.obj
	}
	s.createSecret(t, ns, "absent-admin", "apiKey", sim.Credentials.AdminKey)
	fixKey := []byte(`{"spec":{"apiKeySecretRef":{"key":"apiKey"}}}`)
	if err := s.env.Client.Patch(ctx, byName["rt-wrong-key"], client.RawPatch(types.MergePatchType, fixKey)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"taken-ak", "taken-rt"} {
		if err := s.env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"ak-missing-secret", "rt-wrong-key", "ak-conflict", "rt-conflict"} {
		if err := poll(ctx, time.Minute, 500*time.Millisecond, func() (bool, string) { return isReady(ctx, s, byName[name]) }); err != nil {
			t.Errorf("%s after the fix: %v", name, err)
		}
	}
}

// reportsReason checks the Ready condition (False, reason, message naming
// the problem, current generation) and a Warning event with the reason.
func reportsReason(ctx context.Context, s *suite, c wrongCase) (bool, string) {
	var conds []metav1.Condition
	var gen int64
	switch o := c.obj.(type) {
	case *v1alpha1.ApiKey:
		cur := &v1alpha1.ApiKey{}
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
			return false, err.Error()
		}
		s.statuses.add(cur, cur.Status)
		conds, gen = cur.Status.Conditions, cur.Generation
	case *v1alpha1.RevioToken:
		cur := &v1alpha1.RevioToken{}
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
			return false, err.Error()
		}
		s.statuses.add(cur, cur.Status)
		conds, gen = cur.Status.Conditions, cur.Generation
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
	for _, e := range evs.Items {
		if e.Regarding.Name == c.obj.GetName() && e.Reason == c.reason && e.Type == corev1.EventTypeWarning && e.Note != "" {
			return true, ""
		}
	}
	return false, "no Warning event with reason " + c.reason
}

// isReady reports whether obj is Ready for its generation.
func isReady(ctx context.Context, s *suite, obj client.Object) (bool, string) {
	var conds []metav1.Condition
	var gen int64
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		cur := &v1alpha1.ApiKey{}
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
			return false, err.Error()
		}
		conds, gen = cur.Status.Conditions, cur.Generation
	case *v1alpha1.RevioToken:
		cur := &v1alpha1.RevioToken{}
		if err := s.env.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
			return false, err.Error()
		}
		conds, gen = cur.Status.Conditions, cur.Generation
	}
	return readyFor(conds, gen), describeReady(conds)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
