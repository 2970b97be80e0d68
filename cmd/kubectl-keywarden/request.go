package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// action is one of the requests the manager acts on through an annotation:
// each new value of the annotation asks for one rotation, refresh or
// compromised-key replacement.
type action struct {
	verb       string // the command
	kind       kind
	annotation string
	// done reports whether the manager has acted on value, and an error
	// when it tried and failed.
	done func(obj client.Object, value string) (bool, error)
	// result describes the outcome after done.
	result func(before, after client.Object, now time.Time) string
}

var (
	rotateAction = action{
		verb: "rotate", kind: kindApiKey, annotation: v1alpha1.AnnotationRotate,
		done: func(obj client.Object, value string) (bool, error) {
			return obj.(*v1alpha1.ApiKey).Status.LastRotateRequest == value, nil
		},
		result: apiKeyResult,
	}
	compromisedAction = action{
		verb: "compromised", kind: kindApiKey, annotation: v1alpha1.AnnotationCompromised,
		done: func(obj client.Object, value string) (bool, error) {
			return obj.(*v1alpha1.ApiKey).Status.LastCompromisedRequest == value, nil
		},
		result: apiKeyResult,
	}
	refreshAction = action{
		verb: "refresh", kind: kindRevioToken, annotation: v1alpha1.AnnotationRefresh,
		done: func(obj client.Object, value string) (bool, error) {
			rt := obj.(*v1alpha1.RevioToken)
			if rt.Status.LastRefreshRequest != value {
				return false, nil
			}
			// The attempt and its outcome are written in one status update.
			if c := meta.FindStatusCondition(rt.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return true, failureError(rt.Status.Conditions)
			}
			return true, nil
		},
		result: func(_, after client.Object, now time.Time) string {
			st := after.(*v1alpha1.RevioToken).Status
			return fmt.Sprintf("new token issued %s, expires %s", when(st.IssuedAt, now), when(st.ExpiresAt, now))
		},
	}
)

// issuerAction is the same request (rotate, compromised) made of a Reevit
// issuer: it replaces the issuer's admin key (spec.adminKeyRotation).
func issuerAction(a action, k kind) action {
	out := action{verb: a.verb, kind: k, annotation: a.annotation}
	out.done = func(obj client.Object, value string) (bool, error) {
		v, _ := viewIssuer(obj)
		ak := v.status.AdminKey
		if ak == nil || ak.Pending != nil {
			return false, nil
		}
		last := ak.LastRotateRequest
		if a.annotation == v1alpha1.AnnotationCompromised {
			last = ak.LastCompromisedRequest
		}
		if last != value {
			return false, nil
		}
		if c := meta.FindStatusCondition(v.status.Conditions, v1alpha1.ConditionAdminKeyRotation); c != nil && c.Status == metav1.ConditionFalse {
			return true, fmt.Errorf("%s: %s (%s)", c.Reason, c.Message, advice[c.Reason])
		}
		return true, nil
	}
	out.result = func(before, after client.Object, _ time.Time) string {
		b, _ := viewIssuer(before)
		a, _ := viewIssuer(after)
		if b.status.AdminKey == nil || a.status.AdminKey == nil {
			return "admin key rotated"
		}
		return fmt.Sprintf("admin key %s (%s) replaced by %s (%s)", b.status.AdminKey.ID, orDash(b.status.AdminKey.Prefix), a.status.AdminKey.ID, orDash(a.status.AdminKey.Prefix))
	}
	return out
}

// forIssuers turns a rotate or compromised request naming Reevit issuers
// (reevitissuer/NAME, clusterreevitissuer/NAME) into the issuer action.
func forIssuers(a action, args []string) action {
	refs, err := parseRefs(args, "")
	if err != nil || len(refs) == 0 {
		return a
	}
	if k := refs[0].kind; k == kindReevitIssuer || k == kindClusterReevitIssuer {
		return issuerAction(a, k)
	}
	return a
}

func apiKeyResult(before, after client.Object, _ time.Time) string {
	b, a := before.(*v1alpha1.ApiKey).Status, after.(*v1alpha1.ApiKey).Status
	if b.KeyID == "" {
		// Nothing was replaced: the first key of an ApiKey never issued.
		return fmt.Sprintf("key %s (%s) issued, rotations %d", a.KeyID, a.KeyPrefix, a.Rotations)
	}
	return fmt.Sprintf("key %s (%s) replaced by %s (%s), rotations %d", b.KeyID, orDash(b.KeyPrefix), a.KeyID, a.KeyPrefix, a.Rotations)
}

// failureError turns the Ready condition into an error that says what to do.
func failureError(conds []metav1.Condition) error {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return errors.New("the manager has not reported a Ready condition")
	}
	return fmt.Errorf("condition Ready=%s, reason %s: %s (what to do: %s)", c.Status, c.Reason, oneLine(c.Message), adviceFor(c.Reason))
}

// requestFlags select the objects of a request.
type requestFlags struct {
	selector      string
	all           bool
	allNamespaces bool
	wait          bool
	timeout       time.Duration
	yes           bool
}

func (f *requestFlags) bind(cmd *cobra.Command, selectable bool) {
	if selectable {
		cmd.Flags().StringVarP(&f.selector, "selector", "l", "", "act on the objects with these labels (as kubectl -l)")
		cmd.Flags().BoolVar(&f.all, "all", false, "act on every object of the namespace")
		cmd.Flags().BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "with -l or --all: in every namespace")
	}
	cmd.Flags().BoolVar(&f.wait, "wait", false, "wait until the manager has acted on the request")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "with --wait: how long to wait")
}

// requestCommand completes cmd, whose texts are set, as the command of one
// request: it runs o.request with the action choose picks for the arguments,
// and binds the request flags (-l, --all and -A too when selectable).
func requestCommand(o *options, cmd *cobra.Command, choose func(args []string) action, selectable bool) (*cobra.Command, *requestFlags) {
	f := &requestFlags{}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return o.request(cmd.Context(), choose(args), args, f)
	}
	f.bind(cmd, selectable)
	return cmd, f
}

func newRotateCommand(o *options) *cobra.Command {
	cmd, _ := requestCommand(o, &cobra.Command{
		Use:   "rotate [apikey/]NAME... | reevitissuer/NAME... | clusterreevitissuer/NAME... | -l SELECTOR | --all",
		Short: "Ask the manager to rotate ApiKeys now, with the usual grace period",
		Long: `Set a new keywarden.dev/rotate value on each selected ApiKey: the manager
issues a new key, switches the Secret to it and revokes the previous key after
the grace period (spec.rotation.gracePeriod, default 10m).

Named as reevitissuer/NAME or clusterreevitissuer/NAME, a Reevit issuer with
spec.adminKeyRotation replaces its own admin key the same way
(spec.adminKeyRotation.gracePeriod).`,
		Example: `  kubectl keywarden rotate payments-reevit --wait
  kubectl keywarden rotate -l team=payments -A`,
	}, func(args []string) action { return forIssuers(rotateAction, args) }, true)
	return cmd
}

func newRefreshCommand(o *options) *cobra.Command {
	cmd, _ := requestCommand(o, &cobra.Command{
		Use:   "refresh [reviotoken/]NAME... | -l SELECTOR | --all",
		Short: "Ask the manager to exchange RevioTokens for a new token now",
		Long: `Set a new keywarden.dev/refresh value on each selected RevioToken: the
manager exchanges the API key for a new token and writes it to the Secret.`,
		Example: `  kubectl keywarden refresh billing-revio --wait
  kubectl keywarden refresh --all -n billing`,
	}, func([]string) action { return refreshAction }, true)
	return cmd
}

func newCompromisedCommand(o *options) *cobra.Command {
	cmd, f := requestCommand(o, &cobra.Command{
		Use:   "compromised [apikey/]NAME... | reevitissuer/NAME... | clusterreevitissuer/NAME...",
		Short: "Replace an ApiKey's key at once and revoke the current key without grace period",
		Long: `Set a new keywarden.dev/compromised value on each named ApiKey: the manager
issues a new key and revokes the current one immediately, without grace
period and without waiting for rollouts. Workloads still using the old key
fail until they have the new one. Asks for confirmation unless --yes.

Named as reevitissuer/NAME or clusterreevitissuer/NAME, a Reevit issuer with
spec.adminKeyRotation replaces its admin key and revokes the old one at once.`,
		Example: `  kubectl keywarden compromised payments-reevit -n payments
  kubectl keywarden compromised apikey/payments-reevit --yes --wait`,
		Args: cobra.MinimumNArgs(1),
	}, func(args []string) action { return forIssuers(compromisedAction, args) }, false)
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// errNotConfirmed is returned when the person did not answer yes.
var errNotConfirmed = errors.New("not confirmed: nothing changed")

// request selects the objects, asks for confirmation where needed, sets the
// annotation with a merge patch and, with --wait, waits for the manager.
func (o *options) request(ctx context.Context, a action, args []string, f *requestFlags) error {
	refs, err := parseRefs(args, a.kind)
	if err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{len(refs) > 0, f.selector != "", f.all} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return fmt.Errorf("%s: name the objects, or give -l SELECTOR, or --all (exactly one of them)", a.verb)
	}
	if f.allNamespaces && len(refs) > 0 {
		return fmt.Errorf("%s: -A goes with -l or --all, not with names", a.verb)
	}
	c, ns, err := o.connect()
	if err != nil {
		return err
	}
	objs, err := selectObjects(ctx, c, ns, a.kind, refs, f)
	if err != nil {
		return err
	}
	if a.verb == "compromised" && !f.yes {
		if !o.confirm(objs) {
			return errNotConfirmed
		}
	}
	value := o.now().UTC().Format(time.RFC3339Nano)
	display := func(obj client.Object) string {
		if f.allNamespaces {
			return obj.GetNamespace() + "/" + string(a.kind) + "/" + obj.GetName()
		}
		return string(a.kind) + "/" + obj.GetName()
	}
	// Annotate every object first, then wait: the manager works on them
	// side by side.
	var failed []string
	requested := map[client.Object]string{}
	for _, obj := range objs {
		v := value
		if obj.GetAnnotations()[a.annotation] == v {
			v += "-1" // the same instant twice: still a new value
		}
		if err := patchAnnotation(ctx, c, obj, a.annotation, v); err != nil {
			fmt.Fprintf(o.errOut, "%s: %v\n", display(obj), err)
			failed = append(failed, display(obj))
			continue
		}
		requested[obj] = v
		fmt.Fprintf(o.out, "%s: %s requested (%s=%s)\n", display(obj), a.verb, a.annotation, v)
	}
	if f.wait {
		deadline, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		for _, obj := range objs {
			v, ok := requested[obj]
			if !ok {
				continue
			}
			after, err := waitDone(deadline, c, obj, a, v, f.timeout)
			if err != nil {
				fmt.Fprintf(o.errOut, "%s: %v\n", display(obj), err)
				failed = append(failed, display(obj))
				continue
			}
			fmt.Fprintf(o.out, "%s: done: %s\n", display(obj), a.result(obj, after, o.now()))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s failed for %s", a.verb, strings.Join(failed, ", "))
	}
	return nil
}

func selectObjects(ctx context.Context, c client.Client, ns string, k kind, refs []ref, f *requestFlags) ([]client.Object, error) {
	var objs []client.Object
	if len(refs) > 0 {
		for _, r := range refs {
			obj := k.newObject()
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: r.name}, obj); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, fmt.Errorf("%s not found in namespace %s", r, ns)
				}
				return nil, fmt.Errorf("get %s: %w", r, err)
			}
			objs = append(objs, obj)
		}
		return objs, nil
	}
	var opts []client.ListOption
	where := "namespace " + ns
	if f.allNamespaces {
		where = "any namespace"
	} else {
		opts = append(opts, client.InNamespace(ns))
	}
	if f.selector != "" {
		sel, err := labels.Parse(f.selector)
		if err != nil {
			return nil, fmt.Errorf("-l %q: %w", f.selector, err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
		where += " matching " + f.selector
	}
	list := k.newList()
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("list %ss: %w", k, err)
	}
	if err := meta.EachListItem(list, func(o runtime.Object) error {
		objs = append(objs, o.(client.Object))
		return nil
	}); err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no %s in %s", k.Kind(), where)
	}
	return objs, nil
}

// patchAnnotation sets one annotation with a JSON merge patch: no
// resourceVersion, so it never conflicts with the manager's writes.
func patchAnnotation(ctx context.Context, c client.Client, obj client.Object, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(fieldManager)); err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	return nil
}

// waitDone polls until the manager has acted on value.
func waitDone(ctx context.Context, c client.Client, obj client.Object, a action, value string, timeout time.Duration) (client.Object, error) {
	latest := a.kind.newObject()
	var doneErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), latest); err != nil {
			return false, nil //nolint:nilerr // transient: keep polling until the timeout
		}
		done, err := a.done(latest, value)
		doneErr = err
		return done, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the manager has not acted on the request within %s: %w", timeout, failureOrNil(latest))
	}
	return latest, doneErr
}

// failureOrNil explains a wait that timed out with the Ready condition.
func failureOrNil(obj client.Object) error {
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *v1alpha1.ApiKey:
		conds = o.Status.Conditions
	case *v1alpha1.RevioToken:
		conds = o.Status.Conditions
	case *v1alpha1.ReevitIssuer:
		conds = o.Status.Conditions
	case *v1alpha1.ClusterReevitIssuer:
		conds = o.Status.Conditions
	}
	if c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
		return errors.New("the request is not recorded in status although Ready is True: is the manager running?")
	}
	return failureError(conds)
}

// confirm asks on stdin whether to go ahead with a compromised request.
func (o *options) confirm(objs []client.Object) bool {
	for _, l := range confirmLines(objs) {
		fmt.Fprintln(o.errOut, l)
	}
	fmt.Fprint(o.errOut, "Revoke now? [y/N]: ")
	line, _ := bufio.NewReader(o.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	fmt.Fprintln(o.errOut)
	return false
}

// confirmLines is what a compromised request asks confirmation for: the
// keys of the ApiKeys, or the admin keys of the Reevit issuers, that are
// revoked at once.
func confirmLines(objs []client.Object) []string {
	lines := []string{
		"The current key of each of these ApiKeys will be revoked at once, without grace period;",
		"workloads still using it fail until they have the new key:",
	}
	if len(objs) > 0 {
		if _, ok := objs[0].(*v1alpha1.ApiKey); !ok {
			lines = []string{
				"The admin key of each of these issuers will be replaced and revoked at once, without grace period;",
				"anything else still using it fails until it has the new key:",
			}
		}
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *v1alpha1.ApiKey:
			lines = append(lines, fmt.Sprintf("  apikey/%s in %s: key %s (%s)", o.Name, o.Namespace, orDash(o.Status.KeyID), orDash(o.Status.KeyPrefix)))
		case *v1alpha1.ReevitIssuer:
			lines = append(lines, fmt.Sprintf("  reevitissuer/%s in %s: admin key %s", o.Name, o.Namespace, adminKeyLabel(o.Status.AdminKey)))
		case *v1alpha1.ClusterReevitIssuer:
			lines = append(lines, fmt.Sprintf("  clusterreevitissuer/%s: admin key %s", o.Name, adminKeyLabel(o.Status.AdminKey)))
		default:
			lines = append(lines, fmt.Sprintf("  %T %s", obj, client.ObjectKeyFromObject(obj)))
		}
	}
	return lines
}

// adminKeyLabel names an issuer's admin key by id and prefix.
func adminKeyLabel(a *v1alpha1.AdminKeyStatus) string {
	if a == nil {
		return "- (not identified yet)"
	}
	return fmt.Sprintf("%s (%s)", orDash(a.ID), orDash(a.Prefix))
}
