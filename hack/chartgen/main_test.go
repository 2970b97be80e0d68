package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartIsCurrent: what chartgen makes from config/ now is what
// charts/keywarden holds, file for file (CI's diff check, runnable alone:
// `go test ./hack/chartgen`). After a failure run `make manifests`.
func TestChartIsCurrent(t *testing.T) {
	out := t.TempDir()
	if err := run(filepath.Join("..", "..", "config"), out); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join("..", "..", "charts", "keywarden")
	generated := map[string]bool{}
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		generated[rel] = true
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(chart, rel))
		if err != nil {
			t.Errorf("%s: %v (run make manifests)", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("charts/keywarden/%s is stale: run make manifests", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A CRD gone from config/crd is gone from the chart too.
	entries, err := os.ReadDir(filepath.Join(chart, "files", "crds"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if rel := filepath.Join("files", "crds", e.Name()); !generated[rel] {
			t.Errorf("charts/keywarden/%s comes from no CRD of config/crd: run make manifests", rel)
		}
	}
	if len(generated) < 4 {
		t.Errorf("chartgen made only %d files", len(generated))
	}
}

// TestTemplatedRefusesTemplateText: data that Helm would evaluate as a
// template never reaches rbac.yaml.
func TestTemplatedRefusesTemplateText(t *testing.T) {
	if _, err := render("rules:\n- resources: ['{{ .Values.x }}']\n"); err == nil || !strings.Contains(err.Error(), "{{") {
		t.Fatalf("render accepted template text: %v", err)
	}
}
