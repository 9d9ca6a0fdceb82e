#!/usr/bin/env bash
# Installs what tests/swarm-lab.sh (the two-node test Swarm) and the image tests need:
# Debian's Docker engine (dockerd 20.10, containerd, runc), iptables for swarm networking,
# iproute2 (ip netns, veth, bridge), util-linux (nsenter, unshare), Debian's registry
# (docker-registry, distribution 2.8), apache2-utils (htpasswd, for the protected registry),
# curl (readiness probes, manifest digests) and busybox-static (a process for test images).
# Nothing is started here. Safe to re-run; quiet when everything is already installed.
set -euo pipefail

declare -A pkg_of=(
  [dockerd]=docker.io [containerd]=containerd [runc]=runc [docker]=docker.io
  [iptables]=iptables [ip]=iproute2 [nsenter]=util-linux [unshare]=util-linux
  [docker-registry]=docker-registry [htpasswd]=apache2-utils [curl]=curl
  [busybox]=busybox-static
)
missing=()
for cmd in "${!pkg_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "scripts/deps/swarm-lab.sh: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
for cmd in "${!pkg_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || {
    echo "scripts/deps/swarm-lab.sh: $cmd still missing after installing ${pkg_of[$cmd]}" >&2
    exit 1
  }
done
