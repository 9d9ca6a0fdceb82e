#!/usr/bin/env bash
# The metadata bench (bench/metadata-bench.js: Arsenal's MetadataFileClient doing put, get and a
# 1,000-key listing, sequential and with 16 concurrent callers) against zenkoctl's metadata
# service on the embedded engine and on MongoDB, side by side with the same workloads issued
# directly with the MongoDB driver (bench/mongodb-direct.rs). Puts are set beside two driver
# baselines: the same writes the service issues (object + record-log entry in one transaction),
# where the ratio is the overhead of our RPC layer (socket.io, grouping, conversions), and a
# single replace_one, where it also includes the protocol's atomic record log. On demand, not in CI.
#
# MongoDB: MONGODB_URI when set, else the SecantusDB stand-in (scripts/deps/mongodb.sh) on a free
# port. The stand-in is a Python server that is far slower than mongod: its numbers show the
# service's overhead relative to the driver, never MongoDB's performance.
# Usage: bench/metadata-mongodb.sh [SCALE]   (SCALE multiplies operation counts; default 1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scale="${1:-1}"
bash "$root/scripts/deps/arsenal.sh"
[ -n "${MONGODB_URI:-}" ] || bash "$root/scripts/deps/mongodb.sh"
(cd "$root" && cargo build --release --quiet --bin zenkoctl --example mongodb-direct-bench)
. "$root/bench/lib.sh"
bench_workdir zenko-mongo-bench

uri="${MONGODB_URI:-}"
mongo_desc="MongoDB at MONGODB_URI"
if [ -z "$uri" ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$root/.tools/secantus/bin/secantusd-py" --host 127.0.0.1 --port "$port" \
        --storage-path "$work/mongo" --log-level WARNING > "$work/mongo.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
        sleep 0.1
    done
    uri="mongodb://127.0.0.1:$port/?directConnection=true&retryWrites=false"
    mongo_desc="SecantusDB 0.7.0b3 stand-in (NOT MongoDB performance)"
fi
db="zk_bench_$$"

start_ours() { # NAME ARGS...
    local name="$1"; shift
    "$root/target/release/zenkoctl" --output json serve --only metadata --metadata-addr 127.0.0.1:0 \
        --metadata-path "$work/$name" "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pids+=($!)
    eval "${name}_pid=$!"
    for _ in $(seq 600); do [ -s "$work/$name.out" ] && break; sleep 0.1; done
    eval "${name}_addr=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$work/$name.out" | head -1)"
    [ -s "$work/$name.out" ] || { echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1; }
}
start_ours embedded
start_ours mongodb --metadata-backend mongodb --mongodb-uri "$uri" --mongodb-database "$db"

node "$root/bench/metadata-bench.js" --target "$embedded_addr" --pid "$embedded_pid" --label embedded --scale "$scale" > "$work/embedded.jsonl"
node "$root/bench/metadata-bench.js" --target "$mongodb_addr" --pid "$mongodb_pid" --label mongodb --scale "$scale" > "$work/mongodb.jsonl"
"$root/target/release/examples/mongodb-direct-bench" "$uri" "${db}_direct" "$scale" > "$work/direct.jsonl"

python3 - "$work/embedded.jsonl" "$work/mongodb.jsonl" "$work/direct.jsonl" "$mongo_desc" <<'PY'
import json, sys
emb, mon, drv = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
print(f"MongoDB: {sys.argv[4]}")
print()
print("| workload | callers | embedded ops/s | service on MongoDB ops/s | driver baseline | driver ops/s | service / driver | p50 ms service | p50 ms driver | p99 ms service | p99 ms driver | zenkoctl CPU µs/op embedded | on MongoDB | driver bench CPU µs/op |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
# A put has two baselines: the driver's single replace_one, and the service's own writes (object
# + record-log entry in one transaction, label driver-txn); gets and listings issue one operation.
baselines = {"driver": "same operation", "driver-txn": "same writes, one transaction"}
for e, m in zip(emb, mon):
    assert (e["name"], e["concurrency"]) == (m["name"], m["concurrency"])
    for d in drv:
        if (d["name"], d["concurrency"]) != (m["name"], m["concurrency"]):
            continue
        what = baselines[d["label"]]
        if m["name"] == "put" and d["label"] == "driver":
            what = "one replace_one"
        print(f"| {e['name']} | {e['concurrency']} | {e['ops_per_s']:.0f} | {m['ops_per_s']:.0f} | "
              f"{what} | {d['ops_per_s']:.0f} | {100 * m['ops_per_s'] / d['ops_per_s']:.0f}% | "
              f"{m['p50_ms']:.2f} | {d['p50_ms']:.2f} | {m['p99_ms']:.2f} | {d['p99_ms']:.2f} | "
              f"{e['server_cpu_us_per_op']:.0f} | {m['server_cpu_us_per_op']:.0f} | {d['cpu_us_per_op']:.0f} |")
PY
