package main

import (
	"fmt"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// kind is one of Keywarden's two resource kinds.
type kind string

const (
	kindApiKey     kind = "apikey"
	kindRevioToken kind = "reviotoken"
)

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
	switch s {
	case "apikey", "apikeys", "ak":
		return kindApiKey, true
	case "reviotoken", "reviotokens", "rt":
		return kindRevioToken, true
	}
	return "", false
}

// Kind is the API kind's name.
func (k kind) Kind() string {
	if k == kindRevioToken {
		return "RevioToken"
	}
	return "ApiKey"
}

// newObject and newList return empty objects of the kind.
func (k kind) newObject() client.Object {
	if k == kindRevioToken {
		return &v1alpha1.RevioToken{}
	}
	return &v1alpha1.ApiKey{}
}

func (k kind) newList() client.ObjectList {
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
				return nil, fmt.Errorf("%q: name the object as apikey/NAME (ak/NAME) or reviotoken/NAME (rt/NAME)", a)
			}
			refs = append(refs, ref{only, a})
			continue
		}
		kk, known := parseKind(k)
		if !known {
			return nil, fmt.Errorf("%q: unknown kind %q: use apikey (ak) or reviotoken (rt)", a, k)
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
