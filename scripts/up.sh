#!/usr/bin/env bash
# The README's main-job command on a fresh Debian/Ubuntu machine: builds zenkoctl and runs the
# main job. Today that is rendering the module profile into docker-stack.yml (deploying it to a
# local swarm comes with `zenkoctl up`). Extra arguments go to `zenkoctl render`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
cargo build --release --locked
target/release/zenkoctl render --profile module --out docker-stack.yml "$@"
