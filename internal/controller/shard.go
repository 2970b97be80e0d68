package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// ShardLabel is the label docs/sharding.md assigns objects to shards with
// (any label works: the selector is the manager's --watch-label-selector).
const ShardLabel = "keywarden.dev/shard"

// ParseWatchSelector parses a --watch-label-selector value. An empty value
// (or one that selects everything) means no sharding and returns nil.
func ParseWatchSelector(s string) (labels.Selector, error) {
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("watch label selector %q: %w", s, err)
	}
	if sel.Empty() {
		return nil, nil
	}
	return sel, nil
}

// ShardID is a short, stable name for a selector: the first 8 hex digits of
// the SHA-256 of its canonical form, so spacing and term order in the flag
// do not make two replicas of one shard look different. Empty for nil.
func ShardID(sel labels.Selector) string {
	if sel == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(sel.String()))
	return hex.EncodeToString(sum[:4])
}

// LeaderElectionID is the Lease name of a shard: base, suffixed with the
// selector's ShardID, so each shard elects its own leader (as Flux's
// controllers do). No selector keeps base.
func LeaderElectionID(base string, sel labels.Selector) string {
	if sel == nil {
		return base
	}
	return base + "-" + ShardID(sel)
}

// ShardCache narrows the cache of the primary kinds (ApiKey, RevioToken) to
// the objects sel matches. Every watch that enqueues them works from this
// cache: the primary watches, the issuer watches (an issuer maps to its
// ApiKeys and RevioTokens by a list on the cache) and the Secret watches,
// which map a Secret to resources the same way, so an event only reaches
// this shard's objects. Issuers themselves are not sharded: every shard
// checks them, and counts an issuer's dependents over every shard on the
// API server (IssuerReconciler.AllShards).
//
// The Secret metadata cache cannot be narrowed the same way: an input
// Secret (an admin key, a Rev.io API key) is the user's, carries no shard
// label, and informers select by label or field, never by a set of names.
// It stays cluster- (or --namespaces-) wide, trimmed by TrimForCache.
func ShardCache(o *cache.Options, sel labels.Selector) {
	if sel == nil {
		return
	}
	if o.ByObject == nil {
		o.ByObject = map[client.Object]cache.ByObject{}
	}
	o.ByObject[&v1alpha1.ApiKey{}] = cache.ByObject{Label: sel}
	o.ByObject[&v1alpha1.RevioToken{}] = cache.ByObject{Label: sel}
}
