package controller

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

// DefaultAllowedEndpoints are the base URLs issuers may name when the
// manager's --allowed-endpoints flag is not set: the two official API hosts.
func DefaultAllowedEndpoints() []string {
	return []string{reevit.DefaultBaseURL, revio.DefaultBaseURL}
}

// endpointAllowed says whether the manager may send a credential to u: u
// must lie under one of the allowed base URLs, with the same scheme, the
// same host and port written the same way, and a path at or below the
// base's. Nothing passes for being loopback: --allow-http-endpoints only lets
// the API clients use an http:// URL that passes here. A URL with user
// info, a host or scheme spelt differently (case, trailing dot, IPv6 form,
// percent-encoding, an explicit default port) or a path with dot segments
// or encoded dots, slashes or backslashes is refused even when it would
// reach the same place: the list is compared as written.
func endpointAllowed(u string, allowed []string) bool {
	p, ok := plainURL(u)
	if !ok {
		return false
	}
	path := strings.TrimSuffix(p.EscapedPath(), "/")
	for _, a := range allowed {
		b, ok := plainURL(strings.TrimSuffix(a, "/"))
		if !ok || b.Scheme != p.Scheme || b.Host != p.Host {
			continue
		}
		base := strings.TrimSuffix(b.EscapedPath(), "/")
		if base == "" || path == base || strings.HasPrefix(path, base+"/") {
			return true
		}
	}
	return false
}

// plainURL parses an http or https URL written in one plain form: a
// lower-case scheme and host exactly as parsed (no percent-encoding, no
// trailing dot), no user info, and a path free of dot segments and of
// encoded dots, slashes and backslashes.
func plainURL(u string) (*url.URL, bool) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || p.Opaque != "" {
		return nil, false
	}
	if !strings.HasPrefix(u, p.Scheme+"://"+p.Host) || p.Host != strings.ToLower(p.Host) ||
		strings.HasSuffix(p.Hostname(), ".") || strings.ContainsAny(p.Host, "%\\") {
		return nil, false
	}
	raw := p.EscapedPath()
	if strings.Contains(raw, "\\") {
		return nil, false
	}
	low := strings.ToLower(raw)
	for _, enc := range []string{"%2e", "%2f", "%5c"} {
		if strings.Contains(low, enc) {
			return nil, false
		}
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == "." || seg == ".." {
			return nil, false
		}
	}
	return p, true
}

// endpointRefused is the failure for an issuer URL outside the allowed list.
func endpointRefused(what, u string, allowed []string) *failure {
	return &failure{Reason: v1alpha1.ReasonEndpointNotAllowed, Message: fmt.Sprintf(
		"%s names %s, which the manager may not call: allowed base URLs are %s (manager flag --allowed-endpoints)", what, u, strings.Join(allowed, ", "))}
}
