#!/usr/bin/env bash
# Runs Canopy's tests on Node's built-in runner (TAP). Node 20 has no test globs, so the file list is
# built here. Usage: test/run.sh [unit|integration|all] [extra files…]
#   unit         logic only, no root needed
#   integration  emulated hosts (network namespaces): needs root
#   all          both (default)
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
shift || true

files=()
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  case "$which" in
    unit)        mapfile -t files < <(find test/unit -name '*.test.ts' | sort) ;;
    integration) mapfile -t files < <(find test/integration -name '*.test.ts' | sort) ;;
    all)         mapfile -t files < <(find test/unit test/integration -name '*.test.ts' | sort) ;;
    *) echo "usage: test/run.sh [unit|integration|all] [files…]" >&2; exit 2 ;;
  esac
fi
if [ "${#files[@]}" -eq 0 ]; then
  echo "test/run.sh: no test files found for '$which'" >&2
  exit 1
fi

# Tests run the TypeScript sources, and so do the daemons they start through bin/canopy.js (never a
# build in dist/ that may predate an edit).
export CANOPY_FROM_SOURCE=1

if [ "$which" != unit ]; then
  # Remove what a killed earlier run left behind (namespaces, relays) before starting.
  node --import tsx lab/sweep-cli.ts
fi

# What a run may create and must remove (#13): namespaces, links, canopy cgroups (and their parents),
# canopy-* temporary folders, and the default state directory. This script's own files are left out.
snapshot() {
  {
    ip netns list 2>/dev/null | awk '{print "netns " $1}'
    ip -o link 2>/dev/null | awk -F': ' '{print "link " $2}' | cut -d@ -f1
    find /sys/fs/cgroup -maxdepth 4 -type d -name 'canopy*' 2>/dev/null | sed 's/^/cgroup /'
    find "${TMPDIR:-/tmp}" -mindepth 1 -maxdepth 1 -name 'canopy-*' ! -name 'canopy-test-before.*' ! -name 'canopy-test-tap.*' \
      ! -name '*.lock' 2>/dev/null | sed 's/^/tmp /'
    if [ -e /var/lib/canopy ]; then echo "state /var/lib/canopy"; fi
  } | sort
}
[ "$which" != unit ] && snapshot > "${TMPDIR:-/tmp}/canopy-test-before.$$"

# One file at a time: integration tests share the machine's 2 cores and would skew each other.
tap="${TMPDIR:-/tmp}/canopy-test-tap.$$"
set +o pipefail # the runner's status is read from PIPESTATUS, tee's must not hide it
node --import tsx --test --test-reporter=tap --test-concurrency=1 "${files[@]}" | tee "$tap"
rc=${PIPESTATUS[0]}
set -o pipefail

# A skip or a todo is loud: counted with its reasons. CANOPY_NO_SKIPS=1 (set by .ci/run) fails the run
# on any, so a machine that lacks a facility cannot pass without running what it skipped.
skips=$(grep -E '^ *ok [0-9]+ - .* # (SKIP|TODO)' "$tap" | sed -E 's/^ *ok [0-9]+ - //' || true)
rm -f "$tap"
if [ -n "$skips" ]; then
  echo "# skipped or todo: $(echo "$skips" | wc -l)"
  echo "$skips" | sed 's/^/#   /'
  if [ "${CANOPY_NO_SKIPS:-0}" = 1 ]; then
    echo "# CANOPY_NO_SKIPS=1: a run with skipped or todo tests fails" >&2
    rc=1
  fi
else
  echo "# skipped or todo: 0"
fi

if [ "$which" != unit ]; then
  # Whatever the tests created must be gone now, pass or fail: a leftover is a hole in a cleanup.
  left=$(snapshot | comm -13 "${TMPDIR:-/tmp}/canopy-test-before.$$" -)
  rm -f "${TMPDIR:-/tmp}/canopy-test-before.$$"
  if [ -n "$left" ]; then
    echo "# leak check: the tests left these behind:" >&2
    echo "$left" | sed 's/^/#   /' >&2
    [ "${CANOPY_LEAK_CHECK:-strict}" = strict ] && rc=1
  else
    echo "# leak check: no namespaces, links, cgroups, temporary folders or state directory left behind"
  fi
fi
exit "$rc"
