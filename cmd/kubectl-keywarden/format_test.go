package main

import (
	"encoding/base64"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var testNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestWhen(t *testing.T) {
	mt := func(d time.Duration) *metav1.Time { v := metav1.NewTime(testNow.Add(d)); return &v }
	for _, tc := range []struct {
		t    *metav1.Time
		want string
	}{
		{nil, "-"},
		{&metav1.Time{}, "-"},
		{mt(3 * time.Hour), "2026-12-01T13:00:00Z (in 3h)"},
		{mt(-5 * time.Minute), "2026-12-01T09:55:00Z (5m ago)"},
		{mt(90 * time.Second), "2026-12-01T10:01:30Z (in 90s)"},
		{mt(-200 * time.Millisecond), "2026-12-01T09:59:59Z (now)"},
		{mt(30 * 24 * time.Hour), "2026-12-31T10:00:00Z (in 30d)"},
		{mt(26*time.Hour + 0), "2026-12-02T12:00:00Z (in 26h)"},
	} {
		if got := when(tc.t, testNow); got != tc.want {
			t.Errorf("when(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
	// Times in other zones print in UTC.
	berlin := time.FixedZone("CET", 3600)
	if got := whenTime(testNow.In(berlin).Add(time.Hour), testNow); got != "2026-12-01T11:00:00Z (in 60m)" {
		t.Errorf("whenTime in CET = %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	// SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223...
	if got := fingerprint([]byte("abc")); got != "sha256:ba7816bf8f01cfea" {
		t.Errorf("fingerprint(abc) = %q", got)
	}
	if fingerprint([]byte("a")) == fingerprint([]byte("b")) {
		t.Error("different values, same fingerprint")
	}
}

// jwt builds an unsigned-looking compact JWT with the given payload.
func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("signature-bytes-0123456789"))
}

func TestDecodeJWT(t *testing.T) {
	exp, iat := testNow.Add(time.Hour), testNow
	tok := jwt(`{"sub":"acme","iat":` + strconv.FormatInt(iat.Unix(), 10) + `,"exp":` + strconv.FormatInt(exp.Unix(), 10) + `}`)
	for _, in := range []string{tok, "Bearer " + tok} {
		c, err := decodeJWT(in)
		if err != nil {
			t.Fatalf("decodeJWT: %v", err)
		}
		if c.ExpiresAt == nil || !c.ExpiresAt.Equal(exp) || c.IssuedAt == nil || !c.IssuedAt.Equal(iat) {
			t.Errorf("claims = %+v, want exp %s iat %s", c, exp, iat)
		}
	}
	c, err := decodeJWT(jwt(`{"sub":"x"}`))
	if err != nil || c.ExpiresAt != nil || c.IssuedAt != nil {
		t.Errorf("no exp: %+v, %v", c, err)
	}
	if c, err := decodeJWT(jwt(`{"exp":1.7e9}`)); err != nil || c.ExpiresAt == nil || c.ExpiresAt.Unix() != 1700000000 {
		t.Errorf("float exp: %+v, %v", c, err)
	}
	for _, bad := range []string{
		"", "pfk_test_0123456789abcdefghijkl", "a.b", "a.b.c.d",
		"x." + base64.RawURLEncoding.EncodeToString([]byte("secretpayload-not-json")) + ".y",
		"x.!!!notbase64secret.y",
		jwt(`{"exp":"soon-secret"}`),
	} {
		_, err := decodeJWT(bad)
		if err == nil {
			t.Errorf("decodeJWT(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("decodeJWT error quotes its input: %v", err)
		}
	}
}

func TestKeyPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"pfk_test_a1b2c3d4e5f6g7h8i9j0k1l2": "pfk_test_a1b2",
		"pfk_live_a1b2c3d4e5f6g7h8i9j0k1l2": "pfk_live_a1b2",
		"pfk_test_a1b2c3":                   "", // too short: the rest would be guessable
		"sk_test_a1b2c3d4e5f6g7h8i9j0k1l2":  "",
		"":                                  "",
	} {
		if got := keyPrefix([]byte(in)); got != want {
			t.Errorf("keyPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRefs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		only kind
		want string // refs joined by space, or "error"
	}{
		{[]string{"apikey/a"}, "", "apikey/a"},
		{[]string{"ak/a", "rt/b"}, "", "apikey/a reviotoken/b"},
		{[]string{"apikeys.credentials.keywarden.dev/a"}, "", "apikey/a"},
		{[]string{"ApiKey/a"}, "", "apikey/a"},
		{[]string{"rt", "a", "b"}, "", "reviotoken/a reviotoken/b"},
		{[]string{"a", "b"}, kindApiKey, "apikey/a apikey/b"},
		{[]string{"a"}, "", "error"},
		{[]string{"rt"}, "", "error"},
		{[]string{"rt/a"}, kindApiKey, "error"},
		{[]string{"deployment/a"}, "", "error"},
		{[]string{"apikeys.example.com/a"}, "", "error"},
		{[]string{"ak/"}, "", "error"},
		{[]string{"ak", "x/y"}, "", "error"},
		{[]string{"ri/a", "cri/b", "rvi/c", "crvi/d"}, "", "reevitissuer/a clusterreevitissuer/b revioissuer/c clusterrevioissuer/d"},
		{[]string{"ReevitIssuers/a", "clusterrevioissuer.credentials.keywarden.dev/b"}, "", "reevitissuer/a clusterrevioissuer/b"},
		{[]string{"cri", "a", "b"}, "", "clusterreevitissuer/a clusterreevitissuer/b"},
		{[]string{"ri/a"}, kindApiKey, "error"},
	} {
		refs, err := parseRefs(tc.args, tc.only)
		got := "error"
		if err == nil {
			var s []string
			for _, r := range refs {
				s = append(s, r.String())
			}
			got = strings.Join(s, " ")
		}
		if got != tc.want {
			t.Errorf("parseRefs(%q, %q) = %q (%v), want %q", tc.args, tc.only, got, err, tc.want)
		}
	}
}

// TestAdviceCoversEveryReason: every condition reason of the API has advice,
// so status never falls back to the generic hint for a known reason.
func TestAdviceCoversEveryReason(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../../api/v1alpha1/conditions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Reason") || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok {
			return true
		}
		reason, _ := strconv.Unquote(lit.Value)
		n++
		if _, ok := advice[reason]; !ok {
			t.Errorf("no advice for %s (%q)", vs.Names[0].Name, reason)
		}
		return true
	})
	if n < 20 {
		t.Fatalf("found only %d reasons in conditions.go", n)
	}
}
