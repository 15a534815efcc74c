#!/usr/bin/env bash
# The repository must stand alone: nothing in it may read or point at the project's sibling shared/
# folder. CI checks the clone out beside that folder, so a test that reads it would pass in CI and
# fail on every other clone; this check catches it before the tests run.
# Usage: scripts/check-standalone.sh [repository folder]  (exit 1 and the offending lines on a match)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

# A relative path that climbs out of the clone into the sibling folder (one or more parent steps,
# then shared/), or one built from parts (a join of the parent step and the folder's name). This file
# itself is left out: its patterns have to spell what they look for.
patterns=(
  -e '\.\./+shared([/"'"'"'`[:space:]]|$)'
  -e '['"'"'"`]\.\.['"'"'"`][[:space:]]*,[[:space:]]*['"'"'"`]shared['"'"'"`/]'
)
if git grep -n -I -E "${patterns[@]}" -- . ':!scripts/check-standalone.sh'; then
  echo "the lines above reference the sibling shared/ folder: tests, benchmarks, tools and docs must use files in the repository" >&2
  exit 1
fi
echo "the repository stands alone (no reference to a sibling shared/ folder)"
