package testenv

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
)

// CountingListener starts a loopback HTTP server that counts the
// connections made to it and answers every request with a teapot: a host
// the manager must never reach. The caller closes it.
func CountingListener() (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	return srv, &conns
}
