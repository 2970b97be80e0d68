#!/usr/bin/env bash
# Runs the slow suites N times in a row with a CPU burner on every core, to
# prove they hold on a loaded machine: the controller suite (envtest), e2e and
# the reduced fault suite. Asserts nothing about time; prints the pass count
# of each suite and keeps the log of every failed run.
#
#   hack/test-repeat.sh [-n N] [-s 'controller e2e faults'] [-b 0|1] [-p]
#
# -p runs the suites of a round side by side (each still N times in a row):
# a harsher load than one at a time, and a third of the wall time.
#
# KEYWARDEN_FAILOVERS=20 makes the fault suite's leader-election scenario
# SIGKILL (and SIGTERM) the leader 20 times (docs/reliability.md).
set -uo pipefail
cd "$(dirname "$0")/.."
n=10
suites="controller e2e faults"
burn=1
parallel=0
while getopts "n:s:b:p" o; do
  case $o in
    n) n=$OPTARG ;;
    s) suites=$OPTARG ;;
    b) burn=$OPTARG ;;
    p) parallel=1 ;;
    *) echo "usage: $0 [-n runs] [-s 'controller e2e faults'] [-b 0|1] [-p]" >&2; exit 2 ;;
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
# Only the script itself stops them, not a suite's subshell ending (-p).
stop_burners() {
  [[ $BASHPID == "$$" ]] || return 0
  for p in "${burners[@]}"; do kill "$p" 2>/dev/null; done
  burners=()
}
trap stop_burners EXIT INT TERM
if [[ $burn == 1 ]]; then
  # One busy loop per core, at the tests' own priority.
  for _ in $(seq "$(nproc)"); do
    ( while :; do :; done ) &
    burners+=($!)
  done
  echo "CPU burner: ${#burners[@]} busy loops (pids ${burners[*]})"
fi

# The load the suites ran under, sampled every 30 s.
( while :; do cut -d' ' -f1 /proc/loadavg >>"$logs/load"; sleep 30; done ) &
burners+=($!)

declare -A pkg=([controller]=./internal/controller/ [e2e]=./test/e2e/ [faults]=./test/faults/)
for s in $suites; do
  [[ -n "${pkg[$s]:-}" ]] || { echo "unknown suite $s (controller, e2e, faults)" >&2; exit 2; }
done

# run_suite S: N runs of suite S in a row; prints a line per run and writes
# the pass count to $logs/S.passed.
run_suite() {
  local s=$1 ok=0 i log
  for i in $(seq "$n"); do
    log="$logs/$s-$i.log"
    if go test -count=1 -timeout 60m -v "${pkg[$s]}" >"$log" 2>&1; then
      ok=$((ok + 1))
      echo "$s run $i/$n: pass"
      gzip -q "$log" # kept: a fault run's summary holds its failover gaps
    else
      echo "$s run $i/$n: FAIL (log: $log)"
      grep -E -- '^\s*--- FAIL' "$log" | head -20
    fi
  done
  echo "$ok" >"$logs/$s.passed"
}

if [[ $parallel == 1 ]]; then
  pids=()
  for s in $suites; do run_suite "$s" & pids+=($!); done
  wait "${pids[@]}"
else
  for s in $suites; do run_suite "$s"; done
fi
status=0
declare -A passed
for s in $suites; do
  passed[$s]=$(cat "$logs/$s.passed" 2>/dev/null || echo 0)
  [[ ${passed[$s]} == "$n" ]] || status=1
done
echo "== summary (burner: $([[ $burn == 1 ]] && echo on || echo off); suites $([[ $parallel == 1 ]] && echo side by side || echo one at a time))"
for s in $suites; do echo "$s: ${passed[$s]}/$n passed"; done
awk '{l[NR]=$1} END {if (NR) {n = NR; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (l[j] + 0 < l[i] + 0) {t = l[i]; l[i] = l[j]; l[j] = t}; printf "load average (1 min, sampled every 30 s): median %s, max %s\n", l[int((NR+1)/2)], l[NR]}}' "$logs/load" 2>/dev/null
echo "logs: $logs (passed runs gzipped)"
exit $status
