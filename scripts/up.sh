#!/usr/bin/env bash
# The README's main-job command on a fresh Debian/Ubuntu machine: installs Docker's engine if
# it is missing, builds zenkoctl, and runs `zenkoctl up`: a local single-node swarm (started if
# needed), the module image built offline, the `module` profile deployed with the embedded
# metadata backend, waited on until healthy, endpoints printed. Safe to run twice.
# Extra arguments go to `zenkoctl up` (e.g. --set module.data_port=19991).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
bash scripts/deps/docker.sh
cargo build --release --locked
# Start an engine only when none answers on the default socket.
start=()
if ! docker info >/dev/null 2>&1; then
  start=(--start-engine)
fi
exec target/release/zenkoctl up "${start[@]}" "$@"
