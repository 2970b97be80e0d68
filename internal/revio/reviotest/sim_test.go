package reviotest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keywarden/keywarden/internal/revio/reviotest"
)

const host = "acme.psarev.io"

func newClock() *clocktesting.FakeClock {
	return clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// do sends a raw request and decodes the JSON answer into a generic map.
func do(t *testing.T, method, url string, headers map[string]string, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %s", method, url, raw)
		}
	}
	if ct := resp.Header.Get("Content-Type"); len(raw) > 0 && ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return resp.StatusCode, resp.Header, out
}

// TestSeedDocumentFlow replays the bash script of Rev.io's authentication
// document at the HTTP level.
func TestSeedDocumentFlow(t *testing.T) {
	srv := reviotest.NewServer()
	defer srv.Close()
	apiKey := srv.GenerateAPIKey(host)
	baseURL, revioHost := srv.URL, host

	// Step 1: exchange the API key for a JWT.
	status, _, resp := do(t, http.MethodPost, baseURL+"/api/v1/auth/api-key/exchange",
		map[string]string{"Content-Type": "application/json"}, `{"apiKey": "`+apiKey+`"}`)
	if status != 200 {
		t.Fatalf("exchange status %d: %v", status, resp)
	}
	// Step 2: extract data.token.
	data, _ := resp["data"].(map[string]any)
	token, _ := data["token"].(string)
	if !strings.HasPrefix(token, "eyJ") || strings.Count(token, ".") != 2 {
		t.Fatalf("data.token = %q, want a JWT", token)
	}
	// Step 3: call the API with both headers.
	auth := map[string]string{
		"Authorization": "Bearer " + token,
		"X-Revio-Host":  revioHost,
		"Content-Type":  "application/json",
	}
	for _, tc := range []struct {
		path    string
		list    bool
		idField string
		id      float64
	}{
		{path: "/billing/api/v1/contacts", list: true},
		{path: "/billing/api/v1/contacts/2", idField: "contact_id", id: 2},
		{path: "/billing/api/v1/customers", list: true},
		{path: "/billing/api/v1/customers/1001", idField: "customer_id", id: 1001},
	} {
		status, _, body := do(t, http.MethodGet, baseURL+tc.path, auth, "")
		if status != 200 {
			t.Fatalf("GET %s = %d %v", tc.path, status, body)
		}
		if tc.list {
			if items, ok := body["data"].([]any); !ok || len(items) == 0 {
				t.Errorf("GET %s: data is not a non-empty list: %v", tc.path, body)
			}
			continue
		}
		rec, ok := body["data"].(map[string]any)
		if !ok || rec[tc.idField] != tc.id {
			t.Errorf("GET %s: data = %v, want %s %v", tc.path, body["data"], tc.idField, tc.id)
		}
	}
	if n := srv.Counts().CountStatus("exchange", 200); n != 1 {
		t.Errorf("exchange count = %d", n)
	}
	if srv.Counts().CountStatus("contacts", 200) != 2 || srv.Counts().CountStatus("customers", 200) != 2 {
		t.Errorf("counts = %v", srv.Counts().Snapshot())
	}
}

func TestErrorAnswers(t *testing.T) {
	clock := newClock()
	srv := reviotest.NewServer(reviotest.WithClock(clock))
	defer srv.Close()
	key := srv.GenerateAPIKey(host)
	revoked := srv.GenerateAPIKey(host)
	srv.RevokeAPIKey(revoked)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	token := exchange(t, srv.URL, key)
	auth := func(tok, h string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-Revio-Host": h}
	}

	tests := []struct {
		name     string
		method   string
		path     string
		headers  map[string]string
		body     string
		status   int
		errCode  string
		endpoint string
	}{
		{"unknown key", "POST", reviotest.ExchangePath, jsonCT, `{"apiKey":"nope"}`, 401, "invalid_api_key", "exchange"},
		{"revoked key", "POST", reviotest.ExchangePath, jsonCT, `{"apiKey":"` + revoked + `"}`, 401, "invalid_api_key", "exchange"},
		{"missing key", "POST", reviotest.ExchangePath, jsonCT, `{}`, 401, "invalid_api_key", "exchange"},
		{"malformed JSON", "POST", reviotest.ExchangePath, jsonCT, `{"apiKey":`, 400, "invalid_request", "exchange"},
		{"no content type", "POST", reviotest.ExchangePath, nil, `{"apiKey":"` + key + `"}`, 415, "unsupported_media_type", "exchange"},
		{"wrong content type", "POST", reviotest.ExchangePath, map[string]string{"Content-Type": "text/plain"}, `{"apiKey":"` + key + `"}`, 415, "unsupported_media_type", "exchange"},
		{"GET exchange", "GET", reviotest.ExchangePath, nil, "", 405, "method_not_allowed", "exchange"},
		{"no token", "GET", reviotest.ContactsPath, map[string]string{"X-Revio-Host": host}, "", 401, "unauthorized", "contacts"},
		{"no host", "GET", reviotest.ContactsPath, map[string]string{"Authorization": "Bearer " + token}, "", 401, "unauthorized", "contacts"},
		{"wrong host", "GET", reviotest.CustomersPath, auth(token, "evil.psarev.io"), "", 401, "unauthorized", "customers"},
		{"basic auth", "GET", reviotest.CustomersPath, map[string]string{"Authorization": "Basic " + token, "X-Revio-Host": host}, "", 401, "unauthorized", "customers"},
		{"garbage token", "GET", reviotest.CustomersPath, auth("abc.def.ghi", host), "", 401, "unauthorized", "customers"},
		{"unknown contact", "GET", reviotest.ContactsPath + "/77", auth(token, host), "", 404, "not_found", "contacts"},
		{"unknown customer", "GET", reviotest.CustomersPath + "/abc", auth(token, host), "", 404, "not_found", "customers"},
		{"deep path", "GET", reviotest.CustomersPath + "/1001/x", auth(token, host), "", 404, "not_found", "customers"},
		{"POST contacts", "POST", reviotest.ContactsPath, auth(token, host), "{}", 405, "method_not_allowed", "contacts"},
		{"unknown path", "GET", "/billing/api/v1/invoices", auth(token, host), "", 404, "not_found", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Counts().CountStatus(tt.endpoint, tt.status)
			status, _, body := do(t, tt.method, srv.URL+tt.path, tt.headers, tt.body)
			if status != tt.status || body["error"] != tt.errCode {
				t.Fatalf("got %d %v, want %d %s", status, body, tt.status, tt.errCode)
			}
			if msg, _ := body["message"].(string); msg == "" || strings.Contains(msg, token) || strings.Contains(msg, key) {
				t.Errorf("message %q is empty or echoes a secret", msg)
			}
			if got := srv.Counts().CountStatus(tt.endpoint, tt.status); got != before+1 {
				t.Errorf("count %s/%d = %d, want %d", tt.endpoint, tt.status, got, before+1)
			}
		})
	}

	t.Run("expired token", func(t *testing.T) {
		clock.Step(time.Hour)
		status, _, body := do(t, "GET", srv.URL+reviotest.ContactsPath, auth(token, host), "")
		if status != 401 || body["message"] != "Token has expired" {
			t.Fatalf("got %d %v", status, body)
		}
	})
}

func TestFaults(t *testing.T) {
	clock := newClock()
	srv := reviotest.NewServer(reviotest.WithClock(clock))
	defer srv.Close()
	key := srv.GenerateAPIKey(host)
	hdr := map[string]string{"Content-Type": "application/json"}
	body := `{"apiKey":"` + key + `"}`

	srv.Faults().SetRateLimit(1, time.Minute)
	if status, _, _ := do(t, "POST", srv.URL+reviotest.ExchangePath, hdr, body); status != 200 {
		t.Fatalf("first exchange = %d", status)
	}
	clock.Step(20 * time.Second)
	status, h, out := do(t, "POST", srv.URL+reviotest.ExchangePath, hdr, body)
	if status != 429 || out["error"] != "rate_limited" || out["retry_after"] != float64(40) || h.Get("Retry-After") != "40" {
		t.Fatalf("rate limited answer = %d %v Retry-After %q", status, out, h.Get("Retry-After"))
	}
	srv.Faults().Reset()

	srv.Faults().FailNext(1, 503)
	status, _, out = do(t, "GET", srv.URL+reviotest.ContactsPath, nil, "")
	if status != 503 || out["error"] != "internal_error" {
		t.Fatalf("5xx answer = %d %v", status, out)
	}
	if srv.Counts().CountStatus("contacts", 503) != 1 {
		t.Errorf("fault not counted: %v", srv.Counts().Snapshot())
	}

	// DropAfterCommit: the token is issued (counted with status 0), the
	// connection closes without an answer.
	srv.Faults().DropAfterCommit(1)
	req, _ := http.NewRequest("POST", srv.URL+reviotest.ExchangePath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("dropped exchange answered %d", resp.StatusCode)
	}
	if srv.Counts().CountStatus("exchange", 0) != 1 {
		t.Errorf("drop not counted: %v", srv.Counts().Snapshot())
	}
}

func exchange(t *testing.T, base, key string) string {
	t.Helper()
	status, _, out := do(t, "POST", base+reviotest.ExchangePath, map[string]string{"Content-Type": "application/json; charset=utf-8"}, `{"apiKey":"`+key+`"}`)
	if status != 200 {
		t.Fatalf("exchange = %d %v", status, out)
	}
	return out["data"].(map[string]any)["token"].(string)
}

func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenClaims(t *testing.T) {
	clock := newClock()
	signKey := []byte("test-signing-key")
	srv := reviotest.NewServer(reviotest.WithClock(clock), reviotest.WithSigningKey(signKey), reviotest.WithTokenLifetime(10*time.Minute))
	defer srv.Close()
	key := "rvk_handmade_key_for_claims"
	srv.AddAPIKey(key, host)

	a, b := exchange(t, srv.URL, key), exchange(t, srv.URL, key)
	if a == b {
		t.Fatalf("two exchanges in the same second returned the same token")
	}
	ca, cb := claimsOf(t, a), claimsOf(t, b)
	now := float64(clock.Now().Unix())
	if ca["iat"] != now || ca["exp"] != now+600 || ca["host"] != host || ca["jti"] == cb["jti"] || ca["sub"] != cb["sub"] {
		t.Errorf("claims = %v / %v", ca, cb)
	}
	if sub, _ := ca["sub"].(string); sub == "" || strings.Contains(sub, key) || strings.Contains(a, key) {
		t.Errorf("sub %q must be derived from the key without containing it", sub)
	}
	// The signature is HS256 over header.payload with the signing key.
	parts := strings.Split(a, ".")
	m := hmac.New(sha256.New, signKey)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if got := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); got != parts[2] {
		t.Errorf("signature is not HS256 with the signing key")
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if !bytes.Contains(hdr, []byte(`"HS256"`)) {
		t.Errorf("header = %s", hdr)
	}

	if !srv.ValidToken(a, host) || srv.ValidToken(a, "other.psarev.io") || srv.ValidToken(a+"x", host) {
		t.Errorf("ValidToken disagrees")
	}
	clock.Step(10 * time.Minute)
	if srv.ValidToken(a, host) {
		t.Errorf("token valid at exp")
	}

	// A revoked key stops exchanging; tokens already issued stay valid.
	srv.SetTokenLifetime(time.Hour)
	c := exchange(t, srv.URL, key)
	srv.RevokeAPIKey(key)
	if !srv.ValidToken(c, host) {
		t.Errorf("token invalid after its key was revoked; tokens are stateless")
	}
	srv.AddAPIKey(key, "other.psarev.io") // reactivate, rebound
	d := exchange(t, srv.URL, key)
	if !srv.ValidToken(d, "other.psarev.io") || srv.ValidToken(d, host) {
		t.Errorf("rebinding the key did not change the token host")
	}

	srv.SetOmitExp(true)
	e := exchange(t, srv.URL, key)
	if _, ok := claimsOf(t, e)["exp"]; ok {
		t.Errorf("SetOmitExp: token has exp")
	}
	clock.Step(1000 * time.Hour)
	if !srv.ValidToken(e, "other.psarev.io") {
		t.Errorf("a token without exp must not expire")
	}
}

func TestSeedIsReproducible(t *testing.T) {
	a, b := reviotest.New(reviotest.WithSeed(42)), reviotest.New(reviotest.WithSeed(42))
	ka, kb := a.GenerateAPIKey(host), b.GenerateAPIKey(host)
	if ka != kb || !strings.HasPrefix(ka, "rvk_") {
		t.Fatalf("keys %q %q", ka, kb)
	}
	x, y := reviotest.New(), reviotest.New()
	if x.GenerateAPIKey(host) == y.GenerateAPIKey(host) {
		t.Fatalf("unseeded simulators generate the same key")
	}
}

func TestConcurrentUse(t *testing.T) {
	srv := reviotest.NewServer()
	defer srv.Close()
	key := srv.GenerateAPIKey(host)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Plain requests: t.Fatal must not be called off the test goroutine.
			req, _ := http.NewRequest("POST", srv.URL+reviotest.ExchangePath, strings.NewReader(`{"apiKey":"`+key+`"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var out struct {
				Data struct{ Token string } `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			_ = resp.Body.Close()
			if err != nil || !srv.ValidToken(out.Data.Token, host) {
				t.Errorf("exchange: %v", err)
			}
			srv.SetTokenLifetime(time.Hour)
			_ = srv.GenerateAPIKey(host)
		}()
	}
	wg.Wait()
	if n := srv.Counts().Count("exchange"); n != 16 {
		t.Errorf("exchanges = %d", n)
	}
}
