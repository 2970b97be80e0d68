package secretsync

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

const ns = "team-a"

func TestHash(t *testing.T) {
	base := map[string][]byte{"apiKey": []byte("pfk_live_x"), "keyId": []byte("key_1")}
	tests := []struct {
		name string
		data map[string][]byte
		same bool // same hash as base
	}{
		{name: "same data, new map", data: map[string][]byte{"keyId": []byte("key_1"), "apiKey": []byte("pfk_live_x")}, same: true},
		{name: "value changed", data: map[string][]byte{"apiKey": []byte("pfk_live_y"), "keyId": []byte("key_1")}},
		{name: "key renamed", data: map[string][]byte{"apiKey2": []byte("pfk_live_x"), "keyId": []byte("key_1")}},
		{name: "entry added", data: map[string][]byte{"apiKey": []byte("pfk_live_x"), "keyId": []byte("key_1"), "url": nil}},
		{name: "entry removed", data: map[string][]byte{"apiKey": []byte("pfk_live_x")}},
		{name: "empty", data: map[string][]byte{}},
		{name: "nil", data: nil},
	}
	want := Hash(base)
	if len(want) != 32 || strings.Trim(want, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want 32 hex digits", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Hash(tt.data); (got == want) != tt.same {
				t.Fatalf("Hash = %s, base %s, want same %v", got, want, tt.same)
			}
		})
	}
	// Boundaries between keys and values are part of the hash.
	if Hash(map[string][]byte{"a": []byte("bc")}) == Hash(map[string][]byte{"ab": []byte("c")}) {
		t.Fatal("moving a byte from a value to a key keeps the hash")
	}
	if Hash(map[string][]byte{"a": []byte("b"), "c": nil}) == Hash(map[string][]byte{"a": []byte("b:1:c=0:")}) {
		t.Fatal("an entry can be forged inside a value")
	}
	if Hash(nil) != Hash(map[string][]byte{}) {
		t.Fatal("nil and empty data differ")
	}
}

func owner(uid string) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ak", UID: types.UID(uid)}}
}

func TestControlled(t *testing.T) {
	ref := func(uid string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "keywarden.dev/v1alpha1", Kind: "ApiKey", Name: "ak", UID: types.UID(uid), Controller: ptr.To(controller)}
	}
	tests := []struct {
		name string
		refs []metav1.OwnerReference
		want bool
	}{
		{name: "no owner", want: false},
		{name: "controlled by the owner", refs: []metav1.OwnerReference{ref("u1", true)}, want: true},
		{name: "owned but not controlled", refs: []metav1.OwnerReference{ref("u1", false)}, want: false},
		{name: "controlled by another object", refs: []metav1.OwnerReference{ref("u2", true)}, want: false},
		{name: "owner among others", refs: []metav1.OwnerReference{ref("u2", false), ref("u1", true)}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{OwnerReferences: tt.refs}}
			if got := Controlled(s, owner("u1")); got != tt.want {
				t.Fatalf("Controlled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIntact(t *testing.T) {
	data := map[string][]byte{"apiKey": []byte("pfk_live_x")}
	secret := func(hash string, d map[string][]byte) *corev1.Secret {
		s := &corev1.Secret{Data: d}
		if hash != "" {
			s.Annotations = map[string]string{AnnotationDataHash: hash}
		}
		return s
	}
	tests := []struct {
		name string
		s    *corev1.Secret
		want bool
	}{
		{name: "nil", s: nil, want: false},
		{name: "no hash annotation", s: secret("", data), want: false},
		{name: "as written", s: secret(Hash(data), data), want: true},
		{name: "hand edited", s: secret(Hash(data), map[string][]byte{"apiKey": []byte("other")}), want: false},
		{name: "key added by hand", s: secret(Hash(data), map[string][]byte{"apiKey": []byte("pfk_live_x"), "x": nil}), want: false},
		{name: "hash of empty data on an emptied Secret", s: secret(Hash(nil), nil), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Intact(tt.s); got != tt.want {
				t.Fatalf("Intact = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetadataMatches(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Labels:      map[string]string{"app": "api", LabelManagedBy: ManagedByValue},
		Annotations: map[string]string{"team": "a", "empty": ""},
	}}
	tests := []struct {
		name        string
		labels, ann map[string]string
		want        bool
	}{
		{name: "nothing wanted", want: true},
		{name: "subset", labels: map[string]string{"app": "api"}, ann: map[string]string{"team": "a"}, want: true},
		{name: "empty value present", ann: map[string]string{"empty": ""}, want: true},
		{name: "empty value absent", ann: map[string]string{"missing": ""}, want: false},
		{name: "label differs", labels: map[string]string{"app": "web"}, want: false},
		{name: "annotation missing", ann: map[string]string{"owner": "b"}, want: false},
		{name: "a label is not an annotation", ann: map[string]string{"app": "api"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MetadataMatches(s, tt.labels, tt.ann); got != tt.want {
				t.Fatalf("MetadataMatches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConflictErrorTellsWhatToDo(t *testing.T) {
	msg := (&ConflictError{Namespace: ns, Name: "out"}).Error()
	for _, want := range []string{ns + "/out", "not managed", "spec.secret.name"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestNewWorkload(t *testing.T) {
	for kind, want := range map[string]client.Object{
		"Deployment": &appsv1.Deployment{}, "StatefulSet": &appsv1.StatefulSet{}, "DaemonSet": &appsv1.DaemonSet{},
	} {
		got, err := NewWorkload(kind)
		if err != nil || got == nil || strings.TrimPrefix(typeName(got), "*v1.") != kind || typeName(got) != typeName(want) {
			t.Errorf("NewWorkload(%q) = %T, %v", kind, got, err)
		}
	}
	for _, kind := range []string{"", "Pod", "deployment", "CronJob"} {
		if _, err := NewWorkload(kind); err == nil {
			t.Errorf("NewWorkload(%q) accepted", kind)
		}
	}
}

func typeName(o client.Object) string {
	switch o.(type) {
	case *appsv1.Deployment:
		return "*v1.Deployment"
	case *appsv1.StatefulSet:
		return "*v1.StatefulSet"
	case *appsv1.DaemonSet:
		return "*v1.DaemonSet"
	}
	return "?"
}

func TestRolledOut(t *testing.T) {
	deploy := func(gen, observed int64, replicas *int32, updated, total, available int32) client.Object {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Spec: appsv1.DeploymentSpec{Replicas: replicas}}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, Replicas: total, AvailableReplicas: available}
		return d
	}
	sts := func(gen, observed int64, replicas *int32, updated int32, current, update string) client.Object {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Spec: appsv1.StatefulSetSpec{Replicas: replicas}}
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: observed, UpdatedReplicas: updated, CurrentRevision: current, UpdateRevision: update}
		return s
	}
	ds := func(gen, observed int64, desired, updated, available int32) client.Object {
		d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
		d.Status = appsv1.DaemonSetStatus{ObservedGeneration: observed, DesiredNumberScheduled: desired, UpdatedNumberScheduled: updated, NumberAvailable: available}
		return d
	}
	tests := []struct {
		name string
		obj  client.Object
		want bool
	}{
		{name: "deployment done", obj: deploy(2, 2, ptr.To[int32](3), 3, 3, 3), want: true},
		{name: "deployment: new generation not observed", obj: deploy(3, 2, ptr.To[int32](3), 3, 3, 3), want: false},
		{name: "deployment: old pods still running", obj: deploy(2, 2, ptr.To[int32](3), 3, 4, 3), want: false},
		{name: "deployment: not all updated", obj: deploy(2, 2, ptr.To[int32](3), 2, 3, 3), want: false},
		{name: "deployment: not available", obj: deploy(2, 2, ptr.To[int32](3), 3, 3, 2), want: false},
		{name: "deployment: replicas unset means one", obj: deploy(1, 1, nil, 1, 1, 1), want: true},
		{name: "deployment: replicas unset, none updated", obj: deploy(1, 1, nil, 0, 0, 0), want: false},
		{name: "deployment scaled to zero", obj: deploy(1, 1, ptr.To[int32](0), 0, 0, 0), want: true},
		{name: "statefulset done", obj: sts(1, 1, ptr.To[int32](2), 2, "r2", "r2"), want: true},
		{name: "statefulset: revisions differ", obj: sts(1, 1, ptr.To[int32](2), 2, "r1", "r2"), want: false},
		{name: "statefulset: no update revision yet", obj: sts(1, 1, ptr.To[int32](2), 2, "r1", ""), want: true},
		{name: "statefulset: generation not observed", obj: sts(2, 1, ptr.To[int32](2), 2, "r2", "r2"), want: false},
		{name: "daemonset done", obj: ds(1, 1, 3, 3, 3), want: true},
		{name: "daemonset: not all updated", obj: ds(1, 1, 3, 2, 3), want: false},
		{name: "daemonset: not available", obj: ds(1, 1, 3, 3, 1), want: false},
		{name: "not a workload", obj: &corev1.Secret{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rolledOut(tt.obj); got != tt.want {
				t.Fatalf("rolledOut = %v, want %v", got, tt.want)
			}
		})
	}
}

func newFake(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

// A workload is restarted only when it reads the Secret or opts in.
func TestConsumes(t *testing.T) {
	ref := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	with := func(f func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w"}}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app"}}
		f(d)
		return d
	}
	for name, c := range map[string]struct {
		d    *appsv1.Deployment
		want bool
	}{
		"nothing": {with(func(*appsv1.Deployment) {}), false},
		"envFrom": {with(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("creds")}}}
		}), true},
		"envFrom another Secret": {with(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("other")}}}
		}), false},
		"env secretKeyRef in an init container": {with(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Env: []corev1.EnvVar{{Name: "K",
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("creds"), Key: "apiKey"}}}}}}
		}), true},
		"secret volume": {with(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
		}), true},
		"projected volume": {with(func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: ref("creds")}}}}}}}
		}), true},
		"opt-in by name":     {with(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationAllowRestart: "a, creds"} }), true},
		"opt-in for any":     {with(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationAllowRestart: "*"} }), true},
		"opt-in for another": {with(func(d *appsv1.Deployment) { d.Annotations = map[string]string{AnnotationAllowRestart: "credsx"} }), false},
	} {
		if got := Consumes(c.d, "creds"); got != c.want {
			t.Errorf("%s: Consumes = %v, want %v", name, got, c.want)
		}
	}
}

func TestGetMissingIsNil(t *testing.T) {
	s, err := Get(context.Background(), newFake(t), ns, "nope")
	if s != nil || err != nil {
		t.Fatalf("Get = %v, %v; want nil, nil", s, err)
	}
}

// A Secret the owner does not control is never written.
func TestApplyRefusesAForeignSecret(t *testing.T) {
	ctx := context.Background()
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "out", ResourceVersion: "7"}, Data: map[string][]byte{"x": []byte("theirs")}}
	c := newFake(t, foreign.DeepCopy())
	_, err := Apply(ctx, c, foreign, Desired{Namespace: ns, Name: "out", Owner: owner("u1"),
		OwnerAPI: "keywarden.dev/v1alpha1", OwnerKind: "ApiKey", Data: map[string][]byte{"apiKey": []byte("pfk_live_x")}})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Name != "out" || ce.Namespace != ns {
		t.Fatalf("Apply = %v, want *ConflictError", err)
	}
	var got corev1.Secret
	if err := c.Get(ctx, client.ObjectKeyFromObject(foreign), &got); err != nil || string(got.Data["x"]) != "theirs" || len(got.Data) != 1 {
		t.Fatalf("the foreign Secret was changed: %v %v", got.Data, err)
	}
}
