package secretsync

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// Only a workload that cannot see a new value without a restart is
// restarted by default; when: Always restarts a volume reader too.
func TestRestartReason(t *testing.T) {
	ref := func(n string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: n} }
	secretVol := func(name, secret string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}
	}
	projected := corev1.Volume{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: ref("creds")}}}}}}
	with := func(f func(*corev1.PodSpec)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w"}}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app"}}
		f(&d.Spec.Template.Spec)
		return d
	}
	for name, c := range map[string]struct {
		d       *appsv1.Deployment
		always  bool
		want    bool
		whySays string
	}{
		"secret volume only": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds")}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/creds"}}
		}), want: false, whySays: "only through volumes"},
		"projected volume only": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{projected}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "p", MountPath: "/creds"}}
		}), want: false, whySays: "only through volumes"},
		"secret volume only, when Always": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds")}
		}), always: true, want: true, whySays: "when: Always"},
		"subPath mount": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds")}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/etc/key", SubPath: "apiKey"}}
		}), want: true, whySays: "subPath at /etc/key"},
		"subPathExpr mount of a projected volume in an init container": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{projected}
			s.InitContainers = []corev1.Container{{Name: "init", VolumeMounts: []corev1.VolumeMount{{Name: "p", MountPath: "/k", SubPathExpr: "$(X)"}}}}
		}), want: true, whySays: "container init mounts the Secret with subPath"},
		"subPath of another volume does not count": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds"), secretVol("o", "other")}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/creds"}, {Name: "o", MountPath: "/o/x", SubPath: "x"}}
		}), want: false, whySays: "only through volumes"},
		"env secretKeyRef": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds")}
			s.Containers[0].Env = []corev1.EnvVar{{Name: "API_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("creds"), Key: "apiKey"}}}}
		}), want: true, whySays: "env API_KEY"},
		"envFrom in an init container": {d: with(func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("creds")}}}}}
		}), want: true, whySays: "container init reads the Secret through envFrom"},
		"env of another Secret and a volume of this one": {d: with(func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{secretVol("v", "creds")}
			s.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("other")}}}
		}), want: false, whySays: "only through volumes"},
		"opt-in annotation": {d: func() *appsv1.Deployment {
			d := with(func(*corev1.PodSpec) {})
			d.Annotations = map[string]string{AnnotationAllowRestart: "creds"}
			return d
		}(), want: true, whySays: AnnotationAllowRestart},
	} {
		got, why := RestartReason(c.d, "creds", c.always)
		if got != c.want || !strings.Contains(why, c.whySays) {
			t.Errorf("%s: RestartReason = %v, %q; want %v and a reason saying %q", name, got, why, c.want, c.whySays)
		}
	}
}

// A volume-only reader is never stale: nothing restarts it nor waits for it.
func TestVolumeOnlyReaderIsSkipped(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w"}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app"}}
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
	if Stale(d, "creds", "h", false) {
		t.Error("a volume-only reader is stale under when: Needed")
	}
	if !Stale(d, "creds", "h", true) {
		t.Error("a volume-only reader is not stale under when: Always")
	}
	o := judge(v1alpha1.RolloutTarget{Kind: "Deployment", Name: "w"}, d, "creds", "h")
	if !o.Skipped || !o.Done || o.Stale || o.Refused {
		t.Errorf("judge under when: Needed = %+v; want Skipped and Done", o)
	}
	o = judge(v1alpha1.RolloutTarget{Kind: "Deployment", Name: "w", When: v1alpha1.RestartWhenAlways}, d, "creds", "h")
	if o.Skipped || !o.Stale {
		t.Errorf("judge under when: Always = %+v; want Stale", o)
	}
}

// A rollout has failed when a Deployment's controller says so, or a
// StatefulSet or DaemonSet on its current generation has pods left to
// update and pods not ready; an earlier generation or a rollout with every
// pod ready is not a failure.
func TestRolloutFailure(t *testing.T) {
	progressing := func(status corev1.ConditionStatus, reason string) []appsv1.DeploymentCondition {
		return []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: status, Reason: reason}}
	}
	three := int32(3)
	for name, c := range map[string]struct {
		obj  client.Object
		want string
	}{
		"deployment past its deadline": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Conditions: progressing(corev1.ConditionFalse, "ProgressDeadlineExceeded")}}, "ProgressDeadlineExceeded"},
		"deployment past the deadline of an earlier generation": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Conditions: progressing(corev1.ConditionFalse, "ProgressDeadlineExceeded")}}, ""},
		"deployment progressing": {&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Conditions: progressing(corev1.ConditionTrue, "ReplicaSetUpdated")}}, ""},
		"statefulset stalled": {&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.StatefulSetSpec{Replicas: &three},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, UpdatedReplicas: 1, ReadyReplicas: 2}}, "1 of 3 pods updated, 2 ready"},
		"statefulset updating with every pod ready": {&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.StatefulSetSpec{Replicas: &three},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, UpdatedReplicas: 1, ReadyReplicas: 3}}, ""},
		"daemonset stalled": {&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 4, UpdatedNumberScheduled: 2, NumberUnavailable: 1}}, "2 of 4 pods updated, 1 unavailable"},
		"daemonset not seen yet": {&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 3},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 4, UpdatedNumberScheduled: 2, NumberUnavailable: 1}}, ""},
	} {
		got := RolloutFailure(c.obj)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: RolloutFailure = %q, want %q", name, got, c.want)
		}
	}
}
