package controller

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

func TestShardSelector(t *testing.T) {
	g := NewWithT(t)

	// No selector: no sharding, the Lease name unchanged.
	for _, s := range []string{"", "  "} {
		sel, err := ParseWatchSelector(s)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sel).To(BeNil())
		g.Expect(LeaderElectionID("keywarden.keywarden.dev", sel)).To(Equal("keywarden.keywarden.dev"))
	}
	_, err := ParseWatchSelector("keywarden.dev/shard in (")
	g.Expect(err).To(HaveOccurred())

	shard1, err := ParseWatchSelector("keywarden.dev/shard in (shard1)")
	g.Expect(err).NotTo(HaveOccurred())
	main, err := ParseWatchSelector("!keywarden.dev/shard")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(shard1.Matches(labels.Set{ShardLabel: "shard1"})).To(BeTrue())
	g.Expect(main.Matches(labels.Set{ShardLabel: "shard1"})).To(BeFalse())
	g.Expect(main.Matches(labels.Set{})).To(BeTrue())

	// Each shard its own Lease; one shard's replicas the same one however
	// the flag is spelled.
	id1 := LeaderElectionID("keywarden.keywarden.dev", shard1)
	g.Expect(id1).To(MatchRegexp(`^keywarden\.keywarden\.dev-[0-9a-f]{8}$`))
	g.Expect(LeaderElectionID("keywarden.keywarden.dev", main)).NotTo(Equal(id1))
	respelled, err := ParseWatchSelector("keywarden.dev/shard   in (shard1 )")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(LeaderElectionID("keywarden.keywarden.dev", respelled)).To(Equal(id1))
	two, _ := ParseWatchSelector("keywarden.dev/shard in (shard1),app=x")
	owt, _ := ParseWatchSelector("app=x, keywarden.dev/shard in (shard1)")
	g.Expect(ShardID(two)).To(Equal(ShardID(owt)))

	// The selector narrows the primary kinds' cache only: Secrets (the
	// user's, unlabelled) stay visible.
	var o cache.Options
	ShardCache(&o, nil)
	g.Expect(o.ByObject).To(BeEmpty())
	ShardCache(&o, shard1)
	g.Expect(o.ByObject).To(HaveLen(2))
	kinds := map[string]labels.Selector{}
	for obj, by := range o.ByObject {
		switch obj.(type) {
		case *v1alpha1.ApiKey:
			kinds["ApiKey"] = by.Label
		case *v1alpha1.RevioToken:
			kinds["RevioToken"] = by.Label
		}
	}
	g.Expect(kinds).To(HaveKeyWithValue("ApiKey", shard1))
	g.Expect(kinds).To(HaveKeyWithValue("RevioToken", shard1))
	g.Expect(o.DefaultLabelSelector).To(BeNil())
}
