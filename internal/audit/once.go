package audit

import (
	"strings"
	"sync"
)

// Once is a Sink that passes each event to the next Sink once. A reconcile
// pass whose status write conflicts is run again; the records of what it
// already did at the API (a key minted, revoked) are written anyway, since
// the API did it, and the pass run again would tell the same event a second
// time (a replayed create, a revoke Reevit answers as done). Once drops such
// a repeat: a record equal to one of the last size records in everything but
// time is not written again.
type Once struct {
	next Sink
	mu   sync.Mutex
	seen map[string]struct{}
	ring []string
	at   int
}

// NewOnce returns a Once remembering the last size records (at least 1).
func NewOnce(next Sink, size int) *Once {
	if size < 1 {
		size = 1
	}
	return &Once{next: next, seen: make(map[string]struct{}, size), ring: make([]string, size)}
}

// Record passes r on unless an equal record (time aside) was passed on
// among the last size.
func (o *Once) Record(r Record) {
	id := identity(r)
	o.mu.Lock()
	if _, dup := o.seen[id]; dup {
		o.mu.Unlock()
		return
	}
	if old := o.ring[o.at]; old != "" {
		delete(o.seen, old)
	}
	o.ring[o.at] = id
	o.at = (o.at + 1) % len(o.ring)
	o.seen[id] = struct{}{}
	o.mu.Unlock()
	o.next.Record(r)
}

// identity is what makes two records the same event: the event, the object,
// the key and why. The time and the issuer's details are not.
func identity(r Record) string {
	return strings.Join([]string{string(r.Event), r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Object.UID,
		r.KeyID, r.Reason, r.Message}, "\x00")
}
