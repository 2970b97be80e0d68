package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
)

// fakeReevit answers as Reevit would, from canned answers, and counts what
// it was asked: a step's unit tests connect to it through the ApiKey
// reconciler's connector seam instead of a simulator.
type fakeReevit struct {
	create  func(name string, scopes []string, idem string) (*reevit.Key, error)
	listed  []reevit.Key
	created []string // idempotency keys sent
	revoked []string
}

func (f *fakeReevit) CreateKey(_ context.Context, name string, scopes []string, idem string) (*reevit.Key, error) {
	f.created = append(f.created, idem)
	return f.create(name, scopes, idem)
}

func (f *fakeReevit) ListKeys(context.Context) ([]reevit.Key, error) { return f.listed, nil }

func (f *fakeReevit) RevokeKey(_ context.Context, id, _ string) error {
	f.revoked = append(f.revoked, id)
	return nil
}

// stepHarness runs one step of the real ApiKey step table, by name, on a
// fake API server (controller-runtime's fake client), a fake Reevit and a
// fake event recorder: no envtest, no simulator.
type stepHarness struct {
	r      *ApiKeyReconciler
	api    *fakeReevit
	events *events.FakeRecorder
	kube   client.Client
	ak     *v1alpha1.ApiKey
	now    time.Time
}

func newStepHarness(t *testing.T, api *fakeReevit, funcs interceptor.Funcs) *stepHarness {
	t.Helper()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	iss := &v1alpha1.IssuerRecord{Kind: v1alpha1.KindReevitIssuer, Name: "reevit", OrgID: "org_1", URL: "https://api.reevit.example"}
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "payments", UID: "uid-1", Generation: 1},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef: v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindReevitIssuer, Name: "reevit"}, Environment: "test",
			Scopes: []v1alpha1.Scope{"payments:read"},
		},
	}
	ak.Status.KeyGeneration = 1
	ak.Status.PendingCreate = &v1alpha1.KeyRequest{IdempotencyKey: "idem-1", Name: keyName(ak, 1), Reason: createInitial,
		StartedAt: *mtime(now.Add(-time.Second)), Scopes: ak.Spec.Scopes, Issuer: iss}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ak.DeepCopy()).WithInterceptorFuncs(funcs).Build()
	rec := events.NewFakeRecorder(10)
	r := &ApiKeyReconciler{credentialReconciler: credentialReconciler{
		Client: kube, APIReader: kube, Cache: kube, Recorder: rec,
		Options: Options{Clock: clocktesting.NewFakeClock(now), superseded: newSupersededSet()},
		secrets: newSecretReader(kube, kube),
	}}
	r.connector = func(_ context.Context, _ string, rec *v1alpha1.IssuerRecord) (keyAPI, *failure) {
		if *rec != *iss {
			t.Errorf("connected for issuer %+v, want the recorded %+v", rec, iss)
		}
		return api, nil
	}
	return &stepHarness{r: r, api: api, events: rec, kube: kube, ak: ak, now: now}
}

// run runs the step of apiKeySteps named name through runSteps, with the
// ApiKey failure hook: the condition a failure lands in is the one the
// real step table declares.
func (h *stepHarness) run(t *testing.T, name string) time.Duration {
	t.Helper()
	var only []step[*apiKeyPass]
	for _, st := range h.r.apiKeySteps() {
		if st.name == name {
			only = append(only, st)
		}
	}
	if len(only) != 1 {
		t.Fatalf("no step %q in apiKeySteps", name)
	}
	ctx := context.Background()
	p := &apiKeyPass{ak: h.ak, orig: h.ak.DeepCopy(), now: h.now, secretName: h.ak.Name, current: h.ak.Status.PendingCreate.Issuer}
	p.conns = h.r.newConns(ctx, h.ak.Namespace, p.current)
	res, err := runSteps(ctx, p, only, h.r.failApiKey)
	if err != nil {
		t.Fatalf("step %s: %v", name, err)
	}
	return res.RequeueAfter
}

// warnings drains the recorded events.
func (h *stepHarness) warnings() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (h *stepHarness) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	err := h.kube.Get(context.Background(), client.ObjectKey{Namespace: h.ak.Namespace, Name: h.ak.Name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func condition(ak *v1alpha1.ApiKey, typ string) string {
	c := meta.FindStatusCondition(ak.Status.Conditions, typ)
	if c == nil {
		return "none"
	}
	return string(c.Status) + "/" + c.Reason
}

const fakeKey = "pfk_test_0123456789abcdefghijklmn"

// TestStepCreateWithFakes unit-tests the create step on fakes: what it
// writes, the condition its failures land in (the step table's Issued, or
// SecretSynced for a Secret write), the retry record and the one event.
func TestStepCreateWithFakes(t *testing.T) {
	answer := func(name string, scopes []string, _ string) (*reevit.Key, error) {
		return &reevit.Key{ID: "key_1", Name: name, Key: fakeKey, Scopes: scopes, CreatedAt: time.Date(2026, 12, 5, 11, 59, 59, 0, time.UTC)}, nil
	}

	t.Run("key published, then declared active", func(t *testing.T) {
		h := newStepHarness(t, &fakeReevit{create: answer}, interceptor.Funcs{})
		h.run(t, "create")
		st := h.ak.Status
		if st.KeyID != "key_1" || st.PendingCreate != nil || st.FailedAttempts != 0 {
			t.Errorf("status keyId %q, pendingCreate %v, failedAttempts %d; want key_1 active", st.KeyID, st.PendingCreate, st.FailedAttempts)
		}
		if got := condition(h.ak, v1alpha1.ConditionIssued) + " " + condition(h.ak, v1alpha1.ConditionSecretSynced); got != "True/Succeeded True/Succeeded" {
			t.Errorf("Issued, SecretSynced = %s", got)
		}
		s := h.secret(t)
		if s == nil || string(s.Data["apiKey"]) != fakeKey || string(s.Data["keyId"]) != "key_1" {
			t.Fatalf("Secret %v does not hold key_1", s)
		}
		if len(h.api.created) != 1 || h.api.created[0] != "idem-1" {
			t.Errorf("creations sent %v, want the recorded idem-1 once", h.api.created)
		}
		if w := h.warnings(); len(w) != 0 {
			t.Errorf("events %v, want none", w)
		}
	})

	t.Run("refused creation fails Issued and needs a person", func(t *testing.T) {
		h := newStepHarness(t, &fakeReevit{create: func(string, []string, string) (*reevit.Key, error) {
			return nil, &reevit.ForbiddenError{Operation: "create key", StatusCode: 403, Scope: "api_keys:write"}
		}}, interceptor.Funcs{})
		h.run(t, "create")
		st := h.ak.Status
		if got := condition(h.ak, v1alpha1.ConditionIssued); got != "False/"+v1alpha1.ReasonMissingScope {
			t.Errorf("Issued = %s, want False/MissingScope", got)
		}
		if st.FailedAttempts != 1 || !st.NeedsAttention || st.LastFailureTime == nil {
			t.Errorf("retry record %+v, want one attempt that needs a person", st.RetryStatus)
		}
		if st.PendingCreate != nil {
			t.Errorf("a refused creation (nothing made, none found by name) keeps its record: %+v", st.PendingCreate)
		}
		if w := h.warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "Warning MissingScope") {
			t.Errorf("events %v, want one Warning MissingScope", w)
		}
		if s := h.secret(t); s != nil {
			t.Errorf("a Secret was written: %v", s.Name)
		}
	})

	t.Run("unavailable API keeps the record for the replay", func(t *testing.T) {
		h := newStepHarness(t, &fakeReevit{create: func(string, []string, string) (*reevit.Key, error) {
			return nil, &reevit.ServerError{Operation: "create key", StatusCode: 503}
		}}, interceptor.Funcs{})
		wait := h.run(t, "create")
		st := h.ak.Status
		if got := condition(h.ak, v1alpha1.ConditionIssued); got != "False/"+v1alpha1.ReasonAPIUnavailable {
			t.Errorf("Issued = %s, want False/APIUnavailable", got)
		}
		if st.PendingCreate == nil || st.PendingCreate.IdempotencyKey != "idem-1" {
			t.Errorf("the recorded creation must stay for its replay: %+v", st.PendingCreate)
		}
		if st.NeedsAttention || wait != backoff(1) {
			t.Errorf("needsAttention %v, retry in %s; want a transient retry in %s", st.NeedsAttention, wait, backoff(1))
		}
	})

	t.Run("refused Secret write fails SecretSynced and loses no key", func(t *testing.T) {
		forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "payments", nil)
		h := newStepHarness(t, &fakeReevit{create: answer}, interceptor.Funcs{
			Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
				return forbidden
			},
			Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
				return forbidden
			},
		})
		h.run(t, "create")
		st := h.ak.Status
		if got := condition(h.ak, v1alpha1.ConditionSecretSynced); got != "False/"+v1alpha1.ReasonSecretWriteFailed {
			t.Errorf("SecretSynced = %s, want False/SecretWriteFailed (the failure's own condition, not the step's)", got)
		}
		if st.KeyID != "" || st.PendingCreate == nil || st.PendingCreate.IdempotencyKey != "idem-1" {
			t.Errorf("status keyId %q, pendingCreate %+v: the key the Secret could not take must stay recorded for its replay", st.KeyID, st.PendingCreate)
		}
		if len(h.api.revoked) != 0 {
			t.Errorf("revoked %v: a key not yet published is replayed, not revoked", h.api.revoked)
		}
		if w := h.warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "Warning SecretWriteFailed") {
			t.Errorf("events %v, want one Warning SecretWriteFailed", w)
		}
	})
}
