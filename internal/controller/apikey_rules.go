package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/secretsync"
)

// Reasons a new key is created; they also name the replaced key's fate in
// status.history.
const (
	createInitial     = "Initial"
	createRotation    = "Rotation"
	createManual      = "ManualRotation"
	createCompromised = "Compromised"
	createSpecChange  = "SpecChange"
	createSecretLost  = "SecretLost"
	createDrift       = "Drift"
)

// defaultGracePeriod applies when spec.rotation.gracePeriod is empty.
const defaultGracePeriod = 10 * time.Minute

// displayName is the key's name at Reevit before the ownership marker.
func displayName(ak *v1alpha1.ApiKey) string {
	if ak.Spec.DisplayName != "" {
		return ak.Spec.DisplayName
	}
	return ak.Namespace + "/" + ak.Name
}

// keyName is the name a key is created with: the display name plus a marker
// tying it to this object (UID) and this creation (generation). The leak
// sweeper and crash recovery find keys by this marker.
func keyName(ak *v1alpha1.ApiKey, gen int64) string {
	return displayName(ak) + " " + reevit.Marker(string(ak.UID), gen)
}

// keySpecHash fingerprints the fields whose change needs a new key.
func keySpecHash(ak *v1alpha1.ApiKey, iss *v1alpha1.IssuerRecord) string {
	scopes := make([]string, 0, len(ak.Spec.Scopes))
	for _, s := range ak.Spec.Scopes {
		scopes = append(scopes, string(s))
	}
	slices.Sort(scopes)
	var where []string
	if iss != nil {
		// A key lives in one organisation: a new issuer, org or URL needs a new key.
		where = []string{iss.Kind, iss.Name, iss.URL, iss.OrgID}
	}
	h := sha256.Sum256([]byte(strings.Join([]string{strings.Join(where, "|"),
		ak.Spec.Environment, displayName(ak), strings.Join(scopes, ",")}, "\n")))
	return hex.EncodeToString(h[:])[:16]
}

// createIdempotencyKey is deterministic: the same object, creation number and
// key spec always give the same key, so a retry after a crash is a replay.
func createIdempotencyKey(ak *v1alpha1.ApiKey, gen int64, specHash string) string {
	return fmt.Sprintf("keywarden-create-%s-%d-%s", ak.UID, gen, specHash[:8])
}

// revokeIdempotencyKey is deterministic per key.
func revokeIdempotencyKey(keyID string) string { return "keywarden-revoke-" + keyID }

// newKeyReason says why a new key is needed now, or "" when the current key
// stays. secret is the output Secret (nil when absent).
func newKeyReason(ak *v1alpha1.ApiKey, secret *corev1.Secret, specHash string, now time.Time) string {
	st := &ak.Status
	switch {
	case st.KeyID == "":
		return createInitial
	case newTrigger(ak.Annotations[v1alpha1.AnnotationCompromised], st.LastCompromisedRequest):
		return createCompromised
	case specHash != st.KeySpecHash:
		return createSpecChange
	case secret == nil || !secretsync.Intact(secret) || string(secret.Data["keyId"]) != st.KeyID ||
		st.SecretName != outputSecretName(ak.Name, ak.Spec.Secret):
		return createSecretLost
	case newTrigger(ak.Annotations[v1alpha1.AnnotationRotate], st.LastRotateRequest):
		return createManual
	case st.NextRotationTime != nil && !now.Before(st.NextRotationTime.Time):
		return createRotation
	}
	return ""
}

// newTrigger reports whether a trigger annotation carries a value not acted
// on yet. Removing the annotation is not a new value.
func newTrigger(value, last string) bool {
	return value != "" && value != last
}

// dueRevocations splits pending revocations into those whose grace period has
// ended and the earliest time one of the rest becomes due.
func dueRevocations(pending []v1alpha1.PendingRevocation, now time.Time) (due []v1alpha1.PendingRevocation, next time.Time) {
	for _, p := range pending {
		if !now.Before(p.RevokeAfter.Time) {
			due = append(due, p)
		} else if next.IsZero() || p.RevokeAfter.Time.Before(next) {
			next = p.RevokeAfter.Time
		}
	}
	return due, next
}

// keyPrefix is what status may show of a key: its first 13 characters, and
// only of a well-formed key (a short or odd value is shown as nothing, so
// no secret part of it reaches status).
func keyPrefix(key string) string {
	if !wellFormedKey(key) {
		return ""
	}
	return key[:13]
}

// minKeyLen is the shortest key accepted: the 9-character prefix and at
// least 16 random characters, so that the 13 shown leave 12 unseen.
const minKeyLen = 25

// wellFormedKey says whether a created key looks like a Reevit key:
// pfk_live_ or pfk_test_, then at least 16 characters of [A-Za-z0-9], at
// most 256 in all.
func wellFormedKey(key string) bool {
	if len(key) < minKeyLen || len(key) > 256 || !(strings.HasPrefix(key, "pfk_live_") || strings.HasPrefix(key, "pfk_test_")) {
		return false
	}
	for _, c := range key[9:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
