package secretsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// RolloutOutcome is what a restart for one Secret version means for one
// workload a rollout target picks.
type RolloutOutcome struct {
	Target v1alpha1.RolloutTarget
	// Name is the workload's name (the target's, or one a selector picked).
	Name string
	// Workload is the workload as read; nil when Missing.
	Workload client.Object
	// Missing is true when a named workload does not exist.
	Missing bool
	// Refused is true when the workload neither consumes the Secret (env,
	// envFrom or a volume) nor opts in with AnnotationAllowRestart: whoever
	// may create an ApiKey must not be able to restart any workload.
	Refused bool
	// Stale is true when the pod template does not record the Secret
	// version yet: a restart is needed.
	Stale bool
	// Skipped is true when the workload reads the Secret only through
	// volumes the kubelet updates in place, and the target's when is Needed:
	// it is not restarted, and nothing waits for it.
	Skipped bool
	// Why says why the workload is restarted or skipped, for the event.
	Why string
	// Failed is set when the template records the version but its rollout
	// has failed (RolloutFailure): it says how.
	Failed string
	// Done is true when the template records it and its pods run it.
	Done bool
}

// NewWorkload returns an empty workload of a rollout target kind.
func NewWorkload(kind string) (client.Object, error) {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{}, nil
	}
	return nil, fmt.Errorf("unsupported rollout kind %q", kind)
}

// AnnotationAllowRestart on a workload lets Keywarden restart it for the
// comma-separated Secret names it lists ("*": any), although its pods do not
// read the Secret directly (a sidecar or a file the app loads, say).
const AnnotationAllowRestart = "keywarden.dev/allow-restart-for"

func podTemplate(obj client.Object) *corev1.PodTemplateSpec {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	}
	return nil
}

// Consumes says whether the workload reads Secret name: through env
// (valueFrom.secretKeyRef), envFrom, a secret volume or a projected one, in
// any container, or opts in with AnnotationAllowRestart.
func Consumes(obj client.Object, name string) bool {
	if optsIn(obj, name) {
		return true
	}
	t := podTemplate(obj)
	if t == nil {
		return false
	}
	for _, v := range t.Spec.Volumes {
		if volumeReads(v, name) {
			return true
		}
	}
	containers := append(slices.Clone(t.Spec.InitContainers), t.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}

// RestartReason says whether a workload reading Secret name must be
// restarted to see a new value, and why (for the event). always is the
// target's when: Always. A workload that reads the Secret only through
// secret or projected volumes, without subPath, sees new values without a
// restart: the kubelet updates the files in place. Env, envFrom and subPath
// mounts are read once at container start; an opt-in annotation says the
// workload wants the restart. The caller checks Consumes first.
func RestartReason(obj client.Object, name string, always bool) (bool, string) {
	t := podTemplate(obj)
	if t == nil {
		return false, "not a workload"
	}
	vols := map[string]bool{}
	for _, v := range t.Spec.Volumes {
		if volumeReads(v, name) {
			vols[v.Name] = true
		}
	}
	containers := append(slices.Clone(t.Spec.InitContainers), t.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true, fmt.Sprintf("container %s reads the Secret through env %s, set only when a container starts", c.Name, e.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true, fmt.Sprintf("container %s reads the Secret through envFrom, set only when a container starts", c.Name)
			}
		}
		for _, m := range c.VolumeMounts {
			if vols[m.Name] && (m.SubPath != "" || m.SubPathExpr != "") {
				return true, fmt.Sprintf("container %s mounts the Secret with subPath at %s, which the kubelet never updates", c.Name, m.MountPath)
			}
		}
	}
	if optsIn(obj, name) {
		return true, "it opts in with " + AnnotationAllowRestart
	}
	if always {
		return true, "the rollout target says when: Always"
	}
	return false, "it reads the Secret only through volumes, which the kubelet updates in place: not restarted (the application should reread the files; set when: Always on the rollout target to restart it anyway)"
}

// volumeReads says whether volume v holds Secret name (secret or projected).
func volumeReads(v corev1.Volume, name string) bool {
	if v.Secret != nil && v.Secret.SecretName == name {
		return true
	}
	if v.Projected != nil {
		for _, src := range v.Projected.Sources {
			if src.Secret != nil && src.Secret.Name == name {
				return true
			}
		}
	}
	return false
}

// optsIn says whether the workload opts in with AnnotationAllowRestart.
func optsIn(obj client.Object, name string) bool {
	for _, v := range strings.Split(obj.GetAnnotations()[AnnotationAllowRestart], ",") {
		if v = strings.TrimSpace(v); v == "*" || v == name {
			return true
		}
	}
	return false
}

func templateAnnotations(obj client.Object) map[string]string {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return w.Spec.Template.Annotations
	case *appsv1.StatefulSet:
		return w.Spec.Template.Annotations
	case *appsv1.DaemonSet:
		return w.Spec.Template.Annotations
	}
	return nil
}

// rolledOut reports whether the controller of the workload has finished
// rolling out its current generation.
func rolledOut(obj client.Object) bool {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		return w.Status.ObservedGeneration >= w.Generation && w.Status.UpdatedReplicas >= want &&
			w.Status.Replicas == w.Status.UpdatedReplicas && w.Status.AvailableReplicas >= want
	case *appsv1.StatefulSet:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		return w.Status.ObservedGeneration >= w.Generation && w.Status.UpdatedReplicas >= want &&
			(w.Status.UpdateRevision == "" || w.Status.CurrentRevision == w.Status.UpdateRevision)
	case *appsv1.DaemonSet:
		return w.Status.ObservedGeneration >= w.Generation &&
			w.Status.UpdatedNumberScheduled >= w.Status.DesiredNumberScheduled &&
			w.Status.NumberAvailable >= w.Status.DesiredNumberScheduled
	}
	return false
}

// RolledOut reports whether the controller of the workload has finished
// rolling out its current generation.
func RolledOut(obj client.Object) bool { return rolledOut(obj) }

// RecordsRestart reports whether the workload's pod template carries a
// restart annotation Keywarden writes (HashAnnotation of any Secret).
func RecordsRestart(obj client.Object) bool {
	for k := range templateAnnotations(obj) {
		if strings.HasPrefix(k, hashAnnotationPrefix) {
			return true
		}
	}
	return false
}

// ListWorkloads lists every workload of kind in the cluster, page by page.
func ListWorkloads(ctx context.Context, reader client.Reader, kind string, each func(client.Object)) error {
	cont := ""
	for {
		list, items, err := newWorkloadList(kind)
		if err != nil {
			return err
		}
		if err := reader.List(ctx, list, client.Limit(500), client.Continue(cont)); err != nil {
			return fmt.Errorf("list %s: %w", kind, err)
		}
		for _, o := range items() {
			each(o)
		}
		if cont = list.GetContinue(); cont == "" {
			return nil
		}
	}
}

// MaxSelected bounds the workloads one selector target picks.
const MaxSelected = 100

// hashAnnotationPrefix starts the per-Secret pod-template annotations.
const hashAnnotationPrefix = "secret-hash.keywarden.dev/"

// HashAnnotation is the pod-template annotation recording which version
// (RestartHash) of Secret name the pods were restarted for. One key per
// Secret lets several credentials restart one workload without undoing each
// other. A name longer than an annotation name's 63 characters is cut and
// ends in a hash of the whole name, so two long names never share a key.
func HashAnnotation(secretName string) string {
	if len(secretName) <= 63 {
		return hashAnnotationPrefix + secretName
	}
	sum := sha256.Sum256([]byte(secretName))
	return hashAnnotationPrefix + strings.TrimRight(secretName[:46], "-.") + "-" + hex.EncodeToString(sum[:])[:16]
}

// RestartHash is the version of Secret data that consumers are restarted
// for: Hash of the data without the previous key an ApiKey keeps during a
// rotation's grace period, so dropping that key restarts nobody.
func RestartHash(data map[string][]byte) string {
	if _, ok := data["previousApiKey"]; !ok {
		if _, ok := data["previousKeyId"]; !ok {
			return Hash(data)
		}
	}
	d := maps.Clone(data)
	delete(d, "previousApiKey")
	delete(d, "previousKeyId")
	return Hash(d)
}

// TemplateHash is the Secret version obj's pod template records for Secret
// name: its HashAnnotation, else the single annotation older releases wrote
// (perSecret false then).
func TemplateHash(obj client.Object, secretName string) (hash string, perSecret bool) {
	a := templateAnnotations(obj)
	if h, ok := a[HashAnnotation(secretName)]; ok {
		return h, true
	}
	return a[v1alpha1.AnnotationSecretHash], false
}

// Stale reports whether obj should be restarted for version hash of Secret
// name: it consumes the Secret, needs a restart to see it (RestartReason;
// always is when: Always) and its template records another version.
func Stale(obj client.Object, secretName, hash string, always bool) bool {
	h, _ := TemplateHash(obj, secretName)
	if h == hash || !Consumes(obj, secretName) {
		return false
	}
	need, _ := RestartReason(obj, secretName, always)
	return need
}

// Resolved is what a list of rollout targets picks.
type Resolved struct {
	Outcomes []RolloutOutcome
	// Problems describe selector targets that could not be used (an
	// invalid selector, more than MaxSelected matches), for a Warning.
	Problems []string
}

// Resolve reads the workloads the targets pick in namespace, each once,
// with reader (an uncached reader: Keywarden does not cache workloads), and
// judges each for version hash of Secret secretName.
func Resolve(ctx context.Context, reader client.Reader, namespace, secretName string, targets []v1alpha1.RolloutTarget, hash string) (Resolved, error) {
	var res Resolved
	seen := map[string]bool{}
	add := func(t v1alpha1.RolloutTarget, obj client.Object) {
		if k := t.Kind + "/" + obj.GetName(); !seen[k] {
			seen[k] = true
			res.Outcomes = append(res.Outcomes, judge(t, obj, secretName, hash))
		} else if t.When == v1alpha1.RestartWhenAlways {
			// Picked twice: when: Always on either target wins.
			for i := range res.Outcomes {
				if o := &res.Outcomes[i]; o.Target.Kind == t.Kind && o.Name == obj.GetName() && o.Skipped {
					*o = judge(t, obj, secretName, hash)
				}
			}
		}
	}
	for i, t := range targets {
		if t.Selector == nil {
			obj, err := NewWorkload(t.Kind)
			if err != nil {
				return res, err
			}
			if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: t.Name}, obj); err != nil {
				if !apierrors.IsNotFound(err) {
					return res, fmt.Errorf("get %s %s: %w", t.Kind, t.Name, err)
				}
				res.Outcomes = append(res.Outcomes, RolloutOutcome{Target: t, Name: t.Name, Missing: true})
				continue
			}
			add(t, obj)
			continue
		}
		objs, problem, err := selectWorkloads(ctx, reader, namespace, t)
		if err != nil {
			return res, err
		}
		if problem != "" {
			res.Problems = append(res.Problems, fmt.Sprintf("rolloutRestart[%d] (%s selector): %s", i, t.Kind, problem))
		}
		for _, obj := range objs {
			add(t, obj)
		}
	}
	return res, nil
}

func judge(t v1alpha1.RolloutTarget, obj client.Object, secretName, hash string) RolloutOutcome {
	o := RolloutOutcome{Target: t, Name: obj.GetName(), Workload: obj}
	h, _ := TemplateHash(obj, secretName)
	if !Consumes(obj, secretName) {
		o.Refused = true
		return o
	}
	need, why := RestartReason(obj, secretName, t.When == v1alpha1.RestartWhenAlways)
	o.Why = why
	switch {
	case !need:
		o.Skipped, o.Done = true, true
	case h != hash:
		o.Stale = true
	default:
		o.Done = rolledOut(obj)
		if !o.Done {
			o.Failed = RolloutFailure(obj)
		}
	}
	return o
}

// RolloutFailure says, from its status alone, how the rollout of a
// workload's current pod template has failed, or "" when it has not (it may
// still be under way). A Deployment has failed when its controller says so:
// condition Progressing=False with reason ProgressDeadlineExceeded (after
// spec.progressDeadlineSeconds, 600 s by default) for its current
// generation. StatefulSets and DaemonSets have no progress deadline; one
// has stopped progressing when its controller has seen the current
// generation, some pods do not run the current template, and some pods
// are not ready (StatefulSet) or unavailable (DaemonSet): an update that
// waits for a broken pod goes no further. A rollout being made judges the
// same, so callers count such a stall only after a while (an ApiKey: once
// the grace period has ended).
func RolloutFailure(obj client.Object) string {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		if w.Status.ObservedGeneration < w.Generation {
			return ""
		}
		for _, c := range w.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
				return "its rollout exceeded its progress deadline (Progressing=False, ProgressDeadlineExceeded)"
			}
		}
	case *appsv1.StatefulSet:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		if w.Status.ObservedGeneration >= w.Generation && w.Status.UpdatedReplicas < want && w.Status.ReadyReplicas < want {
			return fmt.Sprintf("its rollout stopped progressing: %d of %d pods updated, %d ready", w.Status.UpdatedReplicas, want, w.Status.ReadyReplicas)
		}
	case *appsv1.DaemonSet:
		if w.Status.ObservedGeneration >= w.Generation && w.Status.UpdatedNumberScheduled < w.Status.DesiredNumberScheduled && w.Status.NumberUnavailable > 0 {
			return fmt.Sprintf("its rollout stopped progressing: %d of %d pods updated, %d unavailable",
				w.Status.UpdatedNumberScheduled, w.Status.DesiredNumberScheduled, w.Status.NumberUnavailable)
		}
	}
	return ""
}

// DeadlineKnown says whether a workload's controller reports a failed
// rollout itself (a Deployment's progress deadline), so RolloutFailure is
// final at once; for the other kinds it is a stall to be confirmed by time.
func DeadlineKnown(obj client.Object) bool {
	_, ok := obj.(*appsv1.Deployment)
	return ok
}

// selectWorkloads lists the workloads of t.Kind matching t.Selector, at most
// MaxSelected. A selector the API server would refuse is a problem, not an
// error: the other targets still count.
func selectWorkloads(ctx context.Context, reader client.Reader, namespace string, t v1alpha1.RolloutTarget) ([]client.Object, string, error) {
	sel, err := metav1.LabelSelectorAsSelector(t.Selector)
	if err != nil {
		return nil, "invalid selector: " + err.Error(), nil //nolint:nilerr // a spec problem, told as one; the other targets still count
	}
	list, items, err := newWorkloadList(t.Kind)
	if err != nil {
		return nil, "", err
	}
	if err := reader.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}, client.Limit(MaxSelected)); err != nil {
		return nil, "", fmt.Errorf("list %s matching %s: %w", t.Kind, sel, err)
	}
	problem := ""
	if list.GetContinue() != "" {
		problem = fmt.Sprintf("matches more than %d workloads: only the first %d are restarted; narrow the selector", MaxSelected, MaxSelected)
	}
	return items(), problem, nil
}

func newWorkloadList(kind string) (client.ObjectList, func() []client.Object, error) {
	switch kind {
	case "Deployment":
		l := &appsv1.DeploymentList{}
		return l, func() []client.Object { return itemsOf(l.Items) }, nil
	case "StatefulSet":
		l := &appsv1.StatefulSetList{}
		return l, func() []client.Object { return itemsOf(l.Items) }, nil
	case "DaemonSet":
		l := &appsv1.DaemonSetList{}
		return l, func() []client.Object { return itemsOf(l.Items) }, nil
	}
	return nil, nil, fmt.Errorf("unsupported rollout kind %q", kind)
}

// itemsOf returns pointers to the items of a typed list.
func itemsOf[T any, P interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

// PatchTemplate sets annotations on obj's pod template with one merge
// patch: one new pod template, however many Secrets changed. The patch
// carries obj's resourceVersion: it applies only to the version of the
// workload that was judged (Stale: it consumes the Secret, or opts in), and
// a workload changed since (no longer reading the Secret, say) gets a
// Conflict instead of a restart it did not ask for.
func PatchTemplate(ctx context.Context, c client.Client, obj client.Object, annotations map[string]string) error {
	if obj.GetResourceVersion() == "" {
		return fmt.Errorf("patch %s/%s: no resourceVersion: the workload must be read first", obj.GetNamespace(), obj.GetName())
	}
	patch := map[string]any{
		"metadata": map[string]any{"resourceVersion": obj.GetResourceVersion()},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": annotations}}}}
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, raw), client.FieldOwner(FieldOwner))
}

// RolloutsDone reports whether every workload the targets pick that
// consumes Secret secretName records version hash on its pod template and
// has finished rolling it out. Missing workloads count as done, and so do
// selector targets that cannot be used: they restart nothing to wait for.
func RolloutsDone(ctx context.Context, reader client.Reader, namespace, secretName string, targets []v1alpha1.RolloutTarget, hash string) (bool, error) {
	res, err := Resolve(ctx, reader, namespace, secretName, targets, hash)
	if err != nil {
		return false, err
	}
	for _, o := range res.Outcomes {
		if o.Stale || (!o.Missing && !o.Refused && !o.Done) {
			return false, nil
		}
	}
	return true, nil
}
