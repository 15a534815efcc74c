#!/usr/bin/env bash
# Quick start, first command: installs what Canopy needs and brings up a deployment on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node bin/canopy.js up "$@"
