#!/usr/bin/env bash
# A two-node Docker Swarm on one machine, for tests and CI (see ../shared/docs/swarm-lab.md).
#
#   tests/swarm-lab.sh up [--nodes 1|2]   start it (idempotent), print its environment
#   tests/swarm-lab.sh env                print the environment of a running lab
#   tests/swarm-lab.sh down               tear everything down, by pid (idempotent)
#
# Topology (every name carries a zenkoctl prefix; nothing else on the machine is touched):
#
#   host: bridge zkl-br0 10.99.0.1/24, NAT for the nodes' traffic beyond it
#         registry           10.99.0.1:5000  (open)
#         registry, htpasswd 10.99.0.1:5001  (user/password printed by `up`)
#   netns zenkoctl-lab-1: dockerd, 10.99.0.2, node name zenkoctl-lab-1, Swarm manager
#   netns zenkoctl-lab-2: dockerd, 10.99.0.3, node name zenkoctl-lab-2, Swarm worker
#
# Both engines live in their own network namespace, so that they never meet another dockerd of
# the host (docker0, iptables chains, the Swarm ports 2377/7946). The engines' sockets are
# plain files under the lab directory, so the host reaches them as DOCKER_HOST=unix://...
# Ports published in host mode are reachable from the host at the node's address.
#
# Environment: ZENKOCTL_LAB_DIR (default /tmp/zenkoctl-lab) holds sockets, data roots, logs and
# pid files. Requires root and scripts/deps/swarm-lab.sh.
set -euo pipefail

LAB_DIR="${ZENKOCTL_LAB_DIR:-/tmp/zenkoctl-lab}"
PREFIX=zenkoctl-lab
BRIDGE=zkl-br0
SUBNET=10.99.0.0/24
HOST_ADDR=10.99.0.1
NODE_ADDRS=(10.99.0.2 10.99.0.3)
REGISTRY="$HOST_ADDR:5000"
AUTH_REGISTRY="$HOST_ADDR:5001"
# Credentials of the protected registry. The password has `?` and `~` at several offsets: the
# standard base64 of an X-Registry-Auth JSON carrying it contains `+` and `/`, which is what the
# push tests need to tell URL-safe from standard encoding (assignment-safe for `eval`, too).
AUTH_USER=zenkoctl
AUTH_PASSWORD='lab?pw~x?y~z?q~w'
# The iptables rule that lets the bridged node-to-node traffic (Swarm control, VXLAN overlay)
# through the host's FORWARD chain, whose policy may be DROP (dockerd sets it) while
# br_netfilter makes bridged packets traverse it.
FORWARD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$PREFIX" -j ACCEPT)
# The nodes reach beyond the bridge as the host does (NAT): above all the host's DNS, so that
# an engine's lookup of a registry it cannot reach fails at once, as on the host, instead of
# timing out (20 s per pull attempt) against a nameserver the namespace cannot reach.
OUT_RULES=(
  "FORWARD -i $BRIDGE ! -o $BRIDGE -m comment --comment $PREFIX -j ACCEPT"
  "FORWARD -o $BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment $PREFIX -j ACCEPT"
)
NAT_RULE=(POSTROUTING -s "$SUBNET" ! -o "$BRIDGE" -m comment --comment "$PREFIX" -j MASQUERADE)

log() { echo "swarm-lab: $*" >&2; }
die() { log "error: $*"; exit 1; }

node_dir() { echo "$LAB_DIR/node$1"; }
node_sock() { echo "unix://$(node_dir "$1")/docker.sock"; }
netns_of() { echo "$PREFIX-$1"; }
dk() { local n=$1; shift; docker -H "$(node_sock "$n")" "$@"; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
read_pid() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }

# Stops a process by pid: TERM, wait up to $2 seconds, then KILL and wait.
stop_pid() {
  local pid=$1 grace=${2:-30} i
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid did not stop within ${grace}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
}

require_tools() {
  [[ $EUID -eq 0 ]] || die "must run as root (network namespaces, dockerd)"
  local cmd
  for cmd in dockerd containerd runc docker ip iptables nsenter unshare docker-registry htpasswd curl; do
    command -v "$cmd" >/dev/null 2>&1 ||
      die "$cmd is missing: run scripts/deps/swarm-lab.sh (installs the lab's dependencies)"
  done
}

# Refuses to start when the lab's names or subnet are used by something that is not the lab.
check_free() {
  local ns
  for ns in "$(netns_of 1)" "$(netns_of 2)"; do
    if ip netns list 2>/dev/null | grep -qw "^$ns"; then
      die "network namespace $ns exists but no lab is recorded in $LAB_DIR; remove it or run down"
    fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "interface $BRIDGE exists but no lab is recorded in $LAB_DIR; run down first"
  fi
  if [[ -n "$(ip -o addr show to "$SUBNET" 2>/dev/null)" ]] ||
    [[ -n "$(ip route show "$SUBNET" 2>/dev/null)" ]]; then
    die "the subnet $SUBNET is already in use on this machine: $(ip -o addr show to "$SUBNET")"
  fi
}

start_registry() {
  local name=$1 addr=$2 auth=$3 dir="$LAB_DIR/$1"
  mkdir -p "$dir/storage"
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage: {filesystem: {rootdirectory: $dir/storage}, delete: {enabled: true}}"
    echo "http: {addr: \"$addr\", secret: zenkoctl-lab}"
    if [[ $auth == yes ]]; then
      htpasswd -Bbn "$AUTH_USER" "$AUTH_PASSWORD" >"$dir/htpasswd" 2>/dev/null
      echo "auth: {htpasswd: {realm: zenkoctl-lab, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  setsid docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/pid"
}

wait_http() {
  local url=$1 what=$2 i
  for ((i = 0; i < 100; i++)); do
    # Any HTTP answer (200, or 401 from the protected registry) means it is serving.
    if curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null | grep -qE '^(200|401)$'; then
      return 0
    fi
    sleep 0.1
  done
  die "$what did not answer at $url within 10s (log: $LAB_DIR)"
}

start_engine() {
  local n=$1 dir ns addr
  dir=$(node_dir "$n")
  ns=$(netns_of "$n")
  addr=${NODE_ADDRS[$((n - 1))]}
  mkdir -p "$dir"
  ip netns add "$ns"
  ip link add "zkl-n$n" type veth peer name "zkl-n${n}p"
  ip link set "zkl-n${n}p" netns "$ns"
  ip link set "zkl-n$n" master "$BRIDGE" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip link set "zkl-n${n}p" name eth0
  ip netns exec "$ns" ip addr add "$addr/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip route add default via "$HOST_ADDR"
  # nsenter, not `ip netns exec`: the latter remounts /sys, which hides the cgroup mounts
  # ("Devices cgroup isn't mounted"). unshare --uts gives the engine its own hostname, which
  # becomes its Swarm node name. nsenter and unshare exec, so $! is dockerd's pid.
  setsid nsenter --net="/var/run/netns/$ns" unshare --uts sh -c \
    "hostname $ns && exec dockerd --data-root '$dir/root' --exec-root '$dir/exec' \
      -H 'unix://$dir/docker.sock' --pidfile '$dir/docker.pid' \
      --insecure-registry $REGISTRY --insecure-registry $AUTH_REGISTRY" \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  echo $! >"$dir/pid"
}

wait_engine() {
  local n=$1 i pid
  pid=$(read_pid "$(node_dir "$n")/pid")
  for ((i = 0; i < 300; i++)); do
    if dk "$n" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; then
      return 0
    fi
    pid_alive "$pid" || die "dockerd of node $n exited; last log lines:
$(tail -n 20 "$(node_dir "$n")/dockerd.log")"
    sleep 0.1
  done
  die "dockerd of node $n did not answer within 30s (log: $(node_dir "$n")/dockerd.log)"
}

nodes_recorded() { [[ -s "$LAB_DIR/nodes" ]] && cat "$LAB_DIR/nodes" || echo 0; }

# True when every recorded process is alive and every engine answers.
healthy() {
  local nodes n
  nodes=$(nodes_recorded)
  ((nodes > 0)) || return 1
  for n in registry auth-registry; do
    pid_alive "$(read_pid "$LAB_DIR/$n/pid")" || return 1
  done
  for ((n = 1; n <= nodes; n++)); do
    pid_alive "$(read_pid "$(node_dir "$n")/pid")" || return 1
    dk "$n" version >/dev/null 2>&1 || return 1
  done
}

print_env() {
  local nodes n
  nodes=$(nodes_recorded)
  echo "ZENKOCTL_LAB_DIR=$LAB_DIR"
  echo "ZENKOCTL_LAB_NODES=$nodes"
  echo "DOCKER_HOST=$(node_sock 1)"
  echo "ZENKOCTL_LAB_MANAGER_HOST=$(node_sock 1)"
  echo "ZENKOCTL_LAB_MANAGER_ADDR=${NODE_ADDRS[0]}"
  echo "ZENKOCTL_LAB_MANAGER_NODE=$(netns_of 1)"
  echo "ZENKOCTL_LAB_MANAGER_PID=$(read_pid "$(node_dir 1)/pid")"
  if ((nodes >= 2)); then
    echo "ZENKOCTL_LAB_WORKER_HOST=$(node_sock 2)"
    echo "ZENKOCTL_LAB_WORKER_ADDR=${NODE_ADDRS[1]}"
    echo "ZENKOCTL_LAB_WORKER_NODE=$(netns_of 2)"
    echo "ZENKOCTL_LAB_WORKER_PID=$(read_pid "$(node_dir 2)/pid")"
  fi
  echo "ZENKOCTL_LAB_REGISTRY=$REGISTRY"
  echo "ZENKOCTL_LAB_REGISTRY_PID=$(read_pid "$LAB_DIR/registry/pid")"
  echo "ZENKOCTL_LAB_AUTH_REGISTRY=$AUTH_REGISTRY"
  echo "ZENKOCTL_LAB_AUTH_REGISTRY_PID=$(read_pid "$LAB_DIR/auth-registry/pid")"
  echo "ZENKOCTL_LAB_AUTH_USER=$AUTH_USER"
  echo "ZENKOCTL_LAB_AUTH_PASSWORD=$AUTH_PASSWORD"
}

cmd_up() {
  local nodes=2
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:?--nodes needs 1 or 2}; shift 2 ;;
      *) die "unknown argument to up: $1" ;;
    esac
  done
  [[ $nodes == 1 || $nodes == 2 ]] || die "--nodes must be 1 or 2"
  require_tools
  if healthy && (($(nodes_recorded) >= nodes)); then
    print_env
    return 0
  fi
  # Anything half-started (an earlier failure, another node count) goes first.
  if [[ -e $LAB_DIR ]]; then
    cmd_down
  fi
  check_free
  mkdir -p "$LAB_DIR"
  echo "$nodes" >"$LAB_DIR/nodes"
  # From here on, a failure tears down what was started.
  trap 'log "up failed; tearing down"; cmd_down' ERR

  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
  local rule
  for rule in "${OUT_RULES[@]}"; do
    # shellcheck disable=SC2086 # the rules are word lists
    iptables -C $rule 2>/dev/null || iptables -I $rule
  done
  iptables -t nat -C "${NAT_RULE[@]}" 2>/dev/null || iptables -t nat -I "${NAT_RULE[@]}"
  # The node namespaces are wired before the first registry starts on the bridge address.
  start_registry registry "$REGISTRY" no
  start_registry auth-registry "$AUTH_REGISTRY" yes
  local n
  for ((n = 1; n <= nodes; n++)); do
    start_engine "$n"
  done
  wait_http "http://$REGISTRY/v2/" "the registry"
  wait_http "http://$AUTH_REGISTRY/v2/" "the protected registry"
  for ((n = 1; n <= nodes; n++)); do
    wait_engine "$n"
  done
  dk 1 swarm init --advertise-addr "${NODE_ADDRS[0]}" >/dev/null
  if ((nodes >= 2)); then
    dk 2 swarm join --advertise-addr "${NODE_ADDRS[1]}" \
      --token "$(dk 1 swarm join-token -q worker)" "${NODE_ADDRS[0]}:2377" >/dev/null
    local i ready=0
    for ((i = 0; i < 300; i++)); do
      ready=$(dk 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
      ((ready == nodes)) && break
      sleep 0.1
    done
    ((ready == nodes)) || die "the worker did not become Ready in the swarm within 30s"
  fi
  trap - ERR
  log "up: $nodes node(s), registries $REGISTRY and $AUTH_REGISTRY (dir $LAB_DIR)"
  print_env
}

# Unmounts every mount under the lab directory, deepest first (dockerd leaves overlay mounts
# and netns bind mounts behind when it is killed).
unmount_all() {
  local mounts m
  mapfile -t mounts < <(awk -v d="$LAB_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  for m in "${mounts[@]}"; do
    umount -l "$m" 2>/dev/null || true
  done
}

# Processes whose command line names the lab directory (containerd and its shims under an
# engine's exec root); listed by pid from /proc, never by a process name.
lab_pids() {
  local p cmdline
  for p in /proc/[0-9]*; do
    cmdline=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    if [[ $cmdline == *"$LAB_DIR/"* && ${p#/proc/} != "$$" && ${p#/proc/} != "$BASHPID" ]]; then
      echo "${p#/proc/}"
    fi
  done
}

cmd_down() {
  local n pid
  if [[ -d $LAB_DIR ]]; then
    # Worker first, then the manager: the engines stop their containerd and containers.
    for n in 2 1; do
      pid=$(read_pid "$(node_dir "$n")/pid")
      stop_pid "$pid" 40
    done
    for n in registry auth-registry; do
      stop_pid "$(read_pid "$LAB_DIR/$n/pid")" 10
    done
    # Whatever survived an engine that had to be killed.
    for pid in $(lab_pids); do
      [[ $pid == "$$" ]] || stop_pid "$pid" 5
    done
    unmount_all
  fi
  for n in 1 2; do
    ip netns del "$(netns_of "$n")" 2>/dev/null || true
    ip link del "zkl-n$n" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do
    iptables -D "${FORWARD_RULE[@]}"
  done
  local rule
  for rule in "${OUT_RULES[@]}"; do
    # shellcheck disable=SC2086
    while iptables -C $rule 2>/dev/null; do iptables -D $rule; done
  done
  while iptables -t nat -C "${NAT_RULE[@]}" 2>/dev/null; do
    iptables -t nat -D "${NAT_RULE[@]}"
  done
  if [[ -d $LAB_DIR ]]; then
    rm -rf "$LAB_DIR" 2>/dev/null || {
      unmount_all
      rm -rf "$LAB_DIR"
    }
  fi
  log "down: nothing of the lab is left"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  env) healthy || die "no running lab in $LAB_DIR (run: $0 up)"; print_env ;;
  down) cmd_down ;;
  *) echo "usage: $0 up [--nodes 1|2] | env | down" >&2; exit 2 ;;
esac
