#!/usr/bin/env bash
# Runs the slow suites N times in a row with a CPU burner on every core, to
# prove they hold on a loaded machine: the controller suite (envtest), e2e and
# the reduced fault suite. Asserts nothing about time; prints the pass count
# of each suite and keeps the log of every failed run.
#
#   hack/test-repeat.sh [-n N] [-s 'controller e2e faults'] [-burn 0|1]
#
# KEYWARDEN_FAILOVERS=20 makes the fault suite's leader-election scenario
# SIGKILL (and SIGTERM) the leader 20 times (docs/reliability.md).
set -uo pipefail
cd "$(dirname "$0")/.."
n=10
suites="controller e2e faults"
burn=1
while getopts "n:s:b:" o; do
  case $o in
    n) n=$OPTARG ;;
    s) suites=$OPTARG ;;
    b) burn=$OPTARG ;;
    *) echo "usage: $0 [-n runs] [-s 'controller e2e faults'] [-b 0|1]" >&2; exit 2 ;;
  esac
done
: "${KUBEBUILDER_ASSETS:=$(hack/controlplane.sh)}"
export KUBEBUILDER_ASSETS
if [[ -z "${KEYWARDEN_HELM:-}" ]]; then
  make -s tools >&2
  export KEYWARDEN_HELM=$PWD/bin/tools/helm
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/keywarden-repeat.XXXXXX")

burners=()
stop_burners() { for p in "${burners[@]}"; do kill "$p" 2>/dev/null; done; burners=(); }
trap stop_burners EXIT INT TERM
if [[ $burn == 1 ]]; then
  # One busy loop per core, at the tests' own priority.
  for _ in $(seq "$(nproc)"); do
    ( while :; do :; done ) &
    burners+=($!)
  done
  echo "CPU burner: ${#burners[@]} busy loops (pids ${burners[*]})"
fi

declare -A pkg=([controller]=./internal/controller/ [e2e]=./test/e2e/ [faults]=./test/faults/)
declare -A passed
status=0
for s in $suites; do
  [[ -n "${pkg[$s]:-}" ]] || { echo "unknown suite $s (controller, e2e, faults)" >&2; exit 2; }
  passed[$s]=0
  for i in $(seq "$n"); do
    log="$logs/$s-$i.log"
    if go test -count=1 -timeout 60m -v "${pkg[$s]}" >"$log" 2>&1; then
      passed[$s]=$((passed[$s] + 1))
      echo "$s run $i/$n: pass"
      rm -f "$log"
    else
      status=1
      echo "$s run $i/$n: FAIL (log: $log)"
      grep -E -- '^\s*--- FAIL' "$log" | head -20
    fi
  done
done
echo "== summary (burner: $([[ $burn == 1 ]] && echo on || echo off))"
for s in $suites; do echo "$s: ${passed[$s]}/$n passed"; done
[[ $status == 0 ]] && rmdir "$logs" 2>/dev/null
exit $status
