package reevittest

import (
	"net/http"
	"net/http/httptest"
)

// Server is a Sim listening on a local address, like httptest.Server.
type Server struct {
	*Sim
	// URL is the base URL to give the client, e.g. "http://127.0.0.1:41234".
	URL string

	srv *httptest.Server
}

// NewServer starts a plain-HTTP server (clients need AllowHTTP).
func NewServer(opts ...Option) *Server {
	sim := New(opts...)
	srv := httptest.NewServer(sim)
	return &Server{Sim: sim, URL: srv.URL, srv: srv}
}

// NewTLSServer starts an HTTPS server; use Client for a client that trusts it.
func NewTLSServer(opts ...Option) *Server {
	sim := New(opts...)
	srv := httptest.NewTLSServer(sim)
	return &Server{Sim: sim, URL: srv.URL, srv: srv}
}

// Close shuts the server down and waits for outstanding requests.
func (s *Server) Close() { s.srv.Close() }

// CloseClientConnections closes every open connection to the server.
func (s *Server) CloseClientConnections() { s.srv.CloseClientConnections() }

// Client returns an HTTP client configured for the server (trusting its
// certificate when it uses TLS).
func (s *Server) Client() *http.Client { return s.srv.Client() }
