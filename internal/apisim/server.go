// Package apisim runs both API simulators (Reevit's API-key service and
// Rev.io's exchange and billing API) as one local process, with a JSON
// control API on a loopback address that tests, the e2e suite and the
// benchmarks use to inspect and steer them. cmd/apisim is its command; the
// control API's Go client is Client.
package apisim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keywarden/keywarden/internal/reevit/reevittest"
	"github.com/keywarden/keywarden/internal/revio/reviotest"
	"github.com/keywarden/keywarden/internal/simfault"
)

// Defaults used for empty Config fields (and by cmd/apisim's flags).
const (
	DefaultReevitAddr    = "127.0.0.1:8481"
	DefaultRevioAddr     = "127.0.0.1:8482"
	DefaultControlAddr   = "127.0.0.1:8483"
	DefaultOrgID         = "org_demo"
	DefaultAdminEnv      = "test"
	DefaultRevioHost     = "acme.psarev.io"
	DefaultTokenLifetime = time.Hour
)

// AdminKeyName is the name of the generated Reevit admin key.
const AdminKeyName = "apisim admin"

// Config configures Start. Empty fields take the defaults above.
type Config struct {
	// ReevitAddr, RevioAddr and ControlAddr are listen addresses; port 0
	// picks a free port. ControlAddr must be a loopback address.
	ReevitAddr, RevioAddr, ControlAddr string
	// TLSDir, when set, makes the Reevit and Rev.io listeners serve HTTPS
	// with a certificate for localhost/127.0.0.1/::1 (and the listen hosts)
	// signed by a throwaway CA written to TLSDir/ca.crt. The control API
	// stays plain HTTP on loopback.
	TLSDir string
	// OrgID is the Reevit organization of the admin key.
	OrgID string
	// AdminKey, when set, is accepted as the admin key (env taken from its
	// pfk_live_/pfk_test_ prefix); otherwise one is generated in AdminEnv.
	// Either way it carries all 16 documented scopes.
	AdminKey string
	// AdminEnv is "test" or "live".
	AdminEnv string
	// RevioAPIKey, when set, is registered; otherwise one is generated.
	RevioAPIKey string
	// RevioHost is the X-Revio-Host the Rev.io key is bound to.
	RevioHost string
	// TokenLifetime is the lifetime of issued Rev.io tokens.
	TokenLifetime time.Duration
	// CredentialsFile, when set, receives the Credentials as JSON (0600).
	CredentialsFile string
	// Faults is applied to both simulators at start.
	Faults simfault.Settings
	// Seed, when non-zero, makes generated keys, ids and failure-rate
	// faults reproducible.
	Seed int64
	// Log receives one line per listener (its URL) and per file written;
	// never a key. Nil discards.
	Log io.Writer
}

// Server is a running apisim.
type Server struct {
	reevit *reevittest.Sim
	revio  *reviotest.Sim
	creds  Credentials
	caPEM  []byte

	// adminAlias is a caller-chosen admin key, translated to the seeded one
	// (reevittest only stores keys it generates).
	adminAlias, adminSeeded string

	servers  []*http.Server
	errc     chan error
	stopOnce sync.Once
}

// Start creates both simulators, seeds the admin and Rev.io keys, starts the
// three listeners, and writes the credentials file. It returns once every
// listener accepts connections.
func Start(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	adminEnv := cfg.AdminEnv
	switch {
	case strings.HasPrefix(cfg.AdminKey, "pfk_live_"):
		adminEnv = "live"
	case strings.HasPrefix(cfg.AdminKey, "pfk_test_"):
		adminEnv = "test"
	}
	if adminEnv != "live" && adminEnv != "test" {
		return nil, fmt.Errorf("admin env %q: want \"test\" or \"live\"", adminEnv)
	}
	if cfg.TokenLifetime <= 0 {
		return nil, fmt.Errorf("token lifetime %v: must be positive", cfg.TokenLifetime)
	}

	var reevitOpts []reevittest.Option
	revioOpts := []reviotest.Option{reviotest.WithTokenLifetime(cfg.TokenLifetime)}
	if cfg.Seed != 0 {
		reevitOpts = append(reevitOpts, reevittest.WithSeed(cfg.Seed))
		revioOpts = append(revioOpts, reviotest.WithSeed(cfg.Seed))
	}
	s := &Server{
		reevit: reevittest.New(reevitOpts...),
		revio:  reviotest.New(revioOpts...),
		errc:   make(chan error, 3),
	}
	s.reevit.Faults().Apply(cfg.Faults)
	s.revio.Faults().Apply(cfg.Faults)

	id, key := s.reevit.SeedKey(cfg.OrgID, adminEnv, AdminKeyName, reevittest.Scopes)
	s.creds = Credentials{OrgID: cfg.OrgID, AdminKey: key, AdminKeyID: id, RevioHost: cfg.RevioHost}
	if cfg.AdminKey != "" {
		s.adminAlias, s.adminSeeded = cfg.AdminKey, key
		s.creds.AdminKey = cfg.AdminKey
	}
	if cfg.RevioAPIKey != "" {
		s.revio.AddAPIKey(cfg.RevioAPIKey, cfg.RevioHost)
		s.creds.RevioAPIKey = cfg.RevioAPIKey
	} else {
		s.creds.RevioAPIKey = s.revio.GenerateAPIKey(cfg.RevioHost)
	}

	if err := s.listen(cfg); err != nil {
		s.stop()
		return nil, err
	}
	if cfg.CredentialsFile != "" {
		if err := WriteCredentials(cfg.CredentialsFile, s.creds); err != nil {
			s.stop()
			return nil, err
		}
		logf(cfg.Log, "apisim: credentials written to %s", cfg.CredentialsFile)
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&cfg.ReevitAddr, DefaultReevitAddr)
	def(&cfg.RevioAddr, DefaultRevioAddr)
	def(&cfg.ControlAddr, DefaultControlAddr)
	def(&cfg.OrgID, DefaultOrgID)
	def(&cfg.AdminEnv, DefaultAdminEnv)
	def(&cfg.RevioHost, DefaultRevioHost)
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	return cfg
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		_, _ = fmt.Fprintf(w, format+"\n", args...)
	}
}

// listen binds the three listeners and serves them in the background.
func (s *Server) listen(cfg Config) error {
	ctl, err := net.Listen("tcp", cfg.ControlAddr)
	if err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	if ta, ok := ctl.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		_ = ctl.Close()
		return fmt.Errorf("control address %s: must be a loopback address", cfg.ControlAddr)
	}
	reevitLn, err := net.Listen("tcp", cfg.ReevitAddr)
	if err != nil {
		_ = ctl.Close()
		return fmt.Errorf("reevit listener: %w", err)
	}
	revioLn, err := net.Listen("tcp", cfg.RevioAddr)
	if err != nil {
		_ = ctl.Close()
		_ = reevitLn.Close()
		return fmt.Errorf("revio listener: %w", err)
	}

	scheme := "http"
	var tlsCfg *tls.Config
	if cfg.TLSDir != "" {
		cert, caPEM, err := selfSigned([]string{hostOf(cfg.ReevitAddr), hostOf(cfg.RevioAddr)}, time.Now())
		if err == nil {
			s.creds.CAFile, err = writeCA(cfg.TLSDir, caPEM)
		}
		if err != nil {
			_ = ctl.Close()
			_ = reevitLn.Close()
			_ = revioLn.Close()
			return fmt.Errorf("tls: %w", err)
		}
		s.caPEM = caPEM
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
		logf(cfg.Log, "apisim: CA certificate written to %s", s.creds.CAFile)
	}

	s.creds.ReevitURL = scheme + "://" + urlHost(reevitLn.Addr())
	s.creds.RevioURL = scheme + "://" + urlHost(revioLn.Addr())
	s.creds.ControlURL = "http://" + urlHost(ctl.Addr())

	s.serve(reevitLn, s.reevitHandler(), tlsCfg)
	s.serve(revioLn, s.revio, tlsCfg)
	s.serve(ctl, s.controlHandler(), nil)
	logf(cfg.Log, "apisim: reevit listening on %s", s.creds.ReevitURL)
	logf(cfg.Log, "apisim: revio listening on %s", s.creds.RevioURL)
	logf(cfg.Log, "apisim: control listening on %s", s.creds.ControlURL)
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

// urlHost is the host:port to reach a listener at: an unspecified address
// (0.0.0.0, ::) is reached on 127.0.0.1.
func urlHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

func (s *Server) serve(ln net.Listener, h http.Handler, tlsCfg *tls.Config) {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone() // net/http configures each server's copy
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, TLSConfig: tlsCfg}
	s.servers = append(s.servers, srv)
	go func() {
		var err error
		if tlsCfg != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
}

// reevitHandler serves the Reevit simulator, accepting a caller-chosen admin
// key as the seeded one.
func (s *Server) reevitHandler() http.Handler {
	if s.adminAlias == "" {
		return s.reevit
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Reevit-Key") == s.adminAlias {
			r = r.Clone(r.Context())
			r.Header.Set("X-Reevit-Key", s.adminSeeded)
		}
		s.reevit.ServeHTTP(w, r)
	})
}

// Credentials returns the keys and URLs of the running simulators.
func (s *Server) Credentials() Credentials { return s.creds }

// ReevitURL returns the Reevit simulator's base URL.
func (s *Server) ReevitURL() string { return s.creds.ReevitURL }

// RevioURL returns the Rev.io simulator's base URL.
func (s *Server) RevioURL() string { return s.creds.RevioURL }

// ControlURL returns the control API's base URL.
func (s *Server) ControlURL() string { return s.creds.ControlURL }

// CACertPEM returns the CA certificate of the HTTPS listeners, or nil when
// serving plain HTTP.
func (s *Server) CACertPEM() []byte { return s.caPEM }

// Reevit returns the Reevit simulator, for in-process tests.
func (s *Server) Reevit() *reevittest.Sim { return s.reevit }

// Revio returns the Rev.io simulator, for in-process tests.
func (s *Server) Revio() *reviotest.Sim { return s.revio }

// Err receives an error if a listener fails while serving.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting connections and waits, until ctx ends, for
// requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.stopOnce.Do(func() {
		for _, srv := range s.servers {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				_ = srv.Close()
			}
		}
	})
	return errors.Join(errs...)
}

// Close stops the listeners at once.
func (s *Server) Close() error {
	s.stop()
	return nil
}

func (s *Server) stop() {
	s.stopOnce.Do(func() {
		for _, srv := range s.servers {
			_ = srv.Close()
		}
	})
}
