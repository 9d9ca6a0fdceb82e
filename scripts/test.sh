#!/usr/bin/env bash
# The README's test command: installs every test dependency (each scripts/deps/*.sh is
# idempotent), then runs the checks CI runs: formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

for dep in scripts/deps/*.sh; do
  echo "== installing test dependencies: $dep"
  bash "$dep"
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --no-fail-fast
