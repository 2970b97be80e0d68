package apisim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keywarden/keywarden/internal/httpcore"
)

// Credentials is what a running apisim hands to the demo, the e2e suite and
// the benchmarks, written as JSON to Config.CredentialsFile (mode 0600).
//
// Printing Credentials with any fmt verb redacts the keys; encoding/json
// does not, since the file must carry them.
type Credentials struct {
	// OrgID is the Reevit organization the admin key belongs to.
	OrgID string `json:"orgId"`
	// AdminKey is a Reevit key with every documented scope.
	AdminKey string `json:"adminKey"`
	// AdminKeyID is the Reevit id of AdminKey.
	AdminKeyID string `json:"adminKeyId"`
	// RevioAPIKey is a Rev.io API key bound to RevioHost.
	RevioAPIKey string `json:"revioApiKey"`
	// RevioHost is the X-Revio-Host RevioAPIKey's tokens are valid for.
	RevioHost string `json:"revioHost"`
	// ReevitURL, RevioURL and ControlURL are the base URLs of the three
	// listeners.
	ReevitURL  string `json:"reevitURL"`
	RevioURL   string `json:"revioURL"`
	ControlURL string `json:"controlURL"`
	// CAFile is the PEM CA certificate that signs the HTTPS listeners, when
	// apisim serves HTTPS.
	CAFile string `json:"caFile,omitempty"`
}

// printableCredentials is Credentials without any methods, so fmt can print
// it without recursing into Credentials.Format.
type printableCredentials Credentials

func (c Credentials) printable() printableCredentials {
	p := printableCredentials(c)
	if p.AdminKey != "" {
		p.AdminKey = httpcore.Redacted
	}
	if p.RevioAPIKey != "" {
		p.RevioAPIKey = httpcore.Redacted
	}
	return p
}

// String returns the credentials with the keys redacted.
func (c Credentials) String() string { return fmt.Sprintf("%+v", c.printable()) }

// GoString returns the credentials with the keys redacted.
func (c Credentials) GoString() string { return "apisim.Credentials" + c.String() }

// Format prints the credentials with the keys redacted for every verb.
func (c Credentials) Format(f fmt.State, verb rune) {
	httpcore.FormatRedacted(f, verb, c.GoString(), c.printable())
}

// WriteCredentials writes c as JSON to path with mode 0600, atomically (a
// reader never sees a partial file, and the file is never readable by
// others, even briefly).
func WriteCredentials(path string, c Credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".apisim-credentials-*") // created 0600
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // after a successful rename this fails harmlessly
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}

// ReadCredentials reads a credentials file written by apisim.
func ReadCredentials(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Credentials{}, fmt.Errorf("read credentials %s: not apisim's JSON: %w", path, err)
	}
	if c.ControlURL == "" || c.ReevitURL == "" || c.RevioURL == "" {
		return Credentials{}, fmt.Errorf("read credentials %s: URLs missing", path)
	}
	return c, nil
}
