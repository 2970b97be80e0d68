// Package audit is Keywarden's audit stream: one JSON line for every
// credential event (a key minted, activated, revoked, a revocation that
// failed, a rotation asked for, a key marked compromised, a leaked key
// revoked, a policy refusal), with the object, the issuer and the key's id
// and prefix, never the key. The format is stable (docs/audit.md): fields
// are added, never renamed or removed, so a log pipeline can keep the
// stream for years.
package audit

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event is the type of a record.
type Event string

// The event types. A record of each is written once per event: a reconcile
// pass writes its records when it ends, after its status write, and Once
// drops the repeat a pass run again after a status conflict would write.
const (
	// KeyMinted: Reevit created a key for the object.
	KeyMinted Event = "KeyMinted"
	// KeyActivated: the object's Secret holds the key and status records it.
	KeyActivated Event = "KeyActivated"
	// RotationRequested: a keywarden.dev/rotate value was acted on.
	RotationRequested Event = "RotationRequested"
	// KeyCompromised: a keywarden.dev/compromised value was acted on; the
	// record names the key it replaced.
	KeyCompromised Event = "KeyCompromised"
	// KeyRevoked: Reevit revoked a key Keywarden tracked.
	KeyRevoked Event = "KeyRevoked"
	// RevokeFailed: a revocation failed; it is retried with backoff.
	RevokeFailed Event = "RevokeFailed"
	// LeakedKeyRevoked: a key carrying the object's marker that no Secret or
	// status tracked (an interrupted creation, a key made outside) was revoked.
	LeakedKeyRevoked Event = "LeakedKeyRevoked"
	// PolicyRefused: the issuer's policy or namespace selector refused the object.
	PolicyRefused Event = "PolicyRefused"
	// AdminKeyRotated: a Reevit issuer replaced its admin key: the Secret
	// holds the new key (keyId, keyPrefix) and status records it; the reason
	// is schedule, manual or compromised.
	AdminKeyRotated Event = "AdminKeyRotated"
	// AdminKeyRevoked: Reevit revoked an issuer's previous admin key, or an
	// admin key minted by a rotation and not kept (refused or abandoned).
	AdminKeyRevoked Event = "AdminKeyRevoked"
	// AdminKeyRevokeFailed: revoking an issuer's previous admin key failed;
	// it is retried with backoff.
	AdminKeyRevokeFailed Event = "AdminKeyRevokeFailed"
)

// Events lists every event type, in the order of the constants.
var Events = []Event{KeyMinted, KeyActivated, RotationRequested, KeyCompromised, KeyRevoked, RevokeFailed, LeakedKeyRevoked, PolicyRefused,
	AdminKeyRotated, AdminKeyRevoked, AdminKeyRevokeFailed}

// Object is the Kubernetes object an event is about.
type Object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Issuer is the issuer record of the key: the issuer that made it, at the
// organisation and URL it made it.
type Issuer struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	OrgID string `json:"orgId,omitempty"`
	URL   string `json:"url,omitempty"`
}

// Record is one line of the stream.
type Record struct {
	Time        time.Time `json:"time"`
	Logger      string    `json:"logger"` // always "audit"
	Event       Event     `json:"event"`
	Object      Object    `json:"object"`
	Issuer      *Issuer   `json:"issuer,omitempty"`
	KeyID       string    `json:"keyId,omitempty"`
	KeyPrefix   string    `json:"keyPrefix,omitempty"`
	Scopes      []string  `json:"scopes,omitempty"`
	Environment string    `json:"environment,omitempty"`
	// Reason is why: the creation's reason (Initial, Rotation, Compromised,
	// SpecChange, ...), a revocation's, or a failure's condition reason.
	Reason string `json:"reason,omitempty"`
	// Message is the condition message of a failure or refusal. Keywarden's
	// messages never carry a credential.
	Message string `json:"message,omitempty"`
}

// Sink takes records.
type Sink interface {
	Record(Record)
}

// Discard is a Sink that drops every record.
var Discard Sink = discard{}

type discard struct{}

func (discard) Record(Record) {}

// Writer writes each record as one JSON line to w.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Sink writing JSON lines to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Record writes r as one line; Logger is set to "audit" and Time to the
// UTC time with second precision kept as given.
func (w *Writer) Record(r Record) {
	r.Logger = "audit"
	r.Time = r.Time.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.w.Write(append(b, '\n'))
}
