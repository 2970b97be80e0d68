package apisim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keywarden/keywarden/internal/simfault"
)

// Client calls a running apisim's control API. Its methods mirror the
// endpoints; none logs, and errors never carry a key.
type Client struct {
	// BaseURL is the control API's base URL (Credentials.ControlURL).
	BaseURL string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// NewClient returns a client of the control API at controlURL.
func NewClient(controlURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(controlURL, "/")}
}

// Healthz reports whether the control API answers.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// WaitHealthy polls Healthz until it succeeds or ctx ends.
func (c *Client) WaitHealthy(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := c.Healthz(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apisim not healthy: %w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// ReevitKeys lists the org's Reevit keys, revoked ones included (never the
// secrets). An empty orgID means the configured org.
func (c *Client) ReevitKeys(ctx context.Context, orgID string) ([]KeyInfo, error) {
	return call[[]KeyInfo](ctx, c, http.MethodGet, "/reevit/keys?org="+url.QueryEscape(orgID), nil)
}

// SeedReevitKey creates a Reevit key directly (for example one lacking a
// scope) and returns its id and full secret.
func (c *Client) SeedReevitKey(ctx context.Context, req SeedKeyRequest) (id, key string, err error) {
	out, err := call[SeedKeyResponse](ctx, c, http.MethodPost, "/reevit/keys", req)
	return out.ID, out.Key, err
}

// Authenticate reports whether key is an active Reevit key of the org, and
// its id; use it to check a Secret's key without printing it.
func (c *Client) Authenticate(ctx context.Context, orgID, key string) (id string, ok bool, err error) {
	out, err := call[AuthenticateResponse](ctx, c, http.MethodPost, "/reevit/authenticate", AuthenticateRequest{OrgID: orgID, Key: key})
	return out.ID, out.OK, err
}

// Revoke revokes a Reevit key out of band; it reports whether an active key
// was revoked.
func (c *Client) Revoke(ctx context.Context, orgID, id string) (bool, error) {
	out, err := call[OKResponse](ctx, c, http.MethodPost, "/reevit/revoke", RevokeRequest{OrgID: orgID, ID: id})
	return out.OK, err
}

// ReevitFaults returns the Reevit simulator's fault settings.
func (c *Client) ReevitFaults(ctx context.Context) (simfault.Settings, error) {
	return call[simfault.Settings](ctx, c, http.MethodGet, "/reevit/faults", nil)
}

// SetReevitFaults replaces the Reevit simulator's fault settings.
func (c *Client) SetReevitFaults(ctx context.Context, s simfault.Settings) error {
	return c.do(ctx, http.MethodPut, "/reevit/faults", s, nil)
}

// RevioFaults returns the Rev.io simulator's fault settings.
func (c *Client) RevioFaults(ctx context.Context) (simfault.Settings, error) {
	return call[simfault.Settings](ctx, c, http.MethodGet, "/revio/faults", nil)
}

// SetRevioFaults replaces the Rev.io simulator's fault settings.
func (c *Client) SetRevioFaults(ctx context.Context, s simfault.Settings) error {
	return c.do(ctx, http.MethodPut, "/revio/faults", s, nil)
}

// Counts returns both simulators' call counts.
func (c *Client) Counts(ctx context.Context) (Counts, error) {
	return call[Counts](ctx, c, http.MethodGet, "/counts", nil)
}

// ResetCounts forgets both simulators' call counts.
func (c *Client) ResetCounts(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/counts/reset", nil, nil)
}

// ValidateToken reports whether token is a valid, unexpired Rev.io token for
// the configured host.
func (c *Client) ValidateToken(ctx context.Context, token string) (bool, error) {
	return c.ValidateTokenForHost(ctx, token, "")
}

// ValidateTokenForHost reports whether token is valid for host.
func (c *Client) ValidateTokenForHost(ctx context.Context, token, host string) (bool, error) {
	out, err := call[OKResponse](ctx, c, http.MethodPost, "/revio/validate", ValidateRequest{Token: token, Host: host})
	return out.OK, err
}

// SetTokenLifetime changes the lifetime of Rev.io tokens issued from now on.
func (c *Client) SetTokenLifetime(ctx context.Context, d time.Duration) error {
	return c.do(ctx, http.MethodPut, "/revio/token-lifetime", TokenLifetime{Lifetime: simfault.Duration(d)}, nil)
}

// SetOmitExp makes Rev.io tokens issued from now on carry no exp claim.
func (c *Client) SetOmitExp(ctx context.Context, omit bool) error {
	return c.do(ctx, http.MethodPut, "/revio/omit-exp", OmitExp{Omit: omit}, nil)
}

// GenerateRevioAPIKey creates a Rev.io API key bound to host ("" means the
// configured host).
func (c *Client) GenerateRevioAPIKey(ctx context.Context, host string) (string, error) {
	out, err := call[RevioKeyRequest](ctx, c, http.MethodPost, "/revio/api-keys", RevioKeyRequest{Host: host})
	return out.APIKey, err
}

// RevokeRevioAPIKey makes further exchanges with apiKey fail.
func (c *Client) RevokeRevioAPIKey(ctx context.Context, apiKey string) error {
	return c.do(ctx, http.MethodPost, "/revio/api-keys/revoke", RevioKeyRequest{APIKey: apiKey}, nil)
}

// call sends in (nil: no body) with method to path and returns the answer
// decoded as an Out, with do's error.
func call[Out any](ctx context.Context, c *Client, method, path string, in any) (Out, error) {
	var out Out
	err := c.do(ctx, method, path, in, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("apisim %s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return fmt.Errorf("apisim %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("apisim %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxControlBody))
	if err != nil {
		return fmt.Errorf("apisim %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e ErrorResponse
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("apisim %s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Message)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("apisim %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
