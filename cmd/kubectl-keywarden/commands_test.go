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
	// platformKey and platformRevioKey are the cluster issuers' credentials,
	// in the manager's cluster-resource namespace.
	platformKey      = "pfk_test_plat1SECRETplatformkey0123456"
	platformRevioKey = "rv_SECRETplatformrevio0123456789"
	crn              = defaultClusterResourceNamespace
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
// whose Issued step fails, its Secret holding both keys, a restarted
// Deployment that reads the Secret and one that does not; a RevioToken and
// its Secret; the namespace's issuers and their credential Secrets; and the
// cluster issuers with their Secrets in the cluster-resource namespace.
func fixture() []client.Object {
	reevitRecord := &v1alpha1.IssuerRecord{Kind: v1alpha1.KindReevitIssuer, Name: "reevit", UID: "uid-ri", OrgID: "org_acme", URL: "https://api.reevit.com"}
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments-reevit", UID: "uid-ak", Generation: 2, Labels: map[string]string{"team": "payments"}},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:   v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindReevitIssuer, Name: "reevit"},
			Scopes:      []v1alpha1.Scope{"payments:read"},
			Environment: "test",
			Rotation:    &v1alpha1.Rotation{Every: &metav1.Duration{Duration: 720 * time.Hour}},
			RolloutRestart: []v1alpha1.RolloutTarget{{Kind: "Deployment", Name: "payments"}, {Kind: "Deployment", Name: "gone"},
				{Kind: "Deployment", Name: "bystander"}},
		},
		Status: v1alpha1.ApiKeyStatus{
			KeyID: "key_new", KeyPrefix: activeKey[:13], Issuer: reevitRecord, ActiveSince: mtime(-5 * time.Minute),
			LastRotationTime: mtime(-5 * time.Minute), NextRotationTime: mtime(720*time.Hour - 5*time.Minute), Rotations: 3,
			PendingRevocations: []v1alpha1.PendingRevocation{{KeyID: "key_old", KeyPrefix: oldKey[:13], RevokeAfter: *mtime(5 * time.Minute), Reason: "Rotation", Issuer: reevitRecord}},
			SecretName:         "payments-reevit", RetryStatus: v1alpha1.RetryStatus{FailedAttempts: 2, LastFailureTime: mtime(-time.Minute), NextRetryTime: mtime(30 * time.Second)},
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
	// payments reads the Secret (envFrom), so the manager restarts it;
	// bystander does not, so the manager refuses to.
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1alpha1.AnnotationSecretHash: secretsync.Hash(akData)}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{
				{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "payments-reevit"}}}}}}}}},
		Status: appsv1.DeploymentStatus{UpdatedReplicas: 1, AvailableReplicas: 2},
	}
	bystander := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bystander"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}},
	}
	rt := &v1alpha1.RevioToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: revioOwner, UID: "uid-rt", Generation: 1},
		Spec:       v1alpha1.RevioTokenSpec{IssuerRef: v1alpha1.RevioIssuerReference{Name: "revio"}},
		Status: v1alpha1.RevioTokenStatus{
			IssuedAt: mtime(-5 * time.Minute), ExpiresAt: mtime(55 * time.Minute), LastRefreshTime: mtime(-5 * time.Minute),
			NextRefreshTime: mtime(35 * time.Minute), Refreshes: 7, SecretName: revioOwner + "-token",
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded, ObservedGeneration: 1, LastTransitionTime: *mtime(-time.Hour)}},
		},
	}
	rtData := map[string][]byte{"token": []byte(revioJWT), "authorization": []byte("Bearer " + revioJWT), "host": []byte("acme.psarev.io"),
		"url": []byte("https://api.psarev.io"), "expiresAt": []byte(testNow.Add(55 * time.Minute).Format(time.RFC3339))}
	other := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other", UID: "uid-other", Labels: map[string]string{"team": "fraud"}},
		Spec: v1alpha1.ApiKeySpec{IssuerRef: v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: "acme"}}}
	ready := func(msg string) v1alpha1.IssuerStatus {
		return v1alpha1.IssuerStatus{CheckedVersion: "1/42", LastCheckTime: mtime(-10 * time.Minute), ObservedGeneration: 1,
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded,
				Message: msg, ObservedGeneration: 1, LastTransitionTime: *mtime(-time.Hour)}}}
	}
	ri := &v1alpha1.ReevitIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reevit", UID: "uid-ri", Generation: 1},
		Spec: v1alpha1.ReevitIssuerSpec{OrgID: "org_acme", AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "reevit-admin"},
			Policy: v1alpha1.ReevitIssuerPolicy{AllowedScopes: []v1alpha1.Scope{"payments:read", "invoices:read"}, MaxKeyAge: &metav1.Duration{Duration: 2160 * time.Hour}}},
		Status: ready("the admin key lists keys of org_acme"),
	}
	rvi := &v1alpha1.RevioIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "revio", UID: "uid-rvi", Generation: 1},
		Spec:       v1alpha1.RevioIssuerSpec{URL: "https://api.psarev.io", Host: "acme.psarev.io", APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "revio-api-key"}},
		Status:     ready("the API key Secret is in place"),
	}
	cri := &v1alpha1.ClusterReevitIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-cri", Generation: 3},
		Spec: v1alpha1.ReevitIssuerSpec{URL: "https://api.reevit.com", OrgID: "org_platform", ActorID: "keywarden",
			AdminKeySecretRef: v1alpha1.SecretKeyReference{Name: "platform-admin"},
			Policy:            v1alpha1.ReevitIssuerPolicy{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"keywarden.dev/reevit": "enabled"}}}},
		Status: v1alpha1.IssuerStatus{CheckedVersion: "3/77", LastCheckTime: mtime(-2 * time.Minute), RetryStatus: v1alpha1.RetryStatus{FailedAttempts: 3}, ObservedGeneration: 3,
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonUnauthorized,
				Message: "Reevit refused the admin key of ClusterReevitIssuer acme (401)", ObservedGeneration: 3, LastTransitionTime: *mtime(-2 * time.Minute)}}},
	}
	crvi := &v1alpha1.ClusterRevioIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-crvi", Generation: 1},
		Spec:       v1alpha1.RevioIssuerSpec{Host: "platform.psarev.io", APIKeySecretRef: v1alpha1.SecretKeyReference{Name: "platform-revio", Key: "key"}},
		Status:     ready("the API key Secret is in place"),
	}
	return []client.Object{
		ak, other, dep, bystander, rt, ri, rvi, cri, crvi,
		owned("payments-reevit", "ApiKey", "uid-ak", akData),
		owned(revioOwner+"-token", "RevioToken", "uid-rt", rtData),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reevit-admin", Finalizers: []string{inUseFinalizer}}, Data: map[string][]byte{"apiKey": []byte(adminKey)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "revio-api-key"}, Data: map[string][]byte{"apiKey": []byte(revioKey)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: crn, Name: "platform-admin", Finalizers: []string{inUseFinalizer}}, Data: map[string][]byte{"apiKey": []byte(platformKey)}},
		// platform-revio is not there: crvi/acme names a missing Secret.
		// A Secret of the same name as platform-admin in a team namespace
		// is no cluster issuer's.
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "platform-admin"}, Data: map[string][]byte{"apiKey": []byte(platformRevioKey)}},
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
	needles := []string{"SECRET", activeKey, oldKey, adminKey, revioKey, platformKey, platformRevioKey, revioJWT, sig,
		activeKey[13:], oldKey[13:], adminKey[13:], platformKey[13:]}
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
		"Issuer:", "ReevitIssuer reevit (Ready True)",
		"Key made by:", "ReevitIssuer reevit, org org_acme, https://api.reevit.com (status.issuer)",
		"REASON    ISSUER", "Rotation  ReevitIssuer reevit (org_acme)",
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
		"Deployment bystander: refused: it does not read Secret payments-reevit (RolloutTargetRefused); mount the output Secret",
	)
	if strings.Contains(out, "spec.issuerRef now names") {
		t.Errorf("the key's recorded issuer is the one spec.issuerRef names:\n%s", out)
	}
	expectNoCredential(t, out)

	// Once spec.issuerRef names another issuer, status says where the next
	// key comes from; a missing issuer says what to do.
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "payments-reevit"}, ak); err != nil {
		t.Fatal(err)
	}
	ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindClusterReevitIssuer, Name: "acme"}
	if err := c.Update(context.Background(), ak); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, c, "", "status", "ak/payments-reevit", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "ClusterReevitIssuer acme (Ready False (Unauthorized))",
		"spec.issuerRef now names ClusterReevitIssuer acme: the next key comes from it")
	ak.Spec.IssuerRef = v1alpha1.ReevitIssuerReference{Name: "nope"}
	if err := c.Update(context.Background(), ak); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, c, "", "status", "ak/payments-reevit", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "ReevitIssuer nope (not found: create the issuer, or fix spec.issuerRef")
}

func TestStatusRevioToken(t *testing.T) {
	c := newFake(fixture()...)
	for _, args := range [][]string{{"status", "rt/" + revioOwner, "-n", ns}, {"status", "reviotoken", revioOwner, "--namespace", ns}} {
		out, _, err := run(t, c, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		expectContains(t, out,
			"RevioToken payments/billing-revio", "True (Succeeded)",
			"Issuer:", "RevioIssuer revio (Ready True)",
			"Host:", "acme.psarev.io (spec.host of the issuer)", "URL:", "https://api.psarev.io",
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
	_, _, err = run(t, newFake(fixture()...), "", "status", "cri/nope", "-n", ns)
	if err == nil || err.Error() != "clusterreevitissuer/nope not found" {
		t.Errorf("err = %v", err)
	}
}

// TestStatusIssuers: status of each issuer kind shows Ready, its reason and
// message, the version last checked and when, the endpoint, the credential
// Secret (a cluster issuer's in the cluster-resource namespace) and its
// users.
func TestStatusIssuers(t *testing.T) {
	c := newFake(fixture()...)
	out, _, err := run(t, c, "", "status", "ri/reevit", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out,
		"ReevitIssuer payments/reevit",
		"Ready:", "True (Succeeded) since 2026-12-01T09:00:00Z (60m ago)",
		"Reason:", "Succeeded", "Message:", "the admin key lists keys of org_acme",
		"Checked version:", "1/42", "Last check:", "2026-12-01T09:50:00Z (10m ago)",
		"URL:", "https://api.reevit.com", "Org:", "org_acme",
		"Admin key:", "Secret payments/reevit-admin, data key apiKey (spec.adminKeySecretRef)\n",
		"Policy:", "scopes payments:read, invoices:read; maxKeyAge 2160h0m0s",
		"Last failure:\n  none\n",
		"Used by (ApiKeys):\n  apikey/payments-reevit\n")
	if strings.Contains(out, "apikey/other") {
		t.Errorf("apikey/other names a cluster issuer, not ri/reevit:\n%s", out)
	}

	// Cluster issuers take no namespace (-n is ignored) and read their
	// Secret in the cluster-resource namespace.
	for _, args := range [][]string{{"status", "cri/acme", "-n", ns}, {"status", "clusterreevitissuers.credentials.keywarden.dev", "acme"}} {
		out, _, err = run(t, c, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		expectContains(t, out,
			"ClusterReevitIssuer acme\n",
			"False (Unauthorized)", "Reason:", "Unauthorized",
			"Message:", "Reevit refused the admin key of ClusterReevitIssuer acme (401)",
			"Checked version:", "3/77", "Last check:", "(2m ago)",
			"Org:", "org_platform", "Actor:", "keywarden",
			"Secret keywarden-system/platform-admin, data key apiKey",
			"Namespaces:", "those matching keywarden.dev/reevit=enabled",
			"Policy:", "none (any scope",
			"Ready=False Unauthorized: Reevit refused the admin key", "what to do: put a valid admin key", "failed attempts: 3\n",
			"Used by (ApiKeys):\n  payments/apikey/other\n")
	}
	out, _, err = run(t, c, "", "status", "rvi/revio", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "RevioIssuer payments/revio", "True (Succeeded)", "Host:", "acme.psarev.io",
		"API key:", "Secret payments/revio-api-key, data key apiKey (spec.apiKeySecretRef)\n",
		"Used by (RevioTokens):\n  reviotoken/billing-revio\n")
	out, _, err = run(t, c, "", "status", "crvi/acme")
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "ClusterRevioIssuer acme", "platform.psarev.io", "URL:", "https://api.psarev.io",
		"Secret keywarden-system/platform-revio, data key key (spec.apiKeySecretRef) (not found: create the issuer's credential Secret",
		"Namespaces:", "every namespace", "Used by (RevioTokens):\n  none\n")
	// Another cluster-resource namespace moves where the Secret is looked for.
	out, _, err = run(t, c, "", "status", "cri/acme", "--cluster-resource-namespace", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, out, "Secret payments/platform-admin, data key apiKey (spec.adminKeySecretRef)\n")
	expectNoCredential(t, out)
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
		"Made by:", "ReevitIssuer reevit, org org_acme, https://api.reevit.com (status.issuer)",
	)
	rt, _, err := run(t, c, "", "inspect", "secret", revioOwner+"-token", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, rt,
		"Keywarden, for RevioToken billing-revio",
		"the token of reviotoken/billing-revio for host acme.psarev.io",
		"Issuer:", "RevioIssuer revio (spec.issuerRef)",
		fingerprint([]byte(revioJWT)), fingerprint([]byte("Bearer "+revioJWT)),
		"JWT, iat 2026-12-01T09:55:00Z (5m ago), exp 2026-12-01T10:55:00Z (in 55m) (status.expiresAt)",
		"Bearer JWT",
	)
	admin, _, err := run(t, c, "", "inspect", "secret", "reevit-admin", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, admin, "not Keywarden",
		"Read by:", "reevitissuer/reevit (spec.adminKeySecretRef, data key apiKey; used by apikey/payments-reevit)",
		"Protected:", "finalizer keywarden.dev/in-use",
		fingerprint([]byte(adminKey)), "Reevit key, prefix "+adminKey[:13])
	if strings.Contains(admin, "apikey/other") || strings.Contains(admin, "clusterreevitissuer") {
		t.Errorf("reevit-admin of a team namespace is no cluster issuer's, and apikey/other does not use it:\n%s", admin)
	}
	input, _, err := run(t, c, "", "inspect", "secret", "revio-api-key", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, input, "revioissuer/revio (spec.apiKeySecretRef, data key apiKey; used by reviotoken/billing-revio)", fingerprint([]byte(revioKey)))
	// In the cluster-resource namespace, the cluster issuers that name the
	// Secret; a Secret of the same name elsewhere is nobody's.
	platform, _, err := run(t, c, "", "inspect", "secret", "platform-admin", "-n", crn)
	if err != nil {
		t.Fatal(err)
	}
	expectContains(t, platform, "Secret keywarden-system/platform-admin", "not Keywarden",
		"clusterreevitissuer/acme (spec.adminKeySecretRef, data key apiKey; used by payments/apikey/other)",
		fingerprint([]byte(platformKey)))
	lookalike, _, err := run(t, c, "", "inspect", "secret", "platform-admin", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, _, err := run(t, c, "", "inspect", "secret", "platform-admin", "-n", crn, "--cluster-resource-namespace", "other")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{lookalike, elsewhere} {
		if strings.Contains(out, "Read by") {
			t.Errorf("a Secret outside the cluster-resource namespace is read by no cluster issuer:\n%s", out)
		}
	}
	expectNoCredential(t, ak, rt, admin, input, platform, lookalike, elsewhere)

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
