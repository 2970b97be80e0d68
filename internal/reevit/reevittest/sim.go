// Package reevittest is an in-memory Reevit API-key service for tests and
// local runs, in the style of net/http/httptest: Sim is an http.Handler,
// Server runs it on a local listener.
//
// It implements the contract in Reevit's authentication document
// (create/list/revoke keys, X-Reevit-Key and X-Org-Id authentication,
// scopes, 24-hour Idempotency-Key replay, the documented error bodies) and
// injects faults through simfault.
package reevittest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keywarden/keywarden/internal/simcore"
	"github.com/keywarden/keywarden/internal/simfault"
)

// Endpoint names used by Counts.
const (
	EndpointCreate = "create"
	EndpointList   = "list"
	EndpointRevoke = "revoke"
	EndpointOther  = "other"
)

// Scopes are the 16 scopes Reevit documents; a created key may carry only these.
var Scopes = []string{
	"connections:read", "connections:write",
	"payments:read", "payments:write",
	"fraud:read", "fraud:write",
	"webhooks:read", "webhooks:write",
	"subscriptions:read", "subscriptions:write",
	"invoices:read", "invoices:write",
	"api_keys:read", "api_keys:write",
	"workflows:read", "workflows:write",
}

// IdempotencyTTL is how long a stored mutation answer is replayed.
const IdempotencyTTL = 24 * time.Hour

// PrefixLen is how many leading characters of a key are listed as its prefix.
const PrefixLen = 13

const (
	keyRandLen = 32
	idRandLen  = 12
	maxBody    = 1 << 20
)

// Clock tells the simulator the time; k8s.io/utils/clock fakes satisfy it.
type Clock = simcore.Clock

// ClockFunc adapts a function to Clock.
type ClockFunc = simcore.ClockFunc

// Option configures a Sim.
type Option func(*Sim)

// WithClock sets the clock used for created_at, revoked_at, idempotency
// expiry and rate-limit windows. The default is the real clock.
func WithClock(c Clock) Option { return func(s *Sim) { s.core.SetClock(c) } }

// WithSeed makes generated ids and keys (and the failure-rate faults)
// reproducible. By default they are random.
func WithSeed(seed int64) Option { return func(s *Sim) { s.core.Seed(seed, &s.Instruments) } }

// KeyInfo describes a stored key. It never holds the full secret.
type KeyInfo struct {
	ID        string
	Name      string
	Env       string // "live" or "test"
	Prefix    string // the first 13 characters, e.g. "pfk_live_a1b2"
	Scopes    []string
	CreatedAt time.Time
	Revoked   bool
	RevokedAt time.Time
}

type storedKey struct {
	KeyInfo
	hash [32]byte // sha256 of the full key; the secret itself is not kept
}

type idemEntry struct {
	reqHash [32]byte
	status  int
	body    []byte
	stored  time.Time
}

type org struct {
	keys   []*storedKey            // creation order
	byHash map[[32]byte]*storedKey // active and revoked
	idem   map[string]*idemEntry
}

// Sim is an in-memory Reevit API. It implements http.Handler and is safe for
// concurrent use. Faults is consulted at the top of every request; Counts
// counts calls per endpoint ("create", "list", "revoke", "other"), status 0
// for dropped connections.
type Sim struct {
	// Instruments give the Sim its Faults and Counts.
	simcore.Instruments
	// core is the clock and the randomness (used under mu).
	core simcore.Base
	// inflight counts requests being served.
	inflight atomic.Int32

	mu       sync.Mutex
	orgs     map[string]*org
	bareList bool
}

// Server is a Sim listening on a local address, like httptest.Server: URL,
// Close, CloseClientConnections and Client come from the listener.
type Server struct {
	*Sim
	*simcore.Listener
}

// New returns an empty simulator; add organizations with AddOrg or SeedKey.
func New(opts ...Option) *Sim {
	s := &Sim{orgs: make(map[string]*org)}
	s.core.Init()
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewServer starts a plain-HTTP server (clients need AllowHTTP).
func NewServer(opts ...Option) *Server { return serve(New(opts...), false) }

// NewTLSServer starts an HTTPS server; use Client for a client that trusts it.
func NewTLSServer(opts ...Option) *Server { return serve(New(opts...), true) }

func serve(s *Sim, tls bool) *Server { return &Server{Sim: s, Listener: simcore.Serve(s, tls)} }

// InFlight is the number of requests being served now. A client that gives
// up on a request (its context cancelled) does not stop the server from
// finishing it: tests that move a fake clock after stopping a client wait
// for this to reach 0, as no real request spans a clock jump.
func (s *Sim) InFlight() int { return int(s.inflight.Load()) }

// SetListShape makes list answer a bare JSON array (bare) instead of
// {"data": [...]}.
func (s *Sim) SetListShape(bare bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bareList = bare
}

// AddOrg registers an organization; requests naming an unknown X-Org-Id are
// unauthorized. Adding an existing org does nothing.
func (s *Sim) AddOrg(orgID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgLocked(orgID)
}

func (s *Sim) orgLocked(orgID string) *org {
	o := s.orgs[orgID]
	if o == nil {
		o = &org{byHash: make(map[[32]byte]*storedKey), idem: make(map[string]*idemEntry)}
		s.orgs[orgID] = o
	}
	return o
}

// SeedKey creates an active key directly (for example the admin key a test
// hands to the operator), adding the org if needed. env is "live" or "test"
// ("" means "live"); scopes are not validated. It returns the key's id and
// full secret.
func (s *Sim) SeedKey(orgID, env, name string, scopes []string) (id, fullKey string) {
	if env == "" {
		env = "live"
	}
	if env != "live" && env != "test" {
		panic(fmt.Sprintf("reevittest: SeedKey env must be \"live\" or \"test\", got %q", env))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, full := s.newKeyLocked(s.orgLocked(orgID), env, name, scopes, s.now())
	return k.ID, full
}

// newKeyLocked creates and stores an active key.
func (s *Sim) newKeyLocked(o *org, env, name string, scopes []string, now time.Time) (*storedKey, string) {
	var full string
	for {
		full = "pfk_" + env + "_" + s.core.Rand(keyRandLen)
		if _, taken := o.byHash[sha256.Sum256([]byte(full))]; !taken {
			break
		}
	}
	var id string
	for {
		id = "key_" + s.core.Rand(idRandLen)
		if o.find(id) == nil {
			break
		}
	}
	k := &storedKey{
		KeyInfo: KeyInfo{ID: id, Name: name, Env: env, Prefix: full[:PrefixLen],
			Scopes: slices.Clone(scopes), CreatedAt: now},
		hash: sha256.Sum256([]byte(full)),
	}
	o.keys = append(o.keys, k)
	o.byHash[k.hash] = k
	return k, full
}

func (o *org) find(id string) *storedKey {
	for _, k := range o.keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// active returns the org's active key with this secret, or nil.
func (o *org) active(fullKey string) *storedKey {
	k := o.byHash[sha256.Sum256([]byte(fullKey))]
	if k == nil || k.Revoked {
		return nil
	}
	return k
}

// now is the clock's time in UTC, truncated to seconds as the API reports it.
func (s *Sim) now() time.Time { return s.core.Now().UTC().Truncate(time.Second) }

// Keys returns every key of the org, revoked ones included, in creation order.
func (s *Sim) Keys(orgID string) []KeyInfo { return s.keyInfos(orgID, true) }

// ActiveKeys returns the org's keys that are not revoked, in creation order.
func (s *Sim) ActiveKeys(orgID string) []KeyInfo { return s.keyInfos(orgID, false) }

func (s *Sim) keyInfos(orgID string, withRevoked bool) []KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		return nil
	}
	var out []KeyInfo
	for _, k := range o.keys {
		if k.Revoked && !withRevoked {
			continue
		}
		ki := k.KeyInfo
		ki.Scopes = slices.Clone(ki.Scopes)
		out = append(out, ki)
	}
	return out
}

// Authenticate reports whether fullKey is an active key of the org, and its id.
func (s *Sim) Authenticate(orgID, fullKey string) (id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		return "", false
	}
	if k := o.active(fullKey); k != nil {
		return k.ID, true
	}
	return "", false
}

// Revoke revokes a key out of band, as a person in Reevit's dashboard would.
// It reports whether an active key was revoked.
func (s *Sim) Revoke(orgID, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		return false
	}
	k := o.find(id)
	if k == nil || k.Revoked {
		return false
	}
	k.Revoked, k.RevokedAt = true, s.now()
	return true
}

// statusWriter remembers the status written, for Counts.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (and so simfault.Drop) reach the
// underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

const keysPath = "/v1/api-keys"

// route names the endpoint a request is for, and the key id for revoke.
func route(r *http.Request) (endpoint, id string) {
	switch {
	case r.URL.Path == keysPath && r.Method == http.MethodPost:
		return EndpointCreate, ""
	case r.URL.Path == keysPath && r.Method == http.MethodGet:
		return EndpointList, ""
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, keysPath+"/"):
		id := strings.TrimPrefix(r.URL.Path, keysPath+"/")
		if id != "" && !strings.Contains(id, "/") {
			return EndpointRevoke, id
		}
	}
	return EndpointOther, ""
}

// ServeHTTP serves the Reevit API-key endpoints.
func (s *Sim) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	endpoint, id := route(r)
	w := &statusWriter{ResponseWriter: rw}
	dropped := false
	defer func() {
		if !dropped {
			s.Counts().Inc(endpoint, w.status)
		}
	}()

	if s.Faults().Before(w, r, s.core.Now(), writeFault) {
		return
	}

	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "request body is unreadable or larger than 1 MiB")
			return
		}
	}

	res, commit := s.handle(r, endpoint, id, body)
	if commit && s.Faults().TakeDrop() {
		// Count before the hang-up: the client sees the dropped connection
		// as soon as Drop closes it, and may look at the counts at once.
		dropped = true
		s.Counts().Inc(endpoint, 0)
		simfault.Drop(w)
		return
	}
	writeRaw(w, res.status, res.body)
}

// result is a complete answer.
type result struct {
	status int
	body   []byte
}

// handle runs one request under the lock. commit is true when a mutation
// took effect just now (not a replay), so the answer may be dropped.
func (s *Sim) handle(r *http.Request, endpoint, id string, body []byte) (res result, commit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()

	o := s.orgs[r.Header.Get("X-Org-Id")]
	var caller *storedKey
	if o != nil {
		caller = o.active(r.Header.Get("X-Reevit-Key"))
	}
	if caller == nil {
		return errResult(http.StatusUnauthorized, "unauthorized", "Invalid or missing API key"), false
	}

	switch endpoint {
	case EndpointOther:
		if r.URL.Path == keysPath || strings.HasPrefix(r.URL.Path, keysPath+"/") {
			return errResult(http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed"), false
		}
		return errResult(http.StatusNotFound, "not_found", "Not found"), false
	case EndpointList:
		if !slices.Contains(caller.Scopes, "api_keys:read") {
			return missingScope("api_keys:read"), false
		}
		return s.listLocked(o), false
	}

	// Mutations: create and revoke.
	if !slices.Contains(caller.Scopes, "api_keys:write") {
		return missingScope("api_keys:write"), false
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if idemKey == "" {
		return errResult(http.StatusBadRequest, "bad_request", "Idempotency-Key header is required for mutations"), false
	}
	reqHash := requestHash(r.Method, r.URL.Path, body)
	if e := o.idem[idemKey]; e != nil && now.Before(e.stored.Add(IdempotencyTTL)) {
		if e.reqHash != reqHash {
			return errResult(http.StatusUnprocessableEntity, "idempotency_key_reused",
				"Idempotency-Key was already used with a different request"), false
		}
		return result{status: e.status, body: e.body}, false
	}
	s.expireLocked(o, now)

	if endpoint == EndpointCreate {
		res, commit = s.createLocked(o, caller, body, now)
	} else {
		res, commit = s.revokeLocked(o, id, now)
	}
	o.idem[idemKey] = &idemEntry{reqHash: reqHash, status: res.status, body: res.body, stored: now}
	return res, commit
}

func (s *Sim) expireLocked(o *org, now time.Time) {
	for k, e := range o.idem {
		if !now.Before(e.stored.Add(IdempotencyTTL)) {
			delete(o.idem, k)
		}
	}
}

func requestHash(method, path string, body []byte) [32]byte {
	h := sha256.New()
	_, _ = io.WriteString(h, method+"\n"+path+"\n")
	_, _ = h.Write(body)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

type createRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

type createResponse struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Key       string   `json:"key"`
	Scopes    []string `json:"scopes"`
	CreatedAt string   `json:"created_at"`
}

type listItem struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Prefix    string   `json:"prefix"`
	Scopes    []string `json:"scopes"`
	CreatedAt string   `json:"created_at"`
}

type revokeResponse struct {
	ID        string `json:"id"`
	Revoked   bool   `json:"revoked"`
	RevokedAt string `json:"revoked_at"`
}

func (s *Sim) createLocked(o *org, caller *storedKey, body []byte, now time.Time) (result, bool) {
	var req createRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return errResult(http.StatusBadRequest, "bad_request", "request body must be a JSON object"), false
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return errResult(http.StatusBadRequest, "bad_request", "name is required"), false
	}
	if len(req.Scopes) == 0 {
		return errResult(http.StatusBadRequest, "bad_request", "scopes must not be empty"), false
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(Scopes, sc) {
			return errResult(http.StatusBadRequest, "bad_request", "unknown scope: "+strconv.Quote(sc)), false
		}
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(caller.Scopes, sc) {
			return missingScope(sc), false
		}
	}
	k, full := s.newKeyLocked(o, caller.Env, req.Name, req.Scopes, now)
	return jsonResult(http.StatusCreated, createResponse{
		ID: k.ID, Name: k.Name, Key: full, Scopes: slices.Clone(k.Scopes), CreatedAt: formatTime(k.CreatedAt),
	}), true
}

func (s *Sim) revokeLocked(o *org, id string, now time.Time) (result, bool) {
	k := o.find(id)
	if k == nil || k.Revoked {
		return errResult(http.StatusNotFound, "not_found", "API key not found"), false
	}
	k.Revoked, k.RevokedAt = true, now
	return jsonResult(http.StatusOK, revokeResponse{ID: k.ID, Revoked: true, RevokedAt: formatTime(now)}), true
}

func (s *Sim) listLocked(o *org) result {
	items := []listItem{}
	for _, k := range o.keys {
		if k.Revoked {
			continue
		}
		items = append(items, listItem{ID: k.ID, Name: k.Name, Prefix: k.Prefix,
			Scopes: slices.Clone(k.Scopes), CreatedAt: formatTime(k.CreatedAt)})
	}
	if s.bareList {
		return jsonResult(http.StatusOK, items)
	}
	return jsonResult(http.StatusOK, struct {
		Data []listItem `json:"data"`
	}{items})
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func missingScope(scope string) result {
	return errResult(http.StatusForbidden, "forbidden", "API key missing required scope: "+scope)
}

func errResult(status int, code, msg string) result {
	return jsonResult(status, simcore.ErrorBody{Error: code, Message: msg})
}

func jsonResult(status int, v any) result { return result{status: status, body: simcore.EncodeJSON(v)} }

func writeRaw(w http.ResponseWriter, status int, body []byte) { simcore.WriteRaw(w, status, body) }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	simcore.WriteJSON(w, status, simcore.ErrorBody{Error: code, Message: msg})
}

// faultBodies are the injected failures in Reevit's documented words.
var faultBodies = map[int]simcore.ErrorBody{
	http.StatusUnauthorized: {Error: "unauthorized", Message: "Invalid or missing API key"},
	http.StatusForbidden:    {Error: "forbidden", Message: "API key missing required scope"},
}

// writeFault writes an injected failure in Reevit's error shape.
func writeFault(w http.ResponseWriter, status, retryAfter int) {
	simcore.WriteFault(w, status, retryAfter, faultBodies)
}
