package v1alpha1

import "testing"

// TestIssuerKinds: every kind listed builds its object and list, names
// itself, has a partner in the other scope, and defaults its URL to its
// API's documented root.
func TestIssuerKinds(t *testing.T) {
	if len(IssuerKinds) != 4 {
		t.Fatalf("IssuerKinds = %v", IssuerKinds)
	}
	for _, kind := range IssuerKinds {
		o := NewIssuer(kind)
		if o == nil || o.IssuerKind() != kind || NewIssuerList(kind) == nil {
			t.Fatalf("%s: NewIssuer/NewIssuerList do not know it", kind)
		}
		if (o.ReevitSpec() != nil) == (o.RevioSpec() != nil) || IsReevitKind(kind) != (o.ReevitSpec() != nil) {
			t.Errorf("%s: exactly one of the two specs must be set", kind)
		}
		other := NewIssuer(OtherScope(kind))
		if other == nil || other.Cluster() == o.Cluster() || OtherScope(other.IssuerKind()) != kind || IsReevitKind(other.IssuerKind()) != IsReevitKind(kind) {
			t.Errorf("%s: OtherScope is not the same API's kind of the other scope", kind)
		}
		want := DefaultRevioURL
		if IsReevitKind(kind) {
			want = DefaultReevitURL
		}
		if o.BaseURL() != want {
			t.Errorf("%s: BaseURL() = %q, want %q", kind, o.BaseURL(), want)
		}
	}
	if NewIssuer("ApiKey") != nil || NewIssuerList("ApiKey") != nil || OtherScope("ApiKey") != "" {
		t.Error("a kind that is not an issuer must give nil")
	}
}
