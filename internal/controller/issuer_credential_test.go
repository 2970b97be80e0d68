package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func TestTrackCredential(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &v1alpha1.IssuerStatus{}
	trackCredential(st, "", t0)
	if st.Credential != nil {
		t.Fatalf("no fingerprint: nothing recorded, got %+v", st.Credential)
	}
	trackCredential(st, credentialFingerprint("one"), t0)
	trackCredential(st, credentialFingerprint("one"), t0.Add(time.Hour))
	if st.Credential == nil || !st.Credential.FirstSeen.Time.Equal(t0) {
		t.Fatalf("the same value keeps its first sighting: %+v", st.Credential)
	}
	trackCredential(st, "", t0.Add(2*time.Hour))
	if !st.Credential.FirstSeen.Time.Equal(t0) {
		t.Fatalf("an unread value keeps the record: %+v", st.Credential)
	}
	trackCredential(st, credentialFingerprint("two"), t0.Add(3*time.Hour))
	if st.Credential.Fingerprint != credentialFingerprint("two") || !st.Credential.FirstSeen.Time.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("a new value starts a new age: %+v", st.Credential)
	}
	if fp := credentialFingerprint("one"); len(fp) != len("sha256:")+16 || fp == credentialFingerprint("two") {
		t.Fatalf("fingerprint %q", fp)
	}
}

func TestJudgeKeyAge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cred := &v1alpha1.CredentialRecord{Fingerprint: "sha256:0123456789abcdef", FirstSeen: metav1.NewTime(t0)}
	day := 24 * time.Hour
	max := &metav1.Duration{Duration: 90 * day}
	for _, tc := range []struct {
		name string
		cred *v1alpha1.CredentialRecord
		max  *metav1.Duration
		now  time.Time
		want keyAgeVerdict
	}{
		{"no maxKeyAge", cred, nil, t0.Add(400 * day), keyAgeVerdict{}},
		{"zero maxKeyAge", cred, &metav1.Duration{}, t0.Add(400 * day), keyAgeVerdict{}},
		{"never seen", nil, max, t0, keyAgeVerdict{}},
		{"young", cred, max, t0.Add(10 * day), keyAgeVerdict{Applies: true, Age: 10 * day, Next: 80*day + time.Second}},
		{"exactly at the limit", cred, max, t0.Add(90 * day), keyAgeVerdict{Applies: true, Age: 90 * day, Next: time.Second}},
		{"past the limit", cred, max, t0.Add(91 * day), keyAgeVerdict{Applies: true, TooOld: true, Age: 91 * day}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeKeyAge(tc.cred, tc.max, tc.now); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSetKeyAge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &v1alpha1.IssuerStatus{Credential: &v1alpha1.CredentialRecord{Fingerprint: "sha256:0123456789abcdef", FirstSeen: metav1.NewTime(t0)}}
	max := &metav1.Duration{Duration: time.Hour}
	if setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(time.Minute)), max, "revio-key") {
		t.Fatal("young: not turned old")
	}
	if !setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(2*time.Hour)), max, "revio-key") {
		t.Fatal("old: turned old")
	}
	if setKeyAge(st, 1, judgeKeyAge(st.Credential, max, t0.Add(3*time.Hour)), max, "revio-key") {
		t.Fatal("told once")
	}
	if !hasReason(st.Conditions, v1alpha1.ConditionKeyAge, v1alpha1.ReasonKeyTooOld) {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	setKeyAge(st, 1, judgeKeyAge(st.Credential, nil, t0), nil, "revio-key")
	if len(st.Conditions) != 0 {
		t.Fatalf("no maxKeyAge: no condition, got %+v", st.Conditions)
	}
}
