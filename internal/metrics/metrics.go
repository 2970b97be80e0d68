// Package metrics holds Keywarden's Prometheus series. They are registered
// with controller-runtime's registry so they are served beside the standard
// controller metrics. No label ever carries a secret.
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label names of the series of one object (kind, namespace, name) and of
// one ApiKey (namespace, name).
var (
	objectLabels = []string{"kind", "namespace", "name"}
	apiKeyLabels = []string{"namespace", "name"}
)

// gaugeVec and counterVec make the families of plain options: a name, a
// help text and label names.
func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

var (
	// CredentialExpiry is the expiry of the credential in the Secret (RevioToken).
	CredentialExpiry = gaugeVec("keywarden_credential_expiry_timestamp_seconds",
		"Expiry of the credential held in the output Secret, as a Unix timestamp.",
		objectLabels...)

	// NextRenewal is when the next rotation or refresh is due.
	NextRenewal = gaugeVec("keywarden_credential_next_renewal_timestamp_seconds",
		"When the next rotation (ApiKey) or refresh (RevioToken) is due, as a Unix timestamp.",
		objectLabels...)

	// Renewals counts rotations and refreshes by result (success, failure).
	Renewals = counterVec("keywarden_renewals_total",
		"Credential issuances, rotations and refreshes by result.",
		"kind", "result")

	// ExternalRequests counts calls to Reevit and Rev.io by HTTP status code (0: no response).
	ExternalRequests = counterVec("keywarden_external_requests_total",
		"Requests to the external APIs by operation and HTTP status code (0 when no response arrived).",
		"api", "operation", "code")

	// ExternalDuration is the latency of calls to Reevit and Rev.io.
	ExternalDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keywarden_external_request_duration_seconds",
		Help:    "Latency of requests to the external APIs.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"api", "operation"})

	// PendingRevocations is the number of previous keys awaiting revocation.
	PendingRevocations = gaugeVec("keywarden_pending_revocations",
		"Previous ApiKey keys still valid and waiting for revocation.",
		apiKeyLabels...)

	// LiveKeys is the number of keys active at Reevit for an ApiKey.
	LiveKeys = gaugeVec("keywarden_live_keys",
		"Keys active at Reevit that belong to an ApiKey (current plus pending revocation).",
		apiKeyLabels...)

	// IssuerReady is 1 while an issuer's credential is proven, 0 otherwise.
	IssuerReady = gaugeVec("keywarden_issuer_ready",
		"1 when the issuer's credential was proven to work, 0 when its last check failed.",
		objectLabels...)

	// IssuerCredentialFirstSeen is when an issuer's credential value (the
	// Reevit admin key, the Rev.io API key) was first seen in its Secret:
	// its age is time() minus this.
	IssuerCredentialFirstSeen = gaugeVec("keywarden_issuer_credential_first_seen_timestamp_seconds",
		"When the issuer's current credential (admin key or API key) was first seen in its Secret, as a Unix timestamp; its age is time() minus this.",
		objectLabels...)

	// IssuerKeyTooOld is 1 while a Rev.io issuer's API key is older than
	// its spec.maxKeyAge, 0 otherwise (also without maxKeyAge).
	IssuerKeyTooOld = gaugeVec("keywarden_issuer_key_too_old",
		"1 while the Rev.io issuer's API key has been in its Secret for longer than spec.maxKeyAge (KeyAge=False), 0 otherwise.",
		objectLabels...)

	// RolloutPatches counts pod-template patches that restart workloads
	// (one per workload per coalescing window, however many Secrets changed).
	RolloutPatches = counterVec("keywarden_rollout_patches_total",
		"Pod-template patches restarting workloads, by workload kind.",
		"kind")

	// RolloutsPending is the number of workloads whose restart waits for
	// its coalescing window to close.
	RolloutsPending = gaugeVec("keywarden_rollouts_pending",
		"Workloads whose restart waits for the coalescing window (--restart-coalesce-window) to close.",
		"namespace")

	// RolloutsFailed is the number of an ApiKey's rollout targets whose
	// rollout failed (RolloutsComplete=False, RolloutFailed).
	RolloutsFailed = gaugeVec("keywarden_rollouts_failed",
		"Rollout targets of an ApiKey whose rollout of the current Secret failed (RolloutFailed); the previous key is kept meanwhile.",
		apiKeyLabels...)

	// RestartsRequested counts workload restarts asked for under a restart
	// budget, after coalescing (one per workload per window).
	RestartsRequested = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keywarden_restarts_requested_total",
		Help: "Workload restarts asked for under the restart budget (--max-concurrent-restarts), after coalescing.",
	})

	// RestartsQueued counts restarts that had to wait for the budget.
	RestartsQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keywarden_restarts_queued_total",
		Help: "Workload restarts that waited in the queue because the restart budget was full.",
	})

	// RestartsFinished counts rollouts of Keywarden's restarts that left
	// the budget, by result: done (rolled out, or the workload is gone) or
	// failed (its controller reports failure, or it rolled out for longer
	// than --rollout-wait-limit).
	RestartsFinished = counterVec("keywarden_restarts_finished_total",
		"Rollouts of Keywarden's restarts that finished, by result: done or failed.",
		"result")

	// RestartRolloutDuration is the time from a restart's patch to its
	// workload having rolled out.
	RestartRolloutDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keywarden_restart_rollout_duration_seconds",
		Help:    "Time from a restart's pod-template patch to the workload having rolled it out.",
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 3600},
	})

	// RestartQueueLength is the number of restarts waiting for the budget.
	RestartQueueLength = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keywarden_restart_queue_length",
		Help: "Workload restarts waiting for room in the restart budget.",
	})

	// RestartsInFlight is the number of workloads rolling out a restart.
	RestartsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keywarden_restarts_in_flight",
		Help: "Workloads rolling out a Keywarden restart, counted against --max-concurrent-restarts.",
	})

	// PolicyViolations is 1 for an object its issuer's policy refuses.
	PolicyViolations = gaugeVec("keywarden_policy_violation",
		"1 when the object asks for more than its issuer's policy allows (nothing is created for it).",
		objectLabels...)
)

// IssuerAdminKeyAge is the age of a Reevit issuer's admin key, computed at
// each scrape: since it became active (status.adminKey, with
// spec.adminKeyRotation), else since the Secret first held it.
var IssuerAdminKeyAge = NewAgeVec("keywarden_issuer_admin_key_age_seconds",
	"Seconds since the Reevit issuer's current admin key became active (status.adminKey.activeSince with spec.adminKeyRotation, else status.credential.firstSeen).",
	objectLabels)

// IssuerAdminKeyMaxAge is spec.adminKeyRotation.every plus its grace period,
// 0 without spec.adminKeyRotation (no limit): an admin key older than this
// was not rotated as asked (the alert KeywardenIssuerAdminKeyTooOld).
var IssuerAdminKeyMaxAge = gaugeVec("keywarden_issuer_admin_key_max_age_seconds",
	"spec.adminKeyRotation.every plus its grace period, in seconds: the oldest the Reevit issuer's admin key should get; 0 without spec.adminKeyRotation (no limit).",
	objectLabels...)

func init() {
	ctrlmetrics.Registry.MustRegister(CredentialExpiry, NextRenewal, Renewals, ExternalRequests, ExternalDuration, PendingRevocations, LiveKeys,
		IssuerReady, IssuerCredentialFirstSeen, IssuerKeyTooOld, PolicyViolations, RolloutPatches, RolloutsPending,
		RolloutsFailed, RestartsRequested, RestartsQueued, RestartsFinished, RestartRolloutDuration, RestartQueueLength, RestartsInFlight,
		IssuerAdminKeyAge, IssuerAdminKeyMaxAge)
	// Counters of a small, known label space start at 0, so that a rate()
	// and the dashboard see them before the first restart.
	for _, kind := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		RolloutPatches.WithLabelValues(kind)
	}
	for _, result := range []string{"done", "failed"} {
		RestartsFinished.WithLabelValues(result)
	}
}

// AgeVec is a gauge family whose value is the time since a recorded
// instant, computed when scraped (a gauge set at reconcile time would stand
// still between reconciles).
type AgeVec struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	since  map[string]ageEntry
	now    func() time.Time
	labels int
}

type ageEntry struct {
	labels []string
	since  time.Time
}

// NewAgeVec makes an AgeVec with the given label names.
func NewAgeVec(name, help string, labels []string) *AgeVec {
	return &AgeVec{desc: prometheus.NewDesc(name, help, labels, nil), since: map[string]ageEntry{}, now: time.Now, labels: len(labels)}
}

// Set records since when the series counts.
func (v *AgeVec) Set(since time.Time, labels ...string) {
	if len(labels) != v.labels {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.since[strings.Join(labels, "\x00")] = ageEntry{labels: append([]string(nil), labels...), since: since}
}

// Delete removes a series.
func (v *AgeVec) Delete(labels ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.since, strings.Join(labels, "\x00"))
}

// Describe implements prometheus.Collector.
func (v *AgeVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *AgeVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	for _, e := range v.since {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.GaugeValue, max(now.Sub(e.since).Seconds(), 0), e.labels...)
	}
}

// Observer returns a client hook that records one external request.
func Observer(api string) func(operation string, code int, d time.Duration) {
	return func(operation string, code int, d time.Duration) {
		ExternalRequests.WithLabelValues(api, operation, strconv.Itoa(code)).Inc()
		ExternalDuration.WithLabelValues(api, operation).Observe(d.Seconds())
	}
}

// Forget drops every series of one object, called when it is deleted.
func Forget(kind, namespace, name string) {
	CredentialExpiry.DeleteLabelValues(kind, namespace, name)
	NextRenewal.DeleteLabelValues(kind, namespace, name)
	PolicyViolations.DeleteLabelValues(kind, namespace, name)
	if kind == "ApiKey" {
		PendingRevocations.DeleteLabelValues(namespace, name)
		LiveKeys.DeleteLabelValues(namespace, name)
		RolloutsFailed.DeleteLabelValues(namespace, name)
	}
}

// SetTime sets a timestamp gauge, or removes it when t is zero.
func SetTime(g *prometheus.GaugeVec, t time.Time, labels ...string) {
	if t.IsZero() {
		g.DeleteLabelValues(labels...)
		return
	}
	g.WithLabelValues(labels...).Set(float64(t.Unix()))
}
