package secretsync

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// deployment reads Secret creds; hash is what its template records for it.
func deployment(name, hash string, done bool) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, Labels: map[string]string{"app": "shop"}}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}
	if hash != "" {
		d.Spec.Template.Annotations = map[string]string{HashAnnotation("creds"): hash}
	}
	if done {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, Replicas: 1, AvailableReplicas: 1}
	}
	return d
}

// Every Secret name gives a valid annotation key of its own.
func TestHashAnnotation(t *testing.T) {
	long := strings.Repeat("a", 40) + "-" + strings.Repeat("b", 200)
	longer := long + "c"
	keys := map[string]bool{}
	for _, name := range []string{"creds", strings.Repeat("x", 63), strings.Repeat("x", 64), long, longer, strings.Repeat("a", 45) + "-.b" + strings.Repeat("c", 30)} {
		k := HashAnnotation(name)
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("HashAnnotation(%q) = %q: %v", name, k, errs)
		}
		if keys[k] {
			t.Errorf("HashAnnotation(%q) = %q is shared", name, k)
		}
		keys[k] = true
	}
	if got := HashAnnotation("creds"); got != "secret-hash.keywarden.dev/creds" {
		t.Errorf("HashAnnotation(creds) = %q", got)
	}
}

// Adding or dropping the previous key of a rotation restarts nobody; any
// other change does.
func TestRestartHash(t *testing.T) {
	cur := map[string][]byte{"apiKey": []byte("k2"), "keyId": []byte("id2")}
	withPrev := map[string][]byte{"apiKey": []byte("k2"), "keyId": []byte("id2"), "previousApiKey": []byte("k1"), "previousKeyId": []byte("id1")}
	if RestartHash(cur) != RestartHash(withPrev) {
		t.Error("the previous key changes the restart hash")
	}
	if RestartHash(cur) != Hash(cur) {
		t.Error("without a previous key the restart hash is not the data hash")
	}
	if RestartHash(cur) == RestartHash(map[string][]byte{"apiKey": []byte("k3"), "keyId": []byte("id3")}) {
		t.Error("a new key keeps the restart hash")
	}
	if withPrev["previousApiKey"] == nil {
		t.Error("RestartHash changed its argument")
	}
}

// The per-Secret annotation wins; the single one of older releases is read
// when it is absent.
func TestTemplateHash(t *testing.T) {
	d := deployment("w", "", true)
	if h, per := TemplateHash(d, "creds"); h != "" || per {
		t.Fatalf("empty template: %q %v", h, per)
	}
	d.Spec.Template.Annotations = map[string]string{v1alpha1.AnnotationSecretHash: "old"}
	if h, per := TemplateHash(d, "creds"); h != "old" || per {
		t.Fatalf("legacy: %q %v", h, per)
	}
	d.Spec.Template.Annotations[HashAnnotation("creds")] = "new"
	if h, per := TemplateHash(d, "creds"); h != "new" || !per {
		t.Fatalf("per Secret: %q %v", h, per)
	}
	if !Stale(d, "creds", "newer", false) || Stale(d, "creds", "new", false) || Stale(d, "other", "x", false) {
		t.Fatal("Stale")
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	bystander := deployment("bystander", "old", true)
	bystander.Spec.Template.Spec.Containers[0].EnvFrom = nil
	other := deployment("other-app", "", true)
	other.Labels = map[string]string{"app": "other"}
	legacy := deployment("legacy", "", true)
	legacy.Labels = map[string]string{"app": "other"}
	legacy.Spec.Template.Annotations = map[string]string{v1alpha1.AnnotationSecretHash: "h1"}
	c := newFake(t, deployment("stale", "old", true), deployment("current", "h1", true), deployment("rolling", "h1", false), bystander, other, legacy)
	targets := []v1alpha1.RolloutTarget{
		{Kind: "Deployment", Name: "stale"}, {Kind: "Deployment", Name: "current"},
		{Kind: "Deployment", Name: "rolling"}, {Kind: "Deployment", Name: "gone"},
		{Kind: "Deployment", Name: "bystander"},
		// Picks stale, current, rolling and bystander again: each counts once.
		{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}}},
		{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In", Values: []string{"other"}}}}},
		{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}}},
		{Kind: "StatefulSet", Selector: &metav1.LabelSelector{}},
	}
	res, err := Resolve(ctx, c, ns, "creds", targets, "h1")
	if err != nil {
		t.Fatal(err)
	}
	type brief struct {
		name                          string
		missing, refused, stale, done bool
	}
	want := []brief{
		{name: "stale", stale: true}, {name: "current", done: true}, {name: "rolling"}, {name: "gone", missing: true},
		{name: "bystander", refused: true}, {name: "legacy", done: true}, {name: "other-app", stale: true},
	}
	var got []brief
	for _, o := range res.Outcomes {
		got = append(got, brief{o.Name, o.Missing, o.Refused, o.Stale, o.Done})
		if !o.Missing && o.Workload == nil {
			t.Errorf("%s: no workload", o.Name)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("outcomes = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("outcome %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "rolloutRestart[7]") || !strings.Contains(res.Problems[0], "invalid selector") {
		t.Errorf("problems = %q", res.Problems)
	}
	if _, err := Resolve(ctx, c, ns, "creds", []v1alpha1.RolloutTarget{{Kind: "Pod", Name: "x"}}, "h1"); err == nil {
		t.Fatal("an unsupported kind was accepted")
	}
}

// One patch sets every annotation given, and leaves the others.
func TestPatchTemplate(t *testing.T) {
	ctx := context.Background()
	d := deployment("w", "h0", true)
	d.Spec.Template.Annotations["example.com/keep"] = "yes"
	c := newFake(t, d)
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "w"}, d); err != nil {
		t.Fatal(err)
	}
	if err := PatchTemplate(ctx, c, d, map[string]string{HashAnnotation("creds"): "h1", HashAnnotation("other"): "h2"}); err != nil {
		t.Fatal(err)
	}
	var got appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "w"}, &got); err != nil {
		t.Fatal(err)
	}
	a := got.Spec.Template.Annotations
	if a[HashAnnotation("creds")] != "h1" || a[HashAnnotation("other")] != "h2" || a["example.com/keep"] != "yes" {
		t.Fatalf("annotations = %v", a)
	}
}

// The patch applies only to the version of the workload that was judged:
// one changed since (here: it stopped reading the Secret) is not patched.
// Before the fix the merge patch carried no resourceVersion and restarted
// whatever the workload had become.
func TestPatchTemplateOnlyTheJudgedVersion(t *testing.T) {
	ctx := context.Background()
	d := deployment("w", "h0", true)
	c := newFake(t, d)
	judged := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "w"}, judged); err != nil {
		t.Fatal(err)
	}
	if !Stale(judged, "creds", "h1", false) {
		t.Fatal("the workload should be stale for h1")
	}
	changed := judged.DeepCopy()
	changed.Spec.Template.Spec.Volumes = nil
	changed.Spec.Template.Spec.Containers[0].Env = nil
	changed.Spec.Template.Spec.Containers[0].EnvFrom = nil
	if err := c.Update(ctx, changed); err != nil {
		t.Fatal(err)
	}
	err := PatchTemplate(ctx, c, judged, map[string]string{HashAnnotation("creds"): "h1"})
	if !apierrors.IsConflict(err) {
		t.Fatalf("patch of a workload changed since it was judged: err = %v, want a Conflict", err)
	}
	var got appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "w"}, &got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got.Spec.Template.Annotations[HashAnnotation("creds")]; ok && v == "h1" {
		t.Fatalf("the changed workload was patched: annotations = %v", got.Spec.Template.Annotations)
	}
	if err := PatchTemplate(ctx, c, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w"}},
		map[string]string{HashAnnotation("creds"): "h1"}); err == nil {
		t.Fatal("a patch without a resourceVersion was sent")
	}
}

func TestRolloutsDone(t *testing.T) {
	ctx := context.Background()
	selected := deployment("selected-rolling", "h1", false)
	selected.Labels = map[string]string{"tier": "api"}
	c := newFake(t, deployment("done", "h1", true), deployment("rolling", "h1", false), deployment("stale", "old", true), selected)
	byLabel := v1alpha1.RolloutTarget{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}}
	nothing := v1alpha1.RolloutTarget{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "none"}}}
	tests := []struct {
		name    string
		targets []string
		extra   []v1alpha1.RolloutTarget
		want    bool
	}{
		{name: "none", want: true},
		{name: "done", targets: []string{"done"}, want: true},
		{name: "missing counts as done", targets: []string{"done", "gone"}, want: true},
		{name: "still rolling", targets: []string{"done", "rolling"}, want: false},
		{name: "old template", targets: []string{"stale"}, want: false},
		{name: "a selected workload still rolling", targets: []string{"done"}, extra: []v1alpha1.RolloutTarget{byLabel}, want: false},
		{name: "a selector picking nothing", targets: []string{"done"}, extra: []v1alpha1.RolloutTarget{nothing}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var targets []v1alpha1.RolloutTarget
			for _, n := range tt.targets {
				targets = append(targets, v1alpha1.RolloutTarget{Kind: "Deployment", Name: n})
			}
			got, err := RolloutsDone(ctx, c, ns, "creds", append(targets, tt.extra...), "h1")
			if err != nil || got != tt.want {
				t.Fatalf("RolloutsDone = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
