package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// issuerExtra is what status reads beside an issuer. Each part that cannot
// be read (RBAC) says so instead of failing the command.
type issuerExtra struct {
	secretNamespace string
	secretNote      string // "" when the credential Secret exists
	users           []string
	usersErr        error
	events          []eventsv1.Event
	eventsErr       error
}

func (o *options) gatherIssuerExtra(ctx context.Context, c client.Client, v issuerView) issuerExtra {
	r, _ := v.credentialRef()
	x := issuerExtra{secretNamespace: v.secretNamespace(o.clusterResourceNamespace)}
	x.secretNote = secretPresence(ctx, c, x.secretNamespace, r.Name)
	x.users, x.usersErr = issuerUsers(ctx, c, v)
	x.events, x.eventsErr = eventsOf(ctx, c, v.obj)
	return x
}

func renderIssuer(w io.Writer, v issuerView, x issuerExtra, now time.Time) {
	st := v.status
	name := v.obj.GetName()
	if !v.kind.clusterScoped() {
		name = v.obj.GetNamespace() + "/" + name
	}
	fmt.Fprintf(w, "%s %s\n", v.kind.Kind(), name)
	t := &table{}
	t.add("Ready", "%s", readySummary(st.Conditions, v.obj.GetGeneration(), now))
	if c := v.readyCondition(); c != nil {
		t.add("Reason", "%s", c.Reason)
		t.add("Message", "%s", orDash(oneLine(c.Message)))
	}
	t.add("Checked version", "%s", orDash(st.CheckedVersion))
	t.add("Last check", "%s", when(st.LastCheckTime, now))
	t.add("URL", "%s", v.url())
	r, field := v.credentialRef()
	secret := fmt.Sprintf("Secret %s/%s, data key %s (%s)%s", x.secretNamespace, r.Name, keyOr(r.Key), field, x.secretNote)
	if v.reevit != nil {
		t.add("Org", "%s", v.reevit.OrgID)
		t.add("Actor", "%s", orDash(v.reevit.ActorID))
		t.add("Admin key", "%s", secret)
		t.add("Policy", "%s", policyLine(v.reevit.Policy))
		adminKeyLines(t, v.reevit.AdminKeyRotation, st.AdminKey, now)
		if v.kind.clusterScoped() {
			t.add("Namespaces", "%s", selectorLine(v.reevit.Policy.NamespaceSelector))
		}
	} else {
		t.add("Host", "%s", v.revio.Host)
		t.add("API key", "%s", secret)
		if v.kind.clusterScoped() {
			t.add("Namespaces", "%s", selectorLine(v.revio.NamespaceSelector))
		}
	}
	if dt := v.obj.GetDeletionTimestamp(); dt != nil {
		t.add("Deleting", "since %s; finalizers %s", when(dt, now), strings.Join(v.obj.GetFinalizers(), ", "))
	}
	fmt.Fprint(w, indent(t.String()))
	renderFailure(w, st.Conditions, st.FailedAttempts, st.LastFailureTime, st.NextRetryTime, now)
	renderConditions(w, st.Conditions, now)

	what := "ApiKeys"
	if v.revio != nil {
		what = "RevioTokens"
	}
	fmt.Fprintf(w, "Used by (%s):\n", what)
	switch {
	case x.usersErr != nil:
		fmt.Fprintf(w, "  cannot list %s: %s\n", what, shortErr(x.usersErr))
	case len(x.users) == 0:
		fmt.Fprintln(w, "  none")
	default:
		for i, u := range x.users {
			if i == maxUsers {
				fmt.Fprintf(w, "  ... and %d more\n", len(x.users)-maxUsers)
				break
			}
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	renderEvents(w, statusExtra{events: x.events, eventsErr: x.eventsErr}, now)
}

// adminKeyLines shows spec.adminKeyRotation and status.adminKey.
func adminKeyLines(t *table, rot *v1alpha1.AdminKeyRotation, a *v1alpha1.AdminKeyStatus, now time.Time) {
	if rot != nil && rot.Every != nil {
		t.add("Admin-key rotation", "every %s, grace %s", rot.Every.Duration, adminGraceOf(rot))
	}
	if a == nil || a.ID == "" {
		if rot != nil {
			t.add("Admin key id", "not identified yet (see Ready)")
		}
		return
	}
	t.add("Admin key id", "%s (%s), %s, scopes %s", a.ID, orDash(a.Prefix), orDash(a.Environment), strings.Join(a.Scopes, ", "))
	t.add("Admin key since", "%s", when(a.ActiveSince, now))
	t.add("Next rotation", "%s", when(a.NextRotationTime, now))
	if p := a.Pending; p != nil {
		t.add("Rotating", "%s since %s (replacing %s)", p.Reason, when(&p.StartedAt, now), p.OldID)
	}
	if p := a.Previous; p != nil {
		line := fmt.Sprintf("%s (%s), revoked %s", p.ID, orDash(p.Prefix), when(&p.RevokeAfter, now))
		if p.Attempts > 0 {
			line += fmt.Sprintf("; %d failed attempts, last %s", p.Attempts, p.LastError)
		}
		t.add("Previous admin key", "%s", line)
	}
}

// policyLine is a Reevit issuer's policy on one line.
func policyLine(p v1alpha1.ReevitIssuerPolicy) string {
	var parts []string
	if len(p.AllowedScopes) > 0 {
		s := make([]string, len(p.AllowedScopes))
		for i, sc := range p.AllowedScopes {
			s[i] = string(sc)
		}
		parts = append(parts, "scopes "+strings.Join(s, ", "))
	}
	if len(p.Environments) > 0 {
		s := make([]string, len(p.Environments))
		for i, e := range p.Environments {
			s[i] = string(e)
		}
		parts = append(parts, "environments "+strings.Join(s, ", "))
	}
	if p.MaxKeyAge != nil {
		parts = append(parts, "maxKeyAge "+p.MaxKeyAge.Duration.String())
	}
	if p.MaxGracePeriod != nil {
		parts = append(parts, "maxGracePeriod "+p.MaxGracePeriod.Duration.String())
	}
	if len(parts) == 0 {
		return "none (any scope, environment, rotation and grace period)"
	}
	return strings.Join(parts, "; ")
}

// selectorLine is a cluster issuer's namespace selector.
func selectorLine(sel *metav1.LabelSelector) string {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return "every namespace"
	}
	return "those matching " + metav1.FormatLabelSelector(sel)
}

// issuerRecordShort is a recorded issuer in a table cell.
func issuerRecordShort(r *v1alpha1.IssuerRecord) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%s %s (%s)", r.Kind, r.Name, r.OrgID)
}

// keyMadeBy says which issuer, organisation and URL made the active key
// (status.issuer) and whether the next key comes from elsewhere.
func keyMadeBy(ak *v1alpha1.ApiKey, is issuerState) string {
	r := ak.Status.Issuer
	if r == nil {
		if ak.Status.KeyID == "" {
			return "-"
		}
		return "not recorded in status.issuer"
	}
	s := fmt.Sprintf("%s %s, org %s, %s (status.issuer)", r.Kind, r.Name, r.OrgID, r.URL)
	switch {
	case r.Kind != is.kind.Kind() || r.Name != is.name:
		s += fmt.Sprintf("; spec.issuerRef now names %s: the next key comes from it, and this one is revoked after the grace period", is)
	case is.read && r.UID != "" && r.UID != is.view.obj.GetUID():
		s += "; the issuer was recreated since: the next key comes from the new one"
	case is.read && (r.OrgID != is.view.reevit.OrgID || r.URL != is.view.url()):
		s += fmt.Sprintf("; the issuer now names org %s at %s: the next key comes from there", is.view.reevit.OrgID, is.view.url())
	}
	return s
}
