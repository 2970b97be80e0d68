package apisim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/keywarden/keywarden/internal/simfault"
)

// KeyInfo is a Reevit key as the control API lists it: never the secret.
type KeyInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Env       string     `json:"env"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"createdAt"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// Counts is the call count of each simulator: endpoint -> HTTP status ->
// calls (status 0 counts dropped connections). Reevit's endpoints are
// "create", "list", "revoke", "other"; Rev.io's are "exchange", "contacts",
// "customers", "other".
type Counts struct {
	Reevit map[string]map[int]int `json:"reevit"`
	Revio  map[string]map[int]int `json:"revio"`
}

// Request and answer bodies of the control API.
type (
	// AuthenticateRequest is the body of POST /reevit/authenticate.
	AuthenticateRequest struct {
		OrgID string `json:"orgId"`
		Key   string `json:"key"`
	}
	// AuthenticateResponse answers POST /reevit/authenticate.
	AuthenticateResponse struct {
		OK bool   `json:"ok"`
		ID string `json:"id,omitempty"`
	}
	// RevokeRequest is the body of POST /reevit/revoke.
	RevokeRequest struct {
		OrgID string `json:"orgId"`
		ID    string `json:"id"`
	}
	// SeedKeyRequest is the body of POST /reevit/keys.
	SeedKeyRequest struct {
		OrgID  string   `json:"orgId"`
		Env    string   `json:"env"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	// SeedKeyResponse answers POST /reevit/keys; it carries a full key.
	SeedKeyResponse struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	// ValidateRequest is the body of POST /revio/validate; Host defaults
	// to the configured Rev.io host.
	ValidateRequest struct {
		Token string `json:"token"`
		Host  string `json:"host,omitempty"`
	}
	// TokenLifetime is the body of GET/PUT /revio/token-lifetime, e.g.
	// {"lifetime":"30s"}.
	TokenLifetime struct {
		Lifetime simfault.Duration `json:"lifetime"`
	}
	// OmitExp is the body of PUT /revio/omit-exp.
	OmitExp struct {
		Omit bool `json:"omit"`
	}
	// RevioKeyRequest is the body of POST /revio/api-keys (Host defaults
	// to the configured host) and POST /revio/api-keys/revoke.
	RevioKeyRequest struct {
		Host   string `json:"host,omitempty"`
		APIKey string `json:"apiKey,omitempty"`
	}
	// OKResponse is the answer of endpoints that report a yes/no.
	OKResponse struct {
		OK bool `json:"ok"`
	}
	// ErrorResponse is the answer of a failed control request.
	ErrorResponse struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
)

const maxControlBody = 1 << 20

// controlHandler serves the control API. It never logs and never answers a
// full key, except SeedKeyResponse (the caller asked for a new key).
func (s *Server) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, OKResponse{OK: true})
	})

	mux.HandleFunc("GET /reevit/keys", func(w http.ResponseWriter, r *http.Request) {
		org := cmp.Or(r.URL.Query().Get("org"), s.creds.OrgID)
		out := []KeyInfo{}
		for _, k := range s.reevit.Keys(org) {
			ki := KeyInfo{ID: k.ID, Name: k.Name, Env: k.Env, Prefix: k.Prefix, Scopes: slices.Clone(k.Scopes),
				CreatedAt: k.CreatedAt, Revoked: k.Revoked}
			if k.Revoked {
				t := k.RevokedAt
				ki.RevokedAt = &t
			}
			out = append(out, ki)
		}
		writeJSON(w, http.StatusOK, out)
	})
	handleJSON(mux, "POST /reevit/keys", func(w http.ResponseWriter, req SeedKeyRequest) {
		req.OrgID = cmp.Or(req.OrgID, s.creds.OrgID)
		req.Env = cmp.Or(req.Env, "test")
		if req.Env != "test" && req.Env != "live" {
			badRequest(w, `env must be "test" or "live"`)
			return
		}
		req.Name = cmp.Or(req.Name, "apisim seeded key")
		id, key := s.reevit.SeedKey(req.OrgID, req.Env, req.Name, req.Scopes)
		writeJSON(w, http.StatusCreated, SeedKeyResponse{ID: id, Key: key})
	})
	handleJSON(mux, "POST /reevit/authenticate", func(w http.ResponseWriter, req AuthenticateRequest) {
		key := req.Key
		if s.adminAlias != "" && key == s.adminAlias {
			key = s.adminSeeded
		}
		id, ok := s.reevit.Authenticate(cmp.Or(req.OrgID, s.creds.OrgID), key)
		writeJSON(w, http.StatusOK, AuthenticateResponse{OK: ok, ID: id})
	})
	handleJSON(mux, "POST /reevit/revoke", func(w http.ResponseWriter, req RevokeRequest) {
		writeJSON(w, http.StatusOK, OKResponse{OK: s.reevit.Revoke(cmp.Or(req.OrgID, s.creds.OrgID), req.ID)})
	})
	s.faultRoutes(mux, "/reevit/faults", s.reevit.Faults())
	s.faultRoutes(mux, "/revio/faults", s.revio.Faults())

	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, Counts{Reevit: s.reevit.Counts().Snapshot(), Revio: s.revio.Counts().Snapshot()})
	})
	mux.HandleFunc("POST /counts/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.reevit.Counts().Reset()
		s.revio.Counts().Reset()
		writeJSON(w, http.StatusOK, OKResponse{OK: true})
	})

	handleJSON(mux, "POST /revio/validate", func(w http.ResponseWriter, req ValidateRequest) {
		writeJSON(w, http.StatusOK, OKResponse{OK: s.revio.ValidToken(req.Token, cmp.Or(req.Host, s.creds.RevioHost))})
	})
	mux.HandleFunc("GET /revio/token-lifetime", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, TokenLifetime{Lifetime: simfault.Duration(s.revio.TokenLifetime())})
	})
	handleJSON(mux, "PUT /revio/token-lifetime", func(w http.ResponseWriter, req TokenLifetime) {
		if req.Lifetime <= 0 {
			badRequest(w, "lifetime must be a positive duration such as \"30s\"")
			return
		}
		s.revio.SetTokenLifetime(time.Duration(req.Lifetime))
		writeJSON(w, http.StatusOK, TokenLifetime{Lifetime: simfault.Duration(s.revio.TokenLifetime())})
	})
	handleJSON(mux, "PUT /revio/omit-exp", func(w http.ResponseWriter, req OmitExp) {
		s.revio.SetOmitExp(req.Omit)
		writeJSON(w, http.StatusOK, req)
	})
	handleJSON(mux, "POST /revio/api-keys", func(w http.ResponseWriter, req RevioKeyRequest) {
		host := cmp.Or(req.Host, s.creds.RevioHost)
		writeJSON(w, http.StatusCreated, RevioKeyRequest{Host: host, APIKey: s.revio.GenerateAPIKey(host)})
	})
	handleJSON(mux, "POST /revio/api-keys/revoke", func(w http.ResponseWriter, req RevioKeyRequest) {
		s.revio.RevokeAPIKey(req.APIKey)
		writeJSON(w, http.StatusOK, OKResponse{OK: true})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "not_found", Message: "unknown control endpoint"})
	})
	return mux
}

func (s *Server) faultRoutes(mux *http.ServeMux, path string, inj *simfault.Injector) {
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, inj.Settings())
	})
	handleJSON(mux, "PUT "+path, func(w http.ResponseWriter, set simfault.Settings) {
		if set.FailureRate < 0 || set.FailureRate > 1 {
			badRequest(w, "failureRate must be within [0, 1]")
			return
		}
		inj.Apply(set)
		writeJSON(w, http.StatusOK, inj.Settings())
	})
}

// handleJSON serves pattern with serve, called with the request's JSON body
// decoded as a Req; a body that is not one is answered 400 (readJSON).
func handleJSON[Req any](mux *http.ServeMux, pattern string, serve func(w http.ResponseWriter, req Req)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !readJSON(w, r, &req) {
			return
		}
		serve(w, req)
	})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// Decoding errors name fields and types, never the values sent.
		badRequest(w, fmt.Sprintf("body must be a JSON object of the documented fields: %v", err))
		return false
	}
	return true
}

func badRequest(w http.ResponseWriter, msg string) {
	const status = http.StatusBadRequest
	writeJSON(w, status, ErrorResponse{Error: "bad_request", Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal_error","message":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
