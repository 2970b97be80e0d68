package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// readSecretKey reads one data key of a referenced Secret (same namespace)
// through the secretReader (the API server, or its remembered copy of the
// version the metadata cache shows). It returns the value and the Secret's
// resourceVersion (also when the key is missing), or a failure: SecretNotFound
// for a missing Secret or key (the Secret watch brings the object back),
// SecretReadFailed for any other error (retried with backoff). field names
// the spec field for the message.
func readSecretKey(ctx context.Context, r *secretReader, ns string, ref v1alpha1.SecretKeyReference, field string) (value, version string, f *failure) {
	if ref.Key == "" {
		ref.Key = "apiKey"
	}
	s, err := r.getInput(ctx, ns, ref.Name, ref.Key)
	if err != nil {
		return "", "", &failure{Reason: v1alpha1.ReasonSecretReadFailed, Transient: true, Err: err, Message: "reading Secret " + ref.Name + " failed: " + err.Error() + "; check the manager's RBAC for secrets; retrying with backoff"}
	}
	if s == nil {
		return "", "", secretNotFound(field, ns, ref, false)
	}
	if len(s.Data[ref.Key]) == 0 {
		return "", s.ResourceVersion, secretNotFound(field, ns, ref, true)
	}
	return string(s.Data[ref.Key]), s.ResourceVersion, nil
}

// secretVersion is the resourceVersion of a Secret in the metadata cache
// ("" when absent or not cached yet).
func secretVersion(ctx context.Context, cache client.Reader, ns, name string) string {
	m := secretMetadata()
	if err := cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		return ""
	}
	return m.ResourceVersion
}

// readIssuerCredential reads the credential an issuer names: an Opaque
// Secret, nothing else, so no issuer can make the manager send a
// service-account token or a TLS key anywhere; and a value that is not a
// placeholder (samples, docs), so none is sent to the API as a key.
func readIssuerCredential(ctx context.Context, r *secretReader, ns string, ref v1alpha1.SecretKeyReference, field string) (string, string, *failure) {
	key := ref.Key
	if key == "" {
		key = "apiKey"
	}
	s, err := r.getInput(ctx, ns, ref.Name, key)
	if err == nil && s != nil {
		if f := credentialSecretRefused(s); f != nil {
			return "", s.ResourceVersion, f
		}
	}
	v, version, f := readSecretKey(ctx, r, ns, ref, field)
	if f == nil && placeholderCredential(v) {
		return "", version, placeholderRefused(field, ns, ref)
	}
	return strings.TrimSpace(v), version, f
}

// credentialSecretRefused is why an issuer may not use s as its credential
// Secret, whatever key it names: a type other than Opaque, or an output
// Secret of Keywarden's. nil: the type and owners pass.
func credentialSecretRefused(s *corev1.Secret) *failure {
	if s.Type != "" && s.Type != corev1.SecretTypeOpaque {
		return &failure{Reason: v1alpha1.ReasonSecretTypeNotAllowed, Message: fmt.Sprintf(
			"Secret %s/%s is of type %s: an issuer credential must be an Opaque Secret; create one with kubectl create secret generic", s.Namespace, s.Name, s.Type)}
	}
	for _, o := range s.OwnerReferences {
		if strings.HasPrefix(o.APIVersion, v1alpha1.GroupVersion.Group+"/") {
			// An output as an input would feed the operator's own writes
			// back to it: a token exchanged for a token, in a loop.
			return &failure{Reason: v1alpha1.ReasonSecretTypeNotAllowed, Message: fmt.Sprintf(
				"Secret %s/%s is written by Keywarden (%s %s): an issuer credential cannot be an output Secret; name the Secret holding the real credential", s.Namespace, s.Name, o.Kind, o.Name)}
		}
	}
	return nil
}

// credentialSecretUsable says whether s passes every check an issuer makes
// of its credential Secret under key: the type, not an output Secret, and
// the key present and not empty. Only such a Secret gets inUseFinalizer.
func credentialSecretUsable(s *corev1.Secret, key string) bool {
	if key == "" {
		key = "apiKey"
	}
	return s != nil && credentialSecretRefused(s) == nil && len(s.Data[key]) > 0
}
