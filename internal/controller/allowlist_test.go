package controller

import (
	"net"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// revioIssuerCondition waits until the RevioIssuer's Ready condition has
// reason and returns it.
func revioIssuerCondition(t *testing.T, ns, name, reason string) metav1.Condition {
	t.Helper()
	return issuerReadyReason(t, v1alpha1.KindRevioIssuer, ns, name, reason)
}

// With --allow-http-endpoints on (the suite manager's AllowHTTP) and
// --allowed-endpoints naming the simulators' loopback listeners, issuers at
// another loopback listener, http:// or https://, are EndpointNotAllowed and
// that listener sees no connection: the flag allows http:// for listed URLs
// and lets no loopback host through. Before the fix every loopback URL
// passed and the manager sent the issuer's credential there.
func TestAllowHTTPDoesNotWidenAllowedEndpoints(t *testing.T) {
	e := newAkt(t)
	other, conns := testenv.CountingListener()
	t.Cleanup(other.Close)
	port := other.Listener.Addr().(*net.TCPAddr).Port
	urls := map[string]string{
		"plain":   other.URL,
		"tls-url": "https://127.0.0.1:" + strconv.Itoa(port),
		"ip6":     "http://[::1]:" + strconv.Itoa(port),
		"dotdot":  reevitSim.URL + "/x/../..",
	}
	for name, u := range urls {
		createReevitIssuer(t, e.ns, "reevit-"+name, e.org, aktAdminSecret, func(s *v1alpha1.ReevitIssuerSpec) { s.URL = u })
	}
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "revio"},
		StringData: map[string]string{"apiKey": "rk_allowlist_" + e.ns}})).To(Succeed())
	e.seen = append(e.seen, "rk_allowlist_"+e.ns)
	for name, u := range urls {
		rtCreateIssuer(t, e.ns, "revio-"+name, func(s *v1alpha1.RevioIssuerSpec) {
			s.URL = u
			s.APIKeySecretRef = v1alpha1.SecretKeyReference{Name: "revio", Key: "apiKey"}
		})
	}
	for name, u := range urls {
		c := issuerCondition(t, e.ns, "reevit-"+name, v1alpha1.ReasonEndpointNotAllowed)
		e.g.Expect(c.Message).To(ContainSubstring("--allowed-endpoints"), u)
		revioIssuerCondition(t, e.ns, "revio-"+name, v1alpha1.ReasonEndpointNotAllowed)
	}
	// An ApiKey through the refused issuer is refused too, before any call.
	e.create("key", func(ak *v1alpha1.ApiKey) { ak.Spec.IssuerRef.Name = "reevit-plain" })
	e.condition("key", v1alpha1.ConditionReady, v1alpha1.ReasonEndpointNotAllowed)
	e.g.Expect(conns.Load()).To(BeZero(), "connections to the unlisted loopback listener")

	// The listed simulator itself still works over http://.
	createReevitIssuer(t, e.ns, "listed", e.org, aktAdminSecret)
	issuerCondition(t, e.ns, "listed", v1alpha1.ReasonSucceeded)
	e.g.Expect(conns.Load()).To(BeZero(), "connections to the unlisted loopback listener")
	e.hygiene()
}

// keywardenMarks are the finalizers, annotations and labels of Keywarden's
// on an object.
func keywardenMarks(o metav1.Object) []string {
	var out []string
	for _, f := range o.GetFinalizers() {
		if strings.Contains(f, "keywarden") {
			out = append(out, "finalizer "+f)
		}
	}
	for k := range o.GetAnnotations() {
		if strings.Contains(k, "keywarden") {
			out = append(out, "annotation "+k)
		}
	}
	for k := range o.GetLabels() {
		if strings.Contains(k, "keywarden") {
			out = append(out, "label "+k)
		}
	}
	return out
}

// Secrets an issuer refuses (a service-account token, kubernetes.io/tls,
// kubernetes.io/basic-auth, each holding the key the issuer names) are
// never written: no Keywarden finalizer, annotation or label. Before the
// fix each got keywarden.dev/in-use and could not be deleted while the
// issuer existed.
func TestRefusedIssuerSecretsUntouched(t *testing.T) {
	e := newAktBare(t)
	_, admin := reevitSim.SeedKey(e.org, "live", "admin", aktAdminScopes)
	e.seen = append(e.seen, admin)
	e.g.Expect(k8s.Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "tok"}})).To(Succeed())
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "sa-token", Namespace: e.ns, Annotations: map[string]string{corev1.ServiceAccountNameKey: "tok"}},
			Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{"apiKey": []byte(admin)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: e.ns}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: []byte("c"), corev1.TLSPrivateKeyKey: []byte("k"), "apiKey": []byte(admin)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "basic", Namespace: e.ns}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte("u"), "password": []byte("p"), "apiKey": []byte(admin)}},
	}
	for _, s := range secrets {
		e.g.Expect(k8s.Create(e.ctx, s)).To(Succeed())
		createReevitIssuer(t, e.ns, "by-"+s.Name, e.org, s.Name)
	}
	for _, s := range secrets {
		issuerCondition(t, e.ns, "by-"+s.Name, v1alpha1.ReasonSecretTypeNotAllowed)
		got := &corev1.Secret{}
		e.g.Expect(k8s.Get(e.ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		e.g.Expect(keywardenMarks(got)).To(BeEmpty(), "Secret %s of type %s", s.Name, s.Type)
	}
}

// An Opaque Secret holding the key gets keywarden.dev/in-use once its
// issuer checked it, and loses it when it stops passing the issuer's
// checks: its key removed, the issuer naming another key, or a Keywarden
// owner making it an output Secret.
func TestInUseFinalizerFollowsTheChecks(t *testing.T) {
	e := newAktBare(t)
	_, admin := reevitSim.SeedKey(e.org, "live", "admin", aktAdminScopes)
	e.seen = append(e.seen, admin)
	key := types.NamespacedName{Namespace: e.ns, Name: "creds"}
	finalizers := func(g Gomega) []string {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(e.ctx, key, s)).To(Succeed())
		return s.Finalizers
	}
	// A merge patch without a resourceVersion: no conflict to retry.
	update := func(mut func(*corev1.Secret)) {
		s := &corev1.Secret{}
		e.g.Expect(k8s.Get(e.ctx, key, s)).To(Succeed())
		patch := client.MergeFrom(s.DeepCopy())
		mut(s)
		e.g.Expect(k8s.Patch(e.ctx, s, patch)).To(Succeed())
	}
	e.g.Expect(k8s.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "creds"},
		Data: map[string][]byte{"apiKey": []byte(admin)}})).To(Succeed())
	createReevitIssuer(t, e.ns, "iss", e.org, "creds")
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSucceeded)
	e.g.Eventually(finalizers).Should(ContainElement(inUseFinalizer))

	// The key removed: SecretNotFound, and the finalizer goes.
	update(func(s *corev1.Secret) { s.Data = map[string][]byte{"other": []byte("x")} })
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSecretNotFound)
	e.g.Eventually(finalizers).ShouldNot(ContainElement(inUseFinalizer))

	// The key back: protected again.
	update(func(s *corev1.Secret) { s.Data = map[string][]byte{"apiKey": []byte(admin)} })
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSucceeded)
	e.g.Eventually(finalizers).Should(ContainElement(inUseFinalizer))

	// The issuer names a key the Secret lacks: released.
	updateReevitIssuer(t, e.ns, "iss", func(s *v1alpha1.ReevitIssuerSpec) { s.AdminKeySecretRef.Key = "missing" })
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSecretNotFound)
	e.g.Eventually(finalizers).ShouldNot(ContainElement(inUseFinalizer))
	updateReevitIssuer(t, e.ns, "iss", func(s *v1alpha1.ReevitIssuerSpec) { s.AdminKeySecretRef.Key = "" })
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSucceeded)
	e.g.Eventually(finalizers).Should(ContainElement(inUseFinalizer))

	// Owned by a Keywarden resource, it is an output Secret: released. The
	// owner exists (an ApiKey whose issuer does not), so the garbage
	// collector leaves the Secret be.
	owner := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "owner"}, Spec: v1alpha1.ApiKeySpec{
		IssuerRef: v1alpha1.ReevitIssuerReference{Name: "absent"}, Scopes: []v1alpha1.Scope{"payments:read"}, Environment: "test"}}
	e.g.Expect(k8s.Create(e.ctx, owner)).To(Succeed())
	update(func(s *corev1.Secret) {
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ApiKey", Name: owner.Name, UID: owner.UID,
			Controller: ptr.To(true)}}
	})
	issuerCondition(t, e.ns, "iss", v1alpha1.ReasonSecretTypeNotAllowed)
	e.g.Eventually(finalizers).ShouldNot(ContainElement(inUseFinalizer))
}
