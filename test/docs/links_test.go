// Package docs checks the user documentation: README.md and docs/*.md.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, two directories up from this package.
var root = filepath.Join("..", "..")

// readmeMaxLines bounds the README: it is a user's manual, the details
// live in docs/.
const readmeMaxLines = 450

var (
	// link matches an inline Markdown link or image: [text](target) with
	// an optional "title".
	link = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	// htmlAnchor matches <a id="x"> and <a name="x">.
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	// codeSpan matches inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`]*`")
	// headingLink is a link inside a heading: its anchor keeps the text.
	headingLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// doc is one Markdown file: its links (line and target) and the anchors
// its headings and HTML anchors define.
type doc struct {
	links   []docLink
	anchors map[string]bool
	lines   int
}

type docLink struct {
	line   int
	target string
}

// parse reads a Markdown file, leaving out fenced code blocks.
func parse(t *testing.T, path string) doc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	d := doc{anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		d.lines++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		if h, ok := heading(line); ok {
			a := slug(h)
			if n := seen[a]; n > 0 {
				d.anchors[fmt.Sprintf("%s-%d", a, n)] = true
			} else {
				d.anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range link.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			d.links = append(d.links, docLink{line: d.lines, target: m[1]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// heading returns the text of an ATX heading line.
func heading(line string) (string, bool) {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || n >= len(line) || line[n] != ' ' {
		return "", false
	}
	return strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[n:]), "#")), true
}

// slug is GitHub's anchor for a heading: lower case, links reduced to
// their text, punctuation dropped, spaces turned into hyphens.
func slug(h string) string {
	h = headingLink.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestSlug pins the anchor rules on headings of this repository.
func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"Issuers: what the platform sets up, what a team writes": "issuers-what-the-platform-sets-up-what-a-team-writes",
		"The ordinary run: 1000 ApiKeys + 1000 RevioTokens":      "the-ordinary-run-1000-apikeys--1000-reviotokens",
		"ApiKey `.spec.rolloutRestart[]`":                        "apikey-specrolloutrestart",
		"Install with [Helm](https://helm.sh)":                   "install-with-helm",
		"kubectl plugin: kubectl-keywarden":                      "kubectl-plugin-kubectl-keywarden",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestLinks: every relative link in README.md and docs/*.md names a file
// or directory of the repository, and every #anchor a heading (or an
// <a id>) of the file it points into.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	docs := map[string]doc{}
	get := func(path string) doc {
		path = filepath.Clean(path)
		if d, ok := docs[path]; ok {
			return d
		}
		d := parse(t, path)
		docs[path] = d
		return d
	}
	checked := 0
	for _, f := range files {
		name, _ := filepath.Rel(root, f)
		for _, l := range get(f).links {
			target := l.target
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, anchor, _ := strings.Cut(target, "#")
			dest := filepath.Clean(f)
			if file != "" {
				dest = filepath.Join(filepath.Dir(f), filepath.FromSlash(file))
				st, err := os.Stat(dest)
				if err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", name, l.line, target, file)
					continue
				}
				if rel, err := filepath.Rel(root, dest); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s:%d: link %q leaves the repository", name, l.line, target)
					continue
				}
				if st.IsDir() {
					if anchor != "" {
						t.Errorf("%s:%d: link %q: an anchor into a directory", name, l.line, target)
					}
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s:%d: link %q: an anchor into a file that is not Markdown", name, l.line, target)
				continue
			}
			if !get(dest).anchors[anchor] {
				t.Errorf("%s:%d: link %q: no heading or <a id> %q in %s", name, l.line, target, anchor, filepath.Base(dest))
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d relative links found: the parser is broken", checked)
	}
	t.Logf("%d relative links checked in %d files", checked, len(files))
}

// TestReadmeLength: the README stays a user's manual.
func TestReadmeLength(t *testing.T) {
	d := parse(t, filepath.Join(root, "README.md"))
	if d.lines > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move details to docs/ and link them", d.lines, readmeMaxLines)
	}
}
