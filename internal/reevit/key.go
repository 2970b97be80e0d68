package reevit

import (
	"fmt"
	"time"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// Key is a Reevit API key as the API describes it.
//
// Printing a Key with any fmt verb (%v, %+v, %#v, %s, ...) shows "[REDACTED]"
// instead of the secret; read the Key field directly to store it.
type Key struct {
	// ID is the key's identifier, e.g. "key_abc123".
	ID string
	// Name is the human-readable name given at creation.
	Name string
	// Key is the full secret ("pfk_live_..."). Reevit shows it once, so it
	// is set only by CreateKey.
	Key string
	// Prefix is the key's public prefix as listed by ListKeys (not part of
	// the create response; empty when the server sends none).
	Prefix string
	// Scopes are the permissions the key carries.
	Scopes []string
	// CreatedAt is the creation time; zero if the server sent none or an
	// unparseable one.
	CreatedAt time.Time
}

// printableKey is Key without any methods, so fmt can print it without
// recursing into Key.Format.
type printableKey Key

func (k Key) printable() printableKey {
	p := printableKey(k)
	if p.Key != "" {
		p.Key = httpcore.Redacted
	}
	return p
}

// String returns the key's fields with the secret redacted.
func (k Key) String() string { return fmt.Sprintf("%+v", k.printable()) }

// GoString returns Go syntax for the key with the secret redacted.
func (k Key) GoString() string {
	p := k.printable()
	return fmt.Sprintf("reevit.Key{ID:%q, Name:%q, Key:%q, Prefix:%q, Scopes:%#v, CreatedAt:%#v}",
		p.ID, p.Name, p.Key, p.Prefix, p.Scopes, p.CreatedAt)
}

// Format prints the key with the secret redacted for every verb.
func (k Key) Format(f fmt.State, verb rune) {
	httpcore.FormatRedacted(f, verb, k.GoString(), k.printable())
}
