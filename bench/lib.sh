# Shared start-up of the metadata benches (sourced, not run): a work directory removed on exit
# with every server started into it, and the pair of metadata servers the side-by-side benches
# drive. Expects `root` (the repository) to be set by the caller.

# bench_workdir PREFIX: sets `work` and `pids`; on exit, stops every pid in `pids` and removes
# `work`.
bench_workdir() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}

# start_metadata_pair: our metadata service (release build, embedded engine) and Arsenal's
# reference MetadataFileServer, each on a free port; sets `ours_pid`, `ours_addr`, `ref_pid`
# and `ref_port`, or exits with both servers' stderr.
start_metadata_pair() {
    "$root/target/release/zenkoctl" --output json serve --only metadata --metadata-addr 127.0.0.1:0 \
        --metadata-path "$work/ours" > "$work/ours.out" 2> "$work/ours.err" &
    pids+=($!); ours_pid=$!
    node "$root/tests/arsenal/ref-mdserver.js" --path "$work/ref" --port 0 > "$work/ref.out" 2> "$work/ref.err" &
    pids+=($!); ref_pid=$!
    for _ in $(seq 100); do
        [ -s "$work/ours.out" ] && [ -s "$work/ref.out" ] && break
        sleep 0.1
    done
    ours_addr="$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$work/ours.out" | head -1)"
    ref_port="$(awk '/^READY/ {print $2}' "$work/ref.out")"
    [ -n "$ours_addr" ] && [ -n "$ref_port" ] || { echo "servers did not start" >&2; cat "$work"/*.err >&2; exit 1; }
}
