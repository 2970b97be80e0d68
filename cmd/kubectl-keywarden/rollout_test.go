package main

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// A selector target lists every workload it picks, each judged by the
// per-Secret annotation against the Secret's restart hash.
func TestReadRolloutSelector(t *testing.T) {
	reads := func(name, hash string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"tier": "api"}}}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}
		if hash != "" {
			d.Spec.Template.Annotations = map[string]string{secretsync.HashAnnotation("creds"): hash}
		}
		return d
	}
	stranger := reads("stranger", "")
	stranger.Spec.Template.Spec.Containers[0].EnvFrom = nil
	c := newFake(reads("current", "h1"), reads("earlier", "h0"), stranger)
	x := statusExtra{secretName: "creds", secretHash: "h1"}
	sel := v1alpha1.RolloutTarget{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}}
	var lines []string
	for _, s := range readRollout(context.Background(), c, ns, "creds", sel) {
		lines = append(lines, s.name+": "+rolloutLine(s, x))
	}
	none := v1alpha1.RolloutTarget{Kind: "StatefulSet", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}}
	for _, s := range readRollout(context.Background(), c, ns, "creds", none) {
		lines = append(lines, s.name+": "+rolloutLine(s, x))
	}
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"current: restarted for the current Secret",
		"earlier: restarted for an earlier Secret",
		"stranger: refused: it does not read Secret creds",
		"selector tier=api: no workload matches",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
