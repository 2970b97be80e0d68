package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/internal/testenv"
)

// dashboardFile is the generated Grafana dashboard (make dashboard).
const dashboardFile = "config/grafana/keywarden.json"

// dashboardQuery is one query of the dashboard and where it sits.
type dashboardQuery struct {
	where string
	// expr is PromQL; variable queries are reduced to their PromQL part.
	expr string
}

// dashboardQueries reads every PromQL expression of the dashboard: each
// panel target's expr (rows' nested panels too) and each query variable.
func dashboardQueries(path string) ([]dashboardQuery, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []dashboardQuery
	var walk func(raw []json.RawMessage) error
	walk = func(raw []json.RawMessage) error {
		for _, r := range raw {
			var p struct {
				Type    string            `json:"type"`
				Title   string            `json:"title"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					RefID string `json:"refId"`
					Expr  string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(r, &p); err != nil {
				return err
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("panel %q, query %s: empty expr", p.Title, t.RefID)
				}
				out = append(out, dashboardQuery{where: fmt.Sprintf("panel %q query %s", p.Title, t.RefID), expr: t.Expr})
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		expr, err := variablePromQL(q)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		if expr != "" {
			out = append(out, dashboardQuery{where: "variable " + v.Name, expr: expr})
		}
	}
	return out, nil
}

// variablePromQL is the PromQL inside a Grafana Prometheus variable query:
// label_values(selector, label) selects series, label_values(label) and
// metrics(regex) select none, query_result(expr) is PromQL.
func variablePromQL(q string) (string, error) {
	q = strings.TrimSpace(q)
	inner := func(fn string) (string, bool) {
		if rest, ok := strings.CutPrefix(q, fn+"("); ok && strings.HasSuffix(rest, ")") {
			return strings.TrimSuffix(rest, ")"), true
		}
		return "", false
	}
	if in, ok := inner("label_values"); ok {
		i := strings.LastIndex(in, ",")
		if i < 0 {
			return "", nil
		}
		return strings.TrimSpace(in[:i]), nil
	}
	if in, ok := inner("query_result"); ok {
		return in, nil
	}
	if _, ok := inner("metrics"); ok || q == "" {
		return "", nil
	}
	return "", fmt.Errorf("unknown variable query %q", q)
}

// promqlWords are PromQL's keywords and operators spelled as words: never
// metric names where they stand (a function is recognised by its "(").
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "atan2": true,
	// Aggregation operators, which may stand before by (...) or without (...).
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelListWords take a parenthesised list of label names, not an expression.
var labelListWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promqlMetricNames returns the metric names a PromQL expression selects, in
// order of appearance and without repeats: identifiers that are neither a
// function (followed by "("), a keyword, a label (inside {...} or a by(...)
// list), a duration (inside [...]) nor part of a string, plus the value of a
// {__name__="..."} matcher. Grafana variables ($x, ${x}, [[x]]) are ignored
// where they stand. A name chosen by regular expression cannot be checked
// and is an error.
func promqlMetricNames(expr string) ([]string, error) {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	// skipString returns the index after the string literal at i.
	skipString := func(s string, i int) (int, string, error) {
		q := s[i]
		var sb strings.Builder
		for j := i + 1; j < len(s); j++ {
			switch {
			case s[j] == '\\' && q != '`' && j+1 < len(s):
				j++
				sb.WriteByte(s[j])
			case s[j] == q:
				return j + 1, sb.String(), nil
			default:
				sb.WriteByte(s[j])
			}
		}
		return 0, "", fmt.Errorf("unterminated string in %q", s)
	}
	// closing returns the index after the bracket that closes s[i].
	closing := func(s string, i int) (int, error) {
		open, shut := s[i], map[byte]byte{'(': ')', '[': ']', '{': '}'}[s[i]]
		depth := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '"', '\'', '`':
				k, _, err := skipString(s, j)
				if err != nil {
					return 0, err
				}
				j = k - 1
			case open:
				depth++
			case shut:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c in %q", open, s)
	}
	nextNonSpace := func(s string, i int) byte {
		for ; i < len(s); i++ {
			if s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				return s[i]
			}
		}
		return 0
	}
	s := expr
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, _, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#': // a comment, to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '$': // a Grafana variable: $x or ${x}
			i++
			if i < len(s) && s[i] == '{' {
				j, err := closing(s, i)
				if err != nil {
					return nil, err
				}
				i = j
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case c == '[': // a range, a subquery or a Grafana [[x]] variable
			j, err := closing(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{': // label matchers; __name__ may name the metric
			j, err := closing(s, i)
			if err != nil {
				return nil, err
			}
			body := s[i+1 : j-1]
			for k := 0; k < len(body); {
				switch {
				case body[k] == '"' || body[k] == '\'' || body[k] == '`':
					n, _, err := skipString(body, k)
					if err != nil {
						return nil, err
					}
					k = n
				case strings.HasPrefix(body[k:], "__name__") && (k == 0 || !isIdent(body[k-1])):
					rest := strings.TrimLeft(body[k+len("__name__"):], " ")
					if !strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "=~") {
						return nil, fmt.Errorf("%q chooses metric names with %.2s: only __name__=\"...\" can be checked", expr, rest)
					}
					rest = strings.TrimLeft(rest[1:], " ")
					if rest == "" || (rest[0] != '"' && rest[0] != '\'' && rest[0] != '`') {
						return nil, fmt.Errorf("%q: __name__ without a string", expr)
					}
					_, v, err := skipString(rest, 0)
					if err != nil {
						return nil, err
					}
					add(v)
					k += len("__name__")
				default:
					k++
				}
			}
			i = j
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			next := nextNonSpace(s, j)
			i = j
			switch {
			case labelListWords[strings.ToLower(word)]:
				if next == '(' {
					k := strings.IndexByte(s[j:], '(') + j
					end, err := closing(s, k)
					if err != nil {
						return nil, err
					}
					i = end
				}
			case promqlWords[strings.ToLower(word)], next == '(':
				// A keyword, or a function or aggregation.
			default:
				add(word)
			}
		default:
			switch c {
			case '(':
				depth++
			case ')':
				if depth--; depth < 0 {
					return nil, fmt.Errorf("unbalanced ) in %q", expr)
				}
			}
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return names, nil
}

// TestDashboardPromQLNames: the metric-name parser on the shapes of PromQL
// a dashboard uses, and the ones it must not be fooled by.
func TestDashboardPromQLNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`keywarden_live_keys`, []string{"keywarden_live_keys"}},
		{`keywarden_live_keys > 2`, []string{"keywarden_live_keys"}},
		{`sum by (kind, result) (increase(keywarden_renewals_total{result="failure", kind=~"Api.*"}[5m]))`, []string{"keywarden_renewals_total"}},
		{`sum(rate(a_total[$__rate_interval])) by (le) / on(namespace) group_left(name) b`, []string{"a_total", "b"}},
		{`histogram_quantile(0.99, sum without (instance) (rate(x_seconds_bucket[5m:1m])))`, []string{"x_seconds_bucket"}},
		{`x_sum / x_count`, []string{"x_sum", "x_count"}},
		{`count((time() - m{namespace=~"$namespace"}) > bool 600) or vector(0)`, []string{"m"}},
		{`a unless b and on() c or d offset 5m`, []string{"a", "b", "c", "d"}},
		{`label_replace(m, "dst", "$1", "src", "(.*) total_fake{")`, []string{"m"}},
		{`{__name__="up", job="x"} * 1e3 + Inf - NaN`, []string{"up"}},
		{`max_over_time(m[1h] @ end())`, []string{"m"}},
		{`sort(bottomk(25, m{a="}"} - time())) # by (not_a_metric)`, []string{"m"}},
		{`topk(${k}, m) or [[legacy]]`, []string{"m"}},
		{`ns:recorded:rate5m`, []string{"ns:recorded:rate5m"}},
		{`vector(1)`, nil},
	} {
		got, err := promqlMetricNames(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`{__name__=~"keywarden_.*"}`, `sum(m`, `m{a="b}`} {
		if _, err := promqlMetricNames(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	for q, want := range map[string]string{
		`label_values(keywarden_x{namespace=~"$ns"}, namespace)`: `keywarden_x{namespace=~"$ns"}`,
		`label_values(namespace)`:                                "",
		`query_result(sum(m))`:                                   "sum(m)",
	} {
		if got, err := variablePromQL(q); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", q, got, err, want)
		}
	}
}

// TestDashboardPanels: the generated dashboard has the panels docs/helm-and-dashboard.md
// lists, each with a query, and every query parses.
func TestDashboardPanels(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, dashboardFile))
	g.Expect(err).NotTo(HaveOccurred())
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID    int    `json:"id"`
			Type  string `json:"type"`
			Title string `json:"title"`
		} `json:"panels"`
	}
	g.Expect(json.Unmarshal(b, &d)).To(Succeed())
	g.Expect(d.UID).To(Equal("keywarden-overview"))
	var titles []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		g.Expect(ids).NotTo(HaveKey(p.ID), "panel id %d used twice", p.ID)
		ids[p.ID] = true
		if p.Type != "row" {
			titles = append(titles, p.Title)
		}
	}
	g.Expect(titles).To(ContainElements("Credentials expiring soon", "Renewals by result", "External API latency",
		"External API errors by code", "Pending revocations", "Live keys per ApiKey", "Reconcile errors",
		"Issuers not Ready", "Issuers", "Policy violations", "Refused by policy"))
	qs, err := dashboardQueries(filepath.Join(env.RepoRoot, dashboardFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(qs)).To(BeNumerically(">=", len(titles)))
	for _, q := range qs {
		names, err := promqlMetricNames(q.expr)
		g.Expect(err).NotTo(HaveOccurred(), q.where)
		g.Expect(names).NotTo(BeEmpty(), "%s selects no series: %s", q.where, q.expr)
	}
}

// exposition is what a /metrics scrape served: sample names, and each
// family's type (histogram samples are name_bucket, _sum and _count).
type exposition struct {
	samples map[string]bool
	types   map[string]string
}

// scrapeAs reads a manager's /metrics over HTTPS (its self-signed
// certificate, on loopback) with a bearer token, as Prometheus would.
func scrapeAs(ctx context.Context, addr, token string) (exposition, error) {
	ex := exposition{samples: map[string]bool{}, types: map[string]string{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return ex, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the manager's self-signed loopback certificate
	resp, err := hc.Do(req)
	if err != nil {
		return ex, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return ex, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				ex.types[f[0]] = f[1]
			}
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			ex.samples[l[:i]] = true
		}
	}
	return ex, sc.Err()
}

// dashboardAgainst checks the dashboard's queries against what mgr, a
// manager of e that has checked issuers (keywarden_issuer_ready), reconciled
// an ApiKey and a RevioToken, and refused an ApiKey by its issuer's policy
// (keywarden_policy_violation), exports:
// scraped as a ServiceAccount bound to the release's metrics-reader
// ClusterRole (what the chart tells Prometheus users to do), every series a
// query names is served, and every Keywarden series served is on the
// dashboard.
func dashboardAgainst(t *testing.T, e *testenv.Env, mgr *testenv.Manager) {
	ctx := context.Background()
	g := NewWithT(t)
	qs, err := dashboardQueries(filepath.Join(e.RepoRoot, dashboardFile))
	g.Expect(err).NotTo(HaveOccurred())
	used := map[string][]string{} // name -> where
	for _, q := range qs {
		names, err := promqlMetricNames(q.expr)
		g.Expect(err).NotTo(HaveOccurred(), q.where)
		for _, n := range names {
			used[n] = append(used[n], q.where)
		}
	}

	// A scraper's identity, as Prometheus has it in a cluster; and one
	// that nothing binds, which the manager turns away.
	g.Expect(e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}})).To(Succeed())
	for _, name := range []string{"prometheus", "nobody"} {
		g.Expect(e.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: name}})).To(Succeed())
	}
	nobody, err := e.ServiceAccountToken(ctx, "monitoring", "nobody")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = scrapeAs(ctx, mgr.MetricsAddr, nobody)
	g.Expect(err).To(MatchError(ContainSubstring("HTTP 403")), "an unbound ServiceAccount may read the metrics")
	token, err := e.ServiceAccountToken(ctx, "monitoring", "prometheus")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-keywarden-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: helmRelease + "-keywarden-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "monitoring", Name: "prometheus"}},
	})).To(Succeed())

	// Every Keywarden family appears once it has a value: the drift check
	// (keywarden_live_keys) runs within seconds under the test's flags;
	// keywarden_policy_violation exists only while an object violates its
	// issuer's policy, which the caller arranged.
	var ex exposition
	g.Eventually(func(g Gomega) {
		var err error
		ex, err = scrapeAs(ctx, mgr.MetricsAddr, token)
		g.Expect(err).NotTo(HaveOccurred())
		var missing []string
		for n := range used {
			if !ex.samples[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		g.Expect(missing).To(BeEmpty(), "not (yet) served by the manager")
	}).WithTimeout(90*time.Second).WithPolling(time.Second).Should(Succeed(), func() string {
		var errs []error
		for n, where := range used {
			if !ex.samples[n] {
				hint := ""
				if ex.types[n] == "histogram" {
					hint = " (a histogram: query " + n + "_bucket, _sum or _count)"
				}
				errs = append(errs, fmt.Errorf("%s%s, in %s", n, hint, strings.Join(where, ", ")))
			}
		}
		return "dashboard queries name series the manager does not export:\n" + errors.Join(errs...).Error()
	})
	var keywarden []string
	for n := range ex.samples {
		if strings.HasPrefix(n, "keywarden_") {
			keywarden = append(keywarden, n)
		}
	}
	sort.Strings(keywarden)
	g.Expect(len(keywarden)).To(BeNumerically(">=", 11), "the manager serves too few Keywarden series to judge: %v", keywarden)
	g.Expect(keywarden).To(ContainElements("keywarden_issuer_ready", "keywarden_policy_violation"))
	for _, n := range keywarden {
		g.Expect(used).To(HaveKey(n), "the manager exports %s but no dashboard panel shows it", n)
	}
	t.Logf("%d queries name %d series, all served; the %d Keywarden series are all on the dashboard", len(qs), len(used), len(keywarden))
}
