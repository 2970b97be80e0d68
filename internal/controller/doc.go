// Package controller holds Keywarden's reconcilers: ApiKey (Reevit keys
// created, rotated with a grace period, revoked), RevioToken (Rev.io JWTs
// exchanged and refreshed), the four issuer kinds through one
// IssuerReconciler (credential checks, key age, Reevit admin-key
// self-rotation) and the release of issuer credential Secrets.
//
// Every reconcile is a table of steps of one signature run by runSteps
// (steps.go). Each step declares the condition it owns; a step that fails
// returns a typed *failure, which the runner records through the kind's one
// failure hook (fail, retry.go) into that condition, the retry record and
// one event. One pure rule, held, decides whether a failure still holds an
// object back. Each pass ends in its kind's finisher: Ready summarised,
// then writeStatus (status.go), the package's one status write with one
// conflict policy.
//
// Files by concern: resolution of issuers (issuer_resolve.go), their
// policy (policy.go), the endpoint allow-list (endpoints.go), credentials
// read from Secrets (credentials.go), the API connectors and the seam a
// step's unit test fakes (connector.go), failures (failure.go), retries
// (retry.go), status and conditions (status.go), schedules and time
// (schedule.go), rollout restarts (rollout.go, rollout_health.go,
// restart_budget.go), rotation windows (rotation_window.go), the audit
// stream (audit.go), the Secret reader (secretreader.go), sharding
// (shard.go), watches (watches.go), the cache transform (cache.go) and the
// wiring (setup.go). docs/architecture.md is the map.
package controller
