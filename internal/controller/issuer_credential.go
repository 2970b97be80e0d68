package controller

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// credentialFingerprint is v1alpha1.Fingerprint of a credential value.
func credentialFingerprint(value string) string { return v1alpha1.Fingerprint([]byte(value)) }

// trackCredential records the credential the issuer's Secret holds: a new
// fingerprint starts a new age. An empty fingerprint (the check could not
// read the value) keeps what status says.
func trackCredential(st *v1alpha1.IssuerStatus, fingerprint string, now time.Time) {
	if fingerprint == "" || st.Credential != nil && st.Credential.Fingerprint == fingerprint {
		return
	}
	st.Credential = &v1alpha1.CredentialRecord{Fingerprint: fingerprint, FirstSeen: *mtime(now)}
}

// keyAgeVerdict is the KeyAge condition a Rev.io issuer's spec.maxKeyAge
// asks for.
type keyAgeVerdict struct {
	// Applies: maxKeyAge is set and the credential's first sighting known.
	Applies bool
	// TooOld: the credential has been in use for longer than maxKeyAge.
	TooOld bool
	// Age of the credential at now.
	Age time.Duration
	// Next is how long until the verdict turns (0: it will not by itself).
	Next time.Duration
}

// judgeKeyAge is the pure decision behind the KeyAge condition.
func judgeKeyAge(cred *v1alpha1.CredentialRecord, maxAge *metav1.Duration, now time.Time) keyAgeVerdict {
	if cred == nil || maxAge == nil || maxAge.Duration <= 0 {
		return keyAgeVerdict{}
	}
	v := keyAgeVerdict{Applies: true, Age: now.Sub(cred.FirstSeen.Time)}
	if v.Age > maxAge.Duration {
		v.TooOld = true
		return v
	}
	v.Next = maxAge.Duration - v.Age + time.Second
	return v
}

// setKeyAge writes the KeyAge condition from v (removed when it does not
// apply) and reports whether it just turned to KeyTooOld.
func setKeyAge(st *v1alpha1.IssuerStatus, gen int64, v keyAgeVerdict, maxAge *metav1.Duration, secret string) (turnedOld bool) {
	if !v.Applies {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionKeyAge)
		return false
	}
	since := st.Credential.FirstSeen.UTC().Format(time.RFC3339)
	if !v.TooOld {
		setCondition(&st.Conditions, gen, v1alpha1.ConditionKeyAge, true, v1alpha1.ReasonSucceeded,
			fmt.Sprintf("the API key in Secret %s (%s) has been in use since %s, within spec.maxKeyAge %s", secret, st.Credential.Fingerprint, since, maxAge.Duration))
		return false
	}
	toldAlready := hasReason(st.Conditions, v1alpha1.ConditionKeyAge, v1alpha1.ReasonKeyTooOld)
	setCondition(&st.Conditions, gen, v1alpha1.ConditionKeyAge, false, v1alpha1.ReasonKeyTooOld,
		fmt.Sprintf("the API key in Secret %s (%s) has been in use since %s, longer than spec.maxKeyAge %s: make a new API key in Rev.io's UI, put it in the Secret, then delete the old one; tokens keep being exchanged meanwhile",
			secret, st.Credential.Fingerprint, since, maxAge.Duration))
	return !toldAlready
}

// placeholderWords are values the samples, the README and the APIs'
// documentation show where a credential goes; no issuer sends one.
var placeholderWords = map[string]bool{
	"replace-me": true, "replace_me": true, "replaceme": true, "replace-this": true,
	"changeme": true, "change-me": true, "change_me": true,
	"your-api-key-here": true, "your-api-key": true, "your_api_key": true, "your-key-here": true,
	"your-admin-key": true, "api-key": true, "apikey": true, "api_key": true,
	"placeholder": true, "todo": true, "tbd": true, "dummy": true, "example": true, "test": true,
	"secret": true, "password": true, "none": true, "null": true, "key": true,
}

// placeholderCredential says whether v (trimmed) is an obvious placeholder
// rather than a key: a word above, a <...> or {{...}} slot, a value made of
// x, * or dots alone, one ending in "..." as the documentation's truncated
// examples do (pfk_live_a1b2c3d4e5f6...), or a Reevit prefix followed by
// one of these. A real key is random: none of these rules can match it.
func placeholderCredential(v string) bool {
	s := strings.ToLower(strings.TrimSpace(v))
	if s == "" {
		return false // SecretNotFound says so already
	}
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") ||
		strings.HasPrefix(s, "{{") && strings.HasSuffix(s, "}}") ||
		strings.HasPrefix(s, "${") && strings.HasSuffix(s, "}") ||
		strings.HasSuffix(s, "...") || strings.HasSuffix(s, "…") {
		return true
	}
	for _, p := range []string{"pfk_live_", "pfk_test_"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			s = rest
			break
		}
	}
	if placeholderWords[s] {
		return true
	}
	return s == "" || strings.Trim(s, "x*.-_ ") == ""
}

// placeholderRefused is the failure for a credential Secret holding a
// placeholder; the value itself is never repeated.
func placeholderRefused(field, ns string, ref v1alpha1.SecretKeyReference) *failure {
	key := ref.Key
	if key == "" {
		key = "apiKey"
	}
	return &failure{Reason: v1alpha1.ReasonPlaceholderCredential, Message: fmt.Sprintf(
		"%s: Secret %s/%s key %s still holds a placeholder (a sample or documentation value), not a key: put the real key in it (kubectl create secret generic %s -n %s --from-literal=%s=... --dry-run=client -o yaml | kubectl apply -f -); nothing was sent, and Keywarden checks again when the Secret changes",
		field, ns, ref.Name, key, ref.Name, ns, key)}
}
