package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// TestTemplatedSubjects: a binding's subject that is the manager's
// ServiceAccount becomes the release's; a Group (the cluster issuer viewer
// binding to system:authenticated) stays as it is; another ServiceAccount,
// which the chart does not make, stops chartgen.
func TestTemplatedSubjects(t *testing.T) {
	binding := func(subjects ...map[string]any) *unstructured.Unstructured {
		var subs []any
		for _, s := range subjects {
			subs = append(subs, s)
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       "ClusterRoleBinding",
			"metadata":   map[string]any{"name": "keywarden-cluster-issuer-viewer"},
			"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "keywarden-cluster-issuer-viewer-role"},
			"subjects":   subs,
		}}
	}
	doc, err := templated(binding(
		map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"},
		map[string]any{"kind": "ServiceAccount", "name": "keywarden-controller-manager", "namespace": "keywarden-system"},
	), "keywarden-controller-manager")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  name: {{ include \"keywarden.resourceName\" (list . \"cluster-issuer-viewer\") }}\n",
		"  name: {{ include \"keywarden.resourceName\" (list . \"cluster-issuer-viewer-role\") }}\n",
		"- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: system:authenticated\n",
		"- kind: ServiceAccount\n  name: {{ include \"keywarden.serviceAccountName\" . }}\n  namespace: {{ .Release.Namespace }}\n",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the template lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "keywarden-system") {
		t.Errorf("config/default's namespace left in the template:\n%s", doc)
	}
	_, err = templated(binding(map[string]any{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}), "keywarden-controller-manager")
	if err == nil || !strings.Contains(err.Error(), "prometheus") {
		t.Errorf("a ServiceAccount the chart does not make was accepted: %v", err)
	}
}

// TestObjectsKeepEachDocumentsComment: every document of a file keeps its
// own leading comment, not the file's first one.
func TestObjectsKeepEachDocumentsComment(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.yaml")
	if err := os.WriteFile(f, []byte("# The role.\napiVersion: v1\nkind: A\nmetadata: {name: a}\n---\napiVersion: v1\nkind: B\nmetadata: {name: b}\n---\n# The third.\napiVersion: v1\nkind: C\nmetadata: {name: c}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := objects(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+":"+o.comment)
	}
	if want := []string{"A:# The role.\n", "B:", "C:# The third.\n"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
