package controller

import (
	"fmt"
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
