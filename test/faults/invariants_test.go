package faults

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywarden/keywarden/internal/reevit"
	"github.com/keywarden/keywarden/internal/revio"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keywarden/keywarden/api/v1alpha1"
	"github.com/keywarden/keywarden/internal/apisim"
	"github.com/keywarden/keywarden/internal/testenv"
)

// tokenPolicy decides whether a token found expired at now in a Secret is a
// lost credential (true) or an expected consequence of the faults (false).
type tokenPolicy func(exp, now time.Time) bool

// checker verifies the invariants of one namespace served by one apisim:
//   - every key apisim holds active with an object's marker is the object's
//     active key, a pending revocation, or the creation status records as
//     in flight (pendingCreate): otherwise it is leaked;
//   - no two keys carry the same marker (a double create);
//   - every ApiKey Secret's key authenticates;
//   - every RevioToken Secret's token validates (or its expiry is excused
//     by the token policy).
//
// The reads are not atomic, so a key counts only when it is active in a
// list made before and in one made after the objects were read: keys are
// never un-revoked, so it was active at the moment of the object read, and
// Keywarden records a creation before sending it.
type checker struct {
	s      *suite
	sim    *testenv.Apisim
	ns     string
	policy tokenPolicy // nil: every token must validate
	// adminKeys accounts for the admin keys of the namespace's
	// ReevitIssuers too (issue 23): every live key at apisim without an
	// ApiKey's marker must be an issuer's status.adminKey id, its previous
	// key or its pending rotation's, and each issuer's admin Secret must
	// hold a key that authenticates.
	adminKeys bool

	mu        sync.Mutex
	checks    int
	problems  []string
	lostAdmin []string // admin Secrets found without a working key
	untracked []string // live admin keys no issuer tracks
}

func newChecker(s *suite, sim *testenv.Apisim, ns string, policy tokenPolicy) *checker {
	return &checker{s: s, sim: sim, ns: ns, policy: policy}
}

// problem records a finding once.
func (c *checker) problem(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.problems, p) {
		c.problems = append(c.problems, p)
	}
}

// count is the number of findings so far.
func (c *checker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.problems)
}

// report fails t with every finding so far.
func (c *checker) report(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Error(p)
	}
	t.Logf("invariants of %s checked %d times: %d problems", c.ns, c.checks, len(c.problems))
}

// activeKeys lists the org's keys: the active ones by id, and all of them.
func (c *checker) activeKeys(ctx context.Context) (map[string]apisim.KeyInfo, []apisim.KeyInfo, error) {
	keys, err := c.sim.Control.ReevitKeys(ctx, c.sim.Credentials.OrgID)
	if err != nil {
		return nil, nil, err
	}
	active := map[string]apisim.KeyInfo{}
	for _, k := range keys {
		if !k.Revoked {
			active[k.ID] = k
		}
	}
	return active, keys, nil
}

// check makes one pass over the invariants.
func (c *checker) check(ctx context.Context) error {
	before, _, err := c.activeKeys(ctx)
	if err != nil {
		return err
	}
	cl := c.s.env.Client
	var aks v1alpha1.ApiKeyList
	if err := cl.List(ctx, &aks, client.InNamespace(c.ns)); err != nil {
		return err
	}
	var rts v1alpha1.RevioTokenList
	if err := cl.List(ctx, &rts, client.InNamespace(c.ns)); err != nil {
		return err
	}
	var secrets corev1.SecretList
	if err := cl.List(ctx, &secrets, client.InNamespace(c.ns)); err != nil {
		return err
	}
	after, all, err := c.activeKeys(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.checks++
	c.mu.Unlock()

	byUID := map[string]*v1alpha1.ApiKey{}
	for i := range aks.Items {
		ak := &aks.Items[i]
		byUID[string(ak.UID)] = ak
		c.s.statuses.add(ak, ak.Status)
	}
	for i := range rts.Items {
		c.s.statuses.add(&rts.Items[i], rts.Items[i].Status)
	}
	secretByName := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		secretByName[secrets.Items[i].Name] = &secrets.Items[i]
		c.s.needles.addSecret(&secrets.Items[i])
	}

	issuers, err := c.adminIssuers(ctx)
	if err != nil {
		return err
	}
	// Admin Secrets: the admin key must authenticate; the key each holds
	// counts as tracked (an issuer that has not identified it yet).
	inSecrets := map[string]bool{}
	for _, iss := range issuers {
		if id := c.checkAdminSecret(ctx, iss, secretByName[iss.Spec.AdminKeySecretRef.Name]); id != "" {
			inSecrets[id] = true
		}
	}

	// Keys: leaked or created twice.
	markers := map[string]string{}
	for _, k := range all {
		uid, gen, ok := reevit.ParseMarker(k.Name)
		if !ok {
			continue
		}
		m := uid + ":" + strconv.FormatInt(gen, 10)
		if other, dup := markers[m]; dup {
			c.problem(fmt.Sprintf("double create: keys %s and %s both carry marker [kw:%s]", other, k.ID, m))
			c.s.sum.leak(fmt.Sprintf("key %s: second key created for marker [kw:%s]", k.ID, m))
		}
		markers[m] = k.ID
	}
	for id, k := range before {
		if _, still := after[id]; !still {
			continue
		}
		uid, _, ok := reevit.ParseMarker(k.Name)
		if c.adminKeys && (!ok || byUID[uid] == nil) {
			if !inSecrets[id] {
				c.checkAdminKey(k, issuers)
			}
			continue
		}
		if !ok {
			continue // not Keywarden's (apisim's admin key, a seeded key)
		}
		ak := byUID[uid]
		if ak == nil {
			if !c.ownedElsewhere(ctx, uid) {
				p := fmt.Sprintf("key %s (%q) is active but no ApiKey with uid %s exists", id, k.Name, uid)
				c.problem("leaked " + p)
				c.s.sum.leak(p)
			}
			continue
		}
		st := ak.Status
		pending := slices.ContainsFunc(st.PendingRevocations, func(p v1alpha1.PendingRevocation) bool { return p.KeyID == id })
		inFlight := st.PendingCreate != nil && st.PendingCreate.Name == k.Name
		if id != st.KeyID && !pending && !inFlight {
			p := fmt.Sprintf("key %s of ApiKey %s/%s is active but tracked by nothing (status.keyId %s, %d pending revocations, pendingCreate %v)",
				id, ak.Namespace, ak.Name, st.KeyID, len(st.PendingRevocations), st.PendingCreate != nil)
			c.problem("leaked " + p)
			c.s.sum.leak(p)
		}
	}

	// ApiKey Secrets: the key must authenticate.
	for i := range aks.Items {
		ak := &aks.Items[i]
		name := cmp.Or(ak.Spec.Secret.Name, ak.Name)
		c.judgeSecret(ctx, secretByName[name], "apiKey", func(sec *corev1.Secret) string {
			if err := c.keyValid(ctx, sec); err != nil {
				return fmt.Sprintf("ApiKey %s/%s: Secret %s %v", ak.Namespace, ak.Name, name, err)
			}
			return ""
		})
	}

	// RevioToken Secrets: the token must validate.
	for i := range rts.Items {
		rt := &rts.Items[i]
		c.judgeSecret(ctx, secretByName[cmp.Or(rt.Spec.Secret.Name, rt.Name)], "token", func(sec *corev1.Secret) string {
			return c.tokenProblem(ctx, rt, sec)
		})
	}
	return nil
}

// adminIssuers lists the namespace's ReevitIssuers when the checker
// accounts for admin keys (none otherwise).
func (c *checker) adminIssuers(ctx context.Context) ([]*v1alpha1.ReevitIssuer, error) {
	if !c.adminKeys {
		return nil, nil
	}
	var list v1alpha1.ReevitIssuerList
	if err := c.s.env.Client.List(ctx, &list, client.InNamespace(c.ns)); err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.ReevitIssuer, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
		c.s.statuses.add(out[i], out[i].Status)
	}
	return out, nil
}

// checkAdminKey accounts for a key active before and after the objects were
// read that no ApiKey tracks: an issuer's admin key, the previous one it
// has still to revoke, or the key its rotation in flight makes.
func (c *checker) checkAdminKey(k apisim.KeyInfo, issuers []*v1alpha1.ReevitIssuer) {
	for _, iss := range issuers {
		a := iss.Status.AdminKey
		if a == nil {
			continue
		}
		if k.ID == a.ID || a.Previous != nil && k.ID == a.Previous.ID || a.Pending != nil && k.Name == a.Pending.Name {
			return
		}
	}
	p := fmt.Sprintf("key %s (%q, scopes %v) is live at Reevit but no issuer's status.adminKey nor any ApiKey tracks it", k.ID, k.Name, k.Scopes)
	c.mu.Lock()
	if !slices.Contains(c.untracked, k.ID) {
		c.untracked = append(c.untracked, k.ID)
	}
	c.mu.Unlock()
	c.problem("leaked " + p)
	c.s.sum.leak(p)
}

// checkAdminSecret checks that an issuer's admin Secret holds a key that
// authenticates (re-read once if it changed meanwhile) and returns its id
// ("" when there is none or no verdict).
func (c *checker) checkAdminSecret(ctx context.Context, iss *v1alpha1.ReevitIssuer, sec *corev1.Secret) string {
	if sec == nil {
		return ""
	}
	// valid is false only when apisim says the key does not authenticate.
	valid := func(sec *corev1.Secret) (string, bool) {
		id, ok, err := c.sim.Control.Authenticate(ctx, c.sim.Credentials.OrgID, strings.TrimSpace(string(sec.Data[adminSecretKey(iss)])))
		return id, err != nil || ok
	}
	if id, ok := valid(sec); ok {
		return id
	}
	if fresh, err := c.reread(ctx, sec); err == nil && fresh.ResourceVersion != sec.ResourceVersion {
		if id, ok := valid(fresh); ok {
			return id
		}
	}
	p := fmt.Sprintf("ReevitIssuer %s/%s: admin Secret %s holds a key that does not authenticate (status.adminKey %s)", iss.Namespace, iss.Name, sec.Name, adminKeyID(iss))
	c.mu.Lock()
	if !slices.Contains(c.lostAdmin, p) {
		c.lostAdmin = append(c.lostAdmin, p)
	}
	c.mu.Unlock()
	c.problem("lost admin key: " + p)
	c.s.sum.loss(p)
	return ""
}

// adminFindings counts the admin keys lost and the live admin keys found
// untracked so far.
func (c *checker) adminFindings() (lost, untracked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lostAdmin), len(c.untracked)
}

func adminSecretKey(iss *v1alpha1.ReevitIssuer) string {
	if iss.Spec.AdminKeySecretRef.Key == "" {
		return "apiKey"
	}
	return iss.Spec.AdminKeySecretRef.Key
}

func adminKeyID(iss *v1alpha1.ReevitIssuer) string {
	if iss.Status.AdminKey == nil {
		return "-"
	}
	return iss.Status.AdminKey.ID
}

// ownedElsewhere reports whether uid is an ApiKey of another namespace (a
// scenario sharing this apisim).
func (c *checker) ownedElsewhere(ctx context.Context, uid string) bool {
	var aks v1alpha1.ApiKeyList
	if err := c.s.env.Client.List(ctx, &aks); err != nil {
		return true // unknown: do not accuse
	}
	for _, ak := range aks.Items {
		if string(ak.UID) == uid {
			return true
		}
	}
	return false
}

// judgeSecret judges an output Secret once it is written (sec listed, with
// a value at key): problem says what is wrong with a Secret, "" nothing. A
// Secret that changed under us since it was listed is judged on its new
// content; what is still wrong is a lost credential.
func (c *checker) judgeSecret(ctx context.Context, sec *corev1.Secret, key string, problem func(*corev1.Secret) string) {
	if sec == nil || len(sec.Data[key]) == 0 {
		return // not written yet
	}
	p := problem(sec)
	if p == "" {
		return
	}
	if fresh, gerr := c.reread(ctx, sec); gerr == nil && fresh != nil && fresh.ResourceVersion != sec.ResourceVersion {
		p = problem(fresh) // it changed under us: judge the new content
	}
	if p != "" {
		c.problem("lost credential: " + p)
		c.s.sum.loss(p)
	}
}

func (c *checker) reread(ctx context.Context, sec *corev1.Secret) (*corev1.Secret, error) {
	fresh := &corev1.Secret{}
	if err := c.s.env.Client.Get(ctx, client.ObjectKeyFromObject(sec), fresh); err != nil {
		return nil, err
	}
	c.s.needles.addSecret(fresh)
	return fresh, nil
}

// keyValid checks that the Secret's key authenticates as its keyId. When
// apisim's control API cannot answer there is no verdict (nil).
func (c *checker) keyValid(ctx context.Context, sec *corev1.Secret) error {
	id, ok, err := c.sim.Control.Authenticate(ctx, c.sim.Credentials.OrgID, string(sec.Data["apiKey"]))
	if err != nil {
		return nil //nolint:nilerr // no verdict, see above
	}
	if !ok {
		return fmt.Errorf("holds key %s, which does not authenticate", sec.Data["keyId"])
	}
	if id != string(sec.Data["keyId"]) {
		return fmt.Errorf("holds a key that authenticates as %s, but its keyId says %s", id, sec.Data["keyId"])
	}
	return nil
}

// tokenProblem describes a token in a Secret that does not validate and is
// not excused by the policy; "" when all is well.
func (c *checker) tokenProblem(ctx context.Context, rt *v1alpha1.RevioToken, sec *corev1.Secret) string {
	tok := string(sec.Data["token"])
	// The namespace's issuers name sim's host.
	ok, err := c.sim.Control.ValidateTokenForHost(ctx, tok, c.sim.Credentials.RevioHost)
	if err != nil || ok {
		return ""
	}
	now := time.Now()
	exp, hasExp := jwtExp(tok)
	if !hasExp {
		return fmt.Sprintf("RevioToken %s/%s: Secret %s holds a token that does not validate", rt.Namespace, rt.Name, sec.Name)
	}
	if now.Before(exp) {
		return fmt.Sprintf("RevioToken %s/%s: Secret %s holds an unexpired token (exp %s) that does not validate", rt.Namespace, rt.Name, sec.Name, exp.Format(time.RFC3339))
	}
	if c.policy != nil && !c.policy(exp, now) {
		return ""
	}
	return fmt.Sprintf("RevioToken %s/%s: Secret %s holds a token that expired at %s", rt.Namespace, rt.Name, sec.Name, exp.Format(time.RFC3339))
}

// jwtExp reads a JWT's exp claim without verifying it.
func jwtExp(tok string) (time.Time, bool) {
	_, exp, ok := revio.ParseClaims(tok)
	return exp, ok && !exp.IsZero()
}

// run checks every interval until ctx ends.
func (c *checker) run(ctx context.Context, interval time.Duration) {
	for ctx.Err() == nil {
		_ = c.check(ctx)
		sleep(ctx, interval)
	}
}

// background starts run and returns a function that stops it and waits.
func (c *checker) background(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx, interval)
	}()
	return func() {
		cancel()
		<-done
	}
}

// converged reports whether every object of the namespace is settled: each
// ApiKey Ready for its generation with no creation in flight and a Secret
// whose key authenticates, each RevioToken Ready with a Secret whose token
// validates.
func (c *checker) converged(ctx context.Context) (bool, string) {
	cl := c.s.env.Client
	var aks v1alpha1.ApiKeyList
	if err := cl.List(ctx, &aks, client.InNamespace(c.ns)); err != nil {
		return false, err.Error()
	}
	var rts v1alpha1.RevioTokenList
	if err := cl.List(ctx, &rts, client.InNamespace(c.ns)); err != nil {
		return false, err.Error()
	}
	var waiting []string
	for i := range aks.Items {
		ak := &aks.Items[i]
		c.s.statuses.add(ak, ak.Status)
		name := cmp.Or(ak.Spec.Secret.Name, ak.Name)
		switch {
		case !readyFor(ak.Status.Conditions, ak.Generation):
			waiting = append(waiting, fmt.Sprintf("ApiKey %s: %s [keyId %s, failedAttempts %d, lastFailureTime %s, activeSince %s]",
				ak.Name, describeReady(ak.Status.Conditions), ak.Status.KeyID, ak.Status.FailedAttempts,
				stamp(ak.Status.LastFailureTime), stamp(ak.Status.ActiveSince)))
		case ak.Status.PendingCreate != nil || ak.Status.KeyID == "":
			waiting = append(waiting, fmt.Sprintf("ApiKey %s: creation in flight", ak.Name))
		default:
			sec := &corev1.Secret{}
			if err := cl.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, sec); err != nil {
				waiting = append(waiting, fmt.Sprintf("ApiKey %s: Secret: %v", ak.Name, err))
				continue
			}
			c.s.needles.addSecret(sec)
			if string(sec.Data["keyId"]) != ak.Status.KeyID {
				waiting = append(waiting, fmt.Sprintf("ApiKey %s: Secret holds %s, status says %s", ak.Name, sec.Data["keyId"], ak.Status.KeyID))
			} else if err := c.keyValid(ctx, sec); err != nil {
				waiting = append(waiting, fmt.Sprintf("ApiKey %s: Secret %v", ak.Name, err))
			}
		}
	}
	for i := range rts.Items {
		rt := &rts.Items[i]
		c.s.statuses.add(rt, rt.Status)
		name := cmp.Or(rt.Spec.Secret.Name, rt.Name)
		if !readyFor(rt.Status.Conditions, rt.Generation) {
			waiting = append(waiting, fmt.Sprintf("RevioToken %s: %s [expiresAt %s, failedAttempts %d, lastFailureTime %s, nextRefreshTime %s]",
				rt.Name, describeReady(rt.Status.Conditions), stamp(rt.Status.ExpiresAt), rt.Status.FailedAttempts,
				stamp(rt.Status.LastFailureTime), stamp(rt.Status.NextRefreshTime)))
			continue
		}
		sec := &corev1.Secret{}
		if err := cl.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, sec); err != nil {
			waiting = append(waiting, fmt.Sprintf("RevioToken %s: Secret: %v", rt.Name, err))
			continue
		}
		c.s.needles.addSecret(sec)
		if ok, err := c.sim.Control.ValidateTokenForHost(ctx, string(sec.Data["token"]), c.sim.Credentials.RevioHost); err != nil || !ok {
			waiting = append(waiting, fmt.Sprintf("RevioToken %s: token in the Secret does not validate (%v)", rt.Name, err))
		}
	}
	if len(waiting) > 0 {
		sortStrings(waiting)
		if len(waiting) > 6 {
			waiting = append(waiting[:6], fmt.Sprintf("and %d more", len(waiting)-6))
		}
		return false, fmt.Sprintf("%d of %d objects not settled: %s", len(waiting), len(aks.Items)+len(rts.Items), strings.Join(waiting, "; "))
	}
	return true, ""
}

// waitConverged polls converged; on success it runs one last invariant check.
func (c *checker) waitConverged(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := poll(ctx, timeout, time.Second, func() (bool, string) { return c.converged(ctx) }); err != nil {
		return time.Since(start), fmt.Errorf("namespace %s did not converge: %w", c.ns, err)
	}
	took := time.Since(start)
	return took, c.check(ctx)
}

func sortStrings(s []string) { slices.Sort(s) }

// stamp prints a status time.
func stamp(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
