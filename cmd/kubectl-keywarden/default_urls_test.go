package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"
)

// TestDefaultURLsMatchTheCRDs: the +kubebuilder:default of each issuer
// kind's spec.url (a marker cannot name a constant) is the client package's
// DefaultBaseURL that the controller and the plugin fall back to.
func TestDefaultURLsMatchTheCRDs(t *testing.T) {
	for file, want := range map[string]string{
		"credentials.keywarden.dev_reevitissuers.yaml":        reevit.DefaultBaseURL,
		"credentials.keywarden.dev_clusterreevitissuers.yaml": reevit.DefaultBaseURL,
		"credentials.keywarden.dev_revioissuers.yaml":         revio.DefaultBaseURL,
		"credentials.keywarden.dev_clusterrevioissuers.yaml":  revio.DefaultBaseURL,
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", file))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "default: https://"); n != 1 || !strings.Contains(string(b), "default: "+want+"\n") {
			t.Errorf("%s: want exactly one URL default, %s (found %d URL defaults)", file, want, n)
		}
	}
}
