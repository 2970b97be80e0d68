package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// TestRotationWindows runs ApiKeys rotating every minute whose only
// rotation window is an hour three days from now (UTC): closed for the
// whole test whatever the wall clock says, so nothing depends on the time
// of the run. The scheduled rotation waits, status.nextRotationTime and
// the RotationWindow condition say until when; a rotation asked for with
// keywarden.dev/rotate and a compromised key (the plugin's compromised)
// ignore the window and replace the key at once.
func TestRotationWindows(t *testing.T) {
	g, ns := credentialTest(t, "windows")
	ctx := context.Background()
	createSecret(t, ns, "reevit-admin", sim.Credentials.AdminKey)

	day := time.Now().UTC().AddDate(0, 0, 3)
	opens := time.Date(day.Year(), day.Month(), day.Day(), 9, 0, 0, 0, time.UTC)
	window := fmt.Sprintf("    windows: [{days: [%s], start: \"09:00\", end: \"10:00\", timeZone: UTC}]\n", opens.Weekday().String()[:3])
	const every, grace = time.Minute, 10 * time.Second
	for _, name := range []string{"waits", "emergency"} {
		apply(t, ns, append(apiKeyManifest(name, every, grace), window...))
	}

	// Both publish a key (creation ignores windows); the next scheduled
	// rotation, a minute after, is moved into the window, at a delay into
	// its first half.
	keys := map[string]*v1alpha1.ApiKey{}
	g.Eventually(func(g Gomega) {
		for _, name := range []string{"waits", "emergency"} {
			ak := getApiKey(g, ns, name)
			expectReady(g, ak.Status.Conditions, ak.Generation)
			g.Expect(ak.Status.KeyID).NotTo(BeEmpty())
			g.Expect(ak.Status.NextRotationTime).NotTo(BeNil())
			at := ak.Status.NextRotationTime.Time
			g.Expect(at).To(BeTemporally(">=", opens), "the rotation does not wait for the window")
			g.Expect(at).To(BeTemporally("<=", opens.Add(30*time.Minute)), "the rotation starts after the window's first half")
			c := condition(ak.Status.Conditions, v1alpha1.ConditionRotationWindow)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "RotationWindow %s (%s): %s", c.Status, c.Reason, c.Message)
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonInWindow))
			g.Expect(ak.Status.ActiveSince).NotTo(BeNil())
			g.Expect(c.Message).To(ContainSubstring("the next rotation, due " + ak.Status.ActiveSince.Add(every).UTC().Format(time.RFC3339) +
				" outside the rotation windows, waits for the next window: it starts at " + at.UTC().Format(time.RFC3339)))
			keys[name] = ak
		}
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	for _, ak := range keys {
		_, err := secretData(ctx, ns, ak.Name)
		g.Expect(err).NotTo(HaveOccurred())
	}

	// An emergency ignores the window: a rotation asked for, then a key
	// marked compromised, each replace the key at once.
	id := keys["emergency"].Status.KeyID
	_, err := env.AdminKubectl(ctx, nil, "annotate", "apikey", "emergency", "-n", ns, v1alpha1.AnnotationRotate+"=1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		ak := getApiKey(g, ns, "emergency")
		g.Expect(ak.Status.KeyID).NotTo(Equal(id), "keywarden.dev/rotate waited for the window")
		g.Expect(ak.Status.PendingCreate).To(BeNil())
	}).WithTimeout(60 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	id = getApiKey(g, ns, "emergency").Status.KeyID
	p := &pluginRuns{}
	out := p.must(t, "y\n", "compromised", "emergency", "-n", ns, "--wait", "--timeout=60s")
	g.Expect(out).To(ContainSubstring("apikey/emergency: done: key " + id))
	g.Expect(getApiKey(g, ns, "emergency").Status.KeyID).NotTo(Equal(id), "a compromised key waited for the window")
	_, err = secretData(ctx, ns, "emergency")
	g.Expect(err).NotTo(HaveOccurred())

	// The scheduled rotation of the other is due a minute after its key
	// became active: past that, it still has its first key.
	waits := keys["waits"]
	due := waits.Status.ActiveSince
	g.Expect(due).NotTo(BeNil())
	g.Consistently(func(g Gomega) {
		ak := getApiKey(g, ns, "waits")
		g.Expect(ak.Status.KeyID).To(Equal(waits.Status.KeyID), "a rotation due outside the window did not wait")
		g.Expect(ak.Status.Rotations).To(Equal(waits.Status.Rotations))
		g.Expect(ak.Status.NextRotationTime.Time).To(BeTemporally(">=", opens))
	}).WithTimeout(time.Until(due.Add(every + 10*time.Second))).WithPolling(time.Second).Should(Succeed())
}
