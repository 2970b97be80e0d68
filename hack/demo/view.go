package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/testenv"
)

// view redraws the state of the demo resources every interval. On a
// terminal it repaints the screen; otherwise (a pipe, a log, `make demo
// DEMO_FLAGS=-duration=150s | tee`) it prints the tables again only when
// something other than the clock changed, and each event once.
type view struct {
	env      *testenv.Env
	out      io.Writer
	o        options
	tty      bool
	start    time.Time
	seen     map[string]int32 // event UID -> series count printed
	events   []string         // event lines, oldest first
	lastSnap string
}

func newView(env *testenv.Env, out io.Writer, o options) *view {
	tty := false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &view{env: env, out: out, o: o, tty: tty, start: time.Now(), seen: map[string]int32{}}
}

func (v *view) run(ctx context.Context) {
	t := time.NewTicker(v.o.interval)
	defer t.Stop()
	for {
		v.draw(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *view) draw(ctx context.Context) {
	now := time.Now()
	var aks v1alpha1.ApiKeyList
	var rts v1alpha1.RevioTokenList
	var secrets corev1.SecretList
	var evs eventsv1.EventList
	var ris v1alpha1.ClusterReevitIssuerList
	var rvis v1alpha1.ClusterRevioIssuerList
	c := v.env.Client
	in := client.InNamespace(demoNamespace)
	err := c.List(ctx, &aks, in)
	if err == nil {
		err = c.List(ctx, &ris)
	}
	if err == nil {
		err = c.List(ctx, &rvis)
	}
	if err == nil {
		err = c.List(ctx, &rts, in)
	}
	if err == nil {
		err = c.List(ctx, &secrets, in)
	}
	if err == nil {
		err = c.List(ctx, &evs, in)
	}
	if err == nil {
		// The cluster issuers' events are in the default namespace.
		var clusterEvs eventsv1.EventList
		err = c.List(ctx, &clusterEvs, client.InNamespace(metav1.NamespaceDefault))
		for _, e := range clusterEvs.Items {
			if e.Regarding.Kind == v1alpha1.KindClusterReevitIssuer || e.Regarding.Kind == v1alpha1.KindClusterRevioIssuer {
				evs.Items = append(evs.Items, e)
			}
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			_, _ = fmt.Fprintf(v.out, "%s  (reading the resources failed: %v)\n", now.Format(time.TimeOnly), err)
		}
		return
	}
	newEvents := v.collectEvents(evs.Items)

	// The snapshot without the clock decides, off a terminal, whether to print.
	tables := func(now time.Time, relative bool) string {
		var b strings.Builder
		writeIssuers(&b, ris.Items, rvis.Items)
		b.WriteString("\n")
		writeAdminKeys(&b, ris.Items, now, relative)
		b.WriteString("\n")
		writeApiKeys(&b, aks.Items, now, relative)
		b.WriteString("\n")
		writeRevioTokens(&b, rts.Items, now, relative)
		b.WriteString("\n")
		writeSecrets(&b, aks.Items, rts.Items, secrets.Items)
		return b.String()
	}
	if v.tty {
		var b strings.Builder
		b.WriteString("\033[H\033[2J")
		fmt.Fprintf(&b, "Keywarden demo   %s   running %s   Ctrl-C stops everything\n", now.Format(time.TimeOnly), now.Sub(v.start).Round(time.Second))
		fmt.Fprintf(&b, "export KUBECONFIG=%s; kubectl get apikeys,reviotokens,events -n %s\n\n", v.env.AdminKubeconfig, demoNamespace)
		b.WriteString(tables(now, true))
		b.WriteString("\nEVENTS (newest last)\n")
		from := max(0, len(v.events)-12)
		for _, l := range v.events[from:] {
			b.WriteString(l + "\n")
		}
		_, _ = io.WriteString(v.out, b.String())
		return
	}
	for _, l := range newEvents {
		_, _ = fmt.Fprintln(v.out, "event  "+l)
	}
	snap := tables(now, false)
	if snap != v.lastSnap {
		v.lastSnap = snap
		_, _ = fmt.Fprintf(v.out, "\n=== %s (running %s)\n%s\n", now.Format(time.TimeOnly), now.Sub(v.start).Round(time.Second), tables(now, true))
	}
}

// writeIssuers prints the cluster issuers: whether their credential works.
func writeIssuers(w io.Writer, ris []v1alpha1.ClusterReevitIssuer, rvis []v1alpha1.ClusterRevioIssuer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "ISSUER\tREADY\tREASON\tFOR")
	ready := func(conds []metav1.Condition) (string, string) {
		if c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady); c != nil {
			return string(c.Status), c.Reason
		}
		return "-", "-"
	}
	for _, i := range ris {
		st, reason := ready(i.Status.Conditions)
		_, _ = fmt.Fprintf(tw, "%s/%s\t%s\t%s\torg %s\n", v1alpha1.KindClusterReevitIssuer, i.Name, st, reason, i.Spec.OrgID)
	}
	for _, i := range rvis {
		st, reason := ready(i.Status.Conditions)
		_, _ = fmt.Fprintf(tw, "%s/%s\t%s\t%s\thost %s\n", v1alpha1.KindClusterRevioIssuer, i.Name, st, reason, i.Spec.Host)
	}
	_ = tw.Flush()
}

// writeAdminKeys prints the Reevit cluster issuers' admin keys (id and
// prefix only): rotations, the next one, and the previous key until it is
// revoked.
func writeAdminKeys(w io.Writer, ris []v1alpha1.ClusterReevitIssuer, now time.Time, relative bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "ISSUER ADMIN KEY\tKEY ID\tPREFIX\tACTIVE SINCE\tROTATIONS\tNEXT ROTATION\tPREVIOUS KEY\tREVOKED AFTER")
	for _, i := range ris {
		a := i.Status.AdminKey
		if a == nil {
			_, _ = fmt.Fprintf(tw, "%s/%s\t-\t-\t-\t-\t-\t-\t-\n", v1alpha1.KindClusterReevitIssuer, i.Name)
			continue
		}
		prev, revokeAt := "-", "-"
		if a.Previous != nil {
			prev, revokeAt = a.Previous.ID, at(&a.Previous.RevokeAfter, now, relative)
		}
		if a.Pending != nil {
			prev, revokeAt = a.ID, "rotating now ("+a.Pending.Reason+")"
		}
		_, _ = fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", v1alpha1.KindClusterReevitIssuer, i.Name, dash(a.ID), dash(a.Prefix),
			at(a.ActiveSince, now, relative), a.Rotations, at(a.NextRotationTime, now, relative), prev, revokeAt)
	}
	_ = tw.Flush()
}

// collectEvents records events not shown yet (or whose series grew) and
// returns their lines.
func (v *view) collectEvents(items []eventsv1.Event) []string {
	sort.Slice(items, func(i, j int) bool { return eventTime(items[i]).Before(eventTime(items[j])) })
	var lines []string
	for _, e := range items {
		count := int32(1)
		if e.Series != nil {
			count = e.Series.Count
		}
		if v.seen[string(e.UID)] >= count {
			continue
		}
		v.seen[string(e.UID)] = count
		l := fmt.Sprintf("%s  %-7s %-22s %s/%s: %s", eventTime(e).Local().Format(time.TimeOnly), e.Type, e.Reason,
			strings.ToLower(e.Regarding.Kind), e.Regarding.Name, e.Note)
		if count > 1 {
			l += fmt.Sprintf(" (x%d)", count)
		}
		lines = append(lines, l)
	}
	v.events = append(v.events, lines...)
	return lines
}

func eventTime(e eventsv1.Event) time.Time {
	if e.Series != nil && !e.Series.LastObservedTime.IsZero() {
		return e.Series.LastObservedTime.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func writeApiKeys(w io.Writer, items []v1alpha1.ApiKey, now time.Time, relative bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "APIKEY\tREADY\tKEY PREFIX\tKEY ID\tROTATIONS\tNEXT ROTATION\tPENDING REVOCATIONS")
	for _, ak := range items {
		st := ak.Status
		pending := "-"
		if len(st.PendingRevocations) > 0 {
			var ps []string
			for _, p := range st.PendingRevocations {
				ps = append(ps, fmt.Sprintf("%s revoke after %s", p.KeyID, at(&p.RevokeAfter, now, relative)))
			}
			pending = strings.Join(ps, "; ")
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", ak.Name, ready(ak.Status.Conditions), dash(st.KeyPrefix), dash(st.KeyID),
			st.Rotations, at(st.NextRotationTime, now, relative), pending)
	}
	_ = tw.Flush()
}

func writeRevioTokens(w io.Writer, items []v1alpha1.RevioToken, now time.Time, relative bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "REVIOTOKEN\tREADY\tEXPIRES AT\tREFRESHES\tLAST REFRESH\tNEXT REFRESH")
	for _, rt := range items {
		st := rt.Status
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", rt.Name, ready(st.Conditions), at(st.ExpiresAt, now, relative),
			st.Refreshes, at(st.LastRefreshTime, now, relative), at(st.NextRefreshTime, now, relative))
	}
	_ = tw.Flush()
}

// writeSecrets shows what the output Secrets hold without their values: a
// key's public prefix, ids, and a short fingerprint so a change is visible.
func writeSecrets(w io.Writer, aks []v1alpha1.ApiKey, rts []v1alpha1.RevioToken, secrets []corev1.Secret) {
	byName := map[string]*corev1.Secret{}
	for i := range secrets {
		byName[secrets[i].Name] = &secrets[i]
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SECRET\tHOLDS (values never shown: prefix, id, fingerprint)")
	// row writes the line of the Secret name, holds describing its data.
	row := func(name string, holds func(data map[string][]byte) string) {
		s := byName[name]
		if s == nil {
			_, _ = fmt.Fprintf(tw, "%s\t(not written yet)\n", name)
			return
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\n", name, holds(s.Data))
	}
	for _, ak := range aks {
		row(secretName(ak.Name, ak.Spec.Secret.Name), func(data map[string][]byte) string {
			line := fmt.Sprintf("apiKey=%s keyId=%s", keyShape(data["apiKey"], ak.Status.KeyPrefix), data["keyId"])
			if prev := data["previousKeyId"]; len(prev) > 0 {
				line += fmt.Sprintf("   previousApiKey=%s previousKeyId=%s", keyShape(data["previousApiKey"], ""), prev)
			}
			return line
		})
	}
	for _, rt := range rts {
		row(secretName(rt.Name, rt.Spec.Secret.Name), func(data map[string][]byte) string {
			return fmt.Sprintf("token=%s expiresAt=%s", keyShape(data["token"], ""), dash(string(data["expiresAt"])))
		})
	}
	_ = tw.Flush()
}

// keyShape describes a credential without revealing it: the public prefix
// when it is the one status reports, its length and a fingerprint.
func keyShape(v []byte, prefix string) string {
	if len(v) == 0 {
		return "-"
	}
	sum := sha256.Sum256(v)
	fp := "sha256:" + hex.EncodeToString(sum[:4])
	if prefix != "" && strings.HasPrefix(string(v), prefix) && len(v) > len(prefix) {
		return fmt.Sprintf("%s…(%d chars, %s)", prefix, len(v), fp)
	}
	return fmt.Sprintf("(%d chars, %s)", len(v), fp)
}

func secretName(own, override string) string {
	if override != "" {
		return override
	}
	return own
}

func ready(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if c == nil {
		return "-"
	}
	if c.Status == metav1.ConditionTrue {
		return "True"
	}
	return string(c.Status) + " (" + c.Reason + ")"
}

// at formats a time of day, with "in 40s" / "12s ago" when relative.
func at(t *metav1.Time, now time.Time, relative bool) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	s := t.Local().Format(time.TimeOnly)
	if !relative {
		return s
	}
	d := t.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return s + " (in " + d.String() + ")"
	case d < 0:
		return s + " (" + (-d).String() + " ago)"
	}
	return s + " (now)"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
