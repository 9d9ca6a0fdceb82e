#!/usr/bin/env bash
# Deploy/teardown benchmark on the two-node lab (tests/swarm-lab.sh): zenkoctl against the
# docker CLI doing the same, alternating, in one run.
#
#   zenkoctl: `zenkoctl deploy -p lab` (returns once converged, healthy and stable for its
#             --stable window) and `zenkoctl teardown` (returns once services, tasks,
#             networks, secrets and configs are gone);
#   docker:   `docker stack deploy --detach=false -c rendered.yml` of the same stack as
#             `zenkoctl render -p lab` writes it, and `docker stack rm` plus polling until the
#             stack's networks are gone (it returns before they are).
#
# "Gone" is the same test for both, polled right after the command returns: no service or
# network of the stack on the manager, and no network of the stack on either node's engine (a
# node drops its copy of an overlay network once its last task container of it is destroyed;
# a redeploy that finds a stale one fails with `network ... not found`).
#
#   bench/deploy.sh               # ROUNDS=5 by default
#   ROUNDS=3 bench/deploy.sh
#   ZENKOCTL_BIN=path/to/zenkoctl bench/deploy.sh   # that binary instead of a release build
#
# The module runs on the worker (the storage label is put there), which pulls the image from
# the lab registry once, before the first round. Needs root and scripts/deps/swarm-lab.sh. The
# lab is started if it is not running, and torn down at the end only if this script started
# it. Prints one table (seconds: median, min, max). Not part of CI's pass/fail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
ROUNDS="${ROUNDS:-5}"
STACK=zenkobench
lab_script="$repo/tests/swarm-lab.sh"

bash scripts/deps/swarm-lab.sh
if [[ -n ${ZENKOCTL_BIN:-} ]]; then
    bin="$ZENKOCTL_BIN"
else
    echo "building (release)..." >&2
    cargo build --release --quiet --bin zenkoctl
    bin="$repo/target/release/zenkoctl"
fi

started_lab=no
if ! env_out="$(bash "$lab_script" env 2>/dev/null)" ||
    ! grep -q '^ZENKOCTL_LAB_NODES=2$' <<<"$env_out"; then
    env_out="$(bash "$lab_script" up --nodes 2)"
    started_lab=yes
fi
lab() { grep "^$1=" <<<"$env_out" | cut -d= -f2-; }
export DOCKER_HOST
DOCKER_HOST="$(lab ZENKOCTL_LAB_MANAGER_HOST)"
registry="$(lab ZENKOCTL_LAB_REGISTRY)"
worker="$(lab ZENKOCTL_LAB_WORKER_NODE)"
worker_host="$(lab ZENKOCTL_LAB_WORKER_HOST)"

work="$(mktemp -d -p "$repo/target" bench-deploy.XXXXXX)"
cleanup() {
    "$bin" teardown --stack "$STACK" >/dev/null 2>&1 || true
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    if [[ $started_lab == yes ]]; then bash "$lab_script" down >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
echo '{}' >"$work/config.json"
unset DOCKER_CONFIG

now() { date +%s.%N; }
# Appends "<what> <seconds>" to the results after running the command (which must succeed).
timed() {
    local what=$1 t0 t1
    shift
    t0=$(now)
    if ! "$@" >"$work/last.log" 2>&1; then
        echo "bench/deploy.sh: $what failed:" >&2
        cat "$work/last.log" >&2
        exit 1
    fi
    t1=$(now)
    echo "$what $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" >>"$work/results"
}

# The image, on the registry, and on the worker once (so that no round pays for a pull).
strip -o "$work/zenkoctl" "$bin"
image="$registry/zenkoctl/module:bench"
"$bin" build --binary "$work/zenkoctl" --image "$image" >/dev/null 2>&1
"$bin" push --image "$image" --docker-config "$work" >/dev/null 2>&1
"$bin" node label "$worker" >/dev/null
values=(-p lab --set "image.tag=bench" --set "stack=$STACK")
"$bin" render "${values[@]}" -o "$work/rendered.yml"
"$bin" deploy "${values[@]}" --docker-config "$work" >/dev/null 2>&1
"$bin" teardown --stack "$STACK" >/dev/null 2>&1

# Polls (every 0.1 s) until nothing of the stack is left anywhere.
wait_gone() {
    local f="label=com.docker.stack.namespace=$STACK"
    while [[ -n "$(docker service ls -q --filter "$f")$(docker network ls -q --filter "$f")" ]] ||
        [[ -n "$(docker -H "$worker_host" network ls -q --filter "$f")" ]]; do
        sleep 0.1
    done
}
zenkoctl_teardown() {
    "$bin" teardown --stack "$STACK"
    wait_gone
}
docker_rm() {
    docker stack rm "$STACK"
    wait_gone
}

for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r/$ROUNDS" >&2
    # Alternate who goes first, so that neither always runs on a just-cleaned engine.
    if ((r % 2)); then order=(zenkoctl docker); else order=(docker zenkoctl); fi
    for who in "${order[@]}"; do
        if [[ $who == zenkoctl ]]; then
            timed "zenkoctl-deploy" "$bin" deploy "${values[@]}" --docker-config "$work"
            timed "zenkoctl-teardown" zenkoctl_teardown
        else
            timed "docker-deploy" docker stack deploy --detach=false -c "$work/rendered.yml" "$STACK"
            timed "docker-teardown" docker_rm
        fi
    done
done

stats() {
    grep "^$1 " "$work/results" | awk '{print $2}' | sort -n | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%6.2f %6.2f %6.2f", m, v[1], v[NR]
        }'
}
echo
echo "deploy to healthy / teardown to gone, two-node lab, $ROUNDS rounds (seconds: median min max)"
printf '| %-10s | %-26s | %-26s |\n' "" "deploy (median min max)" "teardown (median min max)"
printf '|%s|%s|%s|\n' "------------" "----------------------------" "----------------------------"
printf '| %-10s | %-26s | %-26s |\n' zenkoctl "$(stats zenkoctl-deploy)" "$(stats zenkoctl-teardown)"
printf '| %-10s | %-26s | %-26s |\n' "docker CLI" "$(stats docker-deploy)" "$(stats docker-teardown)"
