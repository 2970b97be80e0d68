package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// Key states in a report.
const (
	stateActive            = "active"
	statePendingRevocation = "pending-revocation"
	// An issuer's own credential: the Reevit admin key, the Rev.io API key.
	stateAdminKey = "admin-key"
	stateAPIKey   = "api-key"
)

// reportRow is one live key Keywarden manages. It names the key by id and
// prefix (the first 13 characters Reevit shows anyway), never by value.
type reportRow struct {
	Namespace   string     `json:"namespace"`
	Kind        string     `json:"kind"`
	Name        string     `json:"name"`
	State       string     `json:"state"`
	IssuerKind  string     `json:"issuerKind"`
	IssuerName  string     `json:"issuerName"`
	OrgID       string     `json:"orgId"`
	KeyID       string     `json:"keyId"`
	KeyPrefix   string     `json:"keyPrefix"`
	Scopes      []string   `json:"scopes"`
	Environment string     `json:"environment"`
	ActiveSince *time.Time `json:"activeSince,omitempty"`
	// AgeSeconds is how long the key has been live, from activeSince (or
	// the history's createdAt for a previous key); -1 when unknown.
	AgeSeconds   int64      `json:"ageSeconds"`
	NextRotation *time.Time `json:"nextRotation,omitempty"`
	RevokeAfter  *time.Time `json:"revokeAfter,omitempty"`
	// MaxKeyAge is the issuer policy's maxKeyAge; empty when it sets none.
	MaxKeyAge string `json:"maxKeyAge,omitempty"`
	OverAge   bool   `json:"overAge"`
	// Fingerprint identifies an issuer's credential (status.credential),
	// which has no key id: "sha256:" and 16 hex characters of its hash.
	Fingerprint string `json:"fingerprint,omitempty"`
}

type reportOptions struct {
	output  string
	overAge bool
}

func newReportCommand(o *options) *cobra.Command {
	ro := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "List every live key Keywarden manages, with its age against the issuer's policy",
		Long: `List every live Reevit key Keywarden manages: the active key of each ApiKey
and each previous key still waiting for its revocation, with the object, the
issuer and organisation that made it, key id and prefix (never the key),
scopes, environment, age, the next rotation and whether the key is older
than its issuer policy's maxKeyAge. This is what a person hands an auditor.

All namespaces unless -n names one. -o table (default), json or csv;
--over-age lists only the keys past their issuer's maxKeyAge.`,
		Example: `  kubectl keywarden report
  kubectl keywarden report -o csv > keys.csv
  kubectl keywarden report --over-age -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch ro.output {
			case "table", "json", "csv":
			default:
				return fmt.Errorf("-o %q: use table, json or csv", ro.output)
			}
			c, _, err := o.connect()
			if err != nil {
				return err
			}
			rows, err := reportRows(cmd.Context(), c, o.namespace, o.now())
			if err != nil {
				return err
			}
			if ro.overAge {
				rows = slices.DeleteFunc(rows, func(r reportRow) bool { return !r.OverAge })
			}
			return writeReport(o.out, ro.output, rows)
		},
	}
	cmd.Flags().StringVarP(&ro.output, "output", "o", "table", "table, json or csv")
	cmd.Flags().BoolVar(&ro.overAge, "over-age", false, "only the keys older than their issuer policy's maxKeyAge")
	return cmd
}

// reportRows lists the ApiKeys of ns (all when empty) and the Reevit
// issuers whose policy judges their age, and returns one row per live key,
// sorted by namespace, name, then the active key first.
func reportRows(ctx context.Context, c client.Client, ns string, now time.Time) ([]reportRow, error) {
	var opts []client.ListOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	var aks v1alpha1.ApiKeyList
	if err := c.List(ctx, &aks, opts...); err != nil {
		return nil, fmt.Errorf("list ApiKeys: %w", err)
	}
	maxAge, rows, err := issuerReport(ctx, c, ns, now)
	if err != nil {
		return nil, err
	}
	for i := range aks.Items {
		rows = append(rows, apiKeyReportRows(&aks.Items[i], maxAge, now)...)
	}
	slices.SortStableFunc(rows, func(a, b reportRow) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return rows, nil
}

// issuerReport lists the issuers of ns (all, cluster issuers included,
// when empty). It maps "Kind/namespace/name" of every Reevit issuer to its
// policy's maxKeyAge, when set, for the ApiKeys' rows, and returns a row for
// each issuer's own credential whose first sighting status records: the
// admin key of a Reevit issuer, the API key of a Rev.io issuer (judged
// against its spec.maxKeyAge).
func issuerReport(ctx context.Context, c client.Client, ns string, now time.Time) (map[string]time.Duration, []reportRow, error) {
	maxAge := map[string]time.Duration{}
	var rows []reportRow
	var opts []client.ListOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	add := func(kind, namespace, name, org, state string, st *v1alpha1.IssuerStatus, max *metav1.Duration) {
		if st.Credential == nil {
			return
		}
		since := st.Credential.FirstSeen.UTC()
		r := reportRow{Namespace: namespace, Kind: kind, Name: name, State: state, IssuerKind: kind, IssuerName: name, OrgID: org,
			Fingerprint: st.Credential.Fingerprint, ActiveSince: &since, AgeSeconds: int64(now.Sub(since) / time.Second)}
		if max != nil {
			r.MaxKeyAge = max.Duration.String()
			r.OverAge = now.Sub(since) > max.Duration
		}
		rows = append(rows, r)
	}
	for _, kind := range v1alpha1.IssuerKinds {
		cluster := v1alpha1.NewIssuer(kind).Cluster()
		if ns != "" && cluster && !v1alpha1.IsReevitKind(kind) {
			continue // a namespace's report needs nothing of cluster Rev.io issuers
		}
		var lopts []client.ListOption
		if !cluster {
			lopts = opts
		}
		l := v1alpha1.NewIssuerList(kind)
		if err := c.List(ctx, l, lopts...); err != nil {
			return nil, nil, fmt.Errorf("list %ss: %w", kind, err)
		}
		for _, gi := range l.Issuers() {
			rs := gi.ReevitSpec()
			if rs != nil && rs.Policy.MaxKeyAge != nil {
				maxAge[issuerAgeKey(kind, gi.GetNamespace(), gi.GetName())] = rs.Policy.MaxKeyAge.Duration
			}
			if ns != "" && cluster {
				continue // a cluster issuer's own rows are in the cluster's report; its maxKeyAge applies here
			}
			if rs == nil {
				add(kind, gi.GetNamespace(), gi.GetName(), "", stateAPIKey, gi.IssuerStatus(), gi.RevioSpec().MaxKeyAge)
				continue
			}
			add(kind, gi.GetNamespace(), gi.GetName(), rs.OrgID, stateAdminKey, gi.IssuerStatus(), nil)
			rows = adminKeyRows(rows, rs.AdminKeyRotation, gi.IssuerStatus(), now)
		}
	}
	return maxAge, rows, nil
}

// adminKeyRows completes the admin-key row just added for a Reevit issuer
// whose status.adminKey identifies its key (spec.adminKeyRotation): id,
// prefix, scopes, environment, age from activeSince, next rotation and
// over-age against every plus grace; and adds a pending-revocation row for
// the previous admin key still waiting.
func adminKeyRows(rows []reportRow, rot *v1alpha1.AdminKeyRotation, st *v1alpha1.IssuerStatus, now time.Time) []reportRow {
	a := st.AdminKey
	if a == nil || a.ID == "" || len(rows) == 0 || st.Credential == nil {
		return rows
	}
	r := &rows[len(rows)-1]
	r.KeyID, r.KeyPrefix, r.Scopes, r.Environment = a.ID, a.Prefix, a.Scopes, a.Environment
	if a.ActiveSince != nil {
		since := a.ActiveSince.UTC()
		r.ActiveSince, r.AgeSeconds = &since, int64(now.Sub(since)/time.Second)
	}
	if a.NextRotationTime != nil {
		next := a.NextRotationTime.UTC()
		r.NextRotation = &next
	}
	if rot != nil && rot.Every != nil && r.ActiveSince != nil {
		limit := rot.Every.Duration + adminGraceOf(rot)
		r.MaxKeyAge = limit.String()
		r.OverAge = now.Sub(*r.ActiveSince) > limit
	}
	if p := a.Previous; p != nil {
		prev := *r
		after := p.RevokeAfter.UTC()
		prev.State, prev.KeyID, prev.KeyPrefix, prev.Fingerprint = statePendingRevocation, p.ID, p.Prefix, ""
		prev.ActiveSince, prev.AgeSeconds, prev.NextRotation, prev.RevokeAfter, prev.OverAge = nil, -1, nil, &after, false
		rows = append(rows, prev)
	}
	return rows
}

// adminGraceOf is the grace period of spec.adminKeyRotation as the manager
// applies it: the spec's, else 10m, or every when shorter.
func adminGraceOf(r *v1alpha1.AdminKeyRotation) time.Duration {
	if r.GracePeriod != nil {
		return r.GracePeriod.Duration
	}
	if r.Every != nil && r.Every.Duration < 10*time.Minute {
		return r.Every.Duration
	}
	return 10 * time.Minute
}

func issuerAgeKey(kind, ns, name string) string {
	if kind == v1alpha1.KindClusterReevitIssuer {
		ns = ""
	}
	return kind + "/" + ns + "/" + name
}

// apiKeyReportRows is the ApiKey's active key and its pending revocations.
func apiKeyReportRows(ak *v1alpha1.ApiKey, maxAge map[string]time.Duration, now time.Time) []reportRow {
	st := &ak.Status
	scopes := make([]string, len(ak.Spec.Scopes))
	for i, s := range ak.Spec.Scopes {
		scopes[i] = string(s)
	}
	limit := func(rec *v1alpha1.IssuerRecord) (time.Duration, bool) {
		if rec == nil {
			return 0, false
		}
		d, ok := maxAge[issuerAgeKey(rec.Kind, ak.Namespace, rec.Name)]
		return d, ok
	}
	base := func(rec *v1alpha1.IssuerRecord) reportRow {
		r := reportRow{Namespace: ak.Namespace, Kind: "ApiKey", Name: ak.Name, Environment: ak.Spec.Environment, AgeSeconds: -1}
		if rec != nil {
			r.IssuerKind, r.IssuerName, r.OrgID = rec.Kind, rec.Name, rec.OrgID
		}
		if d, ok := limit(rec); ok {
			r.MaxKeyAge = d.String()
		}
		return r
	}
	age := func(r *reportRow, rec *v1alpha1.IssuerRecord, since time.Time) {
		r.AgeSeconds = int64(now.Sub(since) / time.Second)
		if d, ok := limit(rec); ok {
			r.OverAge = now.Sub(since) > d
		}
	}
	var rows []reportRow
	if st.KeyID != "" {
		r := base(st.Issuer)
		r.State, r.KeyID, r.KeyPrefix, r.Scopes = stateActive, st.KeyID, st.KeyPrefix, scopes
		if st.ActiveSince != nil {
			t := st.ActiveSince.UTC()
			r.ActiveSince = &t
			age(&r, st.Issuer, t)
		}
		if st.NextRotationTime != nil {
			t := st.NextRotationTime.UTC()
			r.NextRotation = &t
		}
		rows = append(rows, r)
	}
	for _, p := range st.PendingRevocations {
		r := base(p.Issuer)
		r.State, r.KeyID, r.KeyPrefix = statePendingRevocation, p.KeyID, p.KeyPrefix
		t := p.RevokeAfter.UTC()
		r.RevokeAfter = &t
		// A previous key's creation time is in the history, when kept.
		for _, h := range st.History {
			if h.KeyID == p.KeyID {
				age(&r, p.Issuer, h.CreatedAt.UTC())
				break
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func writeReport(w io.Writer, format string, rows []reportRow) error {
	switch format {
	case "json":
		if rows == nil {
			rows = []reportRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"namespace", "kind", "name", "state", "issuerKind", "issuerName", "orgId", "keyId", "keyPrefix",
			"scopes", "environment", "activeSince", "ageSeconds", "nextRotation", "revokeAfter", "maxKeyAge", "overAge", "fingerprint"})
		for _, r := range rows {
			_ = cw.Write([]string{r.Namespace, r.Kind, r.Name, r.State, r.IssuerKind, r.IssuerName, r.OrgID, r.KeyID, r.KeyPrefix,
				strings.Join(r.Scopes, " "), r.Environment, rfc3339(r.ActiveSince), strconv.FormatInt(r.AgeSeconds, 10),
				rfc3339(r.NextRotation), rfc3339(r.RevokeAfter), r.MaxKeyAge, strconv.FormatBool(r.OverAge), r.Fingerprint})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tOBJECT\tSTATE\tISSUER\tORG\tKEY ID (OR FINGERPRINT)\tPREFIX\tSCOPES\tENV\tAGE\tNEXT ROTATION\tMAX AGE\tOVER AGE")
	for _, r := range rows {
		next := rfc3339(r.NextRotation)
		if r.State == statePendingRevocation {
			next = "revoke " + rfc3339(r.RevokeAfter)
		}
		key := r.KeyID
		if key == "" {
			key = r.Fingerprint
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(r.Namespace, r.Namespace == ""), strings.ToLower(r.Kind)+"/"+r.Name, r.State,
			dash(strings.ToLower(r.IssuerKind)+"/"+r.IssuerName, r.IssuerKind == ""), dash(r.OrgID, r.OrgID == ""), key,
			dash(r.KeyPrefix, r.KeyPrefix == ""), dash(strings.Join(r.Scopes, ","), len(r.Scopes) == 0), dash(r.Environment, r.Environment == ""),
			ageText(r.AgeSeconds), dash(next, next == "" || next == "revoke "), dash(r.MaxKeyAge, r.MaxKeyAge == ""), yesNo(r.OverAge))
	}
	return tw.Flush()
}

func rfc3339(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func ageText(s int64) string {
	if s < 0 {
		return "-"
	}
	return duration.HumanDuration(time.Duration(s) * time.Second)
}

func dash(s string, empty bool) string {
	if empty {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
