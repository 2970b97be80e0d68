package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/issuerref"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/reevit"
)

// issuerFinalizer holds a Reevit issuer while keys made through it may still
// have to be revoked with its credential.
const issuerFinalizer = "credentials.keywarden.dev/issuer-in-use"

// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reevitissuers;clusterreevitissuers,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=revioissuers;clusterrevioissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reevitissuers/status;clusterreevitissuers/status;revioissuers/status;clusterrevioissuers/status,verbs=get;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reevitissuers/finalizers;clusterreevitissuers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// issuerKind is one of the four issuer kinds (v1alpha1.IssuerKinds), as
// the one issuer reconciler sees it.
type issuerKind struct {
	kind    string
	cluster bool
	// reevit issuers hold keys: their deletion waits for the ApiKeys.
	reevit bool
}

func kindOf(kind string) issuerKind {
	o := v1alpha1.NewIssuer(kind)
	return issuerKind{kind: kind, cluster: o.Cluster(), reevit: o.ReevitSpec() != nil}
}

func (k issuerKind) newObj() client.Object { return v1alpha1.NewIssuer(k.kind) }

func (k issuerKind) status(o client.Object) *v1alpha1.IssuerStatus {
	return o.(v1alpha1.GenericIssuer).IssuerStatus()
}

// secretRef is the credential Secret the issuer names.
func (k issuerKind) secretRef(o client.Object) v1alpha1.SecretKeyReference {
	return o.(v1alpha1.GenericIssuer).CredentialRef()
}

// IssuerReconciler proves an issuer's credential once per version of the
// issuer and its Secret (Ready), protects the credential Secret, and holds a
// Reevit issuer's deletion while keys made through it are live.
type IssuerReconciler struct {
	client.Client
	// Cache serves the metadata-only view of Secrets.
	Cache    client.Reader
	Recorder recorder.EventRecorder
	Options
	secrets *secretReader
	k       issuerKind
	// AllShards, when set (a sharded manager), lists ApiKeys on the API
	// server: this shard's cache does not hold the other shards' ApiKeys,
	// and an issuer must not be let go while any of them holds keys.
	AllShards client.Reader
}

// SetupWithManager watches the issuers, their credential Secrets (metadata)
// and, for Reevit issuers, the ApiKeys depending on them.
func (r *IssuerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(r.k.kind)).
		For(r.k.newObj(), builder.WithPredicates(primaryPredicate())).
		WatchesMetadata(secretMetadata(), handler.EnqueueRequestsFromMapFunc(r.issuersForSecret)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2})
	if r.k.reevit {
		b = b.Watches(&v1alpha1.ApiKey{}, r.apiKeyHandler(), builder.WithPredicates(dependencyChanged()))
	}
	return b.Complete(r)
}

// issuersForSecret maps a Secret to the issuers of this kind naming it.
func (r *IssuerReconciler) issuersForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	if r.k.cluster && o.GetNamespace() != r.ClusterResourceNamespace {
		return nil
	}
	opts := []client.ListOption{client.MatchingFields{issuerSecretIndex: o.GetName()}}
	if !r.k.cluster {
		opts = append(opts, client.InNamespace(o.GetNamespace()))
	}
	objs, err := r.listIssuers(ctx, opts...)
	if err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, i := range objs {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: i.GetNamespace(), Name: i.GetName()}})
	}
	return reqs
}

// listIssuers lists the issuers of this kind.
func (r *IssuerReconciler) listIssuers(ctx context.Context, opts ...client.ListOption) ([]client.Object, error) {
	l := v1alpha1.NewIssuerList(r.k.kind)
	if err := r.List(ctx, l, opts...); err != nil {
		return nil, err
	}
	var out []client.Object
	for _, i := range l.Issuers() {
		out = append(out, i)
	}
	return out, nil
}

// apiKeyHandler enqueues the issuers of this kind an ApiKey depends on, before
// and after a change.
func (r *IssuerReconciler) apiKeyHandler() handler.EventHandler {
	add := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		ak, ok := o.(*v1alpha1.ApiKey)
		if !ok {
			return
		}
		for _, k := range apiKeyIssuerKeys(ak) {
			kind, name, _ := strings.Cut(k, "/")
			if kind != r.k.kind {
				continue
			}
			req := reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
			if !r.k.cluster {
				req.Namespace = ak.Namespace
			}
			q.Add(req)
		}
	}
	return handler.Funcs{
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.ObjectOld, q)
			add(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(e.Object, q)
		},
	}
}

// dependencyChanged passes the ApiKey events that can release an issuer:
// deletions, finalizer changes and changes of the issuers it depends on.
func dependencyChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*v1alpha1.ApiKey), e.ObjectNew.(*v1alpha1.ApiKey)
			return !n.DeletionTimestamp.IsZero() || len(o.Finalizers) != len(n.Finalizers) ||
				!slices.Equal(apiKeyIssuerKeys(o), apiKeyIssuerKeys(n))
		},
	}
}

// Reconcile checks one issuer.
func (r *IssuerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.k.newObj()
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.IssuerReady.DeleteLabelValues(r.k.kind, req.Namespace, req.Name)
			metrics.IssuerCredentialFirstSeen.DeleteLabelValues(r.k.kind, req.Namespace, req.Name)
			metrics.IssuerKeyTooOld.DeleteLabelValues(r.k.kind, req.Namespace, req.Name)
			metrics.IssuerAdminKeyAge.Delete(r.k.kind, req.Namespace, req.Name)
			metrics.IssuerAdminKeyMaxAge.DeleteLabelValues(r.k.kind, req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.k.reevit && r.superseded.stale(obj) {
		// A cached copy older than this process's own status write: an
		// admin-key rotation must not act on it.
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}
	orig := obj.DeepCopyObject().(client.Object)
	st := r.k.status(obj)
	origStatus := *st.DeepCopy()
	secretNS := obj.GetNamespace()
	if r.k.cluster {
		secretNS = r.ClusterResourceNamespace
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return r.finalize(ctx, obj, orig, st, origStatus)
	}
	if r.k.reevit && !controllerutil.ContainsFinalizer(obj, issuerFinalizer) {
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		controllerutil.AddFinalizer(obj, issuerFinalizer)
		if err := r.Patch(ctx, obj, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		orig = obj.DeepCopyObject().(client.Object)
	}
	p := &adminPass{obj: obj, orig: orig, st: st, origStatus: origStatus, spec: reevitSpecOf(obj), secretNS: secretNS, now: r.Clock.Now()}
	res, err := runSteps(ctx, p, r.issuerSteps(), r.adminFail)
	if err != nil {
		return ctrl.Result{}, err // a crash or an API error: nothing more is written
	}
	if wres, ok, werr := statusWritten(writeStatus(ctx, r.Client, r.superseded, obj, p.orig, *st, p.origStatus)); !ok {
		return wres, werr
	}
	for _, rec := range p.audits {
		r.Audit.Record(rec)
	}
	return res, nil
}

// issuerSteps is an issuer's reconcile, in order, on the same runner as the
// credential kinds: check the credential once per version, judge its age,
// and for a Reevit issuer rotate its admin key.
func (r *IssuerReconciler) issuerSteps() []step[*adminPass] {
	return []step[*adminPass]{
		{name: "check", owns: v1alpha1.ConditionReady, run: r.stepCheck},
		{name: "age", owns: v1alpha1.ConditionKeyAge, run: r.stepCredentialAge},
		{name: "adminKey", owns: v1alpha1.ConditionAdminKeyRotation, run: r.stepAdminKey},
	}
}

// stepCheck checks the credential unless this version of the issuer and its
// Secret was checked already (by this process or another) and no failure
// is due for a retry (held, with checkedVersion as the inputs waited on).
func (r *IssuerReconciler) stepCheck(ctx context.Context, p *adminPass) (stepResult, error) {
	obj, st := p.obj, p.st
	version := fmt.Sprintf("%d/%s", obj.GetGeneration(), secretVersion(ctx, r.Cache, p.secretNS, r.k.secretRef(obj).Name))
	wait, isHeld := held(st.RetryStatus, st.CheckedVersion, version, p.now)
	if st.CheckedVersion == version && r.checkCurrent(obj, st) && (st.FailedAttempts == 0 || isHeld) {
		return next(wait)
	}
	res, _, err := r.checkNow(ctx, obj, st, p.secretNS, version, p.now)
	return stepResult{RequeueAfter: res.RequeueAfter}, err
}

// stepCredentialAge judges the credential's age (judgeCredentialAge).
func (r *IssuerReconciler) stepCredentialAge(_ context.Context, p *adminPass) (stepResult, error) {
	return next(r.judgeCredentialAge(p.obj, p.st, p.now))
}

// stepAdminKey runs a Reevit issuer's admin-key rotation (adminKeyStep).
func (r *IssuerReconciler) stepAdminKey(ctx context.Context, p *adminPass) (stepResult, error) {
	if p.spec == nil {
		return next(0)
	}
	res, err := r.adminKeyStep(ctx, p)
	return stepResult{RequeueAfter: res.RequeueAfter}, err
}

// checkNow checks the credential, protects a usable Secret, records the
// outcome and the credential's fingerprint, and returns the version checked
// (after the protecting patch).
func (r *IssuerReconciler) checkNow(ctx context.Context, obj client.Object, st *v1alpha1.IssuerStatus, secretNS, version string, now time.Time) (ctrl.Result, string, error) {
	f, usableRV, fingerprint := r.check(ctx, obj, st, secretNS, now)
	if usableRV != "" {
		// Only now, the Secret having passed every check, is it protected;
		// the version then names the Secret after that patch, so the patch
		// is not taken for a new credential.
		rv, err := protectSecret(ctx, r.Cache, r.Client, secretNS, r.k.secretRef(obj).Name, usableRV)
		if err != nil {
			return ctrl.Result{}, "", err
		}
		if rv != "" {
			version = fmt.Sprintf("%d/%s", obj.GetGeneration(), rv)
		}
	}
	res := r.recordCheck(obj, st, f, now)
	trackCredential(st, fingerprint, now)
	st.CheckedVersion, st.LastCheckTime, st.ObservedGeneration = version, mtime(now), obj.GetGeneration()
	return res, version, nil
}

// judgeCredentialAge exports since when the credential is in use and, for
// a Rev.io issuer with spec.maxKeyAge, sets KeyAge (a Warning event when it
// turns KeyTooOld) and asks to be woken when it will turn.
func (r *IssuerReconciler) judgeCredentialAge(obj client.Object, st *v1alpha1.IssuerStatus, now time.Time) time.Duration {
	labels := []string{r.k.kind, obj.GetNamespace(), obj.GetName()}
	if st.Credential != nil {
		metrics.SetTime(metrics.IssuerCredentialFirstSeen, st.Credential.FirstSeen.Time, labels...)
	}
	var maxAge *metav1.Duration
	if rs := obj.(v1alpha1.GenericIssuer).RevioSpec(); rs != nil {
		maxAge = rs.MaxKeyAge
	}
	v := judgeKeyAge(st.Credential, maxAge, now)
	if !r.k.reevit && st.Credential != nil {
		metrics.IssuerKeyTooOld.WithLabelValues(labels...).Set(map[bool]float64{true: 1}[v.TooOld])
	}
	if setKeyAge(st, obj.GetGeneration(), v, maxAge, r.k.secretRef(obj).Name) {
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionKeyAge)
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.ReasonKeyTooOld, "Check", "%s", c.Message)
	}
	return max(v.Next, 0)
}

// checkCurrent reports whether the last check answers this generation of
// the issuer, and recorded the credential's fingerprint (a manager that did
// not record it yet checks once more, to start its age). The gauge then
// says what that check found, for a restarted manager or a new shard.
func (r *IssuerReconciler) checkCurrent(obj client.Object, st *v1alpha1.IssuerStatus) bool {
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.ObservedGeneration != obj.GetGeneration() || ready.Status == metav1.ConditionTrue && st.Credential == nil {
		return false
	}
	metrics.IssuerReady.WithLabelValues(r.k.kind, obj.GetNamespace(), obj.GetName()).Set(map[bool]float64{true: 1}[ready.Status == metav1.ConditionTrue])
	return true
}

// recordCheck sets Ready, the gauge and the backoff from a check's outcome
// (f nil: the check passed); a new failure reason is told by an event.
func (r *IssuerReconciler) recordCheck(obj client.Object, st *v1alpha1.IssuerStatus, f *failure, now time.Time) ctrl.Result {
	gauge := metrics.IssuerReady.WithLabelValues(r.k.kind, obj.GetNamespace(), obj.GetName())
	if f == nil {
		st.RetryStatus = v1alpha1.RetryStatus{}
		msg := "the admin key lists this organisation's keys"
		if !r.k.reevit {
			msg = "the endpoint is allowed and the API-key Secret holds a key; the first RevioToken exchange proves the key itself"
		}
		setCondition(&st.Conditions, obj.GetGeneration(), v1alpha1.ConditionReady, true, v1alpha1.ReasonSucceeded, msg)
		gauge.Set(1)
		return ctrl.Result{}
	}
	if !hasReason(st.Conditions, v1alpha1.ConditionReady, f.Reason) {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, f.Reason, "Check", "%s", f.Message)
	}
	setCondition(&st.Conditions, obj.GetGeneration(), v1alpha1.ConditionReady, false, f.Reason, f.Message)
	gauge.Set(0)
	// Any failure but a transient one waits for a change of the issuer or
	// its Secret (held); a transient one is checked again after backoff.
	return ctrl.Result{RequeueAfter: recordRetry(&st.RetryStatus, f, !f.Transient, now, time.Time{})}
}

// check proves the credential: a key listing (Reevit), or for Rev.io the
// endpoint, Secret type and key (see below). For a Reevit issuer it also
// returns the resourceVersion of its credential Secret when that Secret
// passed every check of it (type, not an output Secret, the key present),
// whatever Reevit then answered; "" when it did not or was not read.
//
// With spec.adminKeyRotation the same listing identifies the admin key
// (status.adminKey): a key it cannot identify fails the check.
func (r *IssuerReconciler) check(ctx context.Context, obj client.Object, st *v1alpha1.IssuerStatus, secretNS string, now time.Time) (*failure, string, string) {
	gi := obj.(v1alpha1.GenericIssuer)
	if rs := gi.ReevitSpec(); rs != nil {
		spec := *rs
		iss := &reevitIssuer{obj: obj, kind: r.k.kind, spec: spec, secretNS: secretNS}
		if !endpointAllowed(iss.url(), r.AllowedEndpoints) {
			return endpointRefused(iss.describe(), iss.url(), r.AllowedEndpoints), "", ""
		}
		key, rv, f := readIssuerCredential(ctx, r.secrets, secretNS, spec.AdminKeySecretRef, "spec.adminKeySecretRef")
		if f != nil {
			return f, "", ""
		}
		fp := credentialFingerprint(key)
		c, err := reevit.New(reevit.Config{BaseURL: iss.url(), OrgID: spec.OrgID, AdminKey: key, ActorID: spec.ActorID,
			AllowHTTP: r.AllowHTTP, HTTPClient: r.HTTPClient, Observe: metrics.Observer("reevit")})
		if err != nil {
			return classifyReevit(err), rv, fp
		}
		keys, err := c.ListKeys(ctx)
		if err != nil {
			return classifyReevit(err), rv, fp
		}
		if spec.AdminKeyRotation != nil {
			k, f := identifyAdminKey(keys, key, spec.AdminKeySecretRef.Name)
			if f != nil {
				return f, rv, fp
			}
			recordAdminKey(st, k, fp, spec.AdminKeyRotation, now)
		}
		return nil, rv, fp
	}
	iss := &revioIssuer{obj: obj, kind: r.k.kind, spec: *gi.RevioSpec(), secretNS: secretNS}
	// The endpoint, the Secret's type and the key are checked; no
	// exchange is made: it would mint a token nobody uses and spend
	// Rev.io's rate limit once per Secret version. The first RevioToken
	// exchange proves the key itself (its Issued condition).
	_, apiKey, _, f := r.connectRevio(ctx, r.secrets, iss)
	if f != nil {
		return f, "", ""
	}
	return nil, "", credentialFingerprint(apiKey)
}

// finalize holds a Reevit issuer while ApiKeys depending on it still have
// their finalizer (keys to revoke), then lets it go.
func (r *IssuerReconciler) finalize(ctx context.Context, obj, orig client.Object, st *v1alpha1.IssuerStatus, origStatus v1alpha1.IssuerStatus) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, issuerFinalizer) {
		return ctrl.Result{}, nil
	}
	n, err := r.dependents(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	if n > 0 {
		msg := fmt.Sprintf("deletion waits until the keys of %d ApiKey(s) made through this issuer are revoked or retained (delete those ApiKeys or move them to another issuer)", n)
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Reason != v1alpha1.ReasonIssuerInUse {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonIssuerInUse, "Delete", "%s", msg)
		}
		setCondition(&st.Conditions, obj.GetGeneration(), v1alpha1.ConditionReady, false, v1alpha1.ReasonIssuerInUse, msg)
		if _, err := writeStatus(ctx, r.Client, r.superseded, obj, orig, *st, origStatus); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, nil // ApiKey events bring it back
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	controllerutil.RemoveFinalizer(obj, issuerFinalizer)
	if err := r.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// dependents counts the ApiKeys that depend on the issuer and may still have
// keys to revoke.
func (r *IssuerReconciler) dependents(ctx context.Context, obj client.Object) (int, error) {
	list := &v1alpha1.ApiKeyList{}
	if r.AllShards != nil {
		if err := r.listAllShards(ctx, obj, list); err != nil {
			return 0, err
		}
	} else {
		opts := []client.ListOption{client.MatchingFields{issuerRefsIndex: issuerKey(r.k.kind, obj.GetName())}, client.UnsafeDisableDeepCopy}
		if !r.k.cluster {
			opts = append(opts, client.InNamespace(obj.GetNamespace()))
		}
		if err := r.List(ctx, list, opts...); err != nil {
			return 0, err
		}
	}
	n := 0
	for i := range list.Items {
		ak := &list.Items[i]
		if issuerref.BlocksDeletion(ak, r.k.kind, obj.GetName()) {
			n++
		}
	}
	return n, nil
}

// listAllShards lists, in pages, every ApiKey that may depend on the issuer.
func (r *IssuerReconciler) listAllShards(ctx context.Context, obj client.Object, out *v1alpha1.ApiKeyList) error {
	opts := []client.ListOption{client.Limit(500)}
	if !r.k.cluster {
		opts = append(opts, client.InNamespace(obj.GetNamespace()))
	}
	for {
		page := &v1alpha1.ApiKeyList{}
		if err := r.AllShards.List(ctx, page, opts...); err != nil {
			return fmt.Errorf("list ApiKeys of every shard: %w", err)
		}
		out.Items = append(out.Items, page.Items...)
		if page.Continue == "" {
			return nil
		}
		opts = append(opts[:len(opts):len(opts)], client.Continue(page.Continue))
	}
}
