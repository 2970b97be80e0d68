package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keywarden/keywarden/internal/testenv"
)

// The API server's audit log is the benchmark's source for kube API
// requests: every request of the manager's user, with its verb, resource,
// subresource, object name and the time it was received. The policy logs
// metadata only (never a Secret's data) and one line per request (the
// RequestReceived stage is omitted; watches are counted when they start).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// auditArgs are the kube-apiserver flags that write the audit log.
func auditArgs(dir string) (policy, log string, args []string, err error) {
	policy = filepath.Join(dir, "audit-policy.yaml")
	log = filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return "", "", nil, err
	}
	return policy, log, []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + log,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		// kube-apiserver rotates the log at 100 MB by default, which the
		// follower (reading the file it opened) would not notice: a scale
		// run writes several hundred MB.
		"--audit-log-maxsize=100000",
	}, nil
}

// request is one kube API request of the manager, from the audit log.
type request struct {
	At       time.Time // requestReceivedTimestamp
	Verb     string
	Resource string // resource, or resource/subresource
	NS, Name string
	Code     int
	// UserAgent tells the replicas of a -sharded run apart.
	UserAgent string
}

// isWrite reports whether the verb changes state.
func (r request) isWrite() bool {
	switch r.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// key is "verb resource", as the tables print it.
func (r request) key() string { return r.Verb + " " + r.Resource }

type auditLine struct {
	AuditID string `json:"auditID"`
	Stage   string `json:"stage"`
	Verb    string `json:"verb"`
	User    struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestURI               string    `json:"requestURI"`
	UserAgent                string    `json:"userAgent"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// auditLog follows the audit log file and keeps the manager's requests.
type auditLog struct {
	path string
	user string

	mu       sync.Mutex
	reqs     []request
	last     time.Time // newest request seen from the user
	lines    int
	badLines int
	agents   map[string]string // interned user agents
	// leaseRenewals counts the leader-election Lease requests, which the
	// tables and the idle detection leave out: a leader renews every
	// retry period whatever the objects do.
	leaseRenewals int
}

// intern keeps one copy of each user agent (a few, on every request).
func (a *auditLog) intern(s string) string {
	if a.agents == nil {
		a.agents = map[string]string{}
	}
	if v, ok := a.agents[s]; ok {
		return v
	}
	a.agents[s] = s
	return s
}

func newAuditLog(path, user string) *auditLog { return &auditLog{path: path, user: user} }

// follow reads the file as it grows until ctx ends.
func (a *auditLog) follow(ctx context.Context) {
	var (
		f       *os.File
		r       *bufio.Reader
		partial []byte
	)
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if f == nil {
			var err error
			if f, err = os.Open(a.path); err == nil {
				r = bufio.NewReaderSize(f, 1<<20)
			} else {
				f = nil
			}
		}
		if r != nil {
			for {
				line, err := r.ReadBytes('\n')
				if len(line) > 0 {
					if line[len(line)-1] != '\n' {
						partial = append(partial, line...)
					} else {
						if len(partial) > 0 {
							line = append(partial, line...)
							partial = nil
						}
						a.parse(line)
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *auditLog) parse(line []byte) {
	// Cheap filter before decoding: most lines are other users'.
	if !bytes.Contains(line, []byte(a.user)) {
		a.mu.Lock()
		a.lines++
		a.mu.Unlock()
		return
	}
	var l auditLine
	if err := json.Unmarshal(line, &l); err != nil {
		a.mu.Lock()
		a.lines++
		a.badLines++
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines++
	if l.User.Username != a.user {
		return
	}
	// One line per request: watches at ResponseStarted, everything else at
	// ResponseComplete (or Panic).
	if l.Verb == "watch" && l.Stage != "ResponseStarted" {
		return
	}
	if l.Verb != "watch" && l.Stage == "ResponseStarted" {
		return
	}
	req := request{At: l.RequestReceivedTimestamp, Verb: l.Verb, UserAgent: a.intern(l.UserAgent)}
	if l.ObjectRef != nil {
		req.Resource = l.ObjectRef.Resource
		if l.ObjectRef.Subresource != "" {
			req.Resource += "/" + l.ObjectRef.Subresource
		}
		req.NS, req.Name = l.ObjectRef.Namespace, l.ObjectRef.Name
	}
	if req.Resource == "" {
		// A non-resource request (discovery, /version): its path.
		req.Resource, _, _ = strings.Cut(l.RequestURI, "?")
	}
	if l.ResponseStatus != nil {
		req.Code = l.ResponseStatus.Code
	}
	if leaderElection(req) {
		a.leaseRenewals++
		return
	}
	a.reqs = append(a.reqs, req)
	if req.At.After(a.last) {
		a.last = req.At
	}
}

// leaderElection reports whether r is the leader election's own: a Lease
// request, or the event it records on becoming leader (in the manager's
// namespace, named after the Lease).
func leaderElection(r request) bool {
	return r.Resource == "leases" ||
		r.Resource == "events" && r.NS == testenv.ManagerNamespace && strings.HasPrefix(r.Name, testenv.LeaderElectionID)
}

// leaseCount is the number of leader-election Lease requests seen.
func (a *auditLog) leaseCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leaseRenewals
}

// between returns the manager's requests received in [from, to).
func (a *auditLog) between(from, to time.Time) []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []request
	for _, r := range a.reqs {
		if !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// lastRequest is when the newest request of the manager was received.
func (a *auditLog) lastRequest() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// lineCount is how many audit lines were read (all users).
func (a *auditLog) lineCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lines
}

// sync waits until the log holds a line written after now: the audit log is
// written when a request completes, so this makes sure every request that
// completed before now has been read.
func (a *auditLog) sync(ctx context.Context, probe func(context.Context) error) error {
	before := a.lineCount()
	if err := probe(ctx); err != nil {
		return fmt.Errorf("audit probe: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.lineCount() == before {
		if time.Now().After(deadline) {
			return fmt.Errorf("audit log %s does not grow: is kube-apiserver writing it?", a.path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The probe's line may precede others still buffered; one more poll.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(150 * time.Millisecond):
	}
	return nil
}

// idleTimeout bounds every wait for the manager to go idle.
const idleTimeout = 5 * time.Minute

// waitIdle waits until the manager has sent no request for quiet (at least
// since `since`), and returns the time of its last request (or since, when
// it sent none).
func (a *auditLog) waitIdle(ctx context.Context, since time.Time, quiet time.Duration, alive func() error) (time.Time, error) {
	deadline := time.Now().Add(idleTimeout)
	for {
		last := a.lastRequest()
		if last.Before(since) {
			last = since
		}
		if time.Since(last) >= quiet {
			return last, nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return last, err
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("the manager did not go idle (%s without a request) within %s", quiet, idleTimeout)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tally counts requests by "verb resource". Failed requests (HTTP status
// 400 and above) are counted too, and also under "verb resource #code".
type tally map[string]int

func (t tally) add(r request) {
	t[r.key()]++
	if r.Code >= 400 {
		t[fmt.Sprintf("%s #%d", r.key(), r.Code)]++
	}
}

// tallyAll tallies every request of reqs.
func tallyAll(reqs []request) tally {
	t := tally{}
	for _, r := range reqs {
		t.add(r)
	}
	return t
}

// isFailKey reports whether k counts failures ("verb resource #code").
func isFailKey(k string) bool { return strings.Contains(k, " #") }

// failures formats the failed requests of key k, e.g. " (409: 9)".
func (t tally) failures(k string) string {
	var parts []string
	for fk, n := range t {
		if strings.HasPrefix(fk, k+" #") {
			parts = append(parts, fmt.Sprintf("%s: %d", strings.TrimPrefix(fk, k+" #"), n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return " (failed " + strings.Join(parts, ", ") + ")"
}

// total sums the counts, all or writes only.
func (t tally) total(writes bool) int {
	n := 0
	for k, v := range t {
		if !isFailKey(k) && (!writes || isWriteKey(k)) {
			n += v
		}
	}
	return n
}

// reads sums the counts of requests that are not writes.
func (t tally) reads() int { return t.total(false) - t.total(true) }

func isWriteKey(k string) bool {
	verb, _, _ := strings.Cut(k, " ")
	return request{Verb: verb}.isWrite()
}

// keys returns the keys, writes first, then by count, then by name.
func (t tally) keys() []string {
	ks := make([]string, 0, len(t))
	for k := range t {
		if !isFailKey(k) {
			ks = append(ks, k)
		}
	}
	sort.Slice(ks, func(i, j int) bool {
		wi, wj := isWriteKey(ks[i]), isWriteKey(ks[j])
		if wi != wj {
			return wi
		}
		if t[ks[i]] != t[ks[j]] {
			return t[ks[i]] > t[ks[j]]
		}
		return ks[i] < ks[j]
	})
	return ks
}

// perObject formats the counts divided by n, e.g. "patch secrets 1.00, ...".
func (t tally) perObject(n int, writes bool) string {
	var parts []string
	for _, k := range t.keys() {
		if writes != isWriteKey(k) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s%s", k, ratio(t[k], n), t.failures(k)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// ratio formats a/b with two decimals.
func ratio(a, b int) string {
	if b == 0 {
		return "n/a"
	}
	s := fmt.Sprintf("%.2f", float64(a)/float64(b))
	if a%b != 0 && strings.HasSuffix(s, ".00") {
		// Do not print 4.00 for 8004/2000.
		s = fmt.Sprintf("%.4f", float64(a)/float64(b))
	}
	return s
}
