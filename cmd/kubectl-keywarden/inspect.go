package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/secretsync"
)

func newInspectCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect secret NAME",
		Short: "Inspect what Keywarden wrote",
		// Anything but a known subcommand is a mistake, not a request for
		// help: "inspect apikey x" fails with what to type instead.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("inspect what? kubectl keywarden inspect secret NAME")
			}
			return fmt.Errorf("cannot inspect %q: only secrets (kubectl keywarden inspect secret NAME); for an ApiKey, a RevioToken or an issuer use kubectl keywarden status KIND/NAME", args[0])
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "secret NAME",
		Short: "Tell which key or token a Secret holds, without printing it",
		Long: `Show which ApiKey or RevioToken owns the Secret, or which issuers name it
as their credential (ReevitIssuers and RevioIssuers of the namespace and, in
the manager's --cluster-resource-namespace, ClusterReevitIssuers and
ClusterRevioIssuers) with the ApiKeys or RevioTokens they serve; which key id
and prefix it holds and which issuer made the key; a SHA-256 fingerprint of
each credential (the first 16 hex characters: enough to compare two copies,
useless to recover a value) and, for tokens, the JWT's iat and exp claims
(decoded, not verified). It never prints a key or a token.`,
		Example: `  kubectl keywarden inspect secret payments-reevit -n payments
  kubectl keywarden inspect secret reevit-admin -n keywarden-system`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect()
			if err != nil {
				return err
			}
			return o.inspectSecret(cmd.Context(), c, ns, args[0])
		},
	})
	return cmd
}

func (o *options) inspectSecret(ctx context.Context, c client.Client, ns, name string) error {
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("secret/%s not found in namespace %s", name, ns)
		}
		return fmt.Errorf("get secret/%s: %w", name, err)
	}
	in := secretInfo{secret: s}
	if ref := keywardenOwner(s); ref != nil {
		k := kindApiKey
		if ref.Kind == "RevioToken" {
			k = kindRevioToken
		}
		owner := k.newObject()
		switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, owner); {
		case err != nil:
			in.ownerErr = err
		case owner.GetUID() != ref.UID:
			in.ownerErr = fmt.Errorf("%s %s was recreated (uid %s, the reference names %s)", ref.Kind, ref.Name, owner.GetUID(), ref.UID)
		default:
			in.owner = owner
		}
	}
	in.readers, in.readersErr = secretReaders(ctx, c, ns, name, o.clusterResourceNamespace)
	renderSecret(o.out, in, o.now())
	return nil
}

// keywardenOwner returns the Secret's controller reference when it is an
// ApiKey or a RevioToken.
func keywardenOwner(s *corev1.Secret) *metav1.OwnerReference {
	ref := metav1.GetControllerOf(s)
	if ref == nil {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != v1alpha1.GroupVersion.Group || (ref.Kind != "ApiKey" && ref.Kind != "RevioToken") {
		return nil
	}
	return ref
}

// inUseFinalizer is the manager's finalizer on the credential Secret of a
// Reevit issuer.
const inUseFinalizer = "keywarden.dev/in-use"

// secretInfo is what inspect secret shows.
type secretInfo struct {
	secret     *corev1.Secret
	owner      client.Object // nil: not written by Keywarden, or unreadable
	ownerErr   error
	readers    []string
	readersErr error
}

// publicData are the data keys of Keywarden's Secrets that hold no
// credential: inspect prints their values, and only in a Secret a Keywarden
// object owns. Every other value is shown as a fingerprint.
var publicData = map[string]bool{
	"keyId": true, "previousKeyId": true, "orgId": true, "url": true, "host": true, "expiresAt": true,
}

// reevitKey matches a Reevit key; its first 13 characters are the public
// prefix Keywarden also shows in status.keyPrefix.
var reevitKey = regexp.MustCompile(`^pfk_(live|test)_[A-Za-z0-9]`)

// prefixLen is the length of a Reevit key's public prefix.
const prefixLen = 13

// keyPrefix returns the public prefix of a Reevit key, or "" when the value
// is not one (or too short for the rest to stay secret).
func keyPrefix(v []byte) string {
	if len(v) < prefixLen+16 || !reevitKey.Match(v) {
		return ""
	}
	return string(v[:prefixLen])
}

func renderSecret(w io.Writer, in secretInfo, now time.Time) {
	s := in.secret
	fmt.Fprintf(w, "Secret %s/%s\n", s.Namespace, s.Name)
	t := &table{}
	managed := s.Labels[secretsync.LabelManagedBy] == secretsync.ManagedByValue
	ref := keywardenOwner(s)
	switch {
	case ref != nil:
		t.add("Written by", "Keywarden, for %s %s (controller owner reference)", ref.Kind, ref.Name)
	case managed:
		t.add("Written by", "Keywarden (label %s=%s) but no ApiKey or RevioToken owns it", secretsync.LabelManagedBy, secretsync.ManagedByValue)
	default:
		t.add("Written by", "not Keywarden (no ApiKey or RevioToken owns it)")
	}
	if in.ownerErr != nil {
		t.add("Owner", "cannot read: %s", shortErr(in.ownerErr))
	}
	if h := s.Annotations[secretsync.AnnotationDataHash]; h != "" {
		if secretsync.Intact(s) {
			t.add("Data", "as Keywarden wrote it (%s matches)", secretsync.AnnotationDataHash)
		} else {
			t.add("Data", "changed since Keywarden wrote it (%s differs): the manager rewrites it", secretsync.AnnotationDataHash)
		}
	}
	var ak *v1alpha1.ApiKey
	var rt *v1alpha1.RevioToken
	switch o := in.owner.(type) {
	case *v1alpha1.ApiKey:
		ak = o
		id := string(s.Data["keyId"])
		switch id {
		case "":
			t.add("Holds", "no key id")
		case o.Status.KeyID:
			t.add("Holds", "the active key %s (%s) of apikey/%s", id, orDash(o.Status.KeyPrefix), o.Name)
		default:
			t.add("Holds", "key %s, but apikey/%s reports %s as active: the manager has not caught up", id, o.Name, orDash(o.Status.KeyID))
		}
		if r := o.Status.Issuer; r != nil {
			t.add("Made by", "%s %s, org %s, %s (status.issuer)", r.Kind, r.Name, r.OrgID, r.URL)
		}
		if prev := string(s.Data["previousKeyId"]); prev != "" {
			t.add("Previous key", "%s, %s", prev, revocationOf(o, prev, now))
		}
	case *v1alpha1.RevioToken:
		rt = o
		host := oneLine(string(s.Data["host"]))
		if len(host) > 253 {
			host = host[:253] + "..."
		}
		t.add("Holds", "the token of reviotoken/%s for host %s", o.Name, orDash(host))
		k, n := issuerRefOf(o)
		t.add("Issuer", "%s %s (spec.issuerRef)", k.Kind(), n)
	}
	if in.owner != nil && outputSecretName(in.owner) != s.Name {
		t.add("Note", "%s now writes Secret %s, not this one", in.owner.GetName(), outputSecretName(in.owner))
	}
	switch {
	case in.readersErr != nil && len(in.readers) > 0:
		t.add("Read by", "%s; and cannot list the others: %s", strings.Join(in.readers, "; "), shortErr(in.readersErr))
	case in.readersErr != nil:
		t.add("Read by", "cannot list the issuers: %s", shortErr(in.readersErr))
	case len(in.readers) > 0:
		t.add("Read by", "%s", strings.Join(in.readers, "; "))
	}
	if slices.Contains(s.Finalizers, inUseFinalizer) {
		t.add("Protected", "finalizer %s: the manager keeps the Secret while a Reevit issuer names it", inUseFinalizer)
	}
	fmt.Fprint(w, indent(t.String()))

	fmt.Fprintln(w, "Data (credentials as fingerprints, never their values):")
	if len(s.Data) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tBYTES\tFINGERPRINT\tDETAIL")
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		v := s.Data[k]
		if in.owner != nil && publicData[k] {
			fmt.Fprintf(tw, "  %s\t%d\t-\t%s\n", k, len(v), publicDetail(k, v, ak, rt, now))
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\n", k, len(v), fingerprint(v), credentialDetail(k, v, ak, rt, now))
	}
	_ = tw.Flush()
}

func revocationOf(ak *v1alpha1.ApiKey, id string, now time.Time) string {
	for _, p := range ak.Status.PendingRevocations {
		if p.KeyID == id {
			return "revoked after " + when(&p.RevokeAfter, now)
		}
	}
	return "not pending revocation in status"
}

// publicDetail shows a value that is no credential, bounded, with any
// userinfo of a URL redacted.
func publicDetail(k string, v []byte, ak *v1alpha1.ApiKey, rt *v1alpha1.RevioToken, now time.Time) string {
	s := string(v)
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	switch k {
	case "url":
		if u, err := url.Parse(s); err == nil {
			s = u.Redacted()
		} else {
			return "(not a URL)"
		}
	case "expiresAt":
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			s = whenTime(t, now)
		}
	case "keyId":
		if ak != nil && s == ak.Status.KeyID {
			s += " (status.keyId: active)"
		}
	}
	_ = rt
	return oneLine(s)
}

// credentialDetail says what a credential is without showing it: a Reevit
// key's public prefix, a JWT's iat and exp.
func credentialDetail(k string, v []byte, ak *v1alpha1.ApiKey, rt *v1alpha1.RevioToken, now time.Time) string {
	if p := keyPrefix(v); p != "" {
		d := "Reevit key, prefix " + p
		if ak != nil {
			switch {
			case k == "apiKey" && p == ak.Status.KeyPrefix:
				d += " (status.keyPrefix)"
			case k == "apiKey":
				d += " (status.keyPrefix is " + orDash(ak.Status.KeyPrefix) + ")"
			}
		}
		return d
	}
	if c, err := decodeJWT(string(v)); err == nil && (c.ExpiresAt != nil || c.IssuedAt != nil) {
		d := "JWT"
		if strings.HasPrefix(string(v), "Bearer ") {
			d = "Bearer JWT"
		}
		if c.IssuedAt != nil {
			d += ", iat " + whenTime(*c.IssuedAt, now)
		}
		if c.ExpiresAt != nil {
			d += ", exp " + whenTime(*c.ExpiresAt, now)
			if !now.Before(*c.ExpiresAt) {
				d += " EXPIRED"
			}
			if rt != nil && rt.Status.ExpiresAt != nil && rt.Status.ExpiresAt.Time.Equal(*c.ExpiresAt) {
				d += " (status.expiresAt)"
			}
		} else {
			d += ", no exp claim"
		}
		return d
	}
	return "-"
}
