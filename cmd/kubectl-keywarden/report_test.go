package main

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// reportFixture: two ApiKeys through a namespaced issuer whose policy caps
// key age at 30 days, one over it with a previous key waiting for its
// revocation; one ApiKey of another namespace through a cluster issuer with
// no maxKeyAge; one ApiKey never issued (no row).
func reportFixture() []client.Object {
	day := 24 * time.Hour
	ri := &v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "reevit"},
		Spec: v1alpha1.ReevitIssuerSpec{Policy: v1alpha1.ReevitIssuerPolicy{MaxKeyAge: &metav1.Duration{Duration: 30 * day}}}}
	ci := &v1alpha1.ClusterReevitIssuer{ObjectMeta: metav1.ObjectMeta{Name: "platform"}}
	rec := &v1alpha1.IssuerRecord{Kind: v1alpha1.KindReevitIssuer, Name: "reevit", OrgID: "org_pay"}
	young := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "young"},
		Spec: v1alpha1.ApiKeySpec{Scopes: []v1alpha1.Scope{"payments:read"}, Environment: "test"},
		Status: v1alpha1.ApiKeyStatus{KeyID: "key_young", KeyPrefix: activeKey[:13], Issuer: rec,
			ActiveSince: mtime(-2 * day), NextRotationTime: mtime(5 * day)}}
	old := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "old"},
		Spec: v1alpha1.ApiKeySpec{Scopes: []v1alpha1.Scope{"payments:read", "payments:write"}, Environment: "live"},
		Status: v1alpha1.ApiKeyStatus{KeyID: "key_old_active", KeyPrefix: "pfk_live_ol01", Issuer: rec, ActiveSince: mtime(-40 * day),
			PendingRevocations: []v1alpha1.PendingRevocation{{KeyID: "key_prev", KeyPrefix: oldKey[:13], RevokeAfter: *mtime(time.Hour), Issuer: rec}},
			History:            []v1alpha1.KeyHistoryEntry{{KeyID: "key_prev", KeyPrefix: oldKey[:13], CreatedAt: *mtime(-70 * day)}}}}
	other := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"},
		Spec: v1alpha1.ApiKeySpec{Scopes: []v1alpha1.Scope{"payments:read"}, Environment: "test"},
		Status: v1alpha1.ApiKeyStatus{KeyID: "key_site", KeyPrefix: "pfk_test_si01",
			Issuer: &v1alpha1.IssuerRecord{Kind: v1alpha1.KindClusterReevitIssuer, Name: "platform", OrgID: "org_platform"}, ActiveSince: mtime(-400 * day)}}
	never := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "never"}}
	return []client.Object{ri, ci, young, old, other, never}
}

func TestReportJSON(t *testing.T) {
	c := newFake(reportFixture()...)
	out, _, err := run(t, c, "", "report", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []reportRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	type want struct {
		ns, name, state, keyID string
		age                    int64
		overAge                bool
		maxAge                 string
	}
	var got []want
	for _, r := range rows {
		got = append(got, want{r.Namespace, r.Name, r.State, r.KeyID, r.AgeSeconds, r.OverAge, r.MaxKeyAge})
	}
	day := int64(24 * 3600)
	exp := []want{
		{"pay", "old", stateActive, "key_old_active", 40 * day, true, "720h0m0s"},
		{"pay", "old", statePendingRevocation, "key_prev", 70 * day, true, "720h0m0s"},
		{"pay", "young", stateActive, "key_young", 2 * day, false, "720h0m0s"},
		{"web", "site", stateActive, "key_site", 400 * day, false, ""},
	}
	if len(got) != len(exp) {
		t.Fatalf("rows:\n%+v\nwant:\n%+v", got, exp)
	}
	for i := range exp {
		if got[i] != exp[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], exp[i])
		}
	}
	if rows[0].OrgID != "org_pay" || strings.Join(rows[0].Scopes, ",") != "payments:read,payments:write" || rows[0].Environment != "live" {
		t.Errorf("row 0 issuer, scopes or environment: %+v", rows[0])
	}
	if rows[2].NextRotation == nil || !rows[2].NextRotation.Equal(testNow.Add(5*24*time.Hour)) {
		t.Errorf("next rotation of pay/young: %v", rows[2].NextRotation)
	}
}

func TestReportOverAgeNamespaceAndFormats(t *testing.T) {
	c := newFake(reportFixture()...)
	out, _, err := run(t, c, "", "report", "--over-age", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0][7] != "keyId" || recs[1][7] != "key_old_active" || recs[2][7] != "key_prev" {
		t.Fatalf("--over-age csv:\n%s", out)
	}

	out, _, err = run(t, c, "", "report", "-n", "web")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.Contains(lines[1], "apikey/site") ||
		!strings.Contains(lines[1], "clusterreevitissuer/platform") || !strings.Contains(lines[1], "400d") {
		t.Fatalf("-n web table:\n%s", out)
	}

	if _, _, err := run(t, c, "", "report", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "use table, json or csv") {
		t.Fatalf("-o yaml: %v", err)
	}
	for _, secret := range []string{activeKey, oldKey} {
		for _, f := range []string{"table", "json", "csv"} {
			if out, _, _ := run(t, c, "", "report", "-o", f); strings.Contains(out, secret) {
				t.Fatalf("report -o %s printed a key", f)
			}
		}
	}
}

// Issuers' own credentials are rows too: the admin key of a Reevit issuer
// and the API key of a Rev.io issuer, by fingerprint, aged from their first
// sighting, a Rev.io key judged against its spec.maxKeyAge; cluster issuers
// only when no namespace is given.
func TestReportIssuerCredentials(t *testing.T) {
	day := 24 * time.Hour
	cred := func(d time.Duration, fp string) v1alpha1.IssuerStatus {
		return v1alpha1.IssuerStatus{Credential: &v1alpha1.CredentialRecord{Fingerprint: fp, FirstSeen: *mtime(-d)}}
	}
	c := newFake(
		&v1alpha1.ReevitIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "reevit"}, Spec: v1alpha1.ReevitIssuerSpec{OrgID: "org_pay"},
			Status: cred(100*day, "sha256:aaaaaaaaaaaaaaaa")},
		&v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "revio"}, Spec: v1alpha1.RevioIssuerSpec{MaxKeyAge: &metav1.Duration{Duration: 90 * day}},
			Status: cred(91*day, "sha256:bbbbbbbbbbbbbbbb")},
		&v1alpha1.ClusterRevioIssuer{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Status: cred(5*day, "sha256:cccccccccccccccc")},
		&v1alpha1.RevioIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "unchecked"}},
	)
	out, _, err := run(t, c, "", "report", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []reportRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]reportRow{}
	for _, r := range rows {
		got[r.Kind+"/"+r.Name] = r
	}
	if len(rows) != 3 {
		t.Fatalf("rows: %+v", rows)
	}
	if r := got["ReevitIssuer/reevit"]; r.State != stateAdminKey || r.Fingerprint != "sha256:aaaaaaaaaaaaaaaa" || r.OrgID != "org_pay" || r.AgeSeconds != int64(100*day/time.Second) || r.OverAge {
		t.Errorf("admin key row: %+v", r)
	}
	if r := got["RevioIssuer/revio"]; r.State != stateAPIKey || !r.OverAge || r.MaxKeyAge != "2160h0m0s" {
		t.Errorf("Rev.io key row: %+v", r)
	}
	if r := got["ClusterRevioIssuer/platform"]; r.Namespace != "" || r.OverAge {
		t.Errorf("cluster issuer row: %+v", r)
	}
	out, _, err = run(t, c, "", "report", "-n", "pay", "--over-age")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "revioissuer/revio") || !strings.Contains(lines[1], "sha256:bbbbbbbbbbbbbbbb") {
		t.Fatalf("--over-age -n pay:\n%s", out)
	}
}
