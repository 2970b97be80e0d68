package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

const (
	ns         = "payments"
	activeKey  = "pfk_test_a1b2SECRETactivekey0123456789"
	oldKey     = "pfk_test_zz99SECREToldkey01234567890123"
	adminKey   = "pfk_test_adm1SECRETadminkey012345678901"
	revioKey   = "rv_SECRETrevioapikey0123456789"
	revioOwner = "billing-revio"
)

var revioJWT = jwt(`{"sub":"acme","iat":` + strconv.FormatInt(testNow.Add(-5*time.Minute).Unix(), 10) +
	`,"exp":` + strconv.FormatInt(testNow.Add(55*time.Minute).Unix(), 10) + `}`)

// run runs the plugin with args against c and returns what it printed.
func run(t *testing.T, c client.Client, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	o := &options{in: strings.NewReader(stdin), out: &out, errOut: &errb, now: func() time.Time { return testNow },
		client: c, defaultNamespace: "default"}
	cmd := newRootCommand(o)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func mtime(d time.Duration) *metav1.Time { v := metav1.NewTime(testNow.Add(d)); return &v }

// fixture is a namespace as Keywarden leaves it: an ApiKey mid-rotation
// whose Issued step fails, its Secret holding both keys and a restarted
// Deployment; a RevioToken and its Secret; the input Secrets.
func fixture() []client.Object {
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments-reevit", UID: "uid-ak", Generation: 2, Labels: map[string]string{"team": "payments"}},
		Spec: v1alpha1.ApiKeySpec{
			Reevit:         v1alpha1.ReevitEndpoint{OrgID: "org_acme", AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-admin"}},
			Scopes:         []v1alpha1.Scope{"payments:read"},
			Environment:    "test",
			Rotation:       &v1alpha1.Rotation{Every: &metav1.Duration{Duration: 720 * time.Hour}},
			RolloutRestart: []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "payments"}, {Kind: "Deployment", Name: "gone"}},
		},
		Status: v1alpha1.ApiKeyStatus{
			KeyID: "key_new", KeyPrefix: activeKey[:13], ActiveSince: mtime(-5 * time.Minute),
			LastRotationTime: mtime(-5 * time.Minute), NextRotationTime: mtime(720*time.Hour - 5*time.Minute), Rotations: 3,
			PendingRevocations: []v1alpha1.PendingRevocation{{KeyID: "key_old", KeyPrefix: oldKey[:13], RevokeAfter: *mtime(5 * time.Minute), Reason: "Rotation"}},
			SecretName:         "payments-reevit", FailedAttempts: 2, LastFailureTime: mtime(-time.Minute), NextRetryTime: mtime(30 * time.Second),
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMissingScope, Message: "the admin key lacks payments:read", ObservedGeneration: 2, LastTransitionTime: *mtime(-time.Minute)},
				{Type: v1alpha1.ConditionIssued, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMissingScope, Message: "the admin key lacks payments:read", ObservedGeneration: 2, LastTransitionTime: *mtime(-time.Minute)},
				{Type: v1alpha1.ConditionSecretSynced, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded, ObservedGeneration: 2, LastTransitionTime: *mtime(-time.Hour)},
			},
		},
	}
	akData := map[string][]byte{"apiKey": []byte(activeKey), "keyId": []byte("key_new"), "orgId": []byte("org_acme"),
		"url": []byte("https://api.reevit.com"), "previousApiKey": []byte(oldKey), "previousKeyId": []byte("key_old")}
	owned := func(name, kind, uid string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels:      map[string]string{secretsync.LabelManagedBy: secretsync.ManagedByValue},
				Annotations: map[string]string{secretsync.AnnotationDataHash: secretsync.Hash(data)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind, Name: strings.TrimSuffix(name, "-token"),
					UID: types.UID(uid), Controller: ptr.To(true)}}},
			Data: data,
		}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1alpha1.AnnotationSecretHash: secretsync.Hash(akData)}}}},
		Status: appsv1.DeploymentStatus{UpdatedReplicas: 1, AvailableReplicas: 2},
	}
	rt := &v1alpha1.RevioToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: revioOwner, UID: "uid-rt", Generation: 1},
		Spec:       v1alpha1.RevioTokenSpec{Host: "acme.psarev.io", APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio-api-key"}},
		Status: v1alpha1.RevioTokenStatus{
			IssuedAt: mtime(-5 * time.Minute), ExpiresAt: mtime(55 * time.Minute), LastRefreshTime: mtime(-5 * time.Minute),
			NextRefreshTime: mtime(35 * time.Minute), Refreshes: 7, SecretName: revioOwner + "-token",
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded, ObservedGeneration: 1, LastTransitionTime: *mtime(-time.Hour)}},
		},
	}
	rtData := map[string][]byte{"token": []byte(revioJWT), "authorization": []byte("Bearer " + revioJWT), "host": []byte("acme.psarev.io"),
		"url": []byte("https://api.psarev.io"), "expiresAt": []byte(testNow.Add(55 * time.Minute).Format(time.RFC3339))}
	other := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other", UID: "uid-other", Labels: map[string]string{"team": "fraud"}},
		Spec: v1alpha1.ApiKeySpec{Reevit: v1alpha1.ReevitEndpoint{AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-admin"}}}}
	return []client.Object{
		ak, other, dep, rt,
		owned("payments-reevit", "ApiKey", "uid-ak", akData),
		owned(revioOwner+"-token", "RevioToken", "uid-rt", rtData),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reevit-admin"}, Data: map[string][]byte{"apiKey": []byte(adminKey)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "revio-api-key"}, Data: map[string][]byte{"apiKey": []byte(revioKey)}},
	}
}

func newFake(objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(scheme()).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.ApiKey{}, &v1alpha1.RevioToken{}).Build()
}

func expectContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// secretNeedles are every credential of the fixture and the parts a
// truncated print would still show.
func expectNoCredential(t *testing.T, outputs ...string) {
	t.Helper()
	sig := revioJWT[strings.LastIndex(revioJWT, ".")+1:]
	needles := []string{"SECRET", activeKey, oldKey, adminKey, revioKey, revioJWT, sig, activeKey[13:], oldKey[13:], adminKey[13:]}
	for _, out := range outputs {
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Errorf("output contains a credential (%.6s...):\n%s", n, out)
			}
		}
	}
}

func TestStatusApiKey(t *testing.T) {
	c := newFake(fixture()...)
	out, _, err := run(t, c, "", "status", "ak/payments-reevit", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out,
		"ApiKey payments/payments-reevit",
		"Ready:", "False (MissingScope)",
		"key_new", activeKey[:13],
		"Next rotation:", "2026-12-31T09:55:00Z (in 29d)",
		"Active since:", "2026-12-01T09:55:00Z (5m ago)",
		"Rotations:", "3",
		"KEY ID", "key_old", oldKey[:13], "2026-12-01T10:05:00Z (in 5m)", "Rotation",
		"Ready=False, Issued=False MissingScope: the admin key lacks payments:read",
		"what to do: issue an admin key holding the named scope",
		"failed attempts: 2", "next retry: 2026-12-01T10:00:30Z (in 30s)",
		"Deployment payments: restarted for the current Secret (1/2 updated, 2 available)",
		"Deployment gone: not found",
	)
	expectNoCredential(t, out)
}

func TestStatusRevioToken(t *testing.T) {
	c := newFake(fixture()...)
	for _, args := range [][]string{{"status", "rt/" + revioOwner, "-n", ns}, {"status", "reviotoken", revioOwner, "--namespace", ns}} {
		out, _, err := run(t, c, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		expectContains(t, out,
			"RevioToken payments/billing-revio", "True (Succeeded)", "acme.psarev.io",
			"Token expires:", "2026-12-01T10:55:00Z (in 55m)",
			"Next refresh:", "2026-12-01T10:35:00Z (in 35m)",
			"Token issued:", "(5m ago)", "Refreshes:", "7",
			"Last failure:\n  none\n", "none configured")
		expectNoCredential(t, out)
	}
}

func TestStatusNotFound(t *testing.T) {
	_, _, err := run(t, newFake(fixture()...), "", "status", "ak/nope", "-n", ns)
	if err == nil || !strings.Contains(err.Error(), "apikey/nope not found in namespace payments") {
		t.Errorf("err = %v", err)
	}
}

func TestInspectSecretNeverPrintsValues(t *testing.T) {
	c := newFake(fixture()...)
	ak, _, err := run(t, c, "", "inspect", "secret", "payments-reevit", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, ak,
		"Written by:", "Keywarden, for ApiKey payments-reevit",
		"as Keywarden wrote it",
		"the active key key_new ("+activeKey[:13]+") of apikey/payments-reevit",
		"Previous key:", "key_old, revoked after 2026-12-01T10:05:00Z (in 5m)",
		fingerprint([]byte(activeKey)), fingerprint([]byte(oldKey)),
		"Reevit key, prefix "+activeKey[:13]+" (status.keyPrefix)",
		"org_acme", "https://api.reevit.com",
	)
	rt, _, err := run(t, c, "", "inspect", "secret", revioOwner+"-token", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, rt,
		"Keywarden, for RevioToken billing-revio",
		"the token of reviotoken/billing-revio for host acme.psarev.io",
		fingerprint([]byte(revioJWT)), fingerprint([]byte("Bearer "+revioJWT)),
		"JWT, iat 2026-12-01T09:55:00Z (5m ago), exp 2026-12-01T10:55:00Z (in 55m) (status.expiresAt)",
		"Bearer JWT",
	)
	admin, _, err := run(t, c, "", "inspect", "secret", "reevit-admin", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, admin, "not Keywarden",
		"apikey/payments-reevit (spec.reevit.adminKeySecretRef, data key apiKey)", "apikey/other",
		fingerprint([]byte(adminKey)), "Reevit key, prefix "+adminKey[:13])
	input, _, err := run(t, c, "", "inspect", "secret", "revio-api-key", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, input, "reviotoken/billing-revio (spec.apiKeySecretRef", fingerprint([]byte(revioKey)))
	expectNoCredential(t, ak, rt, admin, input)

	// A hand edit is noticed; a Secret that is not Keywarden's shows no
	// plain values at all, not even under a "public" data key name.
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "payments-reevit"}, s); err != nil {
		t.Fatal(err)
	}
	s.Data["apiKey"] = []byte(adminKey)
	if err := c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "foreign"},
		Data: map[string][]byte{"keyId": []byte("SECRET-in-keyId"), "url": []byte("https://u:SECRET@example.com")}}
	if err := c.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	edited, _, _ := run(t, c, "", "inspect", "secret", "payments-reevit", "-n", ns)
	expectContains(t, edited, "changed since Keywarden wrote it", "(status.keyPrefix is "+activeKey[:13]+")")
	f, _, err := run(t, c, "", "inspect", "secret", "foreign", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, f, fingerprint([]byte("SECRET-in-keyId")))
	expectNoCredential(t, edited, f)
}

func annotations(t *testing.T, c client.Client, obj client.Object, name string) map[string]string {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	return obj.GetAnnotations()
}

func TestRotateSelectsObjects(t *testing.T) {
	c := newFake(fixture()...)
	out, _, err := run(t, c, "", "rotate", "-l", "team=payments", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	want := testNow.Format(time.RFC3339Nano)
	expectContains(t, out, "apikey/payments-reevit: rotate requested (keywarden.dev/rotate="+want+")")
	if got := annotations(t, c, &v1alpha1.ApiKey{}, "payments-reevit")[v1alpha1.AnnotationRotate]; got != want {
		t.Errorf("payments-reevit rotate annotation = %q, want %q", got, want)
	}
	if got := annotations(t, c, &v1alpha1.ApiKey{}, "other"); got[v1alpha1.AnnotationRotate] != "" {
		t.Errorf("-l team=payments annotated other: %v", got)
	}
	// The same instant again still makes a new value.
	if _, _, err := run(t, c, "", "rotate", "payments-reevit", "-n", ns); err != nil {
		t.Fatal(err)
	}
	if got := annotations(t, c, &v1alpha1.ApiKey{}, "payments-reevit")[v1alpha1.AnnotationRotate]; got == want || got == "" {
		t.Errorf("second rotate left %q", got)
	}
	if _, _, err := run(t, c, "", "rotate", "--all", "-n", ns); err != nil {
		t.Fatal(err)
	}
	if got := annotations(t, c, &v1alpha1.ApiKey{}, "other"); got[v1alpha1.AnnotationRotate] != want {
		t.Errorf("--all did not annotate other: %v", got)
	}

	for _, bad := range [][]string{
		{"rotate", "-n", ns},
		{"rotate", "payments-reevit", "--all", "-n", ns},
		{"rotate", "payments-reevit", "-A"},
		{"rotate", "-l", "team=nobody", "-n", ns},
		{"rotate", "rt/" + revioOwner, "-n", ns},
		{"rotate", "-l", "team in (", "-n", ns},
	} {
		if _, _, err := run(t, c, "", bad...); err == nil {
			t.Errorf("%q succeeded", bad)
		}
	}
}

func TestRefresh(t *testing.T) {
	c := newFake(fixture()...)
	if _, _, err := run(t, c, "", "refresh", revioOwner, "-n", ns); err != nil {
		t.Fatal(err)
	}
	if got := annotations(t, c, &v1alpha1.RevioToken{}, revioOwner)[v1alpha1.AnnotationRefresh]; got != testNow.Format(time.RFC3339Nano) {
		t.Errorf("refresh annotation = %q", got)
	}
	if _, _, err := run(t, c, "", "refresh", "ak/payments-reevit", "-n", ns); err == nil {
		t.Error("refresh of an ApiKey succeeded")
	}
}

// TestWaitReportsFailure: --wait gives up with the Ready condition and what
// to do when the manager does not act.
func TestWaitReportsFailure(t *testing.T) {
	c := newFake(fixture()...)
	_, stderr, err := run(t, c, "", "rotate", "payments-reevit", "-n", ns, "--wait", "--timeout", "1s")
	if err == nil {
		t.Fatal("rotate --wait succeeded without a manager")
	}
	expectContains(t, stderr, "has not acted on the request within 1s", "MissingScope", "what to do: issue an admin key")
}

func TestCompromisedAsksFirst(t *testing.T) {
	c := newFake(fixture()...)
	for _, answer := range []string{"n\n", "", "no\n", "whatever\n"} {
		_, stderr, err := run(t, c, answer, "compromised", "payments-reevit", "-n", ns)
		if !errors.Is(err, errNotConfirmed) {
			t.Errorf("answer %q: err = %v, want errNotConfirmed", answer, err)
		}
		expectContains(t, stderr, "Revoke now? [y/N]", "apikey/payments-reevit in payments: key key_new ("+activeKey[:13]+")")
		if got := annotations(t, c, &v1alpha1.ApiKey{}, "payments-reevit"); got[v1alpha1.AnnotationCompromised] != "" {
			t.Fatalf("answer %q set the annotation: %v", answer, got)
		}
	}
	if _, _, err := run(t, c, "y\n", "compromised", "payments-reevit", "-n", ns); err != nil {
		t.Fatal(err)
	}
	first := annotations(t, c, &v1alpha1.ApiKey{}, "payments-reevit")[v1alpha1.AnnotationCompromised]
	if first == "" {
		t.Fatal("y did not set the annotation")
	}
	if _, _, err := run(t, c, "", "compromised", "apikey/payments-reevit", "--yes", "-n", ns); err != nil {
		t.Fatal(err)
	}
	if got := annotations(t, c, &v1alpha1.ApiKey{}, "payments-reevit")[v1alpha1.AnnotationCompromised]; got == first {
		t.Error("--yes did not set a new value")
	}
	if _, _, err := run(t, c, "y\n", "compromised", "-n", ns); err == nil {
		t.Error("compromised without a name succeeded")
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, nil, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "kubectl-keywarden ", "API credentials.keywarden.dev/v1alpha1")
}
