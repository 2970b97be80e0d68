package audit

import (
	"testing"
	"time"
)

type collect struct{ got []Record }

func (c *collect) Record(r Record) { c.got = append(c.got, r) }

func TestOnceWritesEachEventOnce(t *testing.T) {
	c := &collect{}
	o := NewOnce(c, 2)
	obj := Object{Kind: "ApiKey", Namespace: "ns", Name: "a", UID: "u1"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	minted := Record{Time: t0, Event: KeyMinted, Object: obj, KeyID: "key_1"}
	o.Record(minted)
	again := minted
	again.Time = t0.Add(time.Second) // the pass run again after a conflict
	o.Record(again)
	if len(c.got) != 1 {
		t.Fatalf("a repeat of the same event was written: %d records", len(c.got))
	}
	o.Record(Record{Time: t0, Event: KeyActivated, Object: obj, KeyID: "key_1"})
	o.Record(Record{Time: t0, Event: KeyMinted, Object: obj, KeyID: "key_2"})
	otherObj := obj
	otherObj.UID = "u2" // a new object of the same name
	o.Record(Record{Time: t0, Event: KeyMinted, Object: otherObj, KeyID: "key_2"})
	if len(c.got) != 4 {
		t.Fatalf("distinct events: want 4 written, got %d", len(c.got))
	}
	// Only the last size are remembered: the first is forgotten by now.
	o.Record(again)
	if len(c.got) != 5 {
		t.Fatalf("after size other records an old one is written again: want 5, got %d", len(c.got))
	}
}
