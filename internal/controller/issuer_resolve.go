package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

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
