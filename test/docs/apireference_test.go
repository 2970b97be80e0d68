package docs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// apiDocsArgs are the Makefile's API_DOCS_FLAGS but the output path: the
// command `make manifests` runs to write docs/api-reference.md.
var apiDocsArgs = []string{
	"--source-path=api/v1alpha1", "--config=hack/crd-ref-docs/config.yaml", "--renderer=markdown",
	"--templates-dir=hack/crd-ref-docs/templates/markdown", "--log-level=ERROR",
}

// crdRefDocs is the crd-ref-docs binary: $KEYWARDEN_CRD_REF_DOCS, which
// make test builds once (bin/tools), or one built here from hack/tools.
func crdRefDocs(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEYWARDEN_CRD_REF_DOCS"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "crd-ref-docs")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/elastic/crd-ref-docs")
	cmd.Dir = filepath.Join(root, "hack", "tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build crd-ref-docs: %v\n%s", err, out)
	}
	return bin
}

// render runs crd-ref-docs as make manifests does, into a temporary file.
func render(t *testing.T, bin string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "api-reference.md")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(apiDocsArgs, "--output-path="+out)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("crd-ref-docs: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAPIReference: docs/api-reference.md is what crd-ref-docs renders from
// the Go types now (as CI's check of the generated files), the same twice,
// and every field of every CRD, at every depth, has a row in the table of
// its type saying whether the API server requires it.
func TestAPIReference(t *testing.T) {
	bin := crdRefDocs(t)
	want := render(t, bin)
	if again := render(t, bin); !bytes.Equal(want, again) {
		t.Fatal("two renderings of the same types differ")
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "api-reference.md"))
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
	checkAgainstCRDs(t, string(want))
}

// row is a field's row: the anchor its type links to ("" for a type
// without a table of its own) and the Required cell.
type row struct {
	anchor, required, validation string
}

var (
	rowRE  = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\| (yes|no) \\| [^|]* \\| ((?:[^|]|\\\\\\|)*) \\|")
	typeRE = regexp.MustCompile(`\]\(#([a-z0-9-]+)\)`)
)

// tables maps each "### Type" heading's anchor to its field rows.
func tables(doc string) map[string]map[string]row {
	out := map[string]map[string]row{}
	var cur map[string]row
	for _, l := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(l, "### "); ok {
			cur = map[string]row{}
			out[slug(h)] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if m := rowRE.FindStringSubmatch(l); m != nil {
			r := row{required: m[3], validation: m[4]}
			if tm := typeRE.FindStringSubmatch(m[2]); tm != nil {
				r.anchor = tm[1]
			}
			cur[m[1]] = r
		}
	}
	return out
}

// checkAgainstCRDs walks each CRD's schema (read as plain YAML) from its
// kind's table down, following the type links of the rows.
func checkAgainstCRDs(t *testing.T, doc string) {
	t.Helper()
	tabs := tables(doc)
	files, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 6 {
		t.Fatalf("want the 6 CRDs of config/crd/bases, got %d (%v)", len(files), err)
	}
	fields := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Names    struct{ Kind string }
				Versions []struct {
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			t.Fatal(err)
		}
		kind := crd.Spec.Names.Kind
		var walk func(path, anchor string, s map[string]any)
		walk = func(path, anchor string, s map[string]any) {
			props, _ := s["properties"].(map[string]any)
			if len(props) == 0 {
				return
			}
			tab, ok := tabs[anchor]
			if !ok {
				t.Errorf("%s %s: no table #%s", kind, path, anchor)
				return
			}
			var required []string
			for _, r := range asSlice(s["required"]) {
				required = append(required, fmt.Sprint(r))
			}
			for name, p := range props {
				if path == "" && (name == "apiVersion" || name == "kind") {
					continue
				}
				fields++
				r, ok := tab[name]
				if !ok {
					t.Errorf("%s %s.%s: no row in #%s", kind, path, name, anchor)
					continue
				}
				want := "no"
				if slices.Contains(required, name) {
					want = "yes"
				}
				if r.required != want {
					t.Errorf("%s %s.%s: Required %s, the CRD says %s", kind, path, name, r.required, want)
				}
				sub, _ := p.(map[string]any)
				if items, ok := sub["items"].(map[string]any); ok {
					sub = items
				}
				if r.anchor != "" && name != "metadata" {
					walk(path+"."+name, r.anchor, sub)
				}
			}
		}
		walk("", strings.ToLower(kind), crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	}
	if fields < 100 {
		t.Fatalf("only %d fields checked: the walk is broken", fields)
	}
	t.Logf("%d fields of 6 CRDs checked against the reference", fields)
	for _, want := range []string{
		"| `historyLimit` | integer | no | `10` | Maximum: 100<br>Minimum: 0<br> |",
		"| `environment` | string | yes |  | Enum: [live test]<br> |",
		": rotation.every and rotation.schedule are mutually exclusive: set one\n",
		"| Key ID | string | `.status.keyId` | 1 |",
		"| Short names | `ak` |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the reference lacks %q", want)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
