#!/usr/bin/env bash
# Installs what the controller's engine tests need: Debian's Docker engine (dockerd 20.10,
# containerd, runc; Engine API 1.41) and a static busybox (the process of the test images,
# which are built FROM scratch: no pulls are possible). The tests start a dockerd of their
# own; nothing is started here. Safe to re-run; quiet when everything is already installed.
set -euo pipefail

missing=()
for cmd in dockerd containerd runc; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
# iptables: dockerd needs it for swarm networking (ingress, overlay NAT).
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "scripts/deps/docker.sh: installing docker.io (missing: ${missing[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends docker.io iptables busybox-static >/dev/null
for cmd in dockerd containerd runc iptables busybox; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "scripts/deps/docker.sh: $cmd still missing after install" >&2; exit 1; }
done
