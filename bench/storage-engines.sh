#!/usr/bin/env bash
# Measure the candidate embedded engines for the metadata service (redb, fjall) on durable
# commits, point reads and 1k-key scans, plus the disk's fdatasync rate. On demand, not in CI.
# Usage: bench/storage-engines.sh [DIR]   (DIR: where the databases go; default: the repo's target/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../target}"
mkdir -p "$dir"
cd "$here/storage-engines"
cargo build --release --quiet
./target/release/storage-engines-bench "$dir"
