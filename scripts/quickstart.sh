#!/usr/bin/env bash
# Quick start, first command: installs what Canopy needs (and `canopy` on PATH), then brings up a
# deployment on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== canopy up $*"
exec node bin/canopy.js up "$@"
