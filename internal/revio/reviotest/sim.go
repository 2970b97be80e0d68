// Package reviotest is an in-memory Rev.io API for tests and local runs, in
// the style of net/http/httptest: Sim is an http.Handler, Server runs it on a
// local listener.
//
// It implements the contract of Rev.io's API authentication document: POST
// /api/v1/auth/api-key/exchange trades an API key for an HS256 JWT, and the
// billing endpoints (contacts, customers) accept only "Authorization: Bearer
// <jwt>" with an unexpired token and the X-Revio-Host its API key is bound
// to. Faults are injected through simfault.
//
// Tokens are stateless, as JWTs usually are: revoking an API key stops new
// exchanges but a token already issued stays valid until it expires.
package reviotest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keywarden/keywarden/internal/simcore"
	"github.com/keywarden/keywarden/internal/simfault"
)

// Endpoint names used by Counts.
const (
	EndpointExchange  = "exchange"
	EndpointContacts  = "contacts"
	EndpointCustomers = "customers"
	EndpointOther     = "other"
)

// Paths served by the simulator.
const (
	ExchangePath  = "/api/v1/auth/api-key/exchange"
	ContactsPath  = "/billing/api/v1/contacts"
	CustomersPath = "/billing/api/v1/customers"
)

// DefaultTokenLifetime is the lifetime of issued tokens unless changed.
const DefaultTokenLifetime = time.Hour

const (
	maxBody     = 1 << 20
	keyRandLen  = 40
	jtiRandLen  = 16
	signKeySize = 32
)

// Clock tells the simulator the time; k8s.io/utils/clock fakes satisfy it.
type Clock = simcore.Clock

// ClockFunc adapts a function to Clock.
type ClockFunc = simcore.ClockFunc

// Option configures a Sim.
type Option func(*Sim)

// WithClock sets the clock used for iat/exp, token validation and rate-limit
// windows. The default is the real clock.
func WithClock(c Clock) Option { return func(s *Sim) { s.core.SetClock(c) } }

// WithTokenLifetime sets the lifetime of issued tokens (default 1h).
func WithTokenLifetime(d time.Duration) Option {
	return func(s *Sim) {
		if d > 0 {
			s.lifetime = d
		}
	}
}

// WithSigningKey sets the HS256 key tokens are signed with. By default it is
// random (reproducible under WithSeed).
func WithSigningKey(key []byte) Option {
	return func(s *Sim) { s.signingKey = append([]byte(nil), key...) }
}

// WithSeed makes generated API keys, token ids, the default signing key and
// the failure-rate faults reproducible. By default they are random.
func WithSeed(seed int64) Option { return func(s *Sim) { s.core.Seed(seed, &s.Instruments) } }

type boundKey struct {
	host    string
	sub     string
	revoked bool
}

// Sim is an in-memory Rev.io API. It implements http.Handler and is safe for
// concurrent use. Faults is consulted at the top of every request; its
// DropAfterCommit applies to the exchange: the token is issued, then the
// connection is closed without an answer. Counts counts calls per endpoint
// ("exchange", "contacts", "customers", "other"), status 0 for dropped
// connections.
type Sim struct {
	// Instruments give the Sim its Faults and Counts.
	simcore.Instruments
	// core is the clock and the randomness (used under mu).
	core simcore.Base

	mu         sync.Mutex
	signingKey []byte
	lifetime   time.Duration
	omitExp    bool
	keys       map[[32]byte]*boundKey // by sha256 of the API key; the key itself is not kept
}

// Server is a Sim listening on a local address, like httptest.Server: URL,
// Close, CloseClientConnections and Client come from the listener.
type Server struct {
	*Sim
	*simcore.Listener
}

// New returns a simulator with no API keys; add them with AddAPIKey or
// GenerateAPIKey.
func New(opts ...Option) *Sim {
	s := &Sim{lifetime: DefaultTokenLifetime, keys: make(map[[32]byte]*boundKey)}
	s.core.Init()
	for _, o := range opts {
		o(s)
	}
	if len(s.signingKey) == 0 {
		s.signingKey = make([]byte, signKeySize)
		for i := range s.signingKey {
			s.signingKey[i] = byte(s.core.Uint32())
		}
	}
	return s
}

// NewServer starts a plain-HTTP server (clients need AllowHTTP).
func NewServer(opts ...Option) *Server { return serve(New(opts...), false) }

// NewTLSServer starts an HTTPS server; use Client for a client that trusts it.
func NewTLSServer(opts ...Option) *Server { return serve(New(opts...), true) }

func serve(s *Sim, tls bool) *Server { return &Server{Sim: s, Listener: simcore.Serve(s, tls)} }

// AddAPIKey registers apiKey, bound to the PSA host (the X-Revio-Host its
// tokens are valid for). Adding a known or revoked key rebinds and
// reactivates it.
func (s *Sim) AddAPIKey(apiKey, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[sha256.Sum256([]byte(apiKey))] = &boundKey{host: host, sub: s.subjectLocked(apiKey)}
}

// GenerateAPIKey creates, registers and returns a new API key bound to host.
func (s *Sim) GenerateAPIKey(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		k := "rvk_" + s.core.Rand(keyRandLen)
		h := sha256.Sum256([]byte(k))
		if _, taken := s.keys[h]; !taken {
			s.keys[h] = &boundKey{host: host, sub: s.subjectLocked(k)}
			return k
		}
	}
}

// RevokeAPIKey makes further exchanges with apiKey fail with 401. Tokens
// already issued stay valid until they expire. Unknown keys are ignored.
func (s *Sim) RevokeAPIKey(apiKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[sha256.Sum256([]byte(apiKey))]; k != nil {
		k.revoked = true
	}
}

// SetTokenLifetime changes the lifetime of tokens issued from now on;
// d <= 0 restores DefaultTokenLifetime.
func (s *Sim) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		d = DefaultTokenLifetime
	}
	s.lifetime = d
}

// TokenLifetime returns the lifetime of newly issued tokens.
func (s *Sim) TokenLifetime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lifetime
}

// SetOmitExp makes tokens issued from now on carry no exp claim (they never
// expire), so a client must fall back to its own refresh interval.
func (s *Sim) SetOmitExp(omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitExp = omit
}

// ValidToken reports whether jwt is a token this simulator signed (HS256),
// unexpired on the simulator's clock, and issued for host.
func (s *Sim) ValidToken(jwt, host string) bool { return s.checkToken(jwt, host) == "" }

// subjectLocked derives the token subject from the key without revealing it.
func (s *Sim) subjectLocked(apiKey string) string {
	m := hmac.New(sha256.New, s.signingKey)
	_, _ = io.WriteString(m, "sub:"+apiKey)
	return "apikey_" + hex.EncodeToString(m.Sum(nil))[:16]
}

// claims is the payload of issued tokens.
type claims struct {
	Sub  string `json:"sub"`
	Host string `json:"host"`
	Iat  int64  `json:"iat"`
	Exp  *int64 `json:"exp,omitempty"`
	Jti  string `json:"jti"`
}

var jwtHeader = b64(`{"alg":"HS256","typ":"JWT"}`)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// issue signs a token for k at now.
func (s *Sim) issueLocked(k *boundKey, now time.Time) string {
	c := claims{Sub: k.sub, Host: k.host, Iat: now.Unix(), Jti: s.core.Rand(jtiRandLen)}
	if !s.omitExp {
		exp := now.Add(s.lifetime).Unix()
		c.Exp = &exp
	}
	payload, err := json.Marshal(c)
	if err != nil {
		panic(errors.Join(errors.New("reviotest: encode claims"), err))
	}
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signing + "." + base64.RawURLEncoding.EncodeToString(s.sign(signing))
}

func (s *Sim) sign(signing string) []byte {
	m := hmac.New(sha256.New, s.signingKey)
	_, _ = io.WriteString(m, signing)
	return m.Sum(nil)
}

// Reasons shown in 401 messages; none echoes the token.
const (
	msgBadToken  = "Invalid token"
	msgExpired   = "Token has expired"
	msgWrongHost = "Token is not valid for this X-Revio-Host"
)

// checkToken returns "" for a valid token, else the reason shown in the 401
// message.
func (s *Sim) checkToken(jwt, host string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return msgBadToken
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "HS256" {
		return msgBadToken
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return msgBadToken
	}
	s.mu.Lock()
	want := s.sign(parts[0] + "." + parts[1])
	s.mu.Unlock()
	if !hmac.Equal(sig, want) {
		return msgBadToken
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c claims
	if err != nil || json.Unmarshal(pb, &c) != nil {
		return msgBadToken
	}
	if c.Exp != nil && !s.core.Now().Before(time.Unix(*c.Exp, 0)) {
		return msgExpired
	}
	if host == "" || c.Host != host {
		return msgWrongHost
	}
	return ""
}

// route names the endpoint of a path and, for billing paths, the id
// ("" for the collection); ok is false for an unknown billing sub-path.
func route(path string) (endpoint, id string, ok bool) {
	switch {
	case path == ExchangePath:
		return EndpointExchange, "", true
	case path == ContactsPath || strings.HasPrefix(path, ContactsPath+"/"):
		id, ok = subID(strings.TrimPrefix(path, ContactsPath))
		return EndpointContacts, id, ok
	case path == CustomersPath || strings.HasPrefix(path, CustomersPath+"/"):
		id, ok = subID(strings.TrimPrefix(path, CustomersPath))
		return EndpointCustomers, id, ok
	}
	return EndpointOther, "", false
}

func subID(rest string) (string, bool) {
	rest = strings.TrimPrefix(rest, "/")
	if strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// ServeHTTP serves the exchange and billing endpoints.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint, id, ok := route(r.URL.Path)
	faultStatus := 0
	if s.Faults().Before(w, r, s.core.Now(), func(w http.ResponseWriter, status, retryAfter int) {
		faultStatus = status
		writeFault(w, endpoint, status, retryAfter)
	}) {
		s.Counts().Inc(endpoint, faultStatus)
		return
	}
	switch {
	case endpoint == EndpointExchange:
		s.exchange(w, r)
	case endpoint == EndpointOther || !ok:
		s.reply(w, endpoint, http.StatusNotFound, errorBody{Error: "not_found", Message: "Not found"})
	default:
		s.billing(w, r, endpoint, id)
	}
}

func (s *Sim) reply(w http.ResponseWriter, endpoint string, status int, v any) {
	s.Counts().Inc(endpoint, status)
	writeJSON(w, status, v)
}

type errorBody = simcore.ErrorBody

func (s *Sim) exchange(w http.ResponseWriter, r *http.Request) {
	const ep = EndpointExchange
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.reply(w, ep, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Message: "Use POST"})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.reply(w, ep, http.StatusUnsupportedMediaType, errorBody{Error: "unsupported_media_type", Message: "Content-Type must be application/json"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.reply(w, ep, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: "Request body is unreadable or too large"})
		return
	}
	var req struct {
		APIKey *string `json:"apiKey"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.reply(w, ep, http.StatusBadRequest, errorBody{Error: "invalid_request", Message: `Request body must be JSON {"apiKey": "..."}`})
		return
	}
	var token string
	if req.APIKey != nil && *req.APIKey != "" {
		s.mu.Lock()
		if k := s.keys[sha256.Sum256([]byte(*req.APIKey))]; k != nil && !k.revoked {
			token = s.issueLocked(k, s.core.Now())
		}
		s.mu.Unlock()
	}
	if token == "" {
		s.reply(w, ep, http.StatusUnauthorized, errorBody{Error: "invalid_api_key", Message: "Invalid API key"})
		return
	}
	if s.Faults().TakeDrop() {
		s.Counts().Inc(ep, 0)
		simfault.Drop(w)
		return
	}
	type data struct {
		Token string `json:"token"`
	}
	s.reply(w, ep, http.StatusOK, struct {
		Data data `json:"data"`
	}{data{token}})
}

func (s *Sim) billing(w http.ResponseWriter, r *http.Request, ep, id string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.reply(w, ep, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Message: "Use GET"})
		return
	}
	if msg := s.authorize(r); msg != "" {
		s.reply(w, ep, http.StatusUnauthorized, errorBody{Error: "unauthorized", Message: msg})
		return
	}
	var (
		record any
		found  bool
		what   = "Contact"
	)
	switch {
	case ep == EndpointContacts && id == "":
		s.reply(w, ep, http.StatusOK, map[string]any{"data": seedContacts})
		return
	case ep == EndpointCustomers && id == "":
		s.reply(w, ep, http.StatusOK, map[string]any{"data": seedCustomers})
		return
	case ep == EndpointContacts:
		for _, c := range seedContacts {
			if strconv.Itoa(c.ContactID) == id {
				record, found = c, true
			}
		}
	default:
		what = "Customer"
		for _, c := range seedCustomers {
			if strconv.Itoa(c.CustomerID) == id {
				record, found = c, true
			}
		}
	}
	if !found {
		s.reply(w, ep, http.StatusNotFound, errorBody{Error: "not_found", Message: what + " not found"})
		return
	}
	s.reply(w, ep, http.StatusOK, map[string]any{"data": record})
}

// authorize returns "" when the request carries a valid Bearer token for its
// X-Revio-Host, else the 401 message (never echoing the token).
func (s *Sim) authorize(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "Missing or malformed Authorization: Bearer token"
	}
	host := r.Header.Get("X-Revio-Host")
	if host == "" {
		return "Missing X-Revio-Host header"
	}
	return s.checkToken(tok, host)
}

func writeJSON(w http.ResponseWriter, status int, v any) { simcore.WriteJSON(w, status, v) }

// faultBodies are the injected failures in Rev.io's words: a 401 from the
// exchange refuses the API key, from a billing call the token.
var faultBodies = map[bool]map[int]simcore.ErrorBody{
	true:  {http.StatusUnauthorized: {Error: "invalid_api_key", Message: "Invalid API key"}},
	false: {http.StatusUnauthorized: {Error: "unauthorized", Message: "Invalid token"}},
}

// writeFault writes an injected failure in Rev.io's error shape.
func writeFault(w http.ResponseWriter, endpoint string, status, retryAfter int) {
	simcore.WriteFault(w, status, retryAfter, faultBodies[endpoint == EndpointExchange])
}
