#!/usr/bin/env bash
# Rehearses CI as a new machine runs it: a clean clone of the committed HEAD,
# empty Go module and build caches (and, with -controlplane, an empty
# control-plane cache too), then .ci/run. Prints the wall time. Run it before
# you stop: a machine that has run the suites before hides what a fresh one
# meets (modules downloaded for the first time, tools compiled from nothing).
#
#   hack/fresh-ci.sh [-controlplane]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/keywarden-fresh.XXXXXX")
cleanup() { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
git clone -q --no-local "$repo" "$work/keywarden"
export GOMODCACHE=$work/gomodcache GOCACHE=$work/gocache GOFLAGS=-modcacherw
if [[ ${1:-} == -controlplane ]]; then
  export KEYWARDEN_CACHE=$work/keywarden-cache
fi
echo "fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $work; GOMODCACHE and GOCACHE empty${KEYWARDEN_CACHE:+, control plane not built}"
start=$(date +%s)
if [[ -n "${KEYWARDEN_CACHE:-}" ]]; then
  # The control plane first, timed on its own (.ci/run's make test would
  # build it too).
  "$work/keywarden/hack/controlplane.sh" >/dev/null
  echo "== control plane built from nothing in $(( $(date +%s) - start )) s"
fi
set +e
"$work/keywarden/.ci/run"
status=$?
set -e
echo "== .ci/run exited $status after $(( $(date +%s) - start )) s"
exit $status
