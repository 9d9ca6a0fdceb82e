#!/usr/bin/env bash
# Side-by-side benchmark of S3 versioning in the metadata service: zenkoctl (release build,
# embedded redb) and Arsenal's reference MetadataFileServer (LevelDB), both driven by Arsenal's
# own MetadataFileClient (bench/versioning-bench.js): versioned puts (1 caller; 16 callers on one
# key and on random keys), gets by versionId, metadata updates of versions, deletes of the current
# version followed by a PHD-resolving get, and listings of a key's versions. ops/s, p50/p99 and
# server CPU per operation (from /proc). On demand, not in CI. Needs scripts/deps/arsenal.sh.
# Usage: bench/versioning.sh [SCALE]   (SCALE multiplies operation counts; default 1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scale="${1:-1}"
bash "$root/scripts/deps/arsenal.sh"
(cd "$root" && cargo build --release --quiet --bin zenkoctl)
. "$root/bench/lib.sh"
bench_workdir zenko-vbench

start_metadata_pair

node "$root/bench/versioning-bench.js" --target "127.0.0.1:$ref_port" --pid "$ref_pid" --scale "$scale" > "$work/ref.jsonl"
node "$root/bench/versioning-bench.js" --target "$ours_addr" --pid "$ours_pid" --scale "$scale" > "$work/ours.jsonl"

python3 - "$work/ref.jsonl" "$work/ours.jsonl" <<'PY'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
ours = [json.loads(l) for l in open(sys.argv[2])]
print("| workload | callers | ops | ops/s ref | ops/s ours | x | p50 ms ref | p50 ms ours | p99 ms ref | p99 ms ours | server CPU µs/op ref | ours |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r, o in zip(ref, ours):
    assert (r["name"], r["concurrency"]) == (o["name"], o["concurrency"])
    print(f"| {r['name']} | {r['concurrency']} | {r['ops']} | {r['ops_per_s']:.0f} | {o['ops_per_s']:.0f} | "
          f"{o['ops_per_s'] / r['ops_per_s']:.2f} | {r['p50_ms']:.2f} | {o['p50_ms']:.2f} | "
          f"{r['p99_ms']:.2f} | {o['p99_ms']:.2f} | {r['server_cpu_us_per_op']:.0f} | {o['server_cpu_us_per_op']:.0f} |")
PY
