package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func adminIssuer(now time.Time) *v1alpha1.ReevitIssuer {
	ri := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "reevit", Namespace: "platform"}}
	ri.Spec.OrgID = "org_1"
	ri.Spec.AdminKeyRotation = &v1alpha1.AdminKeyRotation{Every: &metav1.Duration{Duration: time.Hour}}
	since := metav1.NewTime(now.Add(-2 * time.Hour))
	next := metav1.NewTime(now.Add(-time.Hour))
	ri.Status.Credential = &v1alpha1.CredentialRecord{Fingerprint: "sha256:0123456789abcdef", FirstSeen: since}
	ri.Status.AdminKey = &v1alpha1.AdminKeyStatus{ID: "key_new", Prefix: "pfk_live_abcd", Scopes: []string{"api_keys:read", "api_keys:write"},
		Environment: "live", ActiveSince: &since, NextRotationTime: &next,
		Previous: &v1alpha1.AdminKeyPrevious{ID: "key_old", Prefix: "pfk_live_zzzz", RevokeAfter: metav1.NewTime(now.Add(time.Minute)), Attempts: 2, LastError: "APIUnavailable"}}
	return ri
}

// The report lists an issuer's admin key by id and prefix, its age judged
// against every plus grace, and the previous admin key waiting.
func TestReportAdminKeyRows(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ri := adminIssuer(now)
	rows := []reportRow{{Kind: v1alpha1.KindReevitIssuer, Name: ri.Name, State: stateAdminKey}}
	rows = adminKeyRows(rows, ri.Spec.AdminKeyRotation, &ri.Status, now)
	if len(rows) != 2 {
		t.Fatalf("want the admin key and its previous one, got %+v", rows)
	}
	cur, prev := rows[0], rows[1]
	if cur.KeyID != "key_new" || cur.KeyPrefix != "pfk_live_abcd" || cur.Environment != "live" || len(cur.Scopes) != 2 {
		t.Errorf("current row %+v", cur)
	}
	if !cur.OverAge || cur.MaxKeyAge != (70*time.Minute).String() || cur.AgeSeconds != 7200 || cur.NextRotation == nil {
		t.Errorf("current row over-age: %+v", cur)
	}
	if prev.State != statePendingRevocation || prev.KeyID != "key_old" || prev.RevokeAfter == nil || prev.OverAge {
		t.Errorf("previous row %+v", prev)
	}
	var b bytes.Buffer
	if err := writeReport(&b, "csv", rows); err != nil || !strings.Contains(b.String(), "key_old") {
		t.Errorf("csv: %v %s", err, b.String())
	}
}

// rotate and compromised accept the Reevit issuer kinds, and wait for the
// admin key to change.
func TestRequestOnIssuers(t *testing.T) {
	if a := forIssuers(rotateAction, []string{"reevitissuer/reevit"}); a.kind != kindReevitIssuer {
		t.Fatalf("rotate reevitissuer/x acts on %s", a.kind)
	}
	if a := forIssuers(compromisedAction, []string{"cri/reevit"}); a.kind != kindClusterReevitIssuer || a.annotation != v1alpha1.AnnotationCompromised {
		t.Fatalf("compromised cri/x acts on %s %s", a.kind, a.annotation)
	}
	if a := forIssuers(rotateAction, []string{"payments"}); a.kind != kindApiKey {
		t.Fatalf("a bare name is an ApiKey, got %s", a.kind)
	}
	now := time.Now()
	a := forIssuers(rotateAction, []string{"ri/reevit"})
	ri := adminIssuer(now)
	if done, _ := a.done(ri, "v1"); done {
		t.Fatal("done before the manager acted")
	}
	ri.Status.AdminKey.LastRotateRequest = "v1"
	ri.Status.AdminKey.Pending = &v1alpha1.AdminKeyPending{Reason: "manual"}
	if done, _ := a.done(ri, "v1"); done {
		t.Fatal("done while the rotation is in flight")
	}
	ri.Status.AdminKey.Pending = nil
	if done, err := a.done(ri, "v1"); !done || err != nil {
		t.Fatalf("done=%v err=%v", done, err)
	}
	ri.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionAdminKeyRotation, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAdminKeyManagedElsewhere, Message: "managed by ESO"}}
	if done, err := a.done(ri, "v1"); !done || err == nil || !strings.Contains(err.Error(), v1alpha1.ReasonAdminKeyManagedElsewhere) {
		t.Fatalf("done=%v err=%v", done, err)
	}
	before := adminIssuer(now)
	before.Status.AdminKey.ID = "key_old"
	if got := a.result(before, ri, now); !strings.Contains(got, "key_old") || !strings.Contains(got, "key_new") {
		t.Fatalf("result %q", got)
	}
}

// status shows an issuer's admin key and its rotation.
func TestRenderIssuerAdminKey(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	v, _ := viewIssuer(adminIssuer(now))
	var b bytes.Buffer
	renderIssuer(&b, v, issuerExtra{secretNamespace: "platform"}, now)
	for _, want := range []string{"every 1h0m0s", "key_new (pfk_live_abcd)", "key_old (pfk_live_zzzz)", "2 failed attempts, last APIUnavailable"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// compromised on an issuer asks about its admin key (it panicked on the
// ApiKey-only confirmation before).
func TestConfirmLinesIssuers(t *testing.T) {
	ri := adminIssuer(time.Now())
	cri := &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	got := strings.Join(confirmLines([]client.Object{ri, cri}), "\n")
	for _, want := range []string{"admin key of each of these issuers", "reevitissuer/reevit in platform: admin key key_new (pfk_live_abcd)", "clusterreevitissuer/acme: admin key - (not identified yet)"} {
		if !strings.Contains(got, want) {
			t.Errorf("confirmation lacks %q:\n%s", want, got)
		}
	}
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "pay", Namespace: "team"}}
	if got := strings.Join(confirmLines([]client.Object{ak}), "\n"); !strings.Contains(got, "these ApiKeys") || !strings.Contains(got, "apikey/pay in team") {
		t.Errorf("ApiKey confirmation:\n%s", got)
	}
}
