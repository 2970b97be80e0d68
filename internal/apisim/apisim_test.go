package apisim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/revio"
	"github.com/keywarden/keywarden/internal/simfault"
)

func start(t *testing.T, cfg apisim.Config) *apisim.Server {
	t.Helper()
	cfg.ReevitAddr, cfg.RevioAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := apisim.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// createReevitKey creates a key through the Reevit listener with plain
// net/http, as the seed document's curl does.
func createReevitKey(t *testing.T, hc *http.Client, base string, creds apisim.Credentials, name string) (id, key string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/api-keys",
		strings.NewReader(`{"name":"`+name+`","scopes":["payments:read","payments:write"]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Reevit-Key", creds.AdminKey)
	req.Header.Set("X-Org-Id", creds.OrgID)
	req.Header.Set("Idempotency-Key", "create-"+name)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.Key == "" {
		t.Fatalf("create key = %d, %v", resp.StatusCode, err)
	}
	return out.ID, out.Key
}

func TestApisim(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	credFile := filepath.Join(dir, "creds.json")
	var log bytes.Buffer
	s := start(t, apisim.Config{CredentialsFile: credFile, Log: &log, TokenLifetime: 10 * time.Minute})

	// The credentials file: mode 0600, the same as Credentials().
	fi, err := os.Stat(credFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode = %v, want 0600", fi.Mode().Perm())
	}
	creds, err := apisim.ReadCredentials(credFile)
	if err != nil {
		t.Fatal(err)
	}
	if creds != s.Credentials() || creds.OrgID != "org_demo" || creds.RevioHost != "acme.psarev.io" ||
		!strings.HasPrefix(creds.AdminKey, "pfk_test_") || creds.AdminKeyID == "" || creds.RevioAPIKey == "" {
		t.Fatalf("credentials = %+v", creds)
	}
	for _, secret := range []string{creds.AdminKey, creds.RevioAPIKey} {
		if strings.Contains(log.String(), secret) || strings.Contains(fmt.Sprintf("%v %+v %#v", creds, creds, creds), secret) {
			t.Errorf("a key was logged or printed")
		}
	}
	for _, u := range []string{creds.ReevitURL, creds.RevioURL, creds.ControlURL} {
		if !strings.Contains(log.String(), u) {
			t.Errorf("log %q lacks %s", log.String(), u)
		}
	}

	cc := apisim.NewClient(creds.ControlURL)
	if err := cc.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}

	// The admin key has every documented scope.
	keys, err := cc.ReevitKeys(ctx, creds.OrgID)
	if err != nil || len(keys) != 1 || keys[0].ID != creds.AdminKeyID || len(keys[0].Scopes) != 16 {
		t.Fatalf("ReevitKeys = %+v, %v", keys, err)
	}

	// Create a key through the Reevit URL; the control API sees it.
	id, key := createReevitKey(t, http.DefaultClient, creds.ReevitURL, creds, "backend")
	if got, ok, err := cc.Authenticate(ctx, creds.OrgID, key); err != nil || !ok || got != id {
		t.Fatalf("Authenticate = %q %v %v", got, ok, err)
	}
	if _, ok, _ := cc.Authenticate(ctx, creds.OrgID, key+"x"); ok {
		t.Errorf("a wrong key authenticates")
	}
	if ok, err := cc.Revoke(ctx, creds.OrgID, id); err != nil || !ok {
		t.Fatalf("Revoke = %v %v", ok, err)
	}
	if _, ok, _ := cc.Authenticate(ctx, creds.OrgID, key); ok {
		t.Errorf("a revoked key authenticates")
	}
	keys, _ = cc.ReevitKeys(ctx, "")
	if len(keys) != 2 || !keys[1].Revoked || keys[1].RevokedAt == nil {
		t.Errorf("keys after revoke = %+v", keys)
	}
	raw, _ := json.Marshal(keys)
	if strings.Contains(string(raw), key) || strings.Contains(string(raw), creds.AdminKey) {
		t.Errorf("key list carries a secret")
	}

	// Exchange through the Rev.io URL with the real client.
	rc, err := revio.New(revio.Config{BaseURL: creds.RevioURL, Host: creds.RevioHost, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := rc.Exchange(ctx, creds.RevioAPIKey)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if got := tok.ExpiresAt.Sub(tok.IssuedAt); got != 10*time.Minute {
		t.Errorf("token lifetime = %v, want the configured 10m", got)
	}
	if ok, err := cc.ValidateToken(ctx, tok.JWT); err != nil || !ok {
		t.Errorf("ValidateToken = %v %v", ok, err)
	}
	if ok, _ := cc.ValidateTokenForHost(ctx, tok.JWT, "other.psarev.io"); ok {
		t.Errorf("token valid for another host")
	}
	if status, _, err := rc.Get(ctx, tok.JWT, "/billing/api/v1/customers/1001"); err != nil || status != 200 {
		t.Errorf("Get = %d %v", status, err)
	}
	if err := cc.SetTokenLifetime(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if tok, err = rc.Exchange(ctx, creds.RevioAPIKey); err != nil || tok.ExpiresAt.Sub(tok.IssuedAt) != 30*time.Second {
		t.Errorf("after SetTokenLifetime: %v %v", tok, err)
	}
	if err := cc.SetOmitExp(ctx, true); err != nil {
		t.Fatal(err)
	}
	if tok, err = rc.Exchange(ctx, creds.RevioAPIKey); err != nil || tok.HasExpiry() {
		t.Errorf("after SetOmitExp: %v %v", tok, err)
	}
	other, err := cc.GenerateRevioAPIKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.RevokeRevioAPIKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	var ik *revio.InvalidAPIKeyError
	if _, err := rc.Exchange(ctx, other); !errors.As(err, &ik) {
		t.Errorf("revoked Rev.io key: %v", err)
	}

	// Faults through the control API.
	if err := cc.SetRevioFaults(ctx, simfault.Settings{FailNext: 1, FailStatus: 503}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cc.RevioFaults(ctx); got.FailNext != 1 || got.FailStatus != 503 {
		t.Errorf("RevioFaults = %+v", got)
	}
	var se *revio.ServerError
	if _, err := rc.Exchange(ctx, creds.RevioAPIKey); !errors.As(err, &se) || se.StatusCode != 503 {
		t.Errorf("exchange under a fault: %v", err)
	}
	if err := cc.SetReevitFaults(ctx, simfault.Settings{Outage: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(creds.ReevitURL + "/v1/api-keys")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("reevit under outage = %d", resp.StatusCode)
	}
	if err := cc.SetReevitFaults(ctx, simfault.Settings{FailureRate: 2}); err == nil {
		t.Errorf("a failure rate of 2 was accepted")
	}
	_ = cc.SetReevitFaults(ctx, simfault.Settings{})

	counts, err := cc.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Revio["exchange"][200] != 3 || counts.Revio["exchange"][401] != 1 || counts.Revio["exchange"][503] != 1 ||
		counts.Revio["customers"][200] != 1 || counts.Reevit["create"][201] != 1 || counts.Reevit["list"][503] != 1 {
		t.Errorf("counts = %+v", counts)
	}
	if err := cc.ResetCounts(ctx); err != nil {
		t.Fatal(err)
	}
	if counts, _ = cc.Counts(ctx); len(counts.Revio)+len(counts.Reevit) != 0 {
		t.Errorf("counts after reset = %+v", counts)
	}

	// A seeded key lacking api_keys:write is refused by Reevit.
	_, weak, err := cc.SeedReevitKey(ctx, apisim.SeedKeyRequest{Name: "read only", Scopes: []string{"api_keys:read"}})
	if err != nil || !strings.HasPrefix(weak, "pfk_test_") {
		t.Fatalf("SeedReevitKey = %v", err)
	}

	// Bad control requests.
	if err := cc.SetTokenLifetime(ctx, 0); err == nil {
		t.Errorf("a zero lifetime was accepted")
	}
	resp, err = http.Post(creds.ControlURL+"/reevit/revoke", "application/json", strings.NewReader(`{"bogus":1}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("unknown field = %d, want 400", resp.StatusCode)
	}
}

func TestApisimTLSAndChosenKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const adminKey = "pfk_live_chosenadminkey0123456789abcdefghijkl"
	const revioKey = "rvk_chosen_revio_key"
	s := start(t, apisim.Config{
		TLSDir: dir, AdminKey: adminKey, RevioAPIKey: revioKey, RevioHost: "beta.psarev.io", OrgID: "org_x",
		Faults: simfault.Settings{Latency: simfault.Duration(time.Millisecond)}, Seed: 3,
	})
	creds := s.Credentials()
	if !strings.HasPrefix(creds.ReevitURL, "https://127.0.0.1:") || !strings.HasPrefix(creds.RevioURL, "https://") ||
		!strings.HasPrefix(creds.ControlURL, "http://127.0.0.1:") {
		t.Fatalf("URLs = %+v", creds)
	}
	if creds.AdminKey != adminKey || creds.RevioAPIKey != revioKey || creds.CAFile != filepath.Join(dir, apisim.CAFileName) {
		t.Fatalf("credentials = %+v", creds)
	}
	pem, err := os.ReadFile(creds.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.crt is not PEM")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()

	// The chosen admin key works against Reevit over HTTPS, with its env.
	_, key := createReevitKey(t, hc, creds.ReevitURL, creds, "tls")
	if !strings.HasPrefix(key, "pfk_live_") {
		t.Errorf("created key %q should inherit the admin key's live env", key[:9])
	}
	cc := apisim.NewClient(creds.ControlURL)
	if id, ok, err := cc.Authenticate(ctx, "org_x", adminKey); err != nil || !ok || id != creds.AdminKeyID {
		t.Errorf("Authenticate(admin) = %q %v %v", id, ok, err)
	}

	// The chosen Rev.io key works over HTTPS, also through localhost.
	for _, base := range []string{creds.RevioURL, strings.Replace(creds.RevioURL, "127.0.0.1", "localhost", 1)} {
		rc, err := revio.New(revio.Config{BaseURL: base, Host: "beta.psarev.io", HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := rc.Exchange(ctx, revioKey)
		if err != nil {
			t.Fatalf("Exchange over %s: %v", base, err)
		}
		if ok, _ := cc.ValidateToken(ctx, tok.JWT); !ok {
			t.Errorf("token not valid for the configured host")
		}
	}
	if got, _ := cc.RevioFaults(ctx); time.Duration(got.Latency) != time.Millisecond {
		t.Errorf("start faults not applied: %+v", got)
	}
}

func TestControlMustBeLoopback(t *testing.T) {
	_, err := apisim.Start(apisim.Config{ReevitAddr: "127.0.0.1:0", RevioAddr: "127.0.0.1:0", ControlAddr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Start with a public control address: %v", err)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	for _, cfg := range []apisim.Config{
		{AdminEnv: "prod"},
		{TokenLifetime: -time.Second},
	} {
		cfg.ReevitAddr, cfg.RevioAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		if s, err := apisim.Start(cfg); err == nil {
			_ = s.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}

func TestReadCredentialsErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := apisim.ReadCredentials(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file read")
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"orgId":"x"}`), 0o600)
	if _, err := apisim.ReadCredentials(bad); err == nil {
		t.Error("file without URLs read")
	}
	// Overwriting an existing, wider file leaves it 0600.
	path := filepath.Join(dir, "creds.json")
	_ = os.WriteFile(path, []byte("{}"), 0o644)
	if err := apisim.WriteCredentials(path, apisim.Credentials{ReevitURL: "a", RevioURL: "b", ControlURL: "c"}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
}
