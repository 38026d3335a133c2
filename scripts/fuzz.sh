#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target in the repository for FUZZTIME each
# (default 10s), one after the other. A crash fails the run and leaves the
# failing input under the package's testdata/fuzz/ for a regression test.
#
# Go's fuzz coordinator minimizes every input that finds new coverage
# before fuzzing on, for up to -fuzzminimizetime (60s by default), and
# counts none of those executions until the minimization ends: with the
# default, a target spent its whole FUZZTIME minimizing (restore's
# FuzzPlanTar, whose inputs were kilobytes of raw tar: 10-26 executions in
# 10s; archive's FuzzReadControl and command's FuzzOrdered, 6-1405).
# MINIMIZE bounds each minimization (1s by default; a time, not a count,
# as an execution of crypto's FuzzReader or compress's FuzzAppender takes
# tens of milliseconds). A failing input is still written, if less
# minimized: run the target again with a larger -fuzzminimizetime to shrink it.
#
# Go 1.26's coordinator can fail a target with a bare "context deadline
# exceeded" at the -fuzztime deadline, having found and written nothing:
# CoordinateFuzzing (internal/fuzz/fuzz.go) suppresses the deadline only if
# fuzzCtx, a child of the deadline's context, already reports it, and
# context closes the parent's Done before it cancels the children
# (go.dev/issue/75804, fixed in Go 1.27; go1.26.8's stop() still compares
# against fuzzCtx.Err() alone). Such a run, and only such a run, is tried
# again; if it happens again it is reported as the toolchain's race, not as
# a finding. Any other failure, and any failing input written, fails the run.
set -euo pipefail
FUZZTIME=${FUZZTIME:-10s}
MINIMIZE=${MINIMIZE:-1s}
cd "$(dirname "$0")/.."
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# fuzz_once PKG NAME: runs the target; 0 = passed, 1 = failed, 2 = the
# coordinator's deadline race (failed with nothing written).
fuzz_once() {
  local pkg=$1 name=$2 corpus="$1/testdata/fuzz/$2" before after
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$MINIMIZE" "$pkg" 2>&1 | tee "$log"; then
    return 0
  fi
  after=$(ls "$corpus" 2>/dev/null | sort || true)
  if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' "$log" &&
    ! grep -qE 'panic|Failing input|failure while testing seed corpus' "$log"; then
    return 2
  fi
  return 1
}

while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name ($FUZZTIME)"
  rc=0
  fuzz_once "$pkg" "$name" || rc=$?
  if [ "$rc" -eq 2 ]; then
    echo "fuzz: $name: deadline race in Go's fuzz coordinator (go.dev/issue/75804), nothing written; running it again"
    rc=0
    fuzz_once "$pkg" "$name" || rc=$?
    if [ "$rc" -eq 2 ]; then
      echo "fuzz: $name: the coordinator's deadline race again; no failing input was found"
      rc=0
    fi
  fi
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $name FAILED"
    status=1
  fi
done < <(grep -rEo --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/:func /:/' | sort)
exit $status
