package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
	"github.com/keywarden/keywarden/internal/metrics"
	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/secretsync"
)

const kindRevioToken = "RevioToken"

// RevioTokenReconciler keeps a fresh Rev.io JWT in a Secret.
type RevioTokenReconciler struct {
	credentialReconciler
}

// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reviotokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reviotokens/status,verbs=get;patch
// +kubebuilder:rbac:groups=credentials.keywarden.dev,resources=reviotokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func newRevioTokenList() client.ObjectList { return &v1alpha1.RevioTokenList{} }

// SetupWithManager registers the controller and its watches.
func (r *RevioTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.defaults(mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RevioToken{}, builder.WithPredicates(primaryPredicate())).
		Watches(secretMetadata(), enqueueBySecret(mgr.GetClient(), func() client.ObjectList { return &v1alpha1.RevioTokenList{} }), builder.OnlyMetadata).
		Watches(&v1alpha1.RevioIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindRevioIssuer, false, newRevioTokenList), builder.WithPredicates(issuerChanged())).
		Watches(&v1alpha1.ClusterRevioIssuer{}, enqueueByIssuer(mgr.GetClient(), v1alpha1.KindClusterRevioIssuer, true, newRevioTokenList), builder.WithPredicates(issuerChanged())).
		Watches(&corev1.Namespace{}, enqueueWaitingInNamespace(mgr.GetClient(), newRevioTokenList), builder.WithPredicates(namespaceLabelsChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("reviotoken").
		Complete(r)
}

// Reconcile brings one RevioToken's Secret up to date.
func (r *RevioTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rt := &v1alpha1.RevioToken{}
	if err := r.Get(ctx, req.NamespacedName, rt); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.Forget(kindRevioToken, req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !rt.DeletionTimestamp.IsZero() {
		// The output Secret goes with its owner reference; nothing to revoke.
		metrics.Forget(kindRevioToken, req.Namespace, req.Name)
		r.superseded.forget(rt.UID)
		return ctrl.Result{}, nil
	}
	if r.superseded.stale(rt) {
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}
	orig := rt.DeepCopy()
	ctx, records := withAudit(ctx)
	res, err := r.reconcile(ctx, rt)
	return r.finish(ctx, records, rt, orig, res, err)
}

// finish ends every RevioToken pass: Ready derived from the narrow
// conditions, the one status write (writeStatus's conflict policy), the
// TokenExpired event, the metrics and the pass's audit records.
func (r *RevioTokenReconciler) finish(ctx context.Context, records *auditBuffer, rt, orig *v1alpha1.RevioToken, res ctrl.Result, err error) (ctrl.Result, error) {
	defer records.flush(r.Audit)
	st := &rt.Status
	st.ObservedGeneration = rt.Generation
	if st.FailedAttempts > 0 && st.NextRetryTime != nil {
		// The next exchange is the retry: what status, the printer column
		// and keywarden_next_renewal show as the next refresh.
		st.NextRefreshTime = st.NextRetryTime
	}
	summariseRevioToken(rt, r.Clock.Now())
	if wres, ok, werr := statusWritten(writeStatus(ctx, r.Client, r.superseded, rt, orig, rt.Status, orig.Status)); !ok {
		return wres, werr
	}
	if becameExpired(orig, rt) {
		r.Recorder.Eventf(rt, nil, corev1.EventTypeWarning, v1alpha1.ReasonTokenExpired, "Refresh", "the token in the Secret expired and refreshes keep failing")
	}
	r.record(rt)
	return res, err
}

// becameExpired reports whether this pass turned Ready to TokenExpired (told
// once per outage, by an event).
func becameExpired(before, after *v1alpha1.RevioToken) bool {
	return !hasReason(before.Status.Conditions, v1alpha1.ConditionReady, v1alpha1.ReasonTokenExpired) &&
		hasReason(after.Status.Conditions, v1alpha1.ConditionReady, v1alpha1.ReasonTokenExpired)
}

// revioTokenPass is what one pass of the RevioToken reconciler knows.
type revioTokenPass struct {
	rt         *v1alpha1.RevioToken
	now        time.Time
	secretName string
	existing   *corev1.Secret
	iss        *revioIssuer
	// inputVersion is the issuer's and its API-key Secret's version.
	inputVersion string
	client       *revio.Client
	apiKey       string
	tok          *revio.Token
	data         map[string][]byte
}

// revioTokenSteps is the RevioToken reconcile, in order: check the output
// Secret and the issuer, decide, exchange, verify, publish, restart consumers.
func (r *RevioTokenReconciler) revioTokenSteps() []step[*revioTokenPass] {
	return []step[*revioTokenPass]{
		{name: "ownership", owns: v1alpha1.ConditionSecretSynced, run: r.stepOwnership},
		{name: "issuer", owns: v1alpha1.ConditionIssued, run: r.stepIssuer},
		{name: "due", owns: v1alpha1.ConditionIssued, run: r.stepDue},
		{name: "connect", owns: v1alpha1.ConditionIssued, run: r.stepConnect},
		{name: "exchange", owns: v1alpha1.ConditionIssued, run: r.stepExchange},
		{name: "publish", owns: v1alpha1.ConditionSecretSynced, run: r.stepPublish},
		{name: "restart", owns: v1alpha1.ConditionRolloutsComplete, run: r.stepRestart},
	}
}

// reconcile reads the output Secret and runs the steps.
func (r *RevioTokenReconciler) reconcile(ctx context.Context, rt *v1alpha1.RevioToken) (ctrl.Result, error) {
	p := &revioTokenPass{rt: rt, now: r.Clock.Now(), secretName: outputSecretName(rt.Name, rt.Spec.Secret)}
	existing, err := r.secrets.get(ctx, rt.Namespace, p.secretName)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("read output secret: %w", err)
	}
	p.existing = existing
	return runSteps(ctx, p, r.revioTokenSteps(), func(_ context.Context, p *revioTokenPass, cond string, f *failure) stepResult {
		return r.fail(p.rt, p.now, cond, f)
	})
}

// stepOwnership stops at an output name taken by a foreign Secret: reconciled
// again when that Secret is deleted or renamed away (watch).
func (r *RevioTokenReconciler) stepOwnership(_ context.Context, p *revioTokenPass) (stepResult, error) {
	if p.existing == nil || secretsync.Controlled(p.existing, p.rt) {
		return next(0)
	}
	return failed(classifySecretWrite(&secretsync.ConflictError{Namespace: p.rt.Namespace, Name: p.secretName}))
}

// stepIssuer resolves the issuer and checks its namespace selector.
func (r *RevioTokenReconciler) stepIssuer(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	rt := p.rt
	iss, f := getRevioIssuer(ctx, r.Client, rt.Namespace, rt.Spec.IssuerRef.Kind, rt.Spec.IssuerRef.Name, r.ClusterResourceNamespace)
	if f == nil && iss.kind == v1alpha1.KindClusterRevioIssuer && iss.spec.NamespaceSelector != nil {
		f = revioNamespaceViolation(rt.Namespace, iss, namespaceLabels(ctx, r.Client, rt.Namespace))
	}
	if f != nil {
		if gateToldAlready(kindRevioToken, rt, rt.Status.Conditions, f) {
			return stepResult{Stop: true}, nil
		}
		if f.Reason == v1alpha1.ReasonPolicyViolation {
			var rec *audit.Issuer
			if iss != nil {
				rec = &audit.Issuer{Kind: iss.kind, Name: iss.obj.GetName(), URL: iss.url()}
			}
			auditNote(ctx, audit.Record{Time: p.now, Event: audit.PolicyRefused, Issuer: rec, Reason: f.Reason, Message: f.Message,
				Object: audit.Object{Kind: kindRevioToken, Namespace: rt.Namespace, Name: rt.Name, UID: string(rt.UID)}})
		}
		return failed(f)
	}
	metrics.PolicyViolations.DeleteLabelValues(kindRevioToken, rt.Namespace, rt.Name)
	p.iss, p.inputVersion = iss, iss.version(ctx, r.Cache)
	return next(0)
}

// stepDue decides whether to exchange now (exchangeDue, a pure function).
func (r *RevioTokenReconciler) stepDue(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	rt, st := p.rt, &p.rt.Status
	liftResolved(&st.Conditions, rt.Generation, &st.RetryStatus, issuerRecovered(p.iss.obj, st.FailedAttempts, st.LastFailureTime))
	var scheduled time.Time
	if st.NextRefreshTime != nil {
		scheduled = st.NextRefreshTime.Time
	}
	intact := p.existing != nil && secretsync.Intact(p.existing) && st.SecretName == p.secretName
	due, wait := exchangeDue(st.RetryStatus, revioTokenWaitedOn(rt), revioTokenInputs(rt, p.inputVersion), intact, scheduled, p.now)
	if !due {
		r.restarts.resume(ctx, rt, rt.Spec.RolloutRestart, p.existing)
		return stepResult{RequeueAfter: wait, Stop: true}, nil
	}
	// From here on this attempt answers the current spec, Secret and annotation.
	st.APIKeySecretVersion = p.inputVersion
	st.LastRefreshRequest = rt.Annotations[v1alpha1.AnnotationRefresh]
	return next(0)
}

// stepConnect reads the API key and builds the Rev.io client for the pass.
func (r *RevioTokenReconciler) stepConnect(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	c, apiKey, version, f := r.connectRevio(ctx, r.secrets, p.iss)
	if version != "" {
		// The version read may be newer than the one the cache showed.
		p.rt.Status.APIKeySecretVersion = fmt.Sprintf("%s/%d/%s", p.iss.obj.GetUID(), p.iss.obj.GetGeneration(), version)
	}
	if f != nil {
		// A missing Secret waits for the Secret watch; a failed read backs off.
		return failed(f)
	}
	p.client, p.apiKey = c, apiKey
	return next(0)
}

// stepExchange exchanges the API key for a token and verifies it.
func (r *RevioTokenReconciler) stepExchange(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	rt := p.rt
	tok, err := p.client.Exchange(ctx, p.apiKey)
	if err != nil {
		return failed(classifyRevio(err))
	}
	if rt.Spec.Verify != nil {
		if f := r.verify(ctx, p.client, tok, rt.Spec.Verify.Path); f != nil {
			return failed(f)
		}
	}
	setCondition(&rt.Status.Conditions, rt.Generation, v1alpha1.ConditionIssued, true, v1alpha1.ReasonSucceeded, "token obtained from Rev.io")
	p.tok = tok
	return next(0)
}

// stepPublish writes the token into the Secret and schedules the next refresh.
func (r *RevioTokenReconciler) stepPublish(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	rt, st, tok := p.rt, &p.rt.Status, p.tok
	p.data = tokenData(p.iss, tok)
	if _, err := r.secrets.apply(ctx, r.Client, p.existing, secretsync.Desired{
		Namespace: rt.Namespace, Name: p.secretName, Owner: rt,
		OwnerAPI: v1alpha1.GroupVersion.String(), OwnerKind: kindRevioToken,
		Labels: rt.Spec.Secret.Labels, Annotations: rt.Spec.Secret.Annotations, Data: p.data,
	}); err != nil {
		return failed(classifySecretWrite(err))
	}
	setCondition(&st.Conditions, rt.Generation, v1alpha1.ConditionSecretSynced, true, v1alpha1.ReasonSucceeded, "Secret "+p.secretName+" holds the current token")
	at := refreshAt(p.now, tok.IssuedAt, tok.ExpiresAt, rt.Spec.Refresh, r.jitter())
	st.SecretName = p.secretName
	st.IssuedAt, st.ExpiresAt = optTime(tok.IssuedAt), optTime(tok.ExpiresAt)
	st.LastRefreshTime = mtime(p.now)
	st.NextRefreshTime = mtime(at)
	st.Refreshes++
	st.RetryStatus = v1alpha1.RetryStatus{}
	metrics.Renewals.WithLabelValues(kindRevioToken, "success").Inc()
	expiry := "no expiry claim"
	if !tok.ExpiresAt.IsZero() {
		expiry = "expires " + tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if st.Refreshes > 1 {
		// The first token is told by the conditions alone (one write less
		// per created object).
		r.Recorder.Eventf(rt, nil, corev1.EventTypeNormal, v1alpha1.ReasonRefreshed, "Refresh", "token refreshed (%s); next refresh %s", expiry, at.UTC().Format(time.RFC3339))
	}
	return next(until(p.now, at))
}

// stepRestart restarts the workloads that consume the Secret.
func (r *RevioTokenReconciler) stepRestart(ctx context.Context, p *revioTokenPass) (stepResult, error) {
	r.restart(ctx, p.rt, secretsync.RestartHash(p.data))
	return next(0)
}

// tokenData is the output Secret's data.
func tokenData(iss *revioIssuer, tok *revio.Token) map[string][]byte {
	exp := ""
	if !tok.ExpiresAt.IsZero() {
		exp = tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return map[string][]byte{
		"token":         []byte(tok.JWT),
		"authorization": []byte("Bearer " + tok.JWT),
		"host":          []byte(iss.spec.Host),
		"url":           []byte(iss.url()),
		"expiresAt":     []byte(exp),
	}
}

// verify calls spec.verify.path with the new token; only 2xx passes.
func (r *RevioTokenReconciler) verify(ctx context.Context, c *revio.Client, tok *revio.Token, path string) *failure {
	code, _, err := c.Get(ctx, tok.JWT, path)
	if err != nil {
		return classifyRevio(err)
	}
	if code < 200 || code > 299 {
		return &failure{Reason: v1alpha1.ReasonVerificationFailed, Transient: true, Message: fmt.Sprintf(
			"Rev.io answered %d to the new token on %s: exchanging again with backoff; the previous token stays in place", code, path)}
	}
	return nil
}

// summariseRevioToken derives Ready from the narrower conditions (pure: now
// is the pass's time).
func summariseRevioToken(rt *v1alpha1.RevioToken, now time.Time) {
	st := &rt.Status
	st.ResolvedIssuer = issuerKey(revioKind(rt.Spec.IssuerRef.Kind), rt.Spec.IssuerRef.Name)
	for _, t := range []string{v1alpha1.ConditionSecretSynced, v1alpha1.ConditionIssued} {
		if c := meta.FindStatusCondition(st.Conditions, t); c != nil && c.Status == metav1.ConditionFalse {
			if st.ExpiresAt != nil && !now.Before(st.ExpiresAt.Time) {
				setCondition(&st.Conditions, rt.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonTokenExpired,
					"the token in the Secret has expired and refreshing failed: "+c.Message)
				return
			}
			setCondition(&st.Conditions, rt.Generation, v1alpha1.ConditionReady, false, c.Reason, c.Message)
			return
		}
	}
	if st.NextRefreshTime != nil && st.FailedAttempts == 0 {
		setCondition(&st.Conditions, rt.Generation, v1alpha1.ConditionReady, true, v1alpha1.ReasonSucceeded,
			"token valid; next refresh "+st.NextRefreshTime.UTC().Format(time.RFC3339))
	}
}

// record publishes the object's metrics.
func (r *RevioTokenReconciler) record(rt *v1alpha1.RevioToken) {
	var exp, next time.Time
	if rt.Status.ExpiresAt != nil {
		exp = rt.Status.ExpiresAt.Time
	}
	if rt.Status.NextRefreshTime != nil {
		next = rt.Status.NextRefreshTime.Time
	}
	metrics.SetTime(metrics.CredentialExpiry, exp, kindRevioToken, rt.Namespace, rt.Name)
	metrics.SetTime(metrics.NextRenewal, next, kindRevioToken, rt.Namespace, rt.Name)
}

// restart patches the rollout targets; a missing one gives a Warning event.
func (r *RevioTokenReconciler) restart(ctx context.Context, rt *v1alpha1.RevioToken, hash string) {
	r.restarts.request(ctx, rt, outputSecretName(rt.Name, rt.Spec.Secret), rt.Spec.RolloutRestart, hash)
}
