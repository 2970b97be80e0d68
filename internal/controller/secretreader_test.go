package controller

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// countingReader counts the reads that reach the API server: all of them,
// and those of a whole Secret (with its data, not metadata only).
type countingReader struct {
	client.Reader
	gets, full atomic.Int32
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	if _, ok := obj.(*corev1.Secret); ok {
		c.full.Add(1)
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

// TestSecretReaderReadsOncePerVersion: a Secret is read from the API server
// once per resourceVersion the metadata watch shows, a new version is read
// afresh, a deleted Secret is forgotten, and callers get copies.
func TestSecretReaderReadsOncePerVersion(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)

	c := secretMetadataCache(ctx, g)

	api := &countingReader{Reader: k8s}
	r := newSecretReader(api, c)
	g.Expect(r.forgetOnDelete(ctx, c)).To(Succeed())

	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admin", Namespace: ns}, Data: map[string][]byte{"apiKey": []byte("one")}}
	g.Expect(k8s.Create(ctx, s)).To(Succeed())
	g.Eventually(func() string { return secretVersion(ctx, c, ns, "admin") }).WithTimeout(10 * time.Second).Should(Equal(s.ResourceVersion))

	for range 5 {
		got, err := r.getInput(ctx, ns, "admin", "apiKey")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got.Data["apiKey"])).To(Equal("one"))
		got.Data["apiKey"] = []byte("changed by a caller")
	}
	g.Expect(api.gets.Load()).To(Equal(int32(1)), "five reads of one version: one GET")

	// A new version: read once the watch shows it, and only once.
	s.Data["apiKey"] = []byte("two")
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	g.Eventually(func() string {
		got, err := r.getInput(ctx, ns, "admin", "apiKey")
		g.Expect(err).NotTo(HaveOccurred())
		return string(got.Data["apiKey"])
	}).WithTimeout(10 * time.Second).Should(Equal("two"))
	_, err := r.getInput(ctx, ns, "admin", "apiKey")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(api.gets.Load()).To(Equal(int32(2)), "two versions: two GETs")

	// A Secret written by the reconciler is known by the server's answer.
	w := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "out", Namespace: ns}, Data: map[string][]byte{"token": []byte("t")}}
	g.Expect(k8s.Create(ctx, w)).To(Succeed())
	r.remember(w)
	g.Expect(r.written(ns, "out").Data).To(Equal(w.Data))
	g.Eventually(func() string { return secretVersion(ctx, c, ns, "out") }).WithTimeout(10 * time.Second).Should(Equal(w.ResourceVersion))
	got, err := r.get(ctx, ns, "out")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(got.Data["token"])).To(Equal("t"))
	g.Expect(api.gets.Load()).To(Equal(int32(2)), "a written Secret needs no GET")

	// An input is remembered with the data key read only.
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
	s.Data = map[string][]byte{"apiKey": []byte("three"), "unrelated": make([]byte, 900<<10)}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	g.Eventually(func() string {
		got, err := r.getInput(ctx, ns, "admin", "apiKey")
		g.Expect(err).NotTo(HaveOccurred())
		return string(got.Data["apiKey"]) + "/" + strconv.Itoa(len(got.Data))
	}).WithTimeout(10 * time.Second).Should(Equal("three/1"))
	g.Expect(r.bytes).To(BeNumerically("<", 1<<10), "the 900 KiB key nobody reads is not kept")

	// A foreign Secret holding an output name is read and never remembered,
	// however large: a tenant cannot make the manager hold other Secrets.
	big := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns}, Data: map[string][]byte{"blob": make([]byte, 900<<10)}}
	g.Expect(k8s.Create(ctx, big)).To(Succeed())
	foreign, err := r.get(ctx, ns, "taken")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(foreign).NotTo(BeNil())
	g.Expect(r.written(ns, "taken")).To(BeNil())
	g.Expect(r.bytes).To(BeNumerically("<", 1<<10))
	g.Expect(k8s.Delete(ctx, big)).To(Succeed())

	// Deleted: absent, and forgotten.
	g.Expect(k8s.Delete(ctx, s)).To(Succeed())
	g.Eventually(func() bool {
		got, err := r.getInput(ctx, ns, "admin", "apiKey")
		g.Expect(err).NotTo(HaveOccurred())
		return got == nil
	}).WithTimeout(10 * time.Second).Should(BeTrue())
	g.Expect(r.size()).To(Equal(1))

	// A deleted Secret nobody reads again is forgotten all the same.
	g.Expect(k8s.Delete(ctx, w)).To(Succeed())
	g.Eventually(r.size).WithTimeout(10 * time.Second).Should(BeZero())
}

// TestSecretReaderNeverDownloadsForeignOutputs: a foreign Secret holding an
// output name is refused from its metadata alone, never read in full, however
// often it is asked for; a Keywarden Secret whose annotation was edited away
// is still recognised as Keywarden's and read in full.
func TestSecretReaderNeverDownloadsForeignOutputs(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	c := secretMetadataCache(ctx, g)
	api := &countingReader{Reader: k8s}
	r := newSecretReader(api, c)

	big := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns}, Data: map[string][]byte{"blob": make([]byte, 512<<10)}}
	g.Expect(k8s.Create(ctx, big)).To(Succeed())
	g.Eventually(func() string { return secretVersion(ctx, c, ns, "taken") }).WithTimeout(10 * time.Second).Should(Equal(big.ResourceVersion))
	for range 3 {
		got, err := r.get(ctx, ns, "taken")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).NotTo(BeNil(), "a foreign Secret is reported, so the caller refuses it")
		g.Expect(got.Data).To(BeEmpty())
		g.Expect(metav1.GetControllerOf(got)).To(BeNil())
	}
	g.Expect(api.full.Load()).To(BeZero(), "the foreign Secret's data was downloaded")
	g.Expect(r.size()).To(BeZero())

	// A real owner: the garbage collector deletes a Secret whose owner is gone.
	rt := rtNew(ns, "k", "no-such-issuer")
	g.Expect(k8s.Create(ctx, rt)).To(Succeed())
	owner := metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: kindRevioToken, Name: rt.Name, UID: rt.UID, Controller: new(true)}
	ours := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ours", Namespace: ns, OwnerReferences: []metav1.OwnerReference{owner}}, Data: map[string][]byte{"apiKey": []byte("v")}}
	g.Expect(k8s.Create(ctx, ours)).To(Succeed())
	g.Eventually(func() string { return secretVersion(ctx, c, ns, "ours") }).WithTimeout(10 * time.Second).Should(Equal(ours.ResourceVersion))
	got, err := r.get(ctx, ns, "ours")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(got.Data["apiKey"])).To(Equal("v"))
	g.Expect(api.full.Load()).To(Equal(int32(1)))
}

// secretMetadataCache is the manager's metadata-only view of Secrets, on a
// cache of its own, synced; it stops with ctx.
func secretMetadataCache(ctx context.Context, g Gomega) cache.Cache {
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultTransform: TrimForCache})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.GetInformer(ctx, secretMetadata())
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = c.Start(ctx) }()
	g.Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
	return c
}
