package main

import (
	"fmt"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// kind is one of Keywarden's resource kinds: the two that hold credentials
// and the four issuers.
type kind string

const (
	kindApiKey              kind = "apikey"
	kindRevioToken          kind = "reviotoken"
	kindReevitIssuer        kind = "reevitissuer"
	kindClusterReevitIssuer kind = "clusterreevitissuer"
	kindRevioIssuer         kind = "revioissuer"
	kindClusterRevioIssuer  kind = "clusterrevioissuer"
)

// kindNames are the spellings kubectl accepts for each kind besides the
// singular: the plural and the short name.
var kindNames = map[kind][]string{
	kindApiKey:              {"apikeys", "ak"},
	kindRevioToken:          {"reviotokens", "rt"},
	kindReevitIssuer:        {"reevitissuers", "ri"},
	kindClusterReevitIssuer: {"clusterreevitissuers", "cri"},
	kindRevioIssuer:         {"revioissuers", "rvi"},
	kindClusterRevioIssuer:  {"clusterrevioissuers", "crvi"},
}

// parseKind accepts what kubectl accepts: singular, plural, short name and
// the group-qualified forms.
func parseKind(s string) (kind, bool) {
	s = strings.ToLower(s)
	if base, group, ok := strings.Cut(s, "."); ok {
		if group != v1alpha1.GroupVersion.Group && group != "v1alpha1."+v1alpha1.GroupVersion.Group {
			return "", false
		}
		s = base
	}
	for k, names := range kindNames {
		if s == string(k) || s == names[0] || s == names[1] {
			return k, true
		}
	}
	return "", false
}

// Kind is the API kind's name.
func (k kind) Kind() string {
	switch k {
	case kindApiKey:
		return "ApiKey"
	case kindRevioToken:
		return "RevioToken"
	}
	for _, ik := range v1alpha1.IssuerKinds {
		if strings.ToLower(ik) == string(k) {
			return ik
		}
	}
	return "ApiKey"
}

// kindOfAPI is the kind of an API kind name such as ClusterRevioIssuer.
func kindOfAPI(apiKind string) (kind, bool) {
	for k := range kindNames {
		if k.Kind() == apiKind {
			return k, true
		}
	}
	return "", false
}

// clusterScoped is true for the cluster issuers.
func (k kind) clusterScoped() bool {
	return k == kindClusterReevitIssuer || k == kindClusterRevioIssuer
}

// issuer is true for the four issuer kinds.
func (k kind) issuer() bool {
	return k != kindApiKey && k != kindRevioToken
}

// newObject and newList return empty objects of the kind; the issuer kinds'
// come from v1alpha1.NewIssuer and NewIssuerList, the one place that lists
// them.
func (k kind) newObject() client.Object {
	if i := v1alpha1.NewIssuer(k.Kind()); i != nil {
		return i
	}
	if k == kindRevioToken {
		return &v1alpha1.RevioToken{}
	}
	return &v1alpha1.ApiKey{}
}

func (k kind) newList() client.ObjectList {
	if l := v1alpha1.NewIssuerList(k.Kind()); l != nil {
		return l
	}
	if k == kindRevioToken {
		return &v1alpha1.RevioTokenList{}
	}
	return &v1alpha1.ApiKeyList{}
}

// ref names one object.
type ref struct {
	kind kind
	name string
}

func (r ref) String() string { return string(r.kind) + "/" + r.name }

// kindsHelp lists the kinds with their short names, for error messages.
const kindsHelp = "apikey (ak), reviotoken (rt), reevitissuer (ri), clusterreevitissuer (cri), revioissuer (rvi) or clusterrevioissuer (crvi)"

// parseRefs reads the object arguments of a command, in kubectl's forms:
// "KIND/NAME ...", "KIND NAME ..." or, when the command acts on one kind
// only (only != ""), plain "NAME ...".
func parseRefs(args []string, only kind) ([]ref, error) {
	if len(args) == 0 {
		return nil, nil
	}
	var refs []ref
	if !strings.Contains(args[0], "/") {
		if k, ok := parseKind(args[0]); ok {
			if len(args) == 1 {
				return nil, fmt.Errorf("%s: name the object, as %s/NAME or %s NAME", args[0], k, k)
			}
			for _, n := range args[1:] {
				if strings.Contains(n, "/") {
					return nil, fmt.Errorf("%q: give either KIND NAME... or KIND/NAME..., not both", n)
				}
				refs = append(refs, ref{k, n})
			}
			return refs, checkKinds(refs, only)
		}
	}
	for _, a := range args {
		k, name, ok := strings.Cut(a, "/")
		if !ok {
			if only == "" {
				return nil, fmt.Errorf("%q: name the object as KIND/NAME, KIND being %s", a, kindsHelp)
			}
			refs = append(refs, ref{only, a})
			continue
		}
		kk, known := parseKind(k)
		if !known {
			return nil, fmt.Errorf("%q: unknown kind %q: use %s", a, k, kindsHelp)
		}
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("%q: expected KIND/NAME", a)
		}
		refs = append(refs, ref{kk, name})
	}
	return refs, checkKinds(refs, only)
}

func checkKinds(refs []ref, only kind) error {
	if only == "" {
		return nil
	}
	for _, r := range refs {
		if r.kind != only {
			return fmt.Errorf("%s: this command acts on %s objects only", r, only.Kind())
		}
	}
	return nil
}
