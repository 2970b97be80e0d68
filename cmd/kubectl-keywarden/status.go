package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// maxEvents is how many recent events status shows.
const maxEvents = 8

func newStatusCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status KIND/NAME...",
		Short: "Show what an ApiKey, a RevioToken or an issuer is doing and what to do about a failure",
		Long: `Show the active key (id and prefix) or token (issued, expires), the issuer
that makes it, previous keys waiting for revocation, the next rotation or
refresh, the last failure with what to do about it, the rollout restarts and
recent events. For an issuer: whether its credential works (Ready, reason,
message), the version last checked, its endpoint, credential Secret and
policy, and the ApiKeys or RevioTokens using it.

KIND is apikey (ak), reviotoken (rt), reevitissuer (ri), clusterreevitissuer
(cri), revioissuer (rvi) or clusterrevioissuer (crvi). The cluster issuers
take no namespace; their Secrets live in --cluster-resource-namespace.`,
		Example: `  kubectl keywarden status apikey/payments-reevit -n payments
  kubectl keywarden status rt/billing-revio
  kubectl keywarden status ri/reevit cri/acme`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			refs, err := parseRefs(args, "")
			if err != nil {
				return err
			}
			c, ns, err := o.connect()
			if err != nil {
				return err
			}
			for i, r := range refs {
				if i > 0 {
					fmt.Fprintln(o.out)
				}
				if err := o.status(cmd.Context(), c, ns, r); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (o *options) status(ctx context.Context, c client.Client, ns string, r ref) error {
	obj := r.kind.newObject()
	key := client.ObjectKey{Namespace: ns, Name: r.name}
	where := " in namespace " + ns
	if r.kind.clusterScoped() {
		key.Namespace, where = "", ""
	}
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s not found%s", r, where)
		}
		return fmt.Errorf("get %s: %w", r, err)
	}
	now := o.now()
	if v, ok := viewIssuer(obj); ok {
		renderIssuer(o.out, v, o.gatherIssuerExtra(ctx, c, v), now)
		return nil
	}
	x := gatherExtra(ctx, c, obj)
	switch obj := obj.(type) {
	case *v1alpha1.ApiKey:
		renderApiKey(o.out, obj, x, now)
	case *v1alpha1.RevioToken:
		renderRevioToken(o.out, obj, x, now)
	}
	return nil
}

// rolloutState is what status knows of one rollout target.
type rolloutState struct {
	target v1alpha1.RolloutTarget
	// name is the workload's, or describes a selector that picks none.
	name    string
	none    bool // a selector target picking no workload
	missing bool
	err     error
	// refused: the workload neither reads the output Secret nor opts in
	// with keywarden.dev/allow-restart-for, so the manager does not restart it.
	refused bool
	// skipped: it reads the Secret only through volumes the kubelet
	// updates in place (when: Needed), so the manager does not restart it.
	skipped  bool
	hash     string // the Secret version the pod template records (secretsync.TemplateHash)
	progress string
}

// statusExtra is what status reads beside the object itself. Reading it may
// fail (RBAC): each part then says so instead of failing the command.
type statusExtra struct {
	secretName    string
	secretHash    string
	secretMissing bool
	secretErr     error
	rollouts      []rolloutState
	issuer        issuerState
	events        []eventsv1.Event
	eventsErr     error
}

func outputSecretName(obj client.Object) string {
	var statusName, specName string
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		statusName, specName = o.Status.SecretName, o.Spec.Secret.Name
	case *v1alpha1.RevioToken:
		statusName, specName = o.Status.SecretName, o.Spec.Secret.Name
	}
	switch {
	case statusName != "":
		return statusName
	case specName != "":
		return specName
	}
	return obj.GetName()
}

func gatherExtra(ctx context.Context, c client.Client, obj client.Object) statusExtra {
	ns := obj.GetNamespace()
	x := statusExtra{secretName: outputSecretName(obj)}
	// Metadata only: status has no business with the Secret's data.
	sm := &metav1.PartialObjectMetadata{}
	sm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: x.secretName}, sm); {
	case apierrors.IsNotFound(err):
		x.secretMissing = true
	case err != nil:
		x.secretErr = err
	default:
		// The version restarts are made for; older Secrets lack it.
		if x.secretHash = sm.Annotations[secretsync.AnnotationRestartHash]; x.secretHash == "" {
			x.secretHash = sm.Annotations[secretsync.AnnotationDataHash]
		}
	}
	var targets []v1alpha1.RolloutTarget
	if c, ok := obj.(v1alpha1.Credential); ok {
		targets = c.RolloutTargets()
	}
	for _, t := range targets {
		x.rollouts = append(x.rollouts, readRollout(ctx, c, ns, x.secretName, t)...)
	}
	x.issuer = readIssuer(ctx, c, obj)
	x.events, x.eventsErr = eventsOf(ctx, c, obj)
	return x
}

// eventsOf lists the recent events regarding obj. Events about a
// cluster-scoped object are recorded in the default namespace.
func eventsOf(ctx context.Context, c client.Client, obj client.Object) ([]eventsv1.Event, error) {
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.UID == obj.GetUID() || (e.Regarding.UID == "" && e.Regarding.Name == obj.GetName() && e.Regarding.Kind == kindOf(obj)) {
			out = append(out, e)
		}
	}
	return recentEvents(out, maxEvents), nil
}

// kindOf is the API kind of one of Keywarden's objects.
func kindOf(obj client.Object) string {
	switch o := obj.(type) {
	case *v1alpha1.RevioToken:
		return "RevioToken"
	case v1alpha1.GenericIssuer:
		return o.IssuerKind()
	}
	return "ApiKey"
}

// readRollout reads the workloads one target picks.
func readRollout(ctx context.Context, c client.Client, ns, secretName string, t v1alpha1.RolloutTarget) []rolloutState {
	res, err := secretsync.Resolve(ctx, c, ns, secretName, []v1alpha1.RolloutTarget{t}, "")
	name := t.Name
	if t.Selector != nil {
		name = "selector " + metav1.FormatLabelSelector(t.Selector)
	}
	if err != nil {
		return []rolloutState{{target: t, name: name, err: err}}
	}
	if len(res.Problems) > 0 {
		return []rolloutState{{target: t, name: name, err: errors.New(res.Problems[0])}}
	}
	if len(res.Outcomes) == 0 {
		return []rolloutState{{target: t, name: name, none: true}}
	}
	var out []rolloutState
	for _, o := range res.Outcomes {
		s := rolloutState{target: t, name: o.Name, missing: o.Missing, refused: o.Refused, skipped: o.Skipped}
		if o.Workload != nil {
			s.hash, _ = secretsync.TemplateHash(o.Workload, secretName)
			s.progress = progressOf(o.Workload)
		}
		out = append(out, s)
	}
	return out
}

func progressOf(obj client.Object) string {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return fmt.Sprintf("%d/%d updated, %d available", w.Status.UpdatedReplicas, ptrOr(w.Spec.Replicas, 1), w.Status.AvailableReplicas)
	case *appsv1.StatefulSet:
		return fmt.Sprintf("%d/%d updated, %d ready", w.Status.UpdatedReplicas, ptrOr(w.Spec.Replicas, 1), w.Status.ReadyReplicas)
	case *appsv1.DaemonSet:
		return fmt.Sprintf("%d/%d updated, %d available", w.Status.UpdatedNumberScheduled, w.Status.DesiredNumberScheduled, w.Status.NumberAvailable)
	}
	return ""
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// recentEvents returns the last n events, oldest first.
func recentEvents(evs []eventsv1.Event, n int) []eventsv1.Event {
	slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	return evs
}

func eventTime(e eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func renderApiKey(w io.Writer, ak *v1alpha1.ApiKey, x statusExtra, now time.Time) {
	st := ak.Status
	fmt.Fprintf(w, "ApiKey %s/%s\n", ak.Namespace, ak.Name)
	t := &table{}
	t.add("Ready", "%s", readySummary(st.Conditions, ak.Generation, now))
	t.add("Key ID", "%s", orDash(st.KeyID))
	t.add("Key prefix", "%s", orDash(st.KeyPrefix))
	t.add("Issuer", "%s", x.issuer.line())
	t.add("Key made by", "%s", keyMadeBy(ak, x.issuer))
	t.add("Environment", "%s", ak.Spec.Environment)
	t.add("Active since", "%s", when(st.ActiveSince, now))
	t.add("Last rotation", "%s", when(st.LastRotationTime, now))
	t.add("Next rotation", "%s", nextRotation(ak, now))
	t.add("Rotations", "%d", st.Rotations)
	t.add("Secret", "%s", secretLine(x))
	if p := st.PendingCreate; p != nil {
		t.add("Key creation", "in progress since %s (reason %s)", when(&p.StartedAt, now), p.Reason)
	}
	fmt.Fprint(w, indent(t.String()))

	fmt.Fprintln(w, "Previous keys (valid until revoked):")
	if len(st.PendingRevocations) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  KEY ID\tPREFIX\tREVOKE AFTER\tREASON\tISSUER")
		for _, p := range st.PendingRevocations {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.KeyID, orDash(p.KeyPrefix), when(&p.RevokeAfter, now), orDash(p.Reason), issuerRecordShort(p.Issuer))
		}
		_ = tw.Flush()
	}
	renderFailure(w, st.Conditions, st.FailedAttempts, st.LastFailureTime, st.NextRetryTime, now)
	renderConditions(w, st.Conditions, now)
	renderRollouts(w, x)
	renderEvents(w, x, now)
}

func renderRevioToken(w io.Writer, rt *v1alpha1.RevioToken, x statusExtra, now time.Time) {
	st := rt.Status
	fmt.Fprintf(w, "RevioToken %s/%s\n", rt.Namespace, rt.Name)
	t := &table{}
	t.add("Ready", "%s", readySummary(st.Conditions, rt.Generation, now))
	t.add("Issuer", "%s", x.issuer.line())
	switch {
	case x.issuer.read:
		t.add("Host", "%s (spec.host of the issuer)", x.issuer.view.revio.Host)
		t.add("URL", "%s", x.issuer.view.url())
	default:
		t.add("Host", "unknown (the issuer cannot be read)")
	}
	t.add("Token issued", "%s", when(st.IssuedAt, now))
	expires := when(st.ExpiresAt, now)
	if st.ExpiresAt == nil && st.IssuedAt != nil {
		expires = "never (the token has no exp claim)"
	} else if st.ExpiresAt != nil && !now.Before(st.ExpiresAt.Time) {
		expires += " EXPIRED"
	}
	t.add("Token expires", "%s", expires)
	t.add("Last refresh", "%s", when(st.LastRefreshTime, now))
	t.add("Next refresh", "%s", when(st.NextRefreshTime, now))
	t.add("Refreshes", "%d", st.Refreshes)
	t.add("Secret", "%s", secretLine(x))
	fmt.Fprint(w, indent(t.String()))
	renderFailure(w, st.Conditions, st.FailedAttempts, st.LastFailureTime, st.NextRetryTime, now)
	renderConditions(w, st.Conditions, now)
	renderRollouts(w, x)
	renderEvents(w, x, now)
}

func nextRotation(ak *v1alpha1.ApiKey, now time.Time) string {
	if ak.Status.NextRotationTime != nil {
		return when(ak.Status.NextRotationTime, now)
	}
	if ak.Spec.Rotation == nil || (ak.Spec.Rotation.Every == nil && ak.Spec.Rotation.Schedule == "") {
		return "none scheduled (no spec.rotation; `kubectl keywarden rotate` rotates now)"
	}
	return "-"
}

func secretLine(x statusExtra) string {
	switch {
	case x.secretMissing:
		return x.secretName + " (not written yet)"
	case x.secretErr != nil:
		return x.secretName + " (cannot read: " + shortErr(x.secretErr) + ")"
	}
	return x.secretName
}

// readySummary is the Ready condition on one line.
func readySummary(conds []metav1.Condition, generation int64, now time.Time) string {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return "Unknown (the manager has not reported yet)"
	}
	s := fmt.Sprintf("%s (%s) since %s", c.Status, c.Reason, when(&c.LastTransitionTime, now))
	if c.ObservedGeneration != generation {
		s += fmt.Sprintf("; describes generation %d, the spec is at %d: the manager has not caught up", c.ObservedGeneration, generation)
	}
	return s
}

// inProgress are reasons of a False condition that are no failure: work
// under way that needs nobody.
var inProgress = map[string]bool{v1alpha1.ReasonRevocationPending: true, v1alpha1.ReasonProgressing: true}

// renderFailure shows every condition that is not True, Ready first, with
// what to do about it.
func renderFailure(w io.Writer, conds []metav1.Condition, attempts int32, last, retry *metav1.Time, now time.Time) {
	fmt.Fprintln(w, "Last failure:")
	var failing []metav1.Condition
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue && !inProgress[c.Reason] {
			failing = append(failing, c)
		}
	}
	slices.SortStableFunc(failing, func(a, b metav1.Condition) int {
		return boolCmp(b.Type == v1alpha1.ConditionReady, a.Type == v1alpha1.ConditionReady)
	})
	if len(failing) == 0 {
		if last != nil {
			fmt.Fprintf(w, "  none now (the last one was at %s)\n", when(last, now))
		} else {
			fmt.Fprintln(w, "  none")
		}
		return
	}
	// The summary and the step that failed usually say the same: once.
	for i := 0; i < len(failing); i++ {
		c := failing[i]
		types := []string{c.Type + "=" + string(c.Status)}
		for j := i + 1; j < len(failing); j++ {
			if d := failing[j]; d.Reason == c.Reason && d.Message == c.Message {
				types = append(types, d.Type+"="+string(d.Status))
				failing = slices.Delete(failing, j, j+1)
				j--
			}
		}
		fmt.Fprintf(w, "  %s %s: %s\n", strings.Join(types, ", "), c.Reason, oneLine(c.Message))
		fmt.Fprintf(w, "    what to do: %s\n", adviceFor(c.Reason))
	}
	switch {
	case attempts > 0 && last != nil:
		fmt.Fprintf(w, "  failed attempts: %d, last at %s\n", attempts, when(last, now))
	case attempts > 0:
		fmt.Fprintf(w, "  failed attempts: %d\n", attempts)
	}
	if retry != nil {
		fmt.Fprintf(w, "  next retry: %s\n", when(retry, now))
	}
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func renderConditions(w io.Writer, conds []metav1.Condition, now time.Time) {
	fmt.Fprintln(w, "Conditions:")
	if len(conds) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
	for _, c := range conds {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, relative(c.LastTransitionTime.Time, now), oneLine(c.Message))
	}
	_ = tw.Flush()
}

func renderRollouts(w io.Writer, x statusExtra) {
	fmt.Fprintln(w, "Rollout restarts:")
	if len(x.rollouts) == 0 {
		fmt.Fprintln(w, "  none configured (spec.rolloutRestart)")
		return
	}
	for _, r := range x.rollouts {
		fmt.Fprintf(w, "  %s %s: %s\n", r.target.Kind, r.name, rolloutLine(r, x))
	}
}

// rolloutLine says whether a workload was restarted for the Secret's current
// data: Keywarden records the Secret's version on its pod template.
func rolloutLine(r rolloutState, x statusExtra) string {
	switch {
	case r.none:
		return "no workload matches (nothing to restart)"
	case r.missing:
		return "not found: " + adviceFor(v1alpha1.ReasonRolloutTargetMissing)
	case r.err != nil:
		return "cannot read: " + shortErr(r.err)
	case r.refused:
		return "refused: it does not read Secret " + x.secretName + " (RolloutTargetRefused); " + adviceFor(v1alpha1.ReasonRolloutTargetRefused)
	case r.skipped:
		return "not restarted: it reads Secret " + x.secretName + " only through volumes, which the kubelet updates in place (when: Always restarts it)"
	case r.hash == "":
		return "not restarted by Keywarden yet (" + r.progress + ")"
	case x.secretHash == "":
		return "restarted (current Secret unknown; " + r.progress + ")"
	case r.hash == x.secretHash:
		return "restarted for the current Secret (" + r.progress + ")"
	}
	return "restarted for an earlier Secret; the restart for the current one is pending (" + r.progress + ")"
}

func renderEvents(w io.Writer, x statusExtra, now time.Time) {
	fmt.Fprintln(w, "Recent events:")
	switch {
	case x.eventsErr != nil:
		fmt.Fprintf(w, "  cannot list events: %s\n", shortErr(x.eventsErr))
		return
	case len(x.events) == 0:
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range x.events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", relative(eventTime(e), now), e.Type, e.Reason, oneLine(e.Note))
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "")
}

// shortErr is an API error's message without the request details.
func shortErr(err error) string {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return string(s.Status().Reason) + ": " + s.Status().Message
	}
	return err.Error()
}
