package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/testenv"
)

// suite is what every scenario shares: the control plane, the processes
// started (their logs are scanned at the end), the credentials seen and the
// figures of the summary.
type suite struct {
	env  *testenv.Env
	mode mode

	mu       sync.Mutex
	managers []*testenv.Manager
	sims     []*testenv.Apisim

	needles  *needles
	statuses *statusLog
	sum      *summary
}

// teardown stops the managers first (they call the API server and apisim),
// then everything testenv started (a restarted API server included).
func (s *suite) teardown() {
	s.mu.Lock()
	mgrs := append([]*testenv.Manager(nil), s.managers...)
	s.mu.Unlock()
	for _, m := range mgrs {
		_ = m.Stop(10 * time.Second)
	}
	_ = s.env.Stop()
}

// startApisim starts an apisim of the suite's own (its faults and counts
// are then the scenario's alone) and remembers its credentials as needles.
// testenv writes every apisim's credentials to the same file, so starts are
// serialised.
func (s *suite) startApisim(t *testing.T, tokenLifetime time.Duration) *testenv.Apisim {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sim, err := s.env.StartApisim(ctx, testenv.ApisimOptions{TokenLifetime: tokenLifetime})
	if err != nil {
		t.Fatalf("start apisim: %v", err)
	}
	s.sims = append(s.sims, sim)
	s.needles.add("apisim admin key", sim.Credentials.AdminKey)
	s.needles.add("apisim Rev.io API key", sim.Credentials.RevioAPIKey)
	return sim
}

// managerArgs are the flags every manager of the suite gets on top of
// testenv's: plain-HTTP metrics (scraped for reconcile counts), one
// namespace, and no drift sweep unless asked (a sweep would revoke a
// leaked key before the invariant checks could count it).
func managerArgs(namespaces string, extra ...string) []string {
	return append([]string{"--metrics-secure=false", "--namespaces=" + namespaces, "--drift-check-interval=0"}, extra...)
}

// startManager starts a manager process and records it for the log scan.
func (s *suite) startManager(t *testing.T, o testenv.ManagerOptions) *testenv.Manager {
	t.Helper()
	m, err := s.tryStartManager(o)
	if err != nil {
		t.Fatalf("start manager: %v", err)
	}
	return m
}

func (s *suite) tryStartManager(o testenv.ManagerOptions) (*testenv.Manager, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := s.env.StartManager(ctx, o)
	if m != nil {
		s.mu.Lock()
		s.managers = append(s.managers, m)
		s.mu.Unlock()
	}
	return m, err
}

// newNamespace creates a namespace with a generated name.
func (s *suite) newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := s.env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// Input Secrets and issuers every scenario namespace holds: each scenario
// has its own apisim, so its issuers are namespaced (a ReevitIssuer and a
// RevioIssuer naming the Secrets of the namespace).
const (
	adminSecret  = "reevit-admin"
	revioSecret  = "revio-api-key"
	reevitIssuer = "reevit"
	revioIssuer  = "revio"
)

// createSecret creates an Opaque Secret with one data key.
func (s *suite) createSecret(t *testing.T, ns, name, key, value string) {
	t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{key: []byte(value)}}
	if err := s.env.Client.Create(context.Background(), sec); err != nil {
		t.Fatalf("create Secret %s/%s: %v", ns, name, err)
	}
}

// createInputSecrets creates the admin-key and Rev.io API-key Secrets of sim
// and the issuers naming them (reevitIssuer, revioIssuer).
func (s *suite) createInputSecrets(t *testing.T, ns string, sim *testenv.Apisim) {
	t.Helper()
	s.createSecret(t, ns, adminSecret, "apiKey", sim.Credentials.AdminKey)
	s.createSecret(t, ns, revioSecret, "apiKey", sim.Credentials.RevioAPIKey)
	s.createIssuer(t, newReevitIssuer(ns, reevitIssuer, sim, v1alpha1.SecretKeyReference{Name: adminSecret, Key: "apiKey"}))
	s.createIssuer(t, newRevioIssuer(ns, revioIssuer, sim, v1alpha1.SecretKeyReference{Name: revioSecret, Key: "apiKey"}))
}

// newReevitIssuer is a ReevitIssuer for sim's organisation with the admin
// key in ref.
func newReevitIssuer(ns, name string, sim *testenv.Apisim, ref v1alpha1.SecretKeyReference) *v1alpha1.ReevitIssuer {
	return &v1alpha1.ReevitIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ReevitIssuerSpec{
			URL: sim.Credentials.ReevitURL, OrgID: sim.Credentials.OrgID, ActorID: "keywarden-faults",
			AdminKeySecretRef: ref,
		},
	}
}

// newRevioIssuer is a RevioIssuer for sim's host with the API key in ref.
func newRevioIssuer(ns, name string, sim *testenv.Apisim, ref v1alpha1.SecretKeyReference) *v1alpha1.RevioIssuer {
	return &v1alpha1.RevioIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RevioIssuerSpec{
			URL: sim.Credentials.RevioURL, Host: sim.Credentials.RevioHost,
			APIKeySecretRef: ref,
		},
	}
}

// createIssuer creates an issuer, retrying while the API server is unavailable.
func (s *suite) createIssuer(t *testing.T, obj client.Object) {
	t.Helper()
	if err := s.create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// adminEnv is the Reevit environment of sim's admin key: Reevit issues keys
// in the environment of the key that asks.
func adminEnv(sim *testenv.Apisim) string {
	if strings.HasPrefix(sim.Credentials.AdminKey, "pfk_live_") {
		return "live"
	}
	return "test"
}

// newApiKey is an ApiKey of the namespace's ReevitIssuer (reevitIssuer,
// for sim) rotating every `every` with grace.
func newApiKey(ns, name string, sim *testenv.Apisim, every, grace time.Duration) *v1alpha1.ApiKey {
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ApiKeySpec{
			IssuerRef:   v1alpha1.ReevitIssuerReference{Kind: v1alpha1.KindReevitIssuer, Name: reevitIssuer},
			Scopes:      []v1alpha1.Scope{"payments:read"},
			Environment: adminEnv(sim),
		},
	}
	if every > 0 {
		ak.Spec.Rotation = &v1alpha1.Rotation{Every: &metav1.Duration{Duration: every}, GracePeriod: &metav1.Duration{Duration: grace}}
	}
	return ak
}

// newRevioToken is a RevioToken of the namespace's RevioIssuer (revioIssuer,
// which names sim: the argument says which apisim a fixture uses).
func newRevioToken(ns, name string, sim *testenv.Apisim) *v1alpha1.RevioToken {
	return &v1alpha1.RevioToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RevioTokenSpec{
			IssuerRef: v1alpha1.RevioIssuerReference{Kind: v1alpha1.KindRevioIssuer, Name: revioIssuer},
		},
	}
}

// createKeysAndTokens creates, in turn, n ApiKeys ak-<i> (rotating every
// minute with a 10 s grace period) and n RevioTokens rt-<i> in ns against
// sim, i formatted with idFormat; it fails the test on the first error.
func (s *suite) createKeysAndTokens(ctx context.Context, t *testing.T, ns string, sim *testenv.Apisim, n int, idFormat string) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf(idFormat, i)
		if err := s.create(ctx, newApiKey(ns, "ak-"+id, sim, time.Minute, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := s.create(ctx, newRevioToken(ns, "rt-"+id, sim)); err != nil {
			t.Fatal(err)
		}
	}
}

// create creates obj, retrying while the API server is unavailable.
func (s *suite) create(ctx context.Context, obj client.Object) error {
	return retryKube(ctx, func() error { return s.env.Client.Create(ctx, obj) })
}

// annotate sets one annotation with a merge patch (a trigger such as
// keywarden.dev/rotate; each new value acts once).
func (s *suite) annotate(ctx context.Context, obj client.Object, key, value string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, key, value)
	return retryKube(ctx, func() error {
		return s.env.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
	})
}

// retryKube retries fn for up to 30 s on errors a restarting or busy API
// server gives.
func retryKube(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		if apierrors.IsInvalid(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// rotateAll asks every ApiKey in ns for a rotation and every RevioToken for
// a refresh, with value v.
func (s *suite) rotateAll(ctx context.Context, ns, v string) error {
	var aks v1alpha1.ApiKeyList
	if err := s.env.Client.List(ctx, &aks, client.InNamespace(ns)); err != nil {
		return err
	}
	var rts v1alpha1.RevioTokenList
	if err := s.env.Client.List(ctx, &rts, client.InNamespace(ns)); err != nil {
		return err
	}
	var errs []error
	for i := range aks.Items {
		errs = append(errs, s.annotate(ctx, &aks.Items[i], v1alpha1.AnnotationRotate, v))
	}
	for i := range rts.Items {
		errs = append(errs, s.annotate(ctx, &rts.Items[i], v1alpha1.AnnotationRefresh, v))
	}
	return errors.Join(errs...)
}

// condition returns the condition of type typ, or nil.
func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	return meta.FindStatusCondition(conds, typ)
}

// readyFor reports whether Ready is True for generation gen.
func readyFor(conds []metav1.Condition, gen int64) bool {
	c := condition(conds, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gen
}

// describeReady names the Ready condition for failure messages.
func describeReady(conds []metav1.Condition) string {
	c := condition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return "no Ready condition"
	}
	return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
}

// poll calls fn every interval until it returns true, ctx ends or timeout
// passes; the error carries fn's last explanation.
func poll(ctx context.Context, timeout, interval time.Duration, fn func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := fn()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), why)
		case <-time.After(interval):
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// metricLine matches one sample of the Prometheus text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)

// scrape reads a manager's /metrics (plain HTTP, --metrics-secure=false) and
// returns the sum of every sample of name whose labels contain all of want
// (`key="value"` strings).
func scrape(ctx context.Context, m *testenv.Manager, name string, want ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.MetricsAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		mm := metricLine.FindStringSubmatch(sc.Text())
		if mm == nil || mm[1] != name {
			continue
		}
		for _, w := range want {
			if !strings.Contains(mm[2], w) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(mm[3], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// reconciles returns controller_runtime_reconcile_total of one controller
// (apikey, reviotoken), every result summed.
func reconciles(ctx context.Context, m *testenv.Manager, controller string) (float64, error) {
	return scrape(ctx, m, "controller_runtime_reconcile_total", `controller="`+controller+`"`)
}

// reconcileCounts scrapes both controllers' totals.
func reconcileCounts(ctx context.Context, m *testenv.Manager) (ak, rt float64, err error) {
	if ak, err = reconciles(ctx, m, "apikey"); err != nil {
		return 0, 0, err
	}
	rt, err = reconciles(ctx, m, "reviotoken")
	return ak, rt, err
}

// countStatus sums an apisim count map (endpoint -> status -> calls) over
// the given statuses (none: every status).
func countStatus(m map[string]map[int]int, statuses ...int) int {
	n := 0
	for _, byStatus := range m {
		for st, c := range byStatus {
			if len(statuses) == 0 {
				n += c
				continue
			}
			for _, want := range statuses {
				if st == want {
					n += c
				}
			}
		}
	}
	return n
}

// countDelta subtracts an earlier apisim count snapshot from a later one.
func countDelta(later, earlier apisim.Counts) apisim.Counts {
	sub := func(a, b map[string]map[int]int) map[string]map[int]int {
		out := map[string]map[int]int{}
		for ep, byStatus := range a {
			out[ep] = map[int]int{}
			for st, c := range byStatus {
				out[ep][st] = c - b[ep][st]
			}
		}
		return out
	}
	return apisim.Counts{Reevit: sub(later.Reevit, earlier.Reevit), Revio: sub(later.Revio, earlier.Revio)}
}
