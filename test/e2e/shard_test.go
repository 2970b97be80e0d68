package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/controller"
	"github.com/keywarden/keywarden/internal/simfault"
	"github.com/keywarden/keywarden/internal/testenv"
)

// The suite's manager is the main instance: it reconciles what no shard
// label claims (mainSelector, set in runSuite). These tests start shard
// managers beside it.
const (
	mainSelector   = "!" + controller.ShardLabel
	shard1Selector = controller.ShardLabel + " in (shard1)"
	shard2Selector = controller.ShardLabel + " in (shard2)"
)

// startShard runs a manager for one shard, with its default (derived)
// leader-election ID and plain-HTTP metrics the test reads, and waits until
// it holds its Lease. It is stopped when the test ends.
func startShard(t *testing.T, selector string) *testenv.Manager {
	t.Helper()
	ctx := context.Background()
	m, err := env.StartManager(ctx, testenv.ManagerOptions{Args: []string{
		"--watch-label-selector=" + selector, "--metrics-secure=false",
	}})
	if err != nil {
		t.Fatalf("start shard %q: %v", selector, err)
	}
	t.Cleanup(func() {
		if err := m.Stop(10 * time.Second); err != nil {
			t.Errorf("stop shard %q: %v", selector, err)
		}
	})
	sel, err := controller.ParseWatchSelector(selector)
	if err != nil {
		t.Fatal(err)
	}
	lease := controller.LeaderElectionID(testenv.LeaderElectionID, sel)
	NewWithT(t).Eventually(func(g Gomega) {
		var l coordinationv1.Lease
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: testenv.ManagerNamespace, Name: lease}, &l)).To(Succeed())
		g.Expect(l.Spec.HolderIdentity).NotTo(BeNil())
		g.Expect(*l.Spec.HolderIdentity).NotTo(BeEmpty())
	}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(Succeed(), "shard %q never held Lease %s:\n%s", selector, lease, m.LogTail(30))
	return m
}

// scrape returns a manager's /metrics (plain HTTP, see startShard).
func scrape(g Gomega, m *testenv.Manager) string {
	resp, err := http.Get("http://" + m.MetricsAddr + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	return string(b)
}

// reconciled reports whether a manager's metrics hold a series of the
// object: every ApiKey and RevioToken reconcile records its renewal and
// revocation series, and a manager that stops seeing the object (deleted,
// or moved to another shard) drops them.
func reconciled(metrics, ns, name string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "keywarden_") && strings.Contains(l, `name="`+name+`"`) && strings.Contains(l, `namespace="`+ns+`"`) {
			return true
		}
	}
	return false
}

// reevitCreates is how many key creations (first sends and replays) a
// manager's metrics say it sent to Reevit and got an answer for.
func reevitCreates(metrics string) int {
	n := 0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "keywarden_external_requests_total{") && strings.Contains(l, `api="reevit"`) &&
			strings.Contains(l, `operation="create"`) && strings.Contains(l, `code="2`) {
			v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err == nil {
				n += int(v)
			}
		}
	}
	return n
}

// withShard puts a manifest's object into a shard ("" leaves it to the main
// instance).
func withShard(manifest []byte, shard string) []byte {
	if shard == "" {
		return manifest
	}
	return []byte(strings.Replace(string(manifest), "metadata:\n", "metadata:\n  labels:\n    "+controller.ShardLabel+": "+shard+"\n", 1))
}

// moveTo relabels an object into shard ("" removes the label: the main
// instance's).
func moveTo(ctx context.Context, obj client.Object, shard string) error {
	v := "null"
	if shard != "" {
		v = strconv.Quote(shard)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, controller.ShardLabel, v)
	return k8s.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch)))
}

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// expectOneLiveKey fails g unless the ApiKey is Ready and Reevit holds
// exactly one key made for it, active, the one in status and in the Secret.
func expectOneLiveKey(g Gomega, t *testing.T, ns, name string) *v1alpha1.ApiKey {
	ak := getApiKey(g, ns, name)
	expectReady(g, ak.Status.Conditions, ak.Generation)
	keys := keysOf(t, string(ak.UID))
	g.Expect(keys).To(HaveLen(1), "%s: Reevit holds %d keys made for it, want exactly 1", name, len(keys))
	g.Expect(keys[0].Revoked).To(BeFalse(), "%s: its only key is revoked", name)
	g.Expect(keys[0].ID).To(Equal(ak.Status.KeyID))
	data, err := secretData(context.Background(), ns, name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data["keyId"])).To(Equal(ak.Status.KeyID), "%s: the Secret holds another key", name)
	return ak
}

// TestShards runs the suite's manager as the main instance (mainSelector)
// and two shard managers: each reconciles its own objects and nothing else
// (its metrics name only them; an object no running shard claims is never
// touched, even when a Secret it names changes), each holds a Lease of its
// own, an admin-key Secret only one shard's ApiKey uses keeps its in-use
// finalizer (the other shards cannot see that ApiKey), and an object moved
// between shards is taken over without a second key.
func TestShards(t *testing.T) {
	ctx := context.Background()
	shard1 := startShard(t, shard1Selector)
	shard2 := startShard(t, shard2Selector)
	ns := newNamespace(t, "shards")
	c := sim.Credentials
	createSecret(t, ns, "reevit-admin", c.AdminKey)
	createSecret(t, ns, "reevit-admin-shard1", c.AdminKey)
	createSecret(t, ns, "revio-api-key", c.RevioAPIKey)

	key := func(name string) []byte { return apiKeyManifest(name, 720*time.Hour, time.Hour) }
	shard1Key := strings.Replace(string(key("shard1-key")), "name: reevit-admin\n", "name: reevit-admin-shard1\n", 1)
	var docs []string
	for _, d := range [][]byte{
		key("main-key"), withShard([]byte(shard1Key), "shard1"), withShard(key("shard2-key"), "shard2"), withShard(key("shard3-key"), "shard3"),
		revioTokenManifest("main-token"), withShard(revioTokenManifest("shard1-token"), "shard1"), withShard(revioTokenManifest("shard3-token"), "shard3"),
	} {
		docs = append(docs, string(d))
	}
	apply(t, ns, []byte(strings.Join(docs, "---\n")))

	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		for _, name := range []string{"main-key", "shard1-key", "shard2-key"} {
			expectOneLiveKey(g, t, ns, name)
		}
		for _, name := range []string{"main-token", "shard1-token"} {
			rt := getRevioToken(g, ns, name)
			expectReady(g, rt.Status.Conditions, rt.Generation)
		}
	}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())

	// Each manager reconciled exactly its shard's objects.
	owners := map[string]string{"main-key": "main", "shard1-key": "shard1", "shard2-key": "shard2", "main-token": "main", "shard1-token": "shard1"}
	expectOwners := func(g Gomega) {
		m1, m2 := scrape(g, shard1), scrape(g, shard2)
		for name, owner := range owners {
			g.Expect(reconciled(m1, ns, name)).To(Equal(owner == "shard1"), "shard1 and %s (of %s)", name, owner)
			g.Expect(reconciled(m2, ns, name)).To(Equal(owner == "shard2"), "shard2 and %s (of %s)", name, owner)
		}
		for _, name := range []string{"shard3-key", "shard3-token"} {
			g.Expect(reconciled(m1, ns, name) || reconciled(m2, ns, name)).To(BeFalse(), "%s reconciled by a shard it is not in", name)
		}
	}
	g.Eventually(expectOwners).WithTimeout(10 * time.Second).Should(Succeed())

	// A change of every Secret the resources name reaches only the shard
	// that holds each resource: shard3's objects stay untouched (the main
	// instance does not see them, nor do the other shards).
	for _, s := range []string{"reevit-admin", "reevit-admin-shard1", "revio-api-key"} {
		if _, err := env.AdminKubectl(ctx, nil, "annotate", "secret", s, "-n", ns, "touched=1"); err != nil {
			t.Fatal(err)
		}
	}
	adminRV := ""
	g.Consistently(func(g Gomega) {
		for _, name := range []string{"shard3-key", "shard3-token"} {
			var u unstructured.Unstructured
			u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(map[bool]string{true: "ApiKey", false: "RevioToken"}[strings.HasSuffix(name, "-key")]))
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &u)).To(Succeed())
			g.Expect(u.GetFinalizers()).To(BeEmpty(), "%s has a finalizer: something reconciled it", name)
			g.Expect(u.Object).NotTo(HaveKey("status"), "%s has a status: something reconciled it", name)
			data, err := secretData(ctx, ns, name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(data).To(BeNil(), "%s has a Secret: something reconciled it", name)
		}
		// Only shard1's ApiKey needs this Secret: the main instance and
		// shard2, which do not see that ApiKey, must not release it (and
		// shard1 then put it back, and so on).
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reevit-admin-shard1"}, &s)).To(Succeed())
		g.Expect(s.Finalizers).To(ContainElement("keywarden.dev/in-use"), "the in-use finalizer is gone from a Secret shard1's ApiKey needs")
		if adminRV == "" {
			adminRV = s.ResourceVersion
		}
		g.Expect(s.ResourceVersion).To(Equal(adminRV), "the admin-key Secret keeps changing: shards fight over its finalizer")
	}).WithTimeout(5 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

	// Three Leases, one per instance, each held.
	var leases coordinationv1.LeaseList
	g.Expect(k8s.List(ctx, &leases, client.InNamespace(testenv.ManagerNamespace))).To(Succeed())
	held := map[string]bool{}
	for _, l := range leases.Items {
		held[l.Name] = l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
	}
	for _, s := range []string{shard1Selector, shard2Selector} {
		sel, _ := controller.ParseWatchSelector(s)
		g.Expect(held).To(HaveKeyWithValue(controller.LeaderElectionID(testenv.LeaderElectionID, sel), true), "no held Lease for %q", s)
	}
	g.Expect(held).To(HaveKeyWithValue(testenv.LeaderElectionID, true), "the main instance's explicit --leader-election-id")

	// Moves: an unclaimed object into a running shard is reconciled there;
	// Ready objects moved to another instance are taken over as they are
	// (no new key), and the instance they left forgets them.
	uids := map[string]types.UID{}
	for _, name := range []string{"main-key", "shard1-key"} {
		uids[name] = getApiKey(g, ns, name).UID
	}
	keyIDs := map[string]string{"main-key": getApiKey(g, ns, "main-key").Status.KeyID, "shard1-key": getApiKey(g, ns, "shard1-key").Status.KeyID}
	g.Expect(moveTo(ctx, &v1alpha1.ApiKey{ObjectMeta: objectMeta(ns, "shard3-key")}, "shard1")).To(Succeed())
	g.Expect(moveTo(ctx, &v1alpha1.RevioToken{ObjectMeta: objectMeta(ns, "shard3-token")}, "shard2")).To(Succeed())
	g.Expect(moveTo(ctx, &v1alpha1.ApiKey{ObjectMeta: objectMeta(ns, "main-key")}, "shard2")).To(Succeed())
	g.Expect(moveTo(ctx, &v1alpha1.ApiKey{ObjectMeta: objectMeta(ns, "shard1-key")}, "")).To(Succeed())
	owners = map[string]string{
		"main-key": "shard2", "shard1-key": "main", "shard2-key": "shard2", "shard3-key": "shard1",
		"main-token": "main", "shard1-token": "shard1", "shard3-token": "shard2",
	}
	g.Eventually(func(g Gomega) {
		for _, name := range []string{"main-key", "shard1-key", "shard2-key", "shard3-key"} {
			expectOneLiveKey(g, t, ns, name)
		}
		rt := getRevioToken(g, ns, "shard3-token")
		expectReady(g, rt.Status.Conditions, rt.Generation)
		m1, m2 := scrape(g, shard1), scrape(g, shard2)
		for name, owner := range owners {
			g.Expect(reconciled(m1, ns, name)).To(Equal(owner == "shard1"), "shard1 and %s (now of %s)", name, owner)
			g.Expect(reconciled(m2, ns, name)).To(Equal(owner == "shard2"), "shard2 and %s (now of %s)", name, owner)
		}
	}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	for name, id := range keyIDs {
		ak := getApiKey(g, ns, name)
		g.Expect(ak.UID).To(Equal(uids[name]))
		g.Expect(ak.Status.KeyID).To(Equal(id), "%s got a new key when it moved", name)
	}
	var s corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reevit-admin-shard1"}, &s)).To(Succeed())
	g.Expect(s.Finalizers).To(ContainElement("keywarden.dev/in-use"), "shard1-key moved to the main instance still needs its admin-key Secret")

	expectNoCredentialsInLogs(t, shard1, shard2)
}

// TestShardMove moves ApiKeys between shards while their first key is being
// created, so that both shards see them at once: the shard they left has
// its create request in flight (apisim holds every Reevit request for a few
// seconds), and the shard they join sends the creation recorded in
// status.pendingCreate again, with the same Idempotency-Key. Reevit must end
// up with exactly one key per ApiKey, the one in status and in the Secret.
func TestShardMove(t *testing.T) {
	ctx := context.Background()
	shard1 := startShard(t, shard1Selector)
	shard2 := startShard(t, shard2Selector)
	ns := newNamespace(t, "shard-move")
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)

	faults, err := sim.Control.ReevitFaults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Control.SetReevitFaults(context.Background(), faults); err != nil {
			t.Errorf("restore apisim faults: %v", err)
		}
	})
	const latency = 3 * time.Second
	slow := faults
	slow.Latency = simfault.Duration(latency)
	if err := sim.Control.SetReevitFaults(ctx, slow); err != nil {
		t.Fatal(err)
	}

	create := func(name string) *v1alpha1.ApiKey {
		t.Helper()
		objs, err := testenv.SplitDocuments(withShard(apiKeyManifest(name, 720*time.Hour, time.Hour), "shard1"))
		if err != nil {
			t.Fatal(err)
		}
		objs[0].SetNamespace(ns)
		if err := k8s.Create(ctx, objs[0]); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return &v1alpha1.ApiKey{ObjectMeta: objectMeta(ns, name)}
	}

	// In flight: shard1 has recorded the creation and sent it when the
	// object moves to shard2; both send it; Reevit makes one key.
	g := NewWithT(t)
	for _, name := range []string{"inflight-1", "inflight-2"} {
		var before1, before2 int
		g.Eventually(func(g Gomega) {
			before1, before2 = reevitCreates(scrape(g, shard1)), reevitCreates(scrape(g, shard2))
		}).Should(Succeed())
		ak := create(name)
		g.Eventually(func(g Gomega) {
			g.Expect(getApiKey(g, ns, name).Status.PendingCreate).NotTo(BeNil())
		}).WithTimeout(30*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "shard1 never recorded a creation")
		g.Expect(moveTo(ctx, ak, "shard2")).To(Succeed())
		g.Eventually(func(g Gomega) {
			expectOneLiveKey(g, t, ns, name)
			// Both shards sent the creation and had an answer: shard1's
			// original and shard2's replay of it.
			g.Expect(reevitCreates(scrape(g, shard1))-before1).To(BeNumerically(">=", 1), "shard1 sent no creation")
			g.Expect(reevitCreates(scrape(g, shard2))-before2).To(BeNumerically(">=", 1), "shard2 sent no creation")
		}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(reconciled(scrape(g, shard1), ns, name)).To(BeFalse(), "shard1 still reports %s", name)
		}).WithTimeout(10 * time.Second).Should(Succeed())
		t.Logf("%s: created in shard1, moved to shard2 with its creation in flight; one key at Reevit", name)
	}

	// Moves at every moment of the first reconcile, to shard2 or to the
	// main instance: before, during or after the creation is recorded, and
	// while it is in flight.
	delays := []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, len(delays))
	names := make([]string, len(delays))
	for i, d := range delays {
		names[i] = fmt.Sprintf("race-%d", i)
		dest := []string{"shard2", ""}[i%2]
		ak := create(names[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(d)
			if err := moveTo(ctx, ak, dest); err != nil {
				errs <- fmt.Errorf("move %s: %w", ak.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		for _, name := range names {
			expectOneLiveKey(g, t, ns, name)
		}
	}).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	t.Logf("%d ApiKeys moved at delays %v during their first reconcile: one key each at Reevit", len(names), delays)

	expectNoCredentialsInLogs(t, shard1, shard2)
}

// expectNoCredentialsInLogs: no key or token the suite has seen so far is
// in the shard managers' logs.
func expectNoCredentialsInLogs(t *testing.T, ms ...*testenv.Manager) {
	t.Helper()
	seen.add("apisim's admin key", sim.Credentials.AdminKey)
	seen.add("apisim's Rev.io API key", sim.Credentials.RevioAPIKey)
	for _, m := range ms {
		b, err := m.Log()
		if err != nil {
			t.Fatal(err)
		}
		for needle, where := range seen.needles() {
			if strings.Contains(string(b), needle) {
				t.Errorf("shard manager log %s contains a credential: %s", m.LogPath, where)
			}
		}
	}
}

// TestShardOverlay renders config/shards (docs/sharding.md) and applies it
// as a server-side dry run: the main instance and shard1 each run with
// their selector, and neither Deployment's selector takes the other's pods.
func TestShardOverlay(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	rendered, err := env.Kustomize(ctx, "config/shards")
	g.Expect(err).NotTo(HaveOccurred())
	res, err := env.AdminKubectl(ctx, rendered, "apply", "--server-side", "--dry-run=server", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(res.Stderr)).NotTo(ContainSubstring("Warning"))
	objs, err := testenv.SplitDocuments(rendered)
	g.Expect(err).NotTo(HaveOccurred())
	selectors := map[string]map[string]string{}
	podLabels := map[string]map[string]string{}
	args := map[string][]string{}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d)).To(Succeed())
		selectors[d.Name] = d.Spec.Selector.MatchLabels
		podLabels[d.Name] = d.Spec.Template.Labels
		args[d.Name] = d.Spec.Template.Spec.Containers[0].Args
	}
	g.Expect(args).To(HaveLen(2))
	g.Expect(args["keywarden-controller-manager"]).To(ContainElement("--watch-label-selector=" + mainSelector))
	g.Expect(args["keywarden-controller-manager-shard1"]).To(ContainElement("--watch-label-selector=" + shard1Selector))
	for d, sel := range selectors {
		g.Expect(labels.SelectorFromSet(sel).Matches(labels.Set(podLabels[d]))).To(BeTrue(), "%s does not select its own pods", d)
		for other, pl := range podLabels {
			if other != d {
				g.Expect(labels.SelectorFromSet(sel).Matches(labels.Set(pl))).To(BeFalse(), "%s selects the pods of %s", d, other)
			}
		}
	}
}
