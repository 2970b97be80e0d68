package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// reevitPolicyViolation checks an ApiKey against its issuer's policy and
// namespace selector. It is pure: nsLabels are the ApiKey's namespace labels
// (nil when the issuer selects none).
func reevitPolicyViolation(ak *v1alpha1.ApiKey, iss *reevitIssuer, nsLabels map[string]string) *failure {
	p := iss.spec.Policy
	violation := func(format string, args ...any) *failure {
		return &failure{Reason: v1alpha1.ReasonPolicyViolation, Message: fmt.Sprintf(format, args...) + " (policy of " + iss.describe() + "); nothing is created"}
	}
	if iss.cluster() && p.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			return violation("the issuer's policy.namespaceSelector is invalid (%v): the platform team must fix it", err)
		}
		if !sel.Matches(labels.Set(nsLabels)) {
			return violation("namespace %s is not selected by policy.namespaceSelector (%s)", ak.Namespace, sel.String())
		}
	}
	if len(p.AllowedScopes) > 0 {
		var bad []string
		for _, s := range ak.Spec.Scopes {
			if !slices.Contains(p.AllowedScopes, s) {
				bad = append(bad, string(s))
			}
		}
		if len(bad) > 0 {
			return violation("spec.scopes asks for %s, outside the allowed scopes %s", strings.Join(bad, ", "), joinScopes(p.AllowedScopes))
		}
	}
	if len(p.Environments) > 0 && !slices.Contains(p.Environments, v1alpha1.Environment(ak.Spec.Environment)) {
		envs := make([]string, len(p.Environments))
		for i, e := range p.Environments {
			envs[i] = string(e)
		}
		return violation("spec.environment %q is not allowed: allowed %s", ak.Spec.Environment, strings.Join(envs, ", "))
	}
	if p.MaxKeyAge != nil {
		age, ok := rotationInterval(ak.Spec.Rotation)
		switch {
		case !ok:
			return violation("spec.rotation must rotate at least every %s (policy.maxKeyAge), and no rotation is set", p.MaxKeyAge.Duration)
		case age > p.MaxKeyAge.Duration:
			return violation("spec.rotation rotates every %s, longer than the allowed maximum key age %s", age, p.MaxKeyAge.Duration)
		}
	}
	if p.MaxGracePeriod != nil {
		if g := gracePeriod(ak.Spec.Rotation); g > p.MaxGracePeriod.Duration {
			return violation("spec.rotation.gracePeriod is %s, longer than the allowed maximum %s", g, p.MaxGracePeriod.Duration)
		}
	}
	return nil
}

func joinScopes(s []v1alpha1.Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

// revioNamespaceViolation checks a cluster issuer's namespace selector.
func revioNamespaceViolation(ns string, iss *revioIssuer, nsLabels map[string]string) *failure {
	if iss.kind != v1alpha1.KindClusterRevioIssuer || iss.spec.NamespaceSelector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(iss.spec.NamespaceSelector)
	if err == nil && sel.Matches(labels.Set(nsLabels)) {
		return nil
	}
	return &failure{Reason: v1alpha1.ReasonPolicyViolation, Message: fmt.Sprintf(
		"namespace %s is not selected by the namespaceSelector of %s: ask the platform team, or use another issuer; nothing is exchanged", ns, iss.describe())}
}

// namespaceLabels reads a namespace's labels from the cache (nil on error:
// a selector then selects nothing, which refuses rather than allows).
func namespaceLabels(ctx context.Context, c client.Reader, ns string) map[string]string {
	n := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		return nil
	}
	return n.Labels
}
