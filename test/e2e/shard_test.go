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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

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
	m, err := env.StartManager(ctx, testenv.ManagerOptions{AllowedEndpoints: sim.Endpoints(), Args: []string{
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

// splitIssuer splits a manifest of apiKeyManifest or revioTokenManifest into
// the issuer it brings and its ApiKey or RevioToken.
func splitIssuer(t *testing.T, manifest []byte) (issuer, obj *unstructured.Unstructured) {
	t.Helper()
	objs, err := testenv.SplitDocuments(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || !strings.HasSuffix(objs[0].GetKind(), "Issuer") {
		t.Fatalf("want an issuer and one object, got %d documents", len(objs))
	}
	return objs[0], objs[1]
}

// setShard puts an object into a shard ("" leaves it to the main instance).
func setShard(o *unstructured.Unstructured, shard string) *unstructured.Unstructured {
	if shard != "" {
		l := o.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l[controller.ShardLabel] = shard
		o.SetLabels(l)
	}
	return o
}

// shardKey is an ApiKey of apiKeyManifest in shard, naming the ReevitIssuer
// issuer of its namespace.
func shardKey(t *testing.T, name, shard, issuer string) *unstructured.Unstructured {
	t.Helper()
	_, ak := splitIssuer(t, apiKeyManifest(name, 720*time.Hour, time.Hour))
	if err := unstructured.SetNestedField(ak.Object, issuer, "spec", "issuerRef", "name"); err != nil {
		t.Fatal(err)
	}
	return setShard(ak, shard)
}

// shardToken is a RevioToken of revioTokenManifest in shard, naming the
// RevioIssuer revioIssuerName.
func shardToken(t *testing.T, name, shard string) *unstructured.Unstructured {
	t.Helper()
	_, rt := splitIssuer(t, revioTokenManifest(name))
	return setShard(rt, shard)
}

// namedReevitIssuer is the ReevitIssuer of apiKeyManifest, named name and naming
// the admin-key Secret secret.
func namedReevitIssuer(t *testing.T, name, secret string) *unstructured.Unstructured {
	t.Helper()
	iss, _ := splitIssuer(t, apiKeyManifest("unused", time.Hour, time.Minute))
	iss.SetName(name)
	if err := unstructured.SetNestedField(iss.Object, secret, "spec", "adminKeySecretRef", "name"); err != nil {
		t.Fatal(err)
	}
	return iss
}

// joinManifest joins objects into one multi-document manifest for kubectl.
func joinManifest(t *testing.T, objs ...*unstructured.Unstructured) []byte {
	t.Helper()
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return []byte(strings.Join(docs, "---\n"))
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

// The finalizers of the issuer model (internal/controller): a Reevit issuer
// holds its own while ApiKeys hold keys made through it, and its admin-key
// Secret holds the in-use finalizer while an issuer names it.
const (
	issuerInUseFinalizer = "credentials.keywarden.dev/issuer-in-use"
	secretInUseFinalizer = "keywarden.dev/in-use"
)

// getIssuer reads an issuer of kind (see issuerConditions) as it is.
func getIssuer(g Gomega, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
	return u
}

// TestShards runs the suite's manager as the main instance (mainSelector)
// and two shard managers: each reconciles its own ApiKeys and RevioTokens
// and nothing else (its metrics name only them; an object no running shard
// claims is never touched, even when a Secret it names changes), each holds
// a Lease of its own, and an object moved between shards is taken over
// without a second key. Issuers are not sharded: every instance checks them,
// whatever their labels, and they do not fight over an issuer's status or
// over its Secret's in-use finalizer. A ReevitIssuer whose only dependents
// are shard1's ApiKeys stays, when deleted, while those ApiKeys hold keys,
// although the main instance and shard2 see none of them; it goes once they
// are deleted and their keys revoked.
func TestShards(t *testing.T) {
	ctx := context.Background()
	shard1 := startShard(t, shard1Selector)
	shard2 := startShard(t, shard2Selector)
	ns := newNamespace(t, "shards")
	c := sim.Credentials
	createSecret(t, ns, "reevit-admin", c.AdminKey)
	createSecret(t, ns, "reevit-admin-shard1", c.AdminKey)
	createSecret(t, ns, "revio-api-key", c.RevioAPIKey)

	// reevitIssuerName serves ApiKeys of every instance; shard1Issuer only
	// shard1's held-1 and held-2. The RevioIssuer carries the label of
	// shard3, which no instance runs: a shard label on an issuer changes
	// nothing.
	const shard1Issuer = "reevit-shard1"
	revio, _ := splitIssuer(t, revioTokenManifest("unused"))
	apply(t, ns, joinManifest(t,
		namedReevitIssuer(t, reevitIssuerName, "reevit-admin"), namedReevitIssuer(t, shard1Issuer, "reevit-admin-shard1"), setShard(revio, "shard3"),
		shardKey(t, "main-key", "", reevitIssuerName), shardKey(t, "shard1-key", "shard1", reevitIssuerName),
		shardKey(t, "shard2-key", "shard2", reevitIssuerName), shardKey(t, "shard3-key", "shard3", reevitIssuerName),
		shardKey(t, "held-1", "shard1", shard1Issuer), shardKey(t, "held-2", "shard1", shard1Issuer),
		shardToken(t, "main-token", ""), shardToken(t, "shard1-token", "shard1"), shardToken(t, "shard3-token", "shard3"),
	))
	issuers := []struct{ kind, name, secret string }{
		{v1alpha1.KindReevitIssuer, reevitIssuerName, "reevit-admin"},
		{v1alpha1.KindReevitIssuer, shard1Issuer, "reevit-admin-shard1"},
		{v1alpha1.KindRevioIssuer, revioIssuerName, "revio-api-key"},
	}

	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		for _, i := range issuers {
			conds, gen := issuerConditions(g, i.kind, ns, i.name)
			expectReady(g, conds, gen)
		}
		for _, name := range []string{"main-key", "shard1-key", "shard2-key", "held-1", "held-2"} {
			expectOneLiveKey(g, t, ns, name)
		}
		for _, name := range []string{"main-token", "shard1-token"} {
			rt := getRevioToken(g, ns, name)
			expectReady(g, rt.Status.Conditions, rt.Generation)
		}
	}).WithTimeout(time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())

	// Each manager reconciled exactly its shard's ApiKeys and RevioTokens.
	owners := map[string]string{"main-key": "main", "shard1-key": "shard1", "shard2-key": "shard2", "held-1": "shard1", "held-2": "shard1",
		"main-token": "main", "shard1-token": "shard1"}
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

	// A change of every Secret the issuers name reaches only the shard that
	// holds each resource: shard3's objects stay untouched (the main
	// instance does not see them, nor do the other shards). Every instance
	// sees the new credential version of each issuer; one check each is
	// recorded, after which the instances leave the issuer alone.
	secretRVs := map[string]string{}
	for _, i := range issuers {
		if _, err := env.AdminKubectl(ctx, nil, "annotate", "secret", i.secret, "-n", ns, "touched=1"); err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: i.secret}, &s)).To(Succeed())
		secretRVs[i.secret] = s.ResourceVersion
	}
	g.Eventually(func(g Gomega) {
		for _, i := range issuers {
			u := getIssuer(g, i.kind, ns, i.name)
			checked, _, _ := unstructured.NestedString(u.Object, "status", "checkedVersion")
			g.Expect(checked).To(Equal(fmt.Sprintf("%d/%s", u.GetGeneration(), secretRVs[i.secret])), "%s %s: the new Secret version is not checked", i.kind, i.name)
			conds, gen := issuerConditions(g, i.kind, ns, i.name)
			expectReady(g, conds, gen)
		}
	}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	rvs := map[string]string{}
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
		// Every instance runs the issuer reconcilers and the release of
		// admin-key Secrets: none of them may drop a finalizer another puts
		// back, or rewrite an issuer's status another wrote.
		for _, i := range issuers {
			u := getIssuer(g, i.kind, ns, i.name)
			if i.kind == v1alpha1.KindReevitIssuer {
				g.Expect(u.GetFinalizers()).To(ContainElement(issuerInUseFinalizer), "%s lost its finalizer", i.name)
				var s corev1.Secret
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: i.secret}, &s)).To(Succeed())
				g.Expect(s.Finalizers).To(ContainElement(secretInUseFinalizer), "the in-use finalizer is gone from %s, which %s names", i.secret, i.name)
				g.Expect(s.ResourceVersion).To(Equal(secretRVs[i.secret]), "Secret %s keeps changing: instances fight over its finalizer", i.secret)
			}
			key := i.kind + "/" + i.name
			if rvs[key] == "" {
				rvs[key] = u.GetResourceVersion()
			}
			g.Expect(u.GetResourceVersion()).To(Equal(rvs[key]), "%s keeps changing: instances fight over it", key)
		}
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

	// Deleting shard1Issuer, whose only dependents are shard1's held-1 and
	// held-2: every instance reconciles the deletion, and the main instance
	// and shard2, whose caches hold neither ApiKey, count them on the API
	// server. The issuer stays, held by its finalizer, while they hold
	// keys, and so does its Secret's in-use finalizer.
	heldKeys := map[string]string{} // ApiKey UID -> its key
	for _, name := range []string{"held-1", "held-2"} {
		ak := getApiKey(g, ns, name)
		heldKeys[string(ak.UID)] = ak.Status.KeyID
	}
	if _, err := env.AdminKubectl(ctx, nil, "delete", "reevitissuer", shard1Issuer, "-n", ns, "--wait=false"); err != nil {
		t.Fatal(err)
	}
	expectHeld := func(g Gomega) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(v1alpha1.KindReevitIssuer))
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: shard1Issuer}, u)
		g.Expect(apierrors.IsNotFound(err)).To(BeFalse(), "the issuer is gone while shard1's ApiKeys hold keys made through it")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(u.GetDeletionTimestamp()).NotTo(BeNil())
		g.Expect(u.GetFinalizers()).To(ContainElement(issuerInUseFinalizer), "the issuer was let go while shard1's ApiKeys hold its keys")
		conds, _ := issuerConditions(g, v1alpha1.KindReevitIssuer, ns, shard1Issuer)
		c := condition(conds, v1alpha1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse), "Ready of the deleting issuer")
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonIssuerInUse), "Ready of the deleting issuer: %s", c.Message)
		g.Expect(c.Message).To(ContainSubstring(" 2 ApiKey(s) "), "the issuer does not count both of shard1's ApiKeys")
		for uid, id := range heldKeys {
			g.Expect(keysOf(t, uid)).To(ContainElement(And(HaveField("ID", id), HaveField("Revoked", false))), "key %s revoked while its ApiKey lives", id)
		}
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reevit-admin-shard1"}, &s)).To(Succeed())
		g.Expect(s.Finalizers).To(ContainElement(secretInUseFinalizer), "the Secret of the deleting issuer lost its in-use finalizer")
	}
	g.Eventually(expectHeld).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Consistently(expectHeld).WithTimeout(5 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

	// Deleting the ApiKeys revokes their keys through the deleting issuer;
	// then the issuer goes, and its Secret is released.
	if _, err := env.AdminKubectl(ctx, nil, "delete", "apikey", "held-1", "held-2", "-n", ns, "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	for uid := range heldKeys {
		keys := keysOf(t, uid)
		g.Expect(keys).NotTo(BeEmpty())
		for _, k := range keys {
			g.Expect(k.Revoked).To(BeTrue(), "key %s still active after its ApiKey was deleted", k.ID)
		}
	}
	g.Eventually(func(g Gomega) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(v1alpha1.KindReevitIssuer))
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: shard1Issuer}, u)
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the issuer is still there (finalizers %v, error %v) after its ApiKeys went", u.GetFinalizers(), err)
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reevit-admin-shard1"}, &s)).To(Succeed())
		g.Expect(s.Finalizers).NotTo(ContainElement(secretInUseFinalizer), "no issuer names the Secret any more")
	}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	delete(owners, "held-1")
	delete(owners, "held-2")

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
	// The issuer the moved ApiKeys use, now with dependents in every
	// instance, is untouched by the moves.
	u := getIssuer(g, v1alpha1.KindReevitIssuer, ns, reevitIssuerName)
	g.Expect(u.GetFinalizers()).To(ContainElement(issuerInUseFinalizer))
	g.Expect(u.GetResourceVersion()).To(Equal(rvs[v1alpha1.KindReevitIssuer+"/"+reevitIssuerName]), "the moves rewrote the issuer")
	var s corev1.Secret
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reevit-admin"}, &s)).To(Succeed())
	g.Expect(s.Finalizers).To(ContainElement(secretInUseFinalizer), "the issuer's Secret lost its in-use finalizer")

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
	// The issuer is checked before Reevit slows down, so that the ApiKeys'
	// first reconciles are what the moves race with.
	apply(t, ns, joinManifest(t, namedReevitIssuer(t, reevitIssuerName, "reevit-admin")))
	NewWithT(t).Eventually(func(g Gomega) {
		conds, gen := issuerConditions(g, v1alpha1.KindReevitIssuer, ns, reevitIssuerName)
		expectReady(g, conds, gen)
	}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

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
		ak := shardKey(t, name, "shard1", reevitIssuerName)
		ak.SetNamespace(ns)
		if err := k8s.Create(ctx, ak); err != nil {
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
// their selector, neither Deployment's selector takes the other's pods, and
// both check issuers with the same settings.
func TestShardOverlay(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	rendered, _, stderr := serverDryRun(ctx, g, "config/shards")
	g.Expect(stderr).NotTo(ContainSubstring("Warning"))
	objs, err := testenv.SplitDocuments(rendered)
	g.Expect(err).NotTo(HaveOccurred())
	selectors := map[string]map[string]string{}
	podLabels := map[string]map[string]string{}
	args := map[string][]string{}
	// issuerSettings: what decides an issuer's check (the namespace is the
	// default --cluster-resource-namespace).
	issuerSettings := map[string][]string{}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d)).To(Succeed())
		selectors[d.Name] = d.Spec.Selector.MatchLabels
		podLabels[d.Name] = d.Spec.Template.Labels
		args[d.Name] = d.Spec.Template.Spec.Containers[0].Args
		settings := []string{"namespace=" + d.Namespace}
		for _, a := range args[d.Name] {
			for _, f := range []string{"--allowed-endpoints", "--allow-http-endpoints", "--cluster-resource-namespace", "--namespaces"} {
				if a == f || strings.HasPrefix(a, f+"=") {
					settings = append(settings, a)
				}
			}
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "POD_NAMESPACE" {
				settings = append(settings, fmt.Sprintf("POD_NAMESPACE=%s%v", e.Value, e.ValueFrom))
			}
		}
		issuerSettings[d.Name] = settings
	}
	g.Expect(args).To(HaveLen(2))
	g.Expect(args["keywarden-controller-manager"]).To(ContainElement("--watch-label-selector=" + mainSelector))
	g.Expect(args["keywarden-controller-manager-shard1"]).To(ContainElement("--watch-label-selector=" + shard1Selector))
	// Every instance checks every issuer: they must agree on what an
	// issuer may name and where cluster issuers' Secrets are, or they
	// would write different Ready conditions on the same issuer in turn.
	g.Expect(issuerSettings["keywarden-controller-manager-shard1"]).To(Equal(issuerSettings["keywarden-controller-manager"]),
		"the instances check issuers with different settings")
	for d, sel := range selectors {
		g.Expect(labels.SelectorFromSet(sel).Matches(labels.Set(podLabels[d]))).To(BeTrue(), "%s does not select its own pods", d)
		for other, pl := range podLabels {
			if other != d {
				g.Expect(labels.SelectorFromSet(sel).Matches(labels.Set(pl))).To(BeFalse(), "%s selects the pods of %s", d, other)
			}
		}
	}
}
