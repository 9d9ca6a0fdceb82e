#!/usr/bin/env bash
# Side-by-side benchmark of the metadata service: zenkoctl (release build, embedded redb) and
# Arsenal's reference MetadataFileServer (LevelDB), both driven by Arsenal's own
# MetadataFileClient (bench/metadata-bench.js): put, get and a 1,000-key listing, sequential and
# with 16 concurrent callers; ops/s, p50/p99 latency and server CPU time per operation (from
# /proc). Also prints the disk's fdatasync rate, the ceiling for durable puts without group
# commit. The Node client's own CPU per operation is shown too: on this 2-core machine client
# and servers share the cores, so once the client saturates, server CPU/op is the fair
# comparison. On demand, not in CI. Needs scripts/deps/arsenal.sh.
# Usage: bench/metadata.sh [SCALE]   (SCALE multiplies operation counts; default 1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scale="${1:-1}"
bash "$root/scripts/deps/arsenal.sh"
(cd "$root" && cargo build --release --quiet --bin zenkoctl)
. "$root/bench/lib.sh"
bench_workdir zenko-md-bench

start_metadata_pair

sync_rate="$(python3 - "$work" <<'PY'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
n, t = 300, time.time()
for _ in range(n):
    os.write(fd, b"x" * 512)
    os.fdatasync(fd)
print(f"{n / (time.time() - t):.0f}")
PY
)"

node "$root/bench/metadata-bench.js" --target "127.0.0.1:$ref_port" --pid "$ref_pid" --label reference --scale "$scale" > "$work/ref.jsonl"
node "$root/bench/metadata-bench.js" --target "$ours_addr" --pid "$ours_pid" --label zenkoctl --scale "$scale" > "$work/ours.jsonl"

python3 - "$work/ref.jsonl" "$work/ours.jsonl" "$sync_rate" <<'PY'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
ours = [json.loads(l) for l in open(sys.argv[2])]
print(f"disk fdatasync rate: {sys.argv[3]}/s (one durable commit each; group commit shares it)")
print()
print("| workload | callers | ops/s ref | ops/s ours | x | p50 ms ref | p50 ms ours | p99 ms ref | p99 ms ours | server CPU µs/op ref | ours | ratio | client CPU µs/op ref | ours |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r, o in zip(ref, ours):
    assert (r["name"], r["concurrency"]) == (o["name"], o["concurrency"])
    print(f"| {r['name']} | {r['concurrency']} | {r['ops_per_s']:.0f} | {o['ops_per_s']:.0f} | "
          f"{o['ops_per_s'] / r['ops_per_s']:.2f} | {r['p50_ms']:.2f} | {o['p50_ms']:.2f} | "
          f"{r['p99_ms']:.2f} | {o['p99_ms']:.2f} | {r['server_cpu_us_per_op']:.0f} | "
          f"{o['server_cpu_us_per_op']:.0f} | {o['server_cpu_us_per_op'] / max(r['server_cpu_us_per_op'], 1e-9):.2f} | "
          f"{r['client_cpu_us_per_op']:.0f} | {o['client_cpu_us_per_op']:.0f} |")
PY
