package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The tests that read the repository's files run at its root, as `make
// manifests` runs apidocs, so that the header names the same directory.
const (
	crdDir  = "config/crd/bases"
	docFile = "docs/api-reference.md"
)

// section returns the text of the table headed "### <kind> `<path>`", up to
// the next heading.
func section(t *testing.T, doc, kind, path string) string {
	t.Helper()
	head := "### " + kind + " `" + path + "`\n"
	i := strings.Index(doc, head)
	if i < 0 {
		t.Fatalf("no section %q", strings.TrimSpace(head))
	}
	rest := doc[i+len(head):]
	if j := strings.Index(rest, "\n#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestApiKeySpecFields reads the ApiKey CRD on its own (as plain YAML, not
// through apidocs' types) and checks that every field under spec, at every
// depth, has a row in the table of its object.
func TestApiKeySpecFields(t *testing.T) {
	t.Chdir("../..")
	out, err := Render(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	raw, err := os.ReadFile(filepath.Join(crdDir, "credentials.keywarden.dev_apikeys.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	versions := crd["spec"].(map[string]any)["versions"].([]any)
	root := versions[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
	spec := root["properties"].(map[string]any)["spec"].(map[string]any)

	fields := 0
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		props, ok := s["properties"].(map[string]any)
		if !ok {
			return
		}
		sec := section(t, doc, "ApiKey", path)
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fields++
			if !strings.Contains(sec, "\n| `"+name+"` | ") {
				t.Errorf("ApiKey %s: field %s has no row", path, name)
			}
			walk(path+"."+name, props[name].(map[string]any))
		}
	}
	walk(".spec", spec)
	if fields < 10 {
		t.Fatalf("only %d spec fields found in the ApiKey CRD", fields)
	}
	for _, want := range []string{
		"| `historyLimit` | `integer`<br>format: `int32`<br>minimum: 0<br>maximum: 100<br>default: `10` | no |",
		"| `environment` | `string`<br>enum: `live`, `test` | yes |",
		"- rotation.every and rotation.schedule are mutually exclusive: set one\n",
		"| Key ID | string | `.status.keyId` | wide |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks %q", want)
		}
	}
	for _, kind := range []string{"ApiKey", "RevioToken", "ReevitIssuer", "ClusterReevitIssuer", "RevioIssuer", "ClusterRevioIssuer"} {
		if !strings.Contains(doc, "\n## "+kind+"\n") || !strings.Contains(doc, "- ["+kind+"](#"+strings.ToLower(kind)+")") {
			t.Errorf("kind %s is missing from the reference or its contents", kind)
		}
	}
}

// TestCurrent fails when docs/api-reference.md is not what apidocs renders
// from the CRDs now, as CI's check of the generated files does.
func TestCurrent(t *testing.T) {
	t.Chdir("../..")
	want, err := Render(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Render(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, again) {
		t.Fatal("two renderings of the same CRDs differ")
	}
	got, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatalf("%v: run `make manifests`", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("docs/api-reference.md is not current: run `make manifests`\nline %d:\n have %q\n want %q", i+1, g, w)
			}
		}
	}
}

// TestUnknownKeyword: a schema keyword apidocs cannot render stops it.
func TestUnknownKeyword(t *testing.T) {
	dir := t.TempDir()
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  group: example.com
  names: {kind: Thing, plural: things, singular: thing, listKind: ThingList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                x-new-keyword: true
`
	if err := os.WriteFile(filepath.Join(dir, "thing.yaml"), []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(dir); err == nil || !strings.Contains(err.Error(), "x-new-keyword") {
		t.Fatalf("want an error naming x-new-keyword, got %v", err)
	}
	ok := strings.Replace(crd, "                x-new-keyword: true\n", "", 1)
	if err := os.WriteFile(filepath.Join(dir, "thing.yaml"), []byte(ok), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "| `size` | `integer` | no |") {
		t.Fatalf("no row for spec.size:\n%s", out)
	}
}
