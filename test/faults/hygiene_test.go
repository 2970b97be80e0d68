package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// window is how many consecutive characters of a secret count as printing
// it: any 16-character run of a key's secret part (after the 13 characters
// status may show) or of a JWT's signature is a leak, so a truncated or
// partly masked print is caught too.
const window = 16

// needles are the secrets the suite saw: every key and token in a Secret
// and every credential apisim handed out. Only the part that makes a
// credential usable is kept (a key after its public prefix, a JWT's
// signature); the values themselves are never printed, only where each
// was seen.
type needles struct {
	mu     sync.Mutex
	secret map[string]string // secret part -> where it was seen
}

func newNeedles() *needles { return &needles{secret: map[string]string{}} }

// add records a credential value.
func (n *needles) add(where, value string) {
	v := strings.TrimSpace(strings.TrimPrefix(value, "Bearer "))
	if v == "" {
		return
	}
	part := v
	if p := strings.Split(v, "."); len(p) == 3 && len(p[2]) >= window {
		part = p[2] // a JWT: the signature is what makes it usable
	} else if strings.HasPrefix(v, "pfk_") && len(v) > 13+window {
		part = v[13:]
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.secret[part]; !ok {
		n.secret[part] = where
	}
}

// addSecret records the credential fields of a Secret.
func (n *needles) addSecret(s *corev1.Secret) {
	for _, k := range []string{"apiKey", "previousApiKey", "token", "authorization"} {
		if v := s.Data[k]; len(v) > 0 {
			n.add(fmt.Sprintf("Secret %s/%s %s", s.Namespace, s.Name, k), string(v))
		}
	}
}

// index maps every window of every secret part to where it was seen;
// secrets shorter than a window are matched whole.
func (n *needles) index() (map[string]string, map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	win, short := map[string]string{}, map[string]string{}
	for part, where := range n.secret {
		if len(part) < window {
			short[part] = where
			continue
		}
		for i := 0; i+window <= len(part); i++ {
			win[part[i:i+window]] = where
		}
	}
	return win, short
}

func (n *needles) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.secret)
}

// scanner looks for any needle window in haystacks.
type scanner struct {
	win, short map[string]string
}

// find returns where the first secret found in h was seen, or "".
func (s scanner) find(h []byte) string {
	for i := 0; i+window <= len(h); i++ {
		if where, ok := s.win[string(h[i:i+window])]; ok {
			return where
		}
	}
	for part, where := range s.short {
		if strings.Contains(string(h), part) {
			return where
		}
	}
	return ""
}

// statusLog keeps every distinct status the suite read, for the scan.
type statusLog struct {
	mu   sync.Mutex
	seen map[string][]byte // uid/resourceVersion -> status JSON
}

func newStatusLog() *statusLog { return &statusLog{seen: map[string][]byte{}} }

// add records obj's status once per resourceVersion.
func (l *statusLog) add(obj client.Object, status any) {
	k := string(obj.GetUID()) + "/" + obj.GetResourceVersion()
	l.mu.Lock()
	_, dup := l.seen[k]
	l.mu.Unlock()
	if dup {
		return
	}
	b, err := json.Marshal(status)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.seen[k] = b
	l.mu.Unlock()
}

func (l *statusLog) all() map[string][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]byte, len(l.seen))
	for k, v := range l.seen {
		out[k] = v
	}
	return out
}

// testSecretHygiene scans every manager's log, every event and every status
// collected across the suite for the credentials of every Secret and of
// apisim.
func testSecretHygiene(t *testing.T, s *suite) {
	ctx := context.Background()
	c := s.env.Client

	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets); err != nil {
		t.Fatalf("list Secrets: %v", err)
	}
	for i := range secrets.Items {
		s.needles.addSecret(&secrets.Items[i])
	}
	var aks v1alpha1.ApiKeyList
	if err := c.List(ctx, &aks); err != nil {
		t.Fatalf("list ApiKeys: %v", err)
	}
	for i := range aks.Items {
		s.statuses.add(&aks.Items[i], aks.Items[i].Status)
	}
	var rts v1alpha1.RevioTokenList
	if err := c.List(ctx, &rts); err != nil {
		t.Fatalf("list RevioTokens: %v", err)
	}
	for i := range rts.Items {
		s.statuses.add(&rts.Items[i], rts.Items[i].Status)
	}
	// The issuers: their status says whether a credential works, never what it is.
	var ris v1alpha1.ReevitIssuerList
	var cris v1alpha1.ClusterReevitIssuerList
	var rvis v1alpha1.RevioIssuerList
	var crvis v1alpha1.ClusterRevioIssuerList
	for _, l := range []client.ObjectList{&ris, &cris, &rvis, &crvis} {
		if err := c.List(ctx, l); err != nil {
			t.Fatalf("list %T: %v", l, err)
		}
	}
	for i := range ris.Items {
		s.statuses.add(&ris.Items[i], ris.Items[i].Status)
	}
	for i := range cris.Items {
		s.statuses.add(&cris.Items[i], cris.Items[i].Status)
	}
	for i := range rvis.Items {
		s.statuses.add(&rvis.Items[i], rvis.Items[i].Status)
	}
	for i := range crvis.Items {
		s.statuses.add(&crvis.Items[i], crvis.Items[i].Status)
	}
	win, short := s.needles.index()
	sc := scanner{win: win, short: short}

	var found []string
	report := func(source string, h []byte) {
		if where := sc.find(h); where != "" {
			found = append(found, fmt.Sprintf("%s contains the credential of %s", source, where))
		}
	}

	// Logs, line by line so a finding names the line number.
	s.mu.Lock()
	mgrs, sims := append(s.managers[:0:0], s.managers...), append(s.sims[:0:0], s.sims...)
	s.mu.Unlock()
	lines, bytes := 0, 0
	for _, m := range mgrs {
		b, err := m.Log()
		if err != nil {
			t.Errorf("read %s: %v", m.LogPath, err)
			continue
		}
		bytes += len(b)
		for i, line := range strings.Split(string(b), "\n") {
			lines++
			report(fmt.Sprintf("manager log %s line %d", filepath.Base(m.LogPath), i+1), []byte(line))
		}
	}
	for _, a := range sims {
		if b, err := a.Log(); err == nil {
			report("apisim log "+filepath.Base(a.LogPath), b)
		}
	}

	// Events, both APIs (the manager writes events.k8s.io/v1).
	var evs eventsv1.EventList
	if err := c.List(ctx, &evs); err != nil {
		t.Fatalf("list events.k8s.io/v1 Events: %v", err)
	}
	reportEvents(evs.Items, func(e *eventsv1.Event) (string, string, string) { return e.Namespace, e.Name, e.Reason }, report)
	var coreEvs corev1.EventList
	if err := c.List(ctx, &coreEvs); err != nil {
		t.Fatalf("list v1 Events: %v", err)
	}
	reportEvents(coreEvs.Items, func(e *corev1.Event) (string, string, string) { return e.Namespace, e.Name, e.Reason }, report)

	// Every status read during the suite.
	statuses := s.statuses.all()
	for k, b := range statuses {
		report("status "+k, b)
	}

	t.Logf("secret hygiene: %d credentials (%d windows) looked for in %d manager log lines (%d bytes, %d processes), %d apisim logs, %d+%d events and %d statuses",
		s.needles.len(), len(win), lines, bytes, len(mgrs), len(sims), len(evs.Items), len(coreEvs.Items), len(statuses))
	s.sum.note("secret hygiene: %d credentials looked for in %d manager log lines (%d processes), %d events, %d statuses: %d found",
		s.needles.len(), lines, len(mgrs), len(evs.Items)+len(coreEvs.Items), len(statuses), len(found))
	if s.needles.len() == 0 || lines == 0 || len(evs.Items) == 0 || len(statuses) == 0 {
		t.Errorf("the scan had nothing to look at (credentials %d, log lines %d, events %d, statuses %d)", s.needles.len(), lines, len(evs.Items), len(statuses))
	}
	for _, f := range found {
		t.Error(f)
	}
}

// reportEvents reports each Event of items (of either Events API) as JSON,
// named "event namespace/name (reason)" from what at reads of it.
func reportEvents[E any](items []E, at func(*E) (ns, name, reason string), report func(source string, b []byte)) {
	for i := range items {
		b, _ := json.Marshal(&items[i])
		ns, name, reason := at(&items[i])
		report(fmt.Sprintf("event %s/%s (%s)", ns, name, reason), b)
	}
}
