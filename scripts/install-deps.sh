#!/usr/bin/env bash
# Installs every Debian package and npm dependency Canopy needs, on a fresh Debian 12 machine with
# Node ≥ 20 and npm, and puts `canopy` on PATH (/usr/local/bin/canopy → this checkout's bin/canopy.js).
# Idempotent. Used by the Quick start and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# A dot every 5 s while a quiet step runs, so a minute of silence does not look like a hang.
dots() { ( while sleep 5; do printf '.'; done ) & DOTS=$!; }
nodots() { kill "$DOTS" 2>/dev/null || true; wait "$DOTS" 2>/dev/null || true; echo; }
trap 'kill "${DOTS:-}" 2>/dev/null || true' EXIT

echo "== system packages (apt-get; a dot every 5 s)"
export DEBIAN_FRONTEND=noninteractive
dots
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  iproute2 iputils-ping iperf3 sockperf curl bind9-dnsutils dnsperf dnsmasq-base \
  mosquitto mosquitto-clients nginx-light ethtool nftables procps psmisc \
  python3 python3-requests make g++ chromium \
  containerd runc busybox-static docker-registry postgresql tcpdump >/dev/null
nodots
# containerd + runc run `container` instances (the worker starts its own containerd); busybox-static
# and docker-registry let the tests build and serve images without the internet. Debian enables the
# registry's own service where an init system runs it: the tests start theirs on a free loopback port.
# tcpdump: the TLS test captures the lab bridge during a deploy and looks for secrets in the clear.
# postgresql (15 on Debian 12) is root's shared store for several root replicas; the tests and
# `canopy up --store postgres` run their own server (initdb, pg_ctl as user postgres) in a folder of
# their own, never Debian's cluster.

echo "== npm dependencies (npm ci: about a minute, a dot every 5 s)"
# koffi's and better-sqlite3's binaries come from install scripts (allowed in package.json):
# never --omit=optional.
dots
npm ci --no-audit --no-fund
nodots

echo "== dashboard bundle"
# Root serves dashboard/dist at `/`; chromium (above) runs the dashboard's browser tests.
node --import tsx scripts/build-dashboard.ts

echo "== the canopy command (compiled to dist/)"
# bin/canopy.js runs dist/canopy.js, so the CLI and the daemons it starts run without the TypeScript
# loader; it falls back to the sources (through tsx) when a source is newer than this build.
node --import tsx scripts/build.ts

# A symlink, not a copy: node resolves it to this checkout, so `canopy` always runs the code here.
target="$PWD/bin/canopy.js"
if [ -L /usr/local/bin/canopy ] && [ "$(readlink /usr/local/bin/canopy)" != "$target" ]; then
  echo "/usr/local/bin/canopy pointed to $(readlink /usr/local/bin/canopy); now to this checkout"
fi
ln -sfn "$target" /usr/local/bin/canopy
echo "canopy → $target"
