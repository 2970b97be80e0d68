package controller

import (
	"context"
	"time"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/audit"
)

// auditBuffer collects the audit records of one reconcile pass. They are
// written when the pass ends, after its status write, whether that write
// succeeded or not: what the pass did at the API (a key minted, a leaked key
// revoked) happened even if the status that tells it conflicted, and the pass
// run again may not see it again (the leaked key is gone). The repeats a
// pass run again does tell (a replayed create) are dropped by the
// manager's audit.Once. A crashed pass writes nothing: its process is dead.
type auditBuffer struct{ recs []audit.Record }

type auditKey struct{}

// withAudit returns a context whose pass collects audit records.
func withAudit(ctx context.Context) (context.Context, *auditBuffer) {
	b := &auditBuffer{}
	return context.WithValue(ctx, auditKey{}, b), b
}

// auditNote adds a record to the pass's buffer (none: dropped, as in
// tests of a single step).
func auditNote(ctx context.Context, rec audit.Record) {
	if b, ok := ctx.Value(auditKey{}).(*auditBuffer); ok {
		b.recs = append(b.recs, rec)
	}
}

// drop forgets the pass's records (a simulated crash).
func (b *auditBuffer) drop() { b.recs = nil }

// flush writes the records to sink and empties the buffer.
func (b *auditBuffer) flush(sink audit.Sink) {
	for _, rec := range b.recs {
		sink.Record(rec)
	}
	b.recs = nil
}

// apiKeyRecord is a record about ak with its spec's scopes and environment.
func apiKeyRecord(ak *v1alpha1.ApiKey, ev audit.Event, now time.Time, rec *v1alpha1.IssuerRecord, keyID, prefix, reason string) audit.Record {
	scopes := make([]string, len(ak.Spec.Scopes))
	for i, s := range ak.Spec.Scopes {
		scopes[i] = string(s)
	}
	return audit.Record{Time: now, Event: ev, Object: audit.Object{Kind: kindApiKey, Namespace: ak.Namespace, Name: ak.Name, UID: string(ak.UID)},
		Issuer: auditIssuer(rec), KeyID: keyID, KeyPrefix: prefix, Scopes: scopes, Environment: ak.Spec.Environment, Reason: reason}
}

func auditIssuer(rec *v1alpha1.IssuerRecord) *audit.Issuer {
	if rec == nil {
		return nil
	}
	return &audit.Issuer{Kind: rec.Kind, Name: rec.Name, OrgID: rec.OrgID, URL: rec.URL}
}

// keyPrefixOf is the prefix status records for key id: the active key's, a
// pending revocation's or the history's; empty when none does.
func keyPrefixOf(ak *v1alpha1.ApiKey, id string) string {
	st := &ak.Status
	if id == st.KeyID {
		return st.KeyPrefix
	}
	for _, p := range st.PendingRevocations {
		if p.KeyID == id {
			return p.KeyPrefix
		}
	}
	for _, h := range st.History {
		if h.KeyID == id {
			return h.KeyPrefix
		}
	}
	return ""
}

// revokeFailedRecord tells a revocation of p that failed with f.
func revokeFailedRecord(ak *v1alpha1.ApiKey, now time.Time, rec *v1alpha1.IssuerRecord, p v1alpha1.PendingRevocation, f *failure) audit.Record {
	r := apiKeyRecord(ak, audit.RevokeFailed, now, rec, p.KeyID, p.KeyPrefix, f.Reason)
	r.Message = f.Message
	return r
}
