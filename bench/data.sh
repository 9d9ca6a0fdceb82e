#!/usr/bin/env bash
# Data service benchmark: zenkoctl's data service vs Arsenal's reference data server (Node),
# alternating in one run, with the same load generator (bench/loadgen.rs), plus two ceilings
# measured in the same run: a static in-memory HTTP response on loopback (GET) and the disk's
# create+write+fsync rate (PUT). Servers are pinned to core 0, the load generator to core 1.
#
#   bench/data.sh                 # SECS=5 per case, ROUNDS=3 by default
#   SECS=10 ROUNDS=5 bench/data.sh
#   RESULTS_OUT=runs.jsonl bench/data.sh   # also keep every run's raw figures
#
# The machine may be shared: every case runs ROUNDS times, the servers alternating within each
# round, and the table shows the median of each figure. Start it on a quiet filesystem: on ext4
# without a journal, thousands of files deleted in the last 6 minutes (a previous run's cleanup
# included) slow every create of the first runs (see purge_retired below).
#
# Prints one table. Not part of CI's pass/fail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
SECS="${SECS:-5}"
ROUNDS="${ROUNDS:-3}"
SIZES="${SIZES:-65536 8388608}"
CONCS="${CONCS:-1 16}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"

for tool in taskset node python3; do
    command -v "$tool" >/dev/null || { echo "bench/data.sh: '$tool' is required" >&2; exit 1; }
done
bash scripts/deps/arsenal.sh
echo "building (release)..." >&2
cargo build --release --quiet --bin zenkoctl --example data-loadgen
bin="$repo/target/release/zenkoctl"
gen="$repo/target/release/examples/data-loadgen"

work="$(mktemp -d -p "$repo/target" bench-data.XXXXXX)"
results="$work/results.jsonl"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Every run writes into a fresh directory, and nothing is unlinked until the bench is over: the
# files of finished blocks are truncated to free their space but keep their inodes. This
# filesystem (ext4 without a journal) will not reuse an inode freed less than 60 s ago, or
# 360 s ago while its inode-table block is dirty (RECENTCY_MIN/RECENTCY_DIRTY in
# fs/ext4/ialloc.c), and every create skips such inodes one by one from the start of its group:
# after an rm -rf of tens of thousands of files, each create in the next minutes scanned them
# all (64 KiB PUT at 470-1,100 µs of server CPU instead of 214-397, for either server and for the
# disk ceilings alike).
run_seq=0
run_dir=""
retired=()
fresh_dir() { run_seq=$((run_seq + 1)); run_dir="$work/run.$run_seq"; }
retire_dir() { [ ! -d "$1" ] || retired+=("$1"); }
purge_retired() {
    [ "${#retired[@]}" -gt 0 ] || return 0
    find "${retired[@]}" -type f -exec truncate -s 0 {} +
    retired=()
    sync
}

# Cache flushes the disk under the work directory has completed (the 16th field of its block
# statistics, Linux 5.5+; nothing where there is no such figure, and the fl column shows '-'):
# a durable write on a write-back disk ends in one.
flush_stat="/sys/class/block/$(basename "$(df --output=source "$work" | tail -1)")/stat"
flushes() { if [ -r "$flush_stat" ]; then awk 'NF >= 16 {print $16}' "$flush_stat"; fi; }

# record LABEL FLUSHES_BEFORE: appends the load generator's JSON line (stdin) to the results,
# with the server's label and the cache flushes per request of the run.
record() {
    python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); d["server"] = sys.argv[1]
before, after = sys.argv[2], sys.argv[3]
if before and after and d.get("requests"):
    d["flushes_per_req"] = (int(after) - int(before)) / d["requests"]
print(json.dumps(d))' "$1" "$2" "$(flushes)" >>"$results"
}

server_pid=""
server_port=""
# start_server ours|ref|static SIZE: starts it pinned to SERVER_CPU, sets server_pid/port.
start_server() {
    local kind="$1" size="$2" out="$work/$1.out"
    fresh_dir
    : > "$out"
    case "$kind" in
        ours) taskset -c "$SERVER_CPU" "$bin" --output json serve --only data \
                  --data-addr 127.0.0.1:0 --data-path "$run_dir" >"$out" 2>"$work/ours.err" & ;;
        ref) taskset -c "$SERVER_CPU" node tests/arsenal/ref-dataserver.js \
                  --dataPath "$run_dir" --port 0 >"$out" 2>"$work/ref.err" & ;;
        static) taskset -c "$SERVER_CPU" "$gen" static-server --size "$size" >"$out" & ;;
    esac
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 300); do
        if [ -s "$out" ]; then break; fi
        sleep 0.05
    done
    case "$kind" in
        ours) server_port="$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["addr"].rsplit(":",1)[1])' <"$out")" ;;
        *) server_port="$(awk '/^READY/{print $2; exit}' "$out")" ;;
    esac
    [ -n "$server_port" ] || { echo "bench/data.sh: $kind server did not start" >&2; cat "$work"/*.err >&2 || true; exit 1; }
}

stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    retire_dir "$run_dir"
}

# run LABEL OP SIZE CONC [EXTRA]: one load run against the current server.
run() {
    local label="$1" op="$2" size="$3" conc="$4" extra="${5:-}"
    echo "  $label $op size=$size c=$conc" >&2
    local before out
    before="$(flushes)"
    out="$(taskset -c "$CLIENT_CPU" "$gen" load --target "127.0.0.1:$server_port" --op "$op" \
        --size "$size" --concurrency "$conc" --seconds "$SECS" --server-pid "$server_pid" $extra)"
    record "$label" "$before" <<<"$out"
}

sync # whatever was written before the bench, out of the way of its first runs
for round in $(seq 1 "$ROUNDS"); do
for size in $SIZES; do
    for conc in $CONCS; do
        echo "round $round/$ROUNDS size=$size concurrency=$conc" >&2
        kinds="ours ref"
        if [ $((round % 2)) -eq 0 ]; then kinds="ref ours"; fi
        for kind in $kinds; do
            start_server "$kind" "$size"
            for op in put get range; do run "$kind" "$op" "$size" "$conc"; done
            stop_server
        done
        start_server static "$size"
        run loopback get "$size" "$conc" --static
        stop_server
        echo "  disk create+write+fsync size=$size c=$conc" >&2
        for extra in "" --rename; do
            fresh_dir
            before="$(flushes)"
            out="$(taskset -c "$SERVER_CPU" "$gen" disk --dir "$run_dir" --size "$size" \
                --concurrency "$conc" --seconds "$SECS" $extra)"
            record disk "$before" <<<"$out"
            retire_dir "$run_dir"
        done
        purge_retired
    done
done
done
[ -z "${RESULTS_OUT:-}" ] || cp "$results" "$RESULTS_OUT"

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None
def find(server, op, size, conc):
    runs = [r for r in rows
            if r["server"] == server and r["op"] == op and r["size"] == size and r["concurrency"] == conc]
    if not runs:
        return None
    out = dict(runs[0])
    for k in ("rps", "mib_s", "p50_ms", "p99_ms", "cpu_us_per_req", "flushes_per_req"):
        out[k] = median([r.get(k) for r in runs])
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    out["runs"] = len(runs)
    return out
def human(size):
    return f"{size // 1048576} MiB" if size >= 1048576 else f"{size // 1024} KiB"
def cell(r):
    if r is None:
        return "-"
    err = f" ({r['errors']} err)" if r.get("errors") else ""
    return f"{r['rps']:8.0f} {r['mib_s']:7.1f} {r['p50_ms']:6.2f}/{r['p99_ms']:<7.2f}{err}"
def cpu(r):
    return "-" if r is None or r.get("cpu_us_per_req") is None else f"{r['cpu_us_per_req']:.0f}"
print()
print("Data service: zenkoctl vs Arsenal reference (server on 1 core, load generator on another)")
print("cells: req/s  MiB/s  p50/p99 ms; cpu = server CPU µs per request; medians of the rounds")
hdr = f"{'size':>7} {'c':>2} {'op':<5} | {'zenkoctl':<31} {'cpu':>6} | {'reference':<31} {'cpu':>6} | {'x ref':>6} {'cpu/ref':>7} | {'ceiling':<31} {'cpu':>6} {'% ceil':>6}"
print(hdr)
print("-" * len(hdr))
sizes = sorted({r["size"] for r in rows})
concs = sorted({r["concurrency"] for r in rows})
for size in sizes:
    for conc in concs:
        for op in ("put", "get", "range"):
            o, f = find("ours", op, size, conc), find("ref", op, size, conc)
            ceil = find("disk", "disk", size, conc) if op == "put" else find("loopback", "get", size, conc)
            ratio = f"{o['rps'] / f['rps']:6.2f}" if o and f and f["rps"] else "-"
            cpur = (f"{o['cpu_us_per_req'] / f['cpu_us_per_req']:7.2f}"
                    if o and f and o.get("cpu_us_per_req") and f.get("cpu_us_per_req") else "-")
            # A ranged GET moves half the bytes: compare bandwidth-bound sizes by MiB/s.
            pct = "-"
            if o and ceil and ceil["rps"]:
                pct = f"{100 * o['rps'] / ceil['rps']:5.0f}%"
            ceil_label = "disk " if op == "put" else "lo   "
            print(f"{human(size):>7} {conc:>2} {op:<5} | {cell(o):<31} {cpu(o):>6} | {cell(f):<31} {cpu(f):>6} | {ratio:>6} {cpur:>7} | {ceil_label}{cell(ceil):<26} {cpu(ceil):>6} {pct:>6}")
print()
print("PUT against both disk ceilings ('disk' above; 'disk+rename' = the same plus a rename into a")
print("sub-directory and an fsync of it: the minimum of the durable protocol zenkoctl follows);")
print("fl = cache flushes the disk completed per PUT (each synchronous round on a write-back disk ends in one)")
def fl(r):
    return f"{r['flushes_per_req']:4.2f}" if r and r.get("flushes_per_req") is not None else "   -"
for size in sizes:
    for conc in concs:
        o, f = find("ours", "put", size, conc), find("ref", "put", size, conc)
        d1, d2 = find("disk", "disk", size, conc), find("disk", "disk-rename", size, conc)
        if o and d1 and d2:
            print(f"{human(size):>7} {conc:>2} put | zenkoctl {o['rps']:7.1f}/s fl {fl(o)}"
                  f" | disk {d1['rps']:7.1f}/s fl {fl(d1)} ({100*o['rps']/d1['rps']:4.0f}%)"
                  f" | disk+rename {d2['rps']:7.1f}/s fl {fl(d2)} ({100*o['rps']/d2['rps']:4.0f}%)"
                  f" | reference fl {fl(f)}")
print()
print("ceilings: 'lo' = the same load generator against a static in-memory response (hyper) on loopback;")
print("          'disk' = create + write + fsync of files of the same size at the same concurrency,")
print("          spread over 3511 sub-directories as both servers spread objects.")
print("zenkoctl PUT = temp file, write, fsync, rename, fsync of the directory, then 201 (reference: create, write, fsync).")
PY
