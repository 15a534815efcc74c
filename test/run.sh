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

if [ "$which" != unit ]; then
  # Remove what a killed earlier run left behind (namespaces, relays) before starting.
  node --import tsx test/lab/sweep-cli.ts
fi

# One file at a time: integration tests share the machine's 2 cores and would skew each other.
exec node --import tsx --test --test-reporter=tap --test-concurrency=1 "${files[@]}"
