package controller

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

// DefaultAllowedEndpoints are the base URLs issuers may name when the
// manager's --allowed-endpoints flag is not set: the two official API hosts.
func DefaultAllowedEndpoints() []string {
	return []string{reevit.DefaultBaseURL, revio.DefaultBaseURL}
}

// issuerRefsIndex indexes ApiKeys and RevioTokens by every issuer they
// depend on ("Kind/name"): the one spec.issuerRef names and, for ApiKeys,
// those recorded in status as holding live keys.
const issuerRefsIndex = "keywarden.issuerRefs"

// issuerSecretIndex indexes issuers by the name of their credential Secret.
const issuerSecretIndex = "keywarden.issuerSecret"

func issuerKey(kind, name string) string { return kind + "/" + name }

// apiKeyIssuerKeys are the issuers an ApiKey depends on.
func apiKeyIssuerKeys(ak *v1alpha1.ApiKey) []string {
	keys := []string{issuerKey(reevitKind(ak.Spec.IssuerRef.Kind), ak.Spec.IssuerRef.Name)}
	add := func(r *v1alpha1.IssuerRecord) {
		if r != nil && !slices.Contains(keys, issuerKey(r.Kind, r.Name)) {
			keys = append(keys, issuerKey(r.Kind, r.Name))
		}
	}
	add(ak.Status.Issuer)
	if ak.Status.PendingCreate != nil {
		add(ak.Status.PendingCreate.Issuer)
	}
	for i := range ak.Status.PendingRevocations {
		add(ak.Status.PendingRevocations[i].Issuer)
	}
	return keys
}

func reevitKind(k string) string {
	if k == "" {
		return v1alpha1.KindReevitIssuer
	}
	return k
}

func revioKind(k string) string {
	if k == "" {
		return v1alpha1.KindRevioIssuer
	}
	return k
}

// reevitIssuer is a resolved ReevitIssuer or ClusterReevitIssuer.
type reevitIssuer struct {
	obj      client.Object
	kind     string
	spec     v1alpha1.ReevitIssuerSpec
	secretNS string
}

func (i *reevitIssuer) cluster() bool { return i.kind == v1alpha1.KindClusterReevitIssuer }

// url is the issuer's base URL with its default.
func (i *reevitIssuer) url() string {
	if i.spec.URL == "" {
		return reevit.DefaultBaseURL
	}
	return i.spec.URL
}

// record is what a key created through the issuer now records.
func (i *reevitIssuer) record() *v1alpha1.IssuerRecord {
	return &v1alpha1.IssuerRecord{Kind: i.kind, Name: i.obj.GetName(), UID: i.obj.GetUID(), OrgID: i.spec.OrgID, URL: i.url()}
}

// describe names the issuer in messages.
func (i *reevitIssuer) describe() string {
	if i.cluster() {
		return i.kind + " " + i.obj.GetName()
	}
	return i.kind + " " + i.obj.GetNamespace() + "/" + i.obj.GetName()
}

// version identifies the issuer's spec and credential Secret: a change lifts
// a failure that needed a person.
func (i *reevitIssuer) version(ctx context.Context, cache client.Reader) string {
	return fmt.Sprintf("%s/%d/%s", i.obj.GetUID(), i.obj.GetGeneration(), secretVersion(ctx, cache, i.secretNS, i.spec.AdminKeySecretRef.Name))
}

// issuerNotFound is the failure for an issuerRef naming nothing.
func issuerNotFound(kind, name, ns string) *failure {
	where := "in namespace " + ns
	if strings.HasPrefix(kind, "Cluster") {
		where = "in the cluster"
	}
	return &failure{Reason: v1alpha1.ReasonIssuerNotFound, Message: fmt.Sprintf(
		"%s %s not found %s: ask the platform team for an issuer, or fix spec.issuerRef", kind, name, where)}
}

// getIssuer reads the issuer of that kind and name (a cluster kind, or the
// namespaced kind in namespace ns) from the cache, and says where its
// credential Secret lives.
func getIssuer(ctx context.Context, c client.Reader, ns, kind, name, clusterNS string) (v1alpha1.GenericIssuer, string, *failure) {
	obj := v1alpha1.NewIssuer(kind)
	if obj == nil {
		return nil, "", issuerNotFound(kind, name, ns)
	}
	key, secretNS := client.ObjectKey{Name: name, Namespace: ns}, ns
	if obj.Cluster() {
		key.Namespace, secretNS = "", clusterNS
	}
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			f := issuerNotFound(kind, name, ns)
			if other := otherIssuerKind(ctx, c, kind, ns, name); other != "" {
				// The commonest mistake: issuerRef {name: demo} defaults to
				// the namespaced kind while the platform made the cluster one.
				f.Message += fmt.Sprintf("; a %s named %s exists: set spec.issuerRef.kind: %s to use it", other, name, other)
			}
			return nil, "", f
		}
		return nil, "", &failure{Reason: v1alpha1.ReasonIssuerNotFound, Transient: true, Err: err, Message: "reading " + kind + " " + name + " failed: " + err.Error()}
	}
	return obj, secretNS, nil
}

// otherIssuerKind returns the issuer kind of the other scope (cluster for a
// namespaced kind, namespaced for a cluster kind) when an issuer of that kind
// named name exists for namespace ns; "" otherwise.
func otherIssuerKind(ctx context.Context, c client.Reader, kind, ns, name string) string {
	other := v1alpha1.OtherScope(kind)
	if other == "" {
		return ""
	}
	obj := v1alpha1.NewIssuer(other)
	key := client.ObjectKey{Name: name}
	if !obj.Cluster() {
		key.Namespace = ns
	}
	if c.Get(ctx, key, obj) != nil {
		return ""
	}
	return other
}

// getReevitIssuer reads a ReevitIssuer or ClusterReevitIssuer.
func getReevitIssuer(ctx context.Context, c client.Reader, ns, kind, name, clusterNS string) (*reevitIssuer, *failure) {
	kind = reevitKind(kind)
	if !v1alpha1.IsReevitKind(kind) {
		return nil, issuerNotFound(kind, name, ns)
	}
	obj, secretNS, f := getIssuer(ctx, c, ns, kind, name, clusterNS)
	if f != nil {
		return nil, f
	}
	return &reevitIssuer{obj: obj, kind: kind, spec: *obj.ReevitSpec(), secretNS: secretNS}, nil
}

// reevitPolicyViolation checks an ApiKey against its issuer's policy and
// namespace selector. It is pure: nsLabels are the ApiKey's namespace labels
// (nil when the issuer selects none).
func reevitPolicyViolation(ak *v1alpha1.ApiKey, iss *reevitIssuer, nsLabels map[string]string) *failure {
	p := iss.spec.Policy
	violation := func(format string, args ...any) *failure {
		return &failure{Reason: v1alpha1.ReasonPolicyViolation, Message: fmt.Sprintf(format, args...) + " (policy of " + iss.describe() + "); nothing is created"}
	}
	if iss.cluster() && p.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			return violation("the issuer's policy.namespaceSelector is invalid (%v): the platform team must fix it", err)
		}
		if !sel.Matches(labels.Set(nsLabels)) {
			return violation("namespace %s is not selected by policy.namespaceSelector (%s)", ak.Namespace, sel.String())
		}
	}
	if len(p.AllowedScopes) > 0 {
		var bad []string
		for _, s := range ak.Spec.Scopes {
			if !slices.Contains(p.AllowedScopes, s) {
				bad = append(bad, string(s))
			}
		}
		if len(bad) > 0 {
			return violation("spec.scopes asks for %s, outside the allowed scopes %s", strings.Join(bad, ", "), joinScopes(p.AllowedScopes))
		}
	}
	if len(p.Environments) > 0 && !slices.Contains(p.Environments, v1alpha1.Environment(ak.Spec.Environment)) {
		envs := make([]string, len(p.Environments))
		for i, e := range p.Environments {
			envs[i] = string(e)
		}
		return violation("spec.environment %q is not allowed: allowed %s", ak.Spec.Environment, strings.Join(envs, ", "))
	}
	if p.MaxKeyAge != nil {
		age, ok := rotationInterval(ak.Spec.Rotation)
		switch {
		case !ok:
			return violation("spec.rotation must rotate at least every %s (policy.maxKeyAge), and no rotation is set", p.MaxKeyAge.Duration)
		case age > p.MaxKeyAge.Duration:
			return violation("spec.rotation rotates every %s, longer than the allowed maximum key age %s", age, p.MaxKeyAge.Duration)
		}
	}
	if p.MaxGracePeriod != nil {
		if g := gracePeriod(ak.Spec.Rotation); g > p.MaxGracePeriod.Duration {
			return violation("spec.rotation.gracePeriod is %s, longer than the allowed maximum %s", g, p.MaxGracePeriod.Duration)
		}
	}
	return nil
}

func joinScopes(s []v1alpha1.Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

// rotationInterval is the longest time a key lives under a rotation: every,
// or the longest gap between the next firings of schedule (sampled over a
// year of firings from a fixed instant, so the answer is pure).
func rotationInterval(r *v1alpha1.Rotation) (time.Duration, bool) {
	if r == nil {
		return 0, false
	}
	if r.Every != nil {
		return r.Every.Duration, true
	}
	if r.Schedule == "" {
		return 0, false
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var longest time.Duration
	for i := 0; i < 400; i++ {
		next, err := nextRotation(r, t)
		if err != nil || next.IsZero() {
			return 0, false
		}
		longest = max(longest, next.Sub(t))
		if next.After(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
			break
		}
		t = next
	}
	return longest, true
}

// endpointAllowed says whether the manager may send a credential to u: u
// must lie under one of the allowed base URLs, with the same scheme, the
// same host and port written the same way, and a path at or below the
// base's. Nothing passes for being loopback: --allow-http-endpoints only lets
// the API clients use an http:// URL that passes here. A URL with user
// info, a host or scheme spelt differently (case, trailing dot, IPv6 form,
// percent-encoding, an explicit default port) or a path with dot segments
// or encoded dots, slashes or backslashes is refused even when it would
// reach the same place: the list is compared as written.
func endpointAllowed(u string, allowed []string) bool {
	p, ok := plainURL(u)
	if !ok {
		return false
	}
	path := strings.TrimSuffix(p.EscapedPath(), "/")
	for _, a := range allowed {
		b, ok := plainURL(strings.TrimSuffix(a, "/"))
		if !ok || b.Scheme != p.Scheme || b.Host != p.Host {
			continue
		}
		base := strings.TrimSuffix(b.EscapedPath(), "/")
		if base == "" || path == base || strings.HasPrefix(path, base+"/") {
			return true
		}
	}
	return false
}

// plainURL parses an http or https URL written in one plain form: a
// lower-case scheme and host exactly as parsed (no percent-encoding, no
// trailing dot), no user info, and a path free of dot segments and of
// encoded dots, slashes and backslashes.
func plainURL(u string) (*url.URL, bool) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || p.Opaque != "" {
		return nil, false
	}
	if !strings.HasPrefix(u, p.Scheme+"://"+p.Host) || p.Host != strings.ToLower(p.Host) ||
		strings.HasSuffix(p.Hostname(), ".") || strings.ContainsAny(p.Host, "%\\") {
		return nil, false
	}
	raw := p.EscapedPath()
	if strings.Contains(raw, "\\") {
		return nil, false
	}
	low := strings.ToLower(raw)
	for _, enc := range []string{"%2e", "%2f", "%5c"} {
		if strings.Contains(low, enc) {
			return nil, false
		}
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == "." || seg == ".." {
			return nil, false
		}
	}
	return p, true
}

// endpointRefused is the failure for an issuer URL outside the allowed list.
func endpointRefused(what, u string, allowed []string) *failure {
	return &failure{Reason: v1alpha1.ReasonEndpointNotAllowed, Message: fmt.Sprintf(
		"%s names %s, which the manager may not call: allowed base URLs are %s (manager flag --allowed-endpoints)", what, u, strings.Join(allowed, ", "))}
}

// readIssuerCredential reads the credential an issuer names: an Opaque
// Secret, nothing else, so no issuer can make the manager send a
// service-account token or a TLS key anywhere; and a value that is not a
// placeholder (samples, docs), so none is sent to the API as a key.
func readIssuerCredential(ctx context.Context, r *secretReader, ns string, ref v1alpha1.SecretKeyReference, field string) (string, string, *failure) {
	key := ref.Key
	if key == "" {
		key = "apiKey"
	}
	s, err := r.getInput(ctx, ns, ref.Name, key)
	if err == nil && s != nil {
		if f := credentialSecretRefused(s); f != nil {
			return "", s.ResourceVersion, f
		}
	}
	v, version, f := readSecretKey(ctx, r, ns, ref, field)
	if f == nil && placeholderCredential(v) {
		return "", version, placeholderRefused(field, ns, ref)
	}
	return strings.TrimSpace(v), version, f
}

// credentialSecretRefused is why an issuer may not use s as its credential
// Secret, whatever key it names: a type other than Opaque, or an output
// Secret of Keywarden's. nil: the type and owners pass.
func credentialSecretRefused(s *corev1.Secret) *failure {
	if s.Type != "" && s.Type != corev1.SecretTypeOpaque {
		return &failure{Reason: v1alpha1.ReasonSecretTypeNotAllowed, Message: fmt.Sprintf(
			"Secret %s/%s is of type %s: an issuer credential must be an Opaque Secret; create one with kubectl create secret generic", s.Namespace, s.Name, s.Type)}
	}
	for _, o := range s.OwnerReferences {
		if strings.HasPrefix(o.APIVersion, v1alpha1.GroupVersion.Group+"/") {
			// An output as an input would feed the operator's own writes
			// back to it: a token exchanged for a token, in a loop.
			return &failure{Reason: v1alpha1.ReasonSecretTypeNotAllowed, Message: fmt.Sprintf(
				"Secret %s/%s is written by Keywarden (%s %s): an issuer credential cannot be an output Secret; name the Secret holding the real credential", s.Namespace, s.Name, o.Kind, o.Name)}
		}
	}
	return nil
}

// credentialSecretUsable says whether s passes every check an issuer makes
// of its credential Secret under key: the type, not an output Secret, and
// the key present and not empty. Only such a Secret gets inUseFinalizer.
func credentialSecretUsable(s *corev1.Secret, key string) bool {
	if key == "" {
		key = "apiKey"
	}
	return s != nil && credentialSecretRefused(s) == nil && len(s.Data[key]) > 0
}

// connectReevit builds the Reevit client for a key recorded as created
// through rec: the issuer's credential, the recorded organisation and URL.
func (o Options) connectReevit(ctx context.Context, c client.Reader, secrets *secretReader, ns string, rec *v1alpha1.IssuerRecord) (keyAPI, *failure) {
	iss, f := getReevitIssuer(ctx, c, ns, rec.Kind, rec.Name, o.ClusterResourceNamespace)
	if f != nil {
		return nil, f
	}
	if !endpointAllowed(rec.URL, o.AllowedEndpoints) {
		return nil, endpointRefused(iss.describe(), rec.URL, o.AllowedEndpoints)
	}
	adminKey, _, f := readIssuerCredential(ctx, secrets, iss.secretNS, iss.spec.AdminKeySecretRef, iss.kind+" "+iss.obj.GetName()+" spec.adminKeySecretRef")
	if f != nil {
		return nil, f
	}
	cl, err := reevit.New(reevit.Config{
		BaseURL: rec.URL, OrgID: rec.OrgID, AdminKey: adminKey,
		ActorID: iss.spec.ActorID, AllowHTTP: o.AllowHTTP, HTTPClient: o.HTTPClient,
		Observe: metrics.Observer("reevit"),
	})
	if err != nil {
		return nil, classifyReevit(err)
	}
	return cl, nil
}

// reevitConns hands out one client per issuer record and pass.
type reevitConns struct {
	ctx     context.Context
	r       *ApiKeyReconciler
	ns      string
	current *v1alpha1.IssuerRecord
	conns   map[v1alpha1.IssuerRecord]keyAPI
}

func (r *ApiKeyReconciler) newConns(ctx context.Context, ns string, current *v1alpha1.IssuerRecord) *reevitConns {
	return &reevitConns{ctx: ctx, r: r, ns: ns, current: current, conns: map[v1alpha1.IssuerRecord]keyAPI{}}
}

// get returns the client for rec (nil: the current issuer).
func (c *reevitConns) get(rec *v1alpha1.IssuerRecord) (keyAPI, *failure) {
	if rec == nil {
		rec = c.current
	}
	if rec == nil {
		return nil, &failure{Reason: v1alpha1.ReasonIssuerNotFound, Message: "no issuer recorded for the key and spec.issuerRef resolves to none"}
	}
	k := *rec
	k.UID = ""
	if api, ok := c.conns[k]; ok {
		return api, nil
	}
	api, f := c.r.connectReevit(c.ctx, c.r.Client, c.r.secrets, c.ns, rec)
	if f != nil {
		return nil, f
	}
	c.conns[k] = api
	return api, nil
}

// revioIssuer is a resolved RevioIssuer or ClusterRevioIssuer.
type revioIssuer struct {
	obj      client.Object
	kind     string
	spec     v1alpha1.RevioIssuerSpec
	secretNS string
}

func (i *revioIssuer) url() string {
	if i.spec.URL == "" {
		return revio.DefaultBaseURL
	}
	return i.spec.URL
}

func (i *revioIssuer) describe() string {
	if i.kind == v1alpha1.KindClusterRevioIssuer {
		return i.kind + " " + i.obj.GetName()
	}
	return i.kind + " " + i.obj.GetNamespace() + "/" + i.obj.GetName()
}

func (i *revioIssuer) version(ctx context.Context, cache client.Reader) string {
	v := secretVersion(ctx, cache, i.secretNS, i.spec.APIKeySecretRef.Name)
	if v == "" {
		return ""
	}
	return fmt.Sprintf("%s/%d/%s", i.obj.GetUID(), i.obj.GetGeneration(), v)
}

func getRevioIssuer(ctx context.Context, c client.Reader, ns, kind, name, clusterNS string) (*revioIssuer, *failure) {
	kind = revioKind(kind)
	if v1alpha1.IsReevitKind(kind) {
		return nil, issuerNotFound(kind, name, ns)
	}
	obj, secretNS, f := getIssuer(ctx, c, ns, kind, name, clusterNS)
	if f != nil {
		return nil, f
	}
	return &revioIssuer{obj: obj, kind: kind, spec: *obj.RevioSpec(), secretNS: secretNS}, nil
}

// revioNamespaceViolation checks a cluster issuer's namespace selector.
func revioNamespaceViolation(ns string, iss *revioIssuer, nsLabels map[string]string) *failure {
	if iss.kind != v1alpha1.KindClusterRevioIssuer || iss.spec.NamespaceSelector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(iss.spec.NamespaceSelector)
	if err == nil && sel.Matches(labels.Set(nsLabels)) {
		return nil
	}
	return &failure{Reason: v1alpha1.ReasonPolicyViolation, Message: fmt.Sprintf(
		"namespace %s is not selected by the namespaceSelector of %s: ask the platform team, or use another issuer; nothing is exchanged", ns, iss.describe())}
}

// connectRevio builds the Rev.io client and reads the API key of an issuer.
func (o Options) connectRevio(ctx context.Context, secrets *secretReader, iss *revioIssuer) (*revio.Client, string, string, *failure) {
	if !endpointAllowed(iss.url(), o.AllowedEndpoints) {
		return nil, "", "", endpointRefused(iss.describe(), iss.url(), o.AllowedEndpoints)
	}
	apiKey, version, f := readIssuerCredential(ctx, secrets, iss.secretNS, iss.spec.APIKeySecretRef, iss.kind+" "+iss.obj.GetName()+" spec.apiKeySecretRef")
	if f != nil {
		return nil, "", version, f
	}
	c, err := revio.New(revio.Config{
		BaseURL: iss.url(), Host: iss.spec.Host, AllowHTTP: o.AllowHTTP,
		HTTPClient: o.HTTPClient, Observe: metrics.Observer("revio"),
	})
	if err != nil {
		return nil, "", version, classifyRevio(err)
	}
	return c, apiKey, version, nil
}

// namespaceLabels reads a namespace's labels from the cache (nil on error:
// a selector then selects nothing, which refuses rather than allows).
func namespaceLabels(ctx context.Context, c client.Reader, ns string) map[string]string {
	n := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		return nil
	}
	return n.Labels
}
