package controller

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// issuerRecovered reports whether the issuer proved itself after the
// consumer's last failure: its check passed (Ready=True for the current
// generation) later than that failure. A consumer backing off from a
// failure the issuer shared (the API down, the admin key refused) then
// tries again at once instead of sitting out its backoff: the issuer's
// Ready change is the event that brings it, and nothing else would before
// the backoff ends.
//
// It answers true once per check at most: the retry it lets through, if it
// fails, records a failure no earlier than the check, and the issuer
// checks again only when its spec or Secret changes or its own backoff
// ends. Both times come from the injected clock and are compared as
// stored (whole seconds): a check in the same second as the failure does
// not count, so the consumer keeps its backoff rather than retrying on a
// check that may have come first.
func issuerRecovered(iss client.Object, failedAttempts int32, lastFailure *metav1.Time) bool {
	if iss == nil || failedAttempts == 0 || lastFailure == nil {
		return false
	}
	gi, ok := iss.(v1alpha1.GenericIssuer)
	if !ok || gi.IssuerStatus().LastCheckTime == nil {
		return false
	}
	st := gi.IssuerStatus()
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != iss.GetGeneration() {
		return false
	}
	return st.LastCheckTime.Truncate(time.Second).After(lastFailure.Truncate(time.Second))
}
