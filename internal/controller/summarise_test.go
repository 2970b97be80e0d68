package controller

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func cond(typ string, ok bool, reason, msg string) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg}
}

func readyOf(t *testing.T, conds []metav1.Condition) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		t.Fatal("no Ready condition")
	}
	return *c
}

// TestSummariseApiKey: Ready is the first failing narrow condition (in the
// order SecretSynced, Issued, RevocationsComplete), ignoring the progress
// reasons; else Succeeded with an active key, else Progressing.
func TestSummariseApiKey(t *testing.T) {
	next := metav1.NewTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name         string
		conds        []metav1.Condition
		keyID        string
		pending      bool
		ok           bool
		reason, text string
	}{
		{"active key", []metav1.Condition{cond(v1alpha1.ConditionIssued, true, "Succeeded", "")}, "key_1", false, true, "Succeeded", "key key_1 active; next rotation 2026-03-01T12:00:00Z"},
		{"Secret before Issued", []metav1.Condition{cond(v1alpha1.ConditionIssued, false, "MissingScope", "scope"), cond(v1alpha1.ConditionSecretSynced, false, "SecretConflict", "taken")}, "key_1", false, false, "SecretConflict", "taken"},
		{"Issued failure", []metav1.Condition{cond(v1alpha1.ConditionIssued, false, "Unauthorized", "401")}, "key_1", false, false, "Unauthorized", "401"},
		{"revocation failure", []metav1.Condition{cond(v1alpha1.ConditionRevoked, false, "APIUnavailable", "503")}, "key_1", false, false, "APIUnavailable", "503"},
		{"pending revocation is not a failure", []metav1.Condition{cond(v1alpha1.ConditionRevoked, false, "RevocationPending", "grace")}, "key_1", false, true, "Succeeded", "key key_1 active; next rotation 2026-03-01T12:00:00Z"},
		{"progress is not a failure", []metav1.Condition{cond(v1alpha1.ConditionIssued, false, "Progressing", "creating")}, "", true, false, "Progressing", "creating a key"},
		{"no key yet", nil, "", false, false, "Progressing", "creating a key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak := &v1alpha1.ApiKey{Status: v1alpha1.ApiKeyStatus{Conditions: tc.conds, KeyID: tc.keyID, NextRotationTime: &next}}
			if tc.pending {
				ak.Status.PendingCreate = &v1alpha1.KeyRequest{}
			}
			summariseApiKey(ak)
			r := readyOf(t, ak.Status.Conditions)
			if (r.Status == metav1.ConditionTrue) != tc.ok || r.Reason != tc.reason || r.Message != tc.text {
				t.Errorf("Ready = %s %s %q, want ok=%v %s %q", r.Status, r.Reason, r.Message, tc.ok, tc.reason, tc.text)
			}
			if len(ak.Status.Conditions) != len(tc.conds)+1 {
				t.Errorf("the summary wrote a narrow condition: %v", ak.Status.Conditions)
			}
		})
	}
}

// TestSummariseRevioToken: a failing narrow condition is Ready's reason,
// TokenExpired once the token in the Secret has expired meanwhile; a token
// with a scheduled refresh and no failure is Ready.
func TestSummariseRevioToken(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exp := func(d time.Duration) *metav1.Time { m := metav1.NewTime(now.Add(d)); return &m }
	for _, tc := range []struct {
		name    string
		conds   []metav1.Condition
		expires *metav1.Time
		failed  int32
		ok      bool
		reason  string
	}{
		{"fresh token", []metav1.Condition{cond(v1alpha1.ConditionIssued, true, "Succeeded", "")}, exp(time.Hour), 0, true, "Succeeded"},
		{"failing, token still valid", []metav1.Condition{cond(v1alpha1.ConditionIssued, false, "APIUnavailable", "503")}, exp(time.Minute), 1, false, "APIUnavailable"},
		{"failing, token expired", []metav1.Condition{cond(v1alpha1.ConditionIssued, false, "APIUnavailable", "503")}, exp(-time.Second), 3, false, "TokenExpired"},
		{"foreign Secret first", []metav1.Condition{cond(v1alpha1.ConditionSecretSynced, false, "SecretConflict", "taken"), cond(v1alpha1.ConditionIssued, false, "InvalidAPIKey", "bad")}, nil, 1, false, "SecretConflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &v1alpha1.RevioToken{Status: v1alpha1.RevioTokenStatus{Conditions: tc.conds, ExpiresAt: tc.expires, RetryStatus: v1alpha1.RetryStatus{FailedAttempts: tc.failed}, NextRefreshTime: exp(30 * time.Minute)}}
			summariseRevioToken(rt, now)
			r := readyOf(t, rt.Status.Conditions)
			if (r.Status == metav1.ConditionTrue) != tc.ok || r.Reason != tc.reason {
				t.Errorf("Ready = %s %s %q, want ok=%v %s", r.Status, r.Reason, r.Message, tc.ok, tc.reason)
			}
		})
	}
}

// TestHeldApiKey: a change (spec, issuer version, a new trigger with no
// creation recorded) lifts any wait; a failure that needs a person waits for
// one; a transient failure waits for its retry time.
func TestHeldApiKey(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failed := metav1.NewTime(now.Add(-2 * time.Second))
	retry := metav1.NewTime(now.Add(8 * time.Second))
	base := func() *v1alpha1.ApiKey {
		return &v1alpha1.ApiKey{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: v1alpha1.ApiKeyStatus{ObservedGeneration: 2, AdminKeySecretVersion: "v1",
				RetryStatus: v1alpha1.RetryStatus{FailedAttempts: 1, LastFailureTime: &failed, NextRetryTime: &retry}},
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*v1alpha1.ApiKey)
		version string
		wait    time.Duration
		blocked bool
	}{
		{"transient: waits for its retry", func(*v1alpha1.ApiKey) {}, "v1", 8 * time.Second, true},
		{"transient: retry time passed", func(a *v1alpha1.ApiKey) { a.Status.NextRetryTime = &failed }, "v1", 0, false},
		{"needs a person: waits", func(a *v1alpha1.ApiKey) { a.Status.NeedsAttention = true }, "v1", 0, true},
		{"needs a person: spec changed", func(a *v1alpha1.ApiKey) { a.Status.NeedsAttention = true; a.Generation = 3 }, "v1", 0, false},
		{"needs a person: issuer changed", func(a *v1alpha1.ApiKey) { a.Status.NeedsAttention = true }, "v2", 0, false},
		{"new rotate request, nothing recorded", func(a *v1alpha1.ApiKey) {
			a.Status.NeedsAttention = true
			a.Annotations = map[string]string{v1alpha1.AnnotationRotate: "now"}
		}, "v1", 0, false},
		{"new rotate request, creation recorded: keeps its backoff", func(a *v1alpha1.ApiKey) {
			a.Annotations = map[string]string{v1alpha1.AnnotationRotate: "now"}
			a.Status.PendingCreate = &v1alpha1.KeyRequest{}
		}, "v1", 8 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak := base()
			tc.edit(ak)
			wait, blocked := held(ak.Status.RetryStatus, apiKeyWaitedOn(ak), apiKeyInputs(ak, tc.version), now)
			if wait != tc.wait || blocked != tc.blocked {
				t.Errorf("held = %s, %v; want %s, %v", wait, blocked, tc.wait, tc.blocked)
			}
		})
	}
}
