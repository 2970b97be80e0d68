package secretsync

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// RolloutOutcome is what happened to one rollout target.
type RolloutOutcome struct {
	Target v1alpha1.RolloutTarget
	// Patched is true when the pod template annotation was changed.
	Patched bool
	// Missing is true when the workload does not exist.
	Missing bool
	// Refused is true when the workload neither consumes the Secret (env,
	// envFrom or a volume) nor opts in with AnnotationAllowRestart: whoever
	// may create an ApiKey must not be able to restart any workload.
	Refused bool
	// Done is true when the workload runs pods with the current template.
	Done bool
}

func newWorkload(kind string) (client.Object, error) {
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
	for _, v := range strings.Split(obj.GetAnnotations()[AnnotationAllowRestart], ",") {
		if v = strings.TrimSpace(v); v == "*" || v == name {
			return true
		}
	}
	t := podTemplate(obj)
	if t == nil {
		return false
	}
	for _, v := range t.Spec.Volumes {
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

// Restart sets the keywarden.dev/secret-hash annotation on the pod template
// of each target to hash. A target already carrying hash is not patched, so
// the same data never restarts anything twice. Workloads are read directly
// (reader should be an uncached reader): Keywarden does not cache workloads.
func Restart(ctx context.Context, reader client.Reader, c client.Client, namespace, secretName string, targets []v1alpha1.RolloutTarget, hash string) ([]RolloutOutcome, error) {
	out := make([]RolloutOutcome, 0, len(targets))
	for _, t := range targets {
		o := RolloutOutcome{Target: t}
		obj, err := newWorkload(t.Kind)
		if err != nil {
			return out, err
		}
		if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: t.Name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				o.Missing = true
				out = append(out, o)
				continue
			}
			return out, fmt.Errorf("get %s %s: %w", t.Kind, t.Name, err)
		}
		if !Consumes(obj, secretName) {
			o.Refused = true
			out = append(out, o)
			continue
		}
		if templateAnnotations(obj)[v1alpha1.AnnotationSecretHash] != hash {
			patch := map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
				"annotations": map[string]string{v1alpha1.AnnotationSecretHash: hash}}}}}
			raw, _ := json.Marshal(patch)
			if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, raw), client.FieldOwner(FieldOwner)); err != nil {
				if apierrors.IsNotFound(err) {
					o.Missing = true
					out = append(out, o)
					continue
				}
				return out, fmt.Errorf("patch %s %s: %w", t.Kind, t.Name, err)
			}
			o.Patched = true
		} else {
			o.Done = rolledOut(obj)
		}
		out = append(out, o)
	}
	return out, nil
}

// RolloutsDone reports whether every existing target carries hash on its pod
// template and has finished rolling it out. Missing targets count as done.
func RolloutsDone(ctx context.Context, reader client.Reader, namespace, secretName string, targets []v1alpha1.RolloutTarget, hash string) (bool, error) {
	for _, t := range targets {
		obj, err := newWorkload(t.Kind)
		if err != nil {
			return false, err
		}
		if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: t.Name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return false, fmt.Errorf("get %s %s: %w", t.Kind, t.Name, err)
		}
		if !Consumes(obj, secretName) {
			continue // never restarted: nothing to wait for
		}
		if templateAnnotations(obj)[v1alpha1.AnnotationSecretHash] != hash || !rolledOut(obj) {
			return false, nil
		}
	}
	return true, nil
}
