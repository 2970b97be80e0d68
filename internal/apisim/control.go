package apisim

import (
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
		org := r.URL.Query().Get("org")
		if org == "" {
			org = s.creds.OrgID
		}
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
	mux.HandleFunc("POST /reevit/keys", func(w http.ResponseWriter, r *http.Request) {
		var req SeedKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.OrgID == "" {
			req.OrgID = s.creds.OrgID
		}
		if req.Env == "" {
			req.Env = "test"
		}
		if req.Env != "test" && req.Env != "live" {
			badRequest(w, `env must be "test" or "live"`)
			return
		}
		if req.Name == "" {
			req.Name = "apisim seeded key"
		}
		id, key := s.reevit.SeedKey(req.OrgID, req.Env, req.Name, req.Scopes)
		writeJSON(w, http.StatusCreated, SeedKeyResponse{ID: id, Key: key})
	})
	mux.HandleFunc("POST /reevit/authenticate", func(w http.ResponseWriter, r *http.Request) {
		var req AuthenticateRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.OrgID == "" {
			req.OrgID = s.creds.OrgID
		}
		key := req.Key
		if s.adminAlias != "" && key == s.adminAlias {
			key = s.adminSeeded
		}
		id, ok := s.reevit.Authenticate(req.OrgID, key)
		writeJSON(w, http.StatusOK, AuthenticateResponse{OK: ok, ID: id})
	})
	mux.HandleFunc("POST /reevit/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req RevokeRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.OrgID == "" {
			req.OrgID = s.creds.OrgID
		}
		writeJSON(w, http.StatusOK, OKResponse{OK: s.reevit.Revoke(req.OrgID, req.ID)})
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

	mux.HandleFunc("POST /revio/validate", func(w http.ResponseWriter, r *http.Request) {
		var req ValidateRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.Host == "" {
			req.Host = s.creds.RevioHost
		}
		writeJSON(w, http.StatusOK, OKResponse{OK: s.revio.ValidToken(req.Token, req.Host)})
	})
	mux.HandleFunc("GET /revio/token-lifetime", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, TokenLifetime{Lifetime: simfault.Duration(s.revio.TokenLifetime())})
	})
	mux.HandleFunc("PUT /revio/token-lifetime", func(w http.ResponseWriter, r *http.Request) {
		var req TokenLifetime
		if !readJSON(w, r, &req) {
			return
		}
		if req.Lifetime <= 0 {
			badRequest(w, "lifetime must be a positive duration such as \"30s\"")
			return
		}
		s.revio.SetTokenLifetime(time.Duration(req.Lifetime))
		writeJSON(w, http.StatusOK, TokenLifetime{Lifetime: simfault.Duration(s.revio.TokenLifetime())})
	})
	mux.HandleFunc("PUT /revio/omit-exp", func(w http.ResponseWriter, r *http.Request) {
		var req OmitExp
		if !readJSON(w, r, &req) {
			return
		}
		s.revio.SetOmitExp(req.Omit)
		writeJSON(w, http.StatusOK, req)
	})
	mux.HandleFunc("POST /revio/api-keys", func(w http.ResponseWriter, r *http.Request) {
		var req RevioKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.Host == "" {
			req.Host = s.creds.RevioHost
		}
		writeJSON(w, http.StatusCreated, RevioKeyRequest{Host: req.Host, APIKey: s.revio.GenerateAPIKey(req.Host)})
	})
	mux.HandleFunc("POST /revio/api-keys/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req RevioKeyRequest
		if !readJSON(w, r, &req) {
			return
		}
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
	mux.HandleFunc("PUT "+path, func(w http.ResponseWriter, r *http.Request) {
		var set simfault.Settings
		if !readJSON(w, r, &set) {
			return
		}
		if set.FailureRate < 0 || set.FailureRate > 1 {
			badRequest(w, "failureRate must be within [0, 1]")
			return
		}
		inj.Apply(set)
		writeJSON(w, http.StatusOK, inj.Settings())
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
