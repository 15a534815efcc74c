#!/usr/bin/env bash
# Installs every Debian package and npm dependency Canopy needs, on a fresh Debian 12 machine with
# Node ≥ 20 and npm. Idempotent. Used by the Quick start and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  iproute2 iputils-ping iperf3 curl bind9-dnsutils dnsperf dnsmasq-base \
  mosquitto mosquitto-clients nginx-light ethtool nftables procps psmisc \
  python3 make g++ \
  containerd runc busybox-static docker-registry >/dev/null
# containerd + runc run `container` instances (the worker starts its own containerd); busybox-static
# and docker-registry let the tests build and serve images without the internet. Debian enables the
# registry's own service where an init system runs it: the tests start theirs on a free loopback port.

echo "== npm dependencies"
# koffi's and better-sqlite3's binaries come from install scripts (allowed in package.json):
# never --omit=optional.
npm ci --no-audit --no-fund
