// Command apidocs writes the API reference, docs/api-reference.md, from the
// CRDs in config/crd/bases. controller-gen makes those from the Go types of
// api/ (their doc comments and kubebuilder markers), so the reference is
// generated from the Go types too; `make manifests` runs apidocs after
// controller-gen, and CI fails when the committed file is not current.
//
// For every kind (sorted by name, a Cluster kind right after the namespaced
// kind of the same name) and version the reference shows the group/version,
// the scope, the short names, the printer columns and one table per object
// level: the root, spec, every nested object (list items are marked [], map
// values {}) and status, each field with its type and constraints (enum
// values, format, minimum and maximum, length, pattern, default), whether it
// is required and its description, followed by the messages of the CEL
// validation rules of that level. Output is deterministic: running apidocs
// twice leaves the file unchanged.
//
// A schema keyword apidocs does not know stops it with an error, so a new
// kind of constraint is noticed instead of silently missing from the
// reference.
//
//	go run ./hack/apidocs [-crds config/crd/bases] [-o docs/api-reference.md]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	crdDir := flag.String("crds", "config/crd/bases", "the directory of CRD YAML files to read")
	out := flag.String("o", "docs/api-reference.md", "the Markdown file to write")
	flag.Parse()
	doc, err := Render(*crdDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
	if old, err := os.ReadFile(*out); err == nil && bytes.Equal(old, doc) {
		return
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
}

// crd is the part of an apiextensions.k8s.io/v1 CustomResourceDefinition the
// reference shows. The schema is decoded separately and strictly (schema).
type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Scope    string    `json:"scope"`
		Versions []version `json:"versions"`
	} `json:"spec"`
}

type version struct {
	Name               string `json:"name"`
	Served             bool   `json:"served"`
	Storage            bool   `json:"storage"`
	Deprecated         bool   `json:"deprecated"`
	DeprecationWarning string `json:"deprecationWarning"`
	Columns            []struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Format      string `json:"format"`
		Description string `json:"description"`
		Priority    int32  `json:"priority"`
		JSONPath    string `json:"jsonPath"`
	} `json:"additionalPrinterColumns"`
	Schema struct {
		OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
	} `json:"schema"`
	Subresources map[string]json.RawMessage `json:"subresources"`
}

// schema is a structural OpenAPI v3 schema as a CRD holds it. Every keyword
// of apiextensions.k8s.io/v1 JSONSchemaProps that apidocs renders is here;
// the decoder refuses any other.
type schema struct {
	Description          string             `json:"description"`
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Default              json.RawMessage    `json:"default"`
	Enum                 []json.RawMessage  `json:"enum"`
	Maximum              *json.Number       `json:"maximum"`
	ExclusiveMaximum     bool               `json:"exclusiveMaximum"`
	Minimum              *json.Number       `json:"minimum"`
	ExclusiveMinimum     bool               `json:"exclusiveMinimum"`
	MultipleOf           *json.Number       `json:"multipleOf"`
	MaxLength            *int64             `json:"maxLength"`
	MinLength            *int64             `json:"minLength"`
	Pattern              string             `json:"pattern"`
	MaxItems             *int64             `json:"maxItems"`
	MinItems             *int64             `json:"minItems"`
	UniqueItems          bool               `json:"uniqueItems"`
	MaxProperties        *int64             `json:"maxProperties"`
	MinProperties        *int64             `json:"minProperties"`
	Nullable             bool               `json:"nullable"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	// AnyOf is accepted only with x-kubernetes-int-or-string, where
	// controller-gen writes anyOf: [{type: integer}, {type: string}].
	AnyOf                  []*schema `json:"anyOf"`
	PreserveUnknownFields  bool      `json:"x-kubernetes-preserve-unknown-fields"`
	EmbeddedResource       bool      `json:"x-kubernetes-embedded-resource"`
	IntOrString            bool      `json:"x-kubernetes-int-or-string"`
	ListType               string    `json:"x-kubernetes-list-type"`
	ListMapKeys            []string  `json:"x-kubernetes-list-map-keys"`
	MapType                string    `json:"x-kubernetes-map-type"`
	Validations            []rule    `json:"x-kubernetes-validations"`
	additionalPropertiesOf *schema
}

// rule is one CEL validation rule (x-kubernetes-validations).
type rule struct {
	Rule              string `json:"rule"`
	Message           string `json:"message"`
	MessageExpression string `json:"messageExpression"`
	Reason            string `json:"reason"`
	FieldPath         string `json:"fieldPath"`
	OptionalOldSelf   *bool  `json:"optionalOldSelf"`
}

// kindDoc is one CRD, read.
type kindDoc struct {
	file string
	crd  crd
	// roots holds each version's schema, in the order of crd.Spec.Versions.
	roots []*schema
}

// Render reads every *.yaml file of dir and returns the reference.
func Render(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD in %s", dir)
	}
	var kinds []kindDoc
	for _, f := range files {
		k, err := readCRD(f)
		if err != nil {
			return nil, err
		}
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b kindDoc) int {
		if c := strings.Compare(sortKey(a.crd.Spec.Names.Kind), sortKey(b.crd.Spec.Names.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.crd.Spec.Names.Kind, b.crd.Spec.Names.Kind)
	})
	for i := 1; i < len(kinds); i++ {
		if kinds[i].crd.Spec.Names.Kind == kinds[i-1].crd.Spec.Names.Kind {
			return nil, fmt.Errorf("%s and %s both define kind %s", kinds[i-1].file, kinds[i].file, kinds[i].crd.Spec.Names.Kind)
		}
	}
	w := &writer{dir: filepath.ToSlash(dir), anchors: map[string]bool{}}
	if err := w.document(kinds); err != nil {
		return nil, err
	}
	return w.buf.Bytes(), nil
}

// sortKey puts ClusterFoo right after Foo.
func sortKey(kind string) string {
	if rest, ok := strings.CutPrefix(kind, "Cluster"); ok && rest != "" {
		return rest + "\x01"
	}
	return kind + "\x00"
}

func readCRD(file string) (kindDoc, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return kindDoc{}, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return kindDoc{}, fmt.Errorf("%s: %w", file, err)
	}
	k := kindDoc{file: file}
	if err := json.Unmarshal(js, &k.crd); err != nil {
		return kindDoc{}, fmt.Errorf("%s: %w", file, err)
	}
	if k.crd.Kind != "CustomResourceDefinition" || k.crd.Spec.Names.Kind == "" {
		return kindDoc{}, fmt.Errorf("%s: not a CustomResourceDefinition", file)
	}
	slices.SortStableFunc(k.crd.Spec.Versions, func(a, b version) int { return strings.Compare(a.Name, b.Name) })
	for _, v := range k.crd.Spec.Versions {
		if len(v.Schema.OpenAPIV3Schema) == 0 {
			return kindDoc{}, fmt.Errorf("%s: version %s has no openAPIV3Schema", file, v.Name)
		}
		dec := json.NewDecoder(bytes.NewReader(v.Schema.OpenAPIV3Schema))
		dec.DisallowUnknownFields()
		var s schema
		if err := dec.Decode(&s); err != nil {
			return kindDoc{}, fmt.Errorf("%s: version %s: schema: %w (hack/apidocs does not render this keyword yet)", file, v.Name, err)
		}
		if err := prepare(&s, "."); err != nil {
			return kindDoc{}, fmt.Errorf("%s: version %s: %w", file, v.Name, err)
		}
		k.roots = append(k.roots, &s)
	}
	return k, nil
}

// prepare decodes additionalProperties (a schema or a boolean) and refuses
// the combinators apidocs cannot render.
func prepare(s *schema, path string) error {
	if len(s.AnyOf) > 0 && !s.IntOrString {
		return fmt.Errorf("%s: anyOf without x-kubernetes-int-or-string is not rendered by hack/apidocs", path)
	}
	if len(s.AdditionalProperties) > 0 {
		var b bool
		if err := json.Unmarshal(s.AdditionalProperties, &b); err != nil {
			dec := json.NewDecoder(bytes.NewReader(s.AdditionalProperties))
			dec.DisallowUnknownFields()
			var a schema
			if err := dec.Decode(&a); err != nil {
				return fmt.Errorf("%s: additionalProperties: %w", path, err)
			}
			s.additionalPropertiesOf = &a
		} else if b {
			s.additionalPropertiesOf = &schema{PreserveUnknownFields: true}
		}
		if s.additionalPropertiesOf != nil {
			if err := prepare(s.additionalPropertiesOf, path+"{}"); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedKeys(s.Properties) {
		if err := prepare(s.Properties[name], join(path, name)); err != nil {
			return err
		}
	}
	if s.Items != nil {
		if err := prepare(s.Items, path+"[]"); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// join appends a field name to a path such as ".spec".
func join(path, name string) string {
	if path == "." {
		return "." + name
	}
	return path + "." + name
}

// level is one table of the reference: an object schema at a path.
type level struct {
	path   string
	anchor string
	s      *schema
}

// hasTable says whether a schema gets its own table.
func hasTable(s *schema) bool { return s != nil && len(s.Properties) > 0 }

// levels lists the object levels under s, depth first in field order.
func levels(prefix, path string, s *schema, out *[]level) {
	if hasTable(s) {
		*out = append(*out, level{path: path, anchor: anchor(prefix, path), s: s})
		for _, name := range sortedKeys(s.Properties) {
			levels(prefix, join(path, name), s.Properties[name], out)
		}
	}
	if s.Items != nil {
		levels(prefix, path+"[]", s.Items, out)
	}
	if s.additionalPropertiesOf != nil {
		levels(prefix, path+"{}", s.additionalPropertiesOf, out)
	}
}

// anchor is the HTML id of a level: lower case letters, digits and dashes;
// [] becomes -items and {} -values, so no two paths share one.
func anchor(prefix, path string) string {
	p := strings.NewReplacer("[]", "-items", "{}", "-values").Replace(path)
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(p) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			if !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

type writer struct {
	buf     bytes.Buffer
	dir     string
	anchors map[string]bool
	// links maps a schema with a table to its anchor, for the type column.
	links map[*schema]string
}

func (w *writer) f(format string, args ...any) { fmt.Fprintf(&w.buf, format, args...) }

func (w *writer) document(kinds []kindDoc) error {
	w.f("<!-- Code generated by hack/apidocs from %s; DO NOT EDIT. -->\n\n", w.dir)
	w.f("# API reference\n\n")
	w.f("Generated by `make manifests` (hack/apidocs) from the CRDs in %s, which controller-gen\n", w.dir)
	w.f("makes from the Go types in api/: to change this file, change their doc comments or\n")
	w.f("kubebuilder markers and run `make manifests`. CI fails when it is not current.\n\n")
	w.f("Each kind has one table per object level: `[]` marks the items of a list, `{}` the values of\n")
	w.f("a map. The standard `apiVersion`, `kind` and `metadata` fields are left out. The validation\n")
	w.f("rules under a table are the CEL rules (x-kubernetes-validations) of that object and of its\n")
	w.f("fields that have no table of their own; the API server rejects an object that breaks one\n")
	w.f("with the message shown.\n\n")

	type plan struct {
		k      kindDoc
		levels [][]level
	}
	var plans []plan
	w.links = map[*schema]string{}
	for _, k := range kinds {
		p := plan{k: k}
		for i, v := range k.crd.Spec.Versions {
			var ls []level
			levels(strings.ToLower(k.crd.Spec.Names.Kind)+"-"+v.Name, ".", k.roots[i], &ls)
			for _, l := range ls {
				if w.anchors[l.anchor] {
					return fmt.Errorf("%s: two levels have the anchor %s", k.file, l.anchor)
				}
				w.anchors[l.anchor] = true
				w.links[l.s] = l.anchor
			}
			p.levels = append(p.levels, ls)
		}
		plans = append(plans, p)
	}

	w.f("## Contents\n\n")
	for _, p := range plans {
		n := p.k.crd.Spec.Names
		w.f("- [%s](#%s): `%s`, %s", n.Kind, strings.ToLower(n.Kind), gv(p.k.crd.Spec.Group, p.k.crd.Spec.Versions), strings.ToLower(p.k.crd.Spec.Scope))
		if len(n.ShortNames) > 0 {
			w.f(", short names %s", codeList(n.ShortNames))
		}
		w.f("\n")
		for i, v := range p.k.crd.Spec.Versions {
			var links []string
			for _, l := range p.levels[i] {
				title := "`" + l.path + "`"
				if l.path == "." {
					title = "root"
				}
				links = append(links, fmt.Sprintf("[%s](#%s)", title, l.anchor))
			}
			if len(p.k.crd.Spec.Versions) > 1 {
				w.f("  - %s: %s\n", v.Name, strings.Join(links, ", "))
			} else {
				w.f("  - %s\n", strings.Join(links, ", "))
			}
		}
	}
	w.f("\n")

	for _, p := range plans {
		if err := w.kind(p.k, p.levels); err != nil {
			return err
		}
	}
	// One newline at the end, whatever the last table wrote.
	b := bytes.TrimRight(w.buf.Bytes(), "\n")
	w.buf.Truncate(len(b))
	w.buf.WriteByte('\n')
	return nil
}

func gv(group string, vs []version) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = group + "/" + v.Name
	}
	return strings.Join(names, "`, `")
}

func (w *writer) kind(k kindDoc, lvls [][]level) error {
	c := k.crd
	n := c.Spec.Names
	w.f("## %s\n\n", n.Kind)
	if d := k.roots[0].Description; d != "" {
		w.f("%s\n\n", prose(d))
	}
	w.f("| | |\n|---|---|\n")
	w.f("| Group/version | %s |\n", code(gv(c.Spec.Group, c.Spec.Versions)))
	w.f("| Scope | %s |\n", c.Spec.Scope)
	w.f("| Resource | %s (singular %s) |\n", code(n.Plural+"."+c.Spec.Group), code(n.Singular))
	if len(n.ShortNames) > 0 {
		w.f("| Short names | %s |\n", codeList(n.ShortNames))
	} else {
		w.f("| Short names | none |\n")
	}
	if len(n.Categories) > 0 {
		w.f("| Categories | %s |\n", codeList(n.Categories))
	}
	w.f("\n")
	for i, v := range c.Spec.Versions {
		if len(c.Spec.Versions) > 1 {
			w.f("### %s %s\n\n", n.Kind, v.Name)
		}
		var notes []string
		if v.Storage {
			notes = append(notes, "storage version")
		}
		if !v.Served {
			notes = append(notes, "not served")
		}
		if v.Deprecated {
			d := "deprecated"
			if v.DeprecationWarning != "" {
				d += ": " + prose(v.DeprecationWarning)
			}
			notes = append(notes, d)
		}
		if subs := sortedKeys(v.Subresources); len(subs) > 0 {
			notes = append(notes, "subresources "+codeList(subs))
		}
		if len(notes) > 0 {
			w.f("Version %s: %s.\n\n", code(v.Name), strings.Join(notes, ", "))
		}
		if len(v.Columns) > 0 {
			w.f("Printer columns of `kubectl get` (the wide ones only with `-o wide`):\n\n")
			w.f("| Column | Type | JSONPath | Shown |\n|---|---|---|---|\n")
			for _, col := range v.Columns {
				t := col.Type
				if col.Format != "" {
					t += " (" + col.Format + ")"
				}
				shown := "always"
				if col.Priority > 0 {
					shown = "wide"
				}
				name := cell(col.Name)
				if col.Description != "" {
					name += ": " + cell(col.Description)
				}
				w.f("| %s | %s | %s | %s |\n", name, t, cellCode(col.JSONPath), shown)
			}
			w.f("\n")
		}
		for _, l := range lvls[i] {
			w.level(n.Kind, l)
		}
	}
	return nil
}

func (w *writer) level(kind string, l level) {
	w.f("<a id=\"%s\"></a>\n\n", l.anchor)
	title := "`" + l.path + "`"
	if l.path == "." {
		title = "root"
	}
	w.f("### %s %s\n\n", kind, title)
	if l.path != "." && l.s.Description != "" {
		w.f("%s\n\n", prose(l.s.Description))
	}
	w.f("| Field | Type | Required | Description |\n|---|---|---|---|\n")
	var rules []string
	for _, r := range l.s.Validations {
		rules = append(rules, ruleText("", r))
	}
	for _, name := range sortedKeys(l.s.Properties) {
		if l.path == "." && (name == "apiVersion" || name == "kind" || name == "metadata") {
			continue
		}
		f := l.s.Properties[name]
		req := "no"
		if slices.Contains(l.s.Required, name) {
			req = "yes"
		}
		w.f("| %s | %s | %s | %s |\n", cellCode(name), w.typeCell(f), req, cell(f.Description))
		rules = append(rules, w.fieldRules(name, f)...)
	}
	w.f("\n")
	if len(rules) > 0 {
		w.f("Validation rules:\n\n")
		for _, r := range rules {
			w.f("- %s\n", r)
		}
		w.f("\n")
	}
}

// fieldRules lists the rules of a field and of its items or values, down to
// the first schema that has a table of its own (which lists its rules).
func (w *writer) fieldRules(name string, s *schema) []string {
	if s == nil || hasTable(s) {
		return nil
	}
	var out []string
	for _, r := range s.Validations {
		out = append(out, ruleText(name, r))
	}
	out = append(out, w.fieldRules(name+"[]", s.Items)...)
	out = append(out, w.fieldRules(name+"{}", s.additionalPropertiesOf)...)
	return out
}

func ruleText(field string, r rule) string {
	var b strings.Builder
	if field != "" {
		b.WriteString(code(field) + ": ")
	}
	switch {
	case r.Message != "":
		b.WriteString(prose(r.Message))
	case r.MessageExpression != "":
		b.WriteString("message computed by " + code(r.MessageExpression))
	default:
		b.WriteString("must satisfy " + code(r.Rule))
	}
	var extra []string
	if r.Reason != "" {
		extra = append(extra, "reason "+r.Reason)
	}
	if r.FieldPath != "" {
		extra = append(extra, "reported at "+code(r.FieldPath))
	}
	if r.OptionalOldSelf != nil && *r.OptionalOldSelf {
		extra = append(extra, "also checked on create")
	}
	if len(extra) > 0 {
		b.WriteString(" (" + strings.Join(extra, "; ") + ")")
	}
	return b.String()
}

// typeName is the short type of a schema: string, []object, map[string]string.
func (w *writer) typeName(s *schema) string {
	switch {
	case s.IntOrString:
		return "int or string"
	case s.Type == "array" && s.Items != nil:
		return "[]" + w.typeName(s.Items)
	case s.Type == "object" && s.additionalPropertiesOf != nil && len(s.Properties) == 0:
		return "map[string]" + w.typeName(s.additionalPropertiesOf)
	case s.Type == "":
		return "any"
	}
	return s.Type
}

// typeLink is typeName as a code span, linked to the table of the object
// it ends in, if that has one.
func (w *writer) typeLink(s *schema) string {
	t := cellCode(w.typeName(s))
	inner := s
	for {
		switch {
		case inner.IntOrString:
		case inner.Type == "array" && inner.Items != nil:
			inner = inner.Items
			continue
		case inner.Type == "object" && inner.additionalPropertiesOf != nil && len(inner.Properties) == 0:
			inner = inner.additionalPropertiesOf
			continue
		}
		break
	}
	if a, ok := w.links[inner]; ok {
		return fmt.Sprintf("[%s](#%s)", t, a)
	}
	return t
}

// typeCell is the type column: the type, then its constraints and those of
// its items or values.
func (w *writer) typeCell(s *schema) string {
	parts := []string{w.typeLink(s)}
	parts = append(parts, constraints(s)...)
	for inner, label := s, ""; ; {
		var what string
		switch {
		case inner.Type == "array" && inner.Items != nil:
			inner, what = inner.Items, "item"
		case inner.additionalPropertiesOf != nil && len(inner.Properties) == 0:
			inner, what = inner.additionalPropertiesOf, "value"
		default:
			return strings.Join(parts, "<br>")
		}
		if label == "" {
			label = "each " + what
		} else {
			label += "'s " + what
		}
		if hasTable(inner) {
			return strings.Join(parts, "<br>")
		}
		for _, c := range constraints(inner) {
			parts = append(parts, label+": "+c)
		}
	}
}

// constraints lists what a schema allows beyond its type.
func constraints(s *schema) []string {
	var out []string
	if s.Format != "" {
		out = append(out, "format: "+code(s.Format))
	}
	if len(s.Enum) > 0 {
		vals := make([]string, len(s.Enum))
		for i, e := range s.Enum {
			vals[i] = cellCode(jsonValue(e))
		}
		out = append(out, "enum: "+strings.Join(vals, ", "))
	}
	if s.Minimum != nil {
		op := "minimum"
		if s.ExclusiveMinimum {
			op = "exclusive minimum"
		}
		out = append(out, op+": "+s.Minimum.String())
	}
	if s.Maximum != nil {
		op := "maximum"
		if s.ExclusiveMaximum {
			op = "exclusive maximum"
		}
		out = append(out, op+": "+s.Maximum.String())
	}
	if s.MultipleOf != nil {
		out = append(out, "multiple of: "+s.MultipleOf.String())
	}
	out = appendRange(out, "length", s.MinLength, s.MaxLength)
	if s.Pattern != "" {
		out = append(out, "pattern: "+cellCode(s.Pattern))
	}
	out = appendRange(out, "items", s.MinItems, s.MaxItems)
	out = appendRange(out, "properties", s.MinProperties, s.MaxProperties)
	if s.UniqueItems {
		out = append(out, "unique items")
	}
	switch s.ListType {
	case "set":
		out = append(out, "list type: set (unique items)")
	case "map":
		out = append(out, "list type: map, keyed by "+codeList(s.ListMapKeys))
	case "atomic", "":
	default:
		out = append(out, "list type: "+s.ListType)
	}
	if s.MapType == "atomic" {
		out = append(out, "replaced as a whole (atomic)")
	}
	if s.Nullable {
		out = append(out, "nullable")
	}
	if s.EmbeddedResource {
		out = append(out, "an embedded Kubernetes object")
	}
	if s.PreserveUnknownFields && s.Type == "object" {
		out = append(out, "keeps unknown fields")
	}
	if len(s.Default) > 0 {
		out = append(out, "default: "+cellCode(jsonValue(s.Default)))
	}
	return out
}

func appendRange(out []string, what string, lo, hi *int64) []string {
	switch {
	case lo != nil && hi != nil:
		return append(out, fmt.Sprintf("%s: %d to %d", what, *lo, *hi))
	case lo != nil:
		return append(out, fmt.Sprintf("%s: at least %d", what, *lo))
	case hi != nil:
		return append(out, fmt.Sprintf("%s: at most %d", what, *hi))
	}
	return out
}

// jsonValue shows a string as it is and anything else as compact JSON.
func jsonValue(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// prose turns a description into one Markdown paragraph for a table cell or
// a line: lines are joined, paragraphs are separated by <br><br>, and the
// characters Markdown or HTML would take as markup are escaped.
func prose(s string) string {
	s = strings.TrimSpace(s)
	var paras []string
	for _, p := range strings.Split(s, "\n\n") {
		lines := strings.Fields(p)
		if len(lines) > 0 {
			paras = append(paras, escape(strings.Join(lines, " ")))
		}
	}
	return strings.Join(paras, "<br><br>")
}

func cell(s string) string {
	if s == "" {
		return ""
	}
	return prose(s)
}

var escaper = strings.NewReplacer(
	`\`, `\\`,
	"|", `\|`,
	"*", `\*`,
	"<", "&lt;",
	">", "&gt;",
	"[", `\[`,
	"]", `\]`,
)

func escape(s string) string { return escaper.Replace(s) }

// code is s as a Markdown code span, fenced with more backticks than s holds.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ") && strings.TrimSpace(s) != "" {
		s = " " + s + " "
	}
	return fence + s + fence
}

// cellCode is a code span in a table cell, where a | must be escaped even
// inside code (GitHub Flavored Markdown).
func cellCode(s string) string { return strings.ReplaceAll(code(s), "|", `\|`) }

func codeList(items []string) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = cellCode(it)
	}
	return strings.Join(out, ", ")
}
