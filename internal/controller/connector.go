package controller

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

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

// reevitConnector connects to Reevit for the keys recorded as created
// through an issuer (Crossplane's connector): in the manager,
// connectReevit; in a step's unit test, a fake that answers as Reevit
// would, so a step runs without envtest or a simulator.
type reevitConnector func(ctx context.Context, ns string, rec *v1alpha1.IssuerRecord) (keyAPI, *failure)

// reevitConns hands out one client per issuer record and pass.
type reevitConns struct {
	ctx     context.Context
	connect reevitConnector
	ns      string
	current *v1alpha1.IssuerRecord
	conns   map[v1alpha1.IssuerRecord]keyAPI
}

func (r *ApiKeyReconciler) newConns(ctx context.Context, ns string, current *v1alpha1.IssuerRecord) *reevitConns {
	connect := r.connector
	if connect == nil {
		connect = func(ctx context.Context, ns string, rec *v1alpha1.IssuerRecord) (keyAPI, *failure) {
			return r.connectReevit(ctx, r.Client, r.secrets, ns, rec)
		}
	}
	return &reevitConns{ctx: ctx, connect: connect, ns: ns, current: current, conns: map[v1alpha1.IssuerRecord]keyAPI{}}
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
	api, f := c.connect(c.ctx, c.ns, rec)
	if f != nil {
		return nil, f
	}
	c.conns[k] = api
	return api, nil
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
