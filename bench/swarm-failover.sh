#!/usr/bin/env bash
# bench/swarm-failover.sh: Docker Swarm's node-loss recovery, measured as bench/failover.sh
# measures Dash's (its driver: bench/src/bin/cluster_failover.rs):
#
# - a manager and 3 workers, each its own dockerd (Debian's docker.io) in a network namespace
#   of its own, joined over a bridge in one more namespace (bench/docker.sh, dcluster_*);
# - a service of 6 replicas of busybox httpd (`httpd -f -p 8080 -h /www`) on the workers only
#   (workers labelled tier=worker, `--constraint node.labels.tier==worker`: Dash's placement),
#   stop grace period 1 s, no health check, restart on any exit with no attempt limit;
# - node death: the worker holding the most replicas (ties: the first) dies: kill -9 of its
#   dockerd, its containerd and its shims, then of its containers' processes (Dash: kill -9 of
#   the worker daemon, then of its containers). The clock starts just before the kill and
#   stops when the manager's task list (Docker API GET /tasks, polled every 20 ms; Dash: `dash
#   ps`, polled every 20 ms) shows 6 tasks meant to run, all running, none on the dead node.
#   Then the node's dockerd starts again, all 4 nodes are ready and the node has no container
#   process left before the next trial; TRIALS times.
#
# Node-down detection: Dash runs with --node-down-after 3s (a node is down after 3 s without a
# heartbeat). Swarm's closest: `docker swarm init --dispatcher-heartbeat 1s`; swarmkit's
# dispatcher declares a node down when no heartbeat came for 3 x the node's current period,
# the period being drawn at every heartbeat from heartbeat ± 0.5 s (grace multiplier 3, epsilon
# 500 ms: manager/dispatcher/{dispatcher,nodes,period}.go), so 1.5 to 4.5 s, 3 s on average.
# Restart delay: Dash starts the replacements at once (its first restart is immediate);
# Swarm's --restart-delay also holds back the replacement of a task lost with its node
# (restart.Supervisor.Restart → DelayStart), so it is measured with 0s (the same policy as
# Dash's) and with 5s (Swarm's default), one after the other, TRIALS trials each.
#
# No registry and no resolver is ever asked: the image is `docker import`ed on every node from
# the same busybox rootfs tarball as Dash's, services are created with --no-resolve-image, the
# dockerds run with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (no pull attempt at task start) and
# their namespaces have no route out. Tasks use no overlay network (no --network, no published
# port): each container gets its own network namespace on its node's docker0, as a Dash replica
# gets one on its node's bridge. iptables are off in every dockerd (--iptables=false; the
# ingress network's setup still runs read-only checks, iptables -C / -nL, in the node's
# namespace). The kernel here has no IPVS: Swarm's VIP load balancing and routing mesh cannot
# work (dockerd logs it, net.ipv4.vs.*), which a service without --network and without
# published ports does not use.
#
#   bench/swarm-failover.sh | tee bench/results/swarm-failover-$(date +%F).txt
#
# Environment: TRIALS (default 5), HEARTBEAT (--dispatcher-heartbeat, default 1s),
# RESTART_DELAYS (default "0s 5s"), KEEP_LOGS (a dir to copy the dockerds' logs to). Needs root
# and docker.io; runs no cargo and no dash binary. Everything it makes (namespaces, dockerds,
# containers, mounts, cgroups, scratch dir, shim sockets, containerd stack dumps) is removed on
# exit, also on error. One run with the defaults takes about 2 minutes.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=docker.sh
. "$(dirname "$0")/docker.sh"

defaults TRIALS=5 HEARTBEAT=1s
read -ra RESTART_DELAYS <<<"${RESTART_DELAYS:-0s 5s}"
REPLICAS=6
PREFIX=10.251.7 # the e2e clusters (and bench/failover.sh) use 10.95-10.249; other benches 10.98
MANAGER=sw-m
WORKERS=(sw-w1 sw-w2 sw-w3)
POLL=0.02
WAIT_POLL=0.1   # how often wait_for (lib.sh) asks
declare -A NODE_ID=()

need_root_and jq curl ip findmnt tar nsenter unshare setsid ss
docker_available || die "docker.io is not installed (apt-get install --no-install-recommends docker.io)"
[[ $TRIALS =~ ^[1-9][0-9]*$ ]] || die "TRIALS=$TRIALS: a positive number"
bench_state dash-bench-swfo

swarm_failover_cleanup() { # on_exit's
  local left s
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS"
    for s in "${DNODES[@]}"; do cp "$(dnode_root "$s")/dockerd.log" "$KEEP_LOGS/$s.log" 2>/dev/null; done
  fi
  if [ "${#DNODES[@]}" -gt 0 ] && dnode_alive "$MANAGER"; then
    for s in $(dnode_docker "$MANAGER" service ls -q 2>/dev/null); do
      dnode_docker "$MANAGER" service rm "$s" >/dev/null 2>&1
    done
    for _ in $(seq 50); do
      [ -z "$(for w in "${WORKERS[@]}"; do dnode_container_pids "$w"; done)" ] && break
      sleep 0.2
    done
  fi
  dcluster_cleanup
  cleanup_cgroups_forward
  rm -rf --one-file-system "$SCR"
  left=$(dcluster_left)$(cgroups_left)
  [ -e "$SCR" ] && left+=" $SCR"
  if [ -n "$left" ]; then echo "cleanup: LEFT BEHIND:$left"; else echo "cleanup: nothing left behind"; fi
}
on_exit swarm_failover_cleanup
trap_error

M() { dnode_docker "$MANAGER" "$@"; }

# The manager's tasks of service SERVICE (JSON), straight from its API socket.
SERVICE=
FILTER=
tasks() { curl -sf --max-time 5 --unix-socket "$(dnode_sock "$MANAGER")" "http://docker/tasks?filters=$FILTER"; }

# all_running [NODE-ID]: REPLICAS tasks meant to run, all running, none on NODE-ID (Dash's
# all_running: the live replicas, desired "run", are 6, all running, none on the victim).
all_running() {
  tasks | jq -e --arg avoid "${1:-}" --argjson n "$REPLICAS" '
    [.[] | select(.DesiredState == "running")] as $l
    | ($l | length) == $n and ($l | all(.Status.State == "running" and .NodeID != $avoid))' >/dev/null
}

nodes_ready() { [ "$(M node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$')" = $((1 + ${#WORKERS[@]})) ]; }

no_pids() { [ -z "$(dnode_container_pids "$1")" ]; }
no_worker_pids() { local w; for w in "${WORKERS[@]}"; do no_pids "$w" || return 1; done; }

# The worker holding the most of the service's live tasks (ties: the first).
victim() {
  local w n best='' most=-1 counts
  counts=$(tasks | jq -r '.[] | select(.DesiredState == "running") | .NodeID')
  for w in "${WORKERS[@]}"; do
    n=$(grep -cxF "${NODE_ID[$w]}" <<<"$counts" || true)
    if [ "$n" -gt "$most" ]; then best=$w; most=$n; fi
  done
  echo "$best"
}

# created_after_us T0: the µs from T0 to the first task meant to run created after T0 (the
# manager's decision that the node is down: it creates the replacements at once, delayed or not).
created_after_us() {
  tasks | jq -r --argjson t0 "$1" '
    [.[] | select(.DesiredState == "running" or .DesiredState == "ready") | .CreatedAt
     | capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$")
     | ((.s + "Z") | fromdateiso8601) * 1000000 + (((.f // "") + "000000")[0:6] | tonumber)
     | select(. > $t0)] | if length == 0 then "-" else (min - $t0) end'
}

# stats_ms FILE (µs, one a line) → "min median max" in ms; the median as the Dash driver takes
# it (the sorted samples' element n/2, counted from 0).
stats_ms() {
  sort -n "$1" | awk '{a[NR] = $1} END {
    if (NR == 0) { print "- - -"; exit }
    printf "%.0f %.0f %.0f\n", a[1] / 1000, a[int(NR / 2) + 1] / 1000, a[NR] / 1000 }'
}

# ---- the cluster --------------------------------------------------------------------------
header swarm-failover "$(docker_version) (swarm)"
echo "a manager and ${#WORKERS[@]} workers, each its own dockerd, network and UTS namespace, joined over a bridge in a namespace of its own ($PREFIX.0/24)"
echo "$REPLICAS replicas of busybox httpd on the workers (--constraint node.labels.tier==worker), --stop-grace-period 1s, --no-healthcheck, --restart-condition any, no attempt limit, no overlay network"
echo "node down: --dispatcher-heartbeat $HEARTBEAT: swarmkit declares a node down after 3 x (period ± 0.5 s, drawn at each heartbeat) without one (1s: 1.5-4.5 s, 3 s on average); Dash: --node-down-after 3s"
echo "kill -9 of the worker's dockerd, containerd and shims, then of its containers' processes; clock from the kill until GET /tasks on the manager (every 20 ms) shows $REPLICAS tasks meant to run, all running, none on the dead node (Dash: dash ps, every 20 ms)"

log "making the busybox rootfs"
"$ROOT/demo/make-busybox-rootfs.sh" "$SCR/rootfs.tar"
dcluster_net swhub "$PREFIX"
for n in "$MANAGER" "${WORKERS[@]}"; do
  dnode_add "$n"
  log "starting dockerd $n ($(dnode_ip "$n"))"
  dnode_start "$n"
  dnode_docker "$n" import "$SCR/rootfs.tar" bb:1 >/dev/null
done
M swarm init --advertise-addr "$(dnode_ip "$MANAGER")" --listen-addr "$(dnode_ip "$MANAGER"):2377" \
  --dispatcher-heartbeat "$HEARTBEAT" >/dev/null
TOKEN=$(M swarm join-token -q worker)
for w in "${WORKERS[@]}"; do
  dnode_docker "$w" swarm join --token "$TOKEN" --advertise-addr "$(dnode_ip "$w")" \
    "$(dnode_ip "$MANAGER"):2377" >/dev/null
  NODE_ID[$w]=$(dnode_docker "$w" info --format '{{.Swarm.NodeID}}')
  M node update --label-add tier=worker "${NODE_ID[$w]}" >/dev/null
done
wait_for "4 nodes ready" 60 nodes_ready
log "swarm: $(M node ls --format '{{.Hostname}}={{.Status}}' | tr '\n' ' ')"

# ---- the trials ---------------------------------------------------------------------------
for delay in "${RESTART_DELAYS[@]}"; do
  # A service per setting (the manager keeps a removed service's tasks for a while).
  SERVICE=fo-$delay
  FILTER=$(jq -rn --arg s "$SERVICE" '{service: {($s): true}} | tojson | @uri')
  log "service $SERVICE: $REPLICAS replicas, --restart-delay $delay"
  M service create -q --detach --no-resolve-image --name "$SERVICE" --replicas "$REPLICAS" \
    --constraint node.labels.tier==worker --stop-grace-period 1s --no-healthcheck \
    --restart-condition any --restart-max-attempts 0 --restart-delay "$delay" \
    bb:1 httpd -f -p 8080 -h /www >/dev/null
  wait_for "$REPLICAS replicas running" 60 all_running
  if [ -z "${NET_SHOWN:-}" ]; then
    c=$(dnode_docker "${WORKERS[0]}" ps -q | head -1)
    # shellcheck disable=SC2016 # a Go template
    echo "a task's container: network mode $(dnode_docker "${WORKERS[0]}" inspect --format \
      '{{.HostConfig.NetworkMode}}, networks:{{range $k, $v := .NetworkSettings.Networks}} {{$k}} {{$v.IPAddress}}{{end}}' "$c")"
    echo
    NET_SHOWN=1
  fi
  for ((t = 1; t <= TRIALS; t++)); do
    v=$(victim)
    vid=${NODE_ID[$v]}
    dnode_note_shims "$v"
    t0=$(now_us)
    dnode_kill "$v"
    until all_running "$vid"; do
      [ $(($(now_us) - t0)) -lt 120000000 ] || die "no failover in 2 min"
      sleep "$POLL"
    done
    t1=$(now_us)
    echo $((t1 - t0)) >>"$SAMPLES/total-$delay"
    down=$(created_after_us "$t0")
    if [ "$down" = - ]; then down_ms="?"; else
      echo "$down" >>"$SAMPLES/down-$delay"
      down_ms=$(us_to_ms "$down")
    fi
    log "trial $t (--restart-delay $delay): $v killed → $REPLICAS running elsewhere in $(us_to_ms $((t1 - t0))) ms (replacements created after $down_ms ms)"
    dnode_start "$v"
    wait_for "4 nodes ready" 60 nodes_ready
    wait_for "$v gave its replicas up" 60 no_pids "$v"
  done
  M service rm "$SERVICE" >/dev/null
  wait_for "the service's containers gone" 60 no_worker_pids
done

for delay in "${RESTART_DELAYS[@]}"; do
  note=
  [ "$delay" = 5s ] && note=", Swarm's default"
  [ "$delay" = 0s ] && note=", as Dash: replacements at once"
  echo "node death → replicas running elsewhere ($TRIALS trials, --dispatcher-heartbeat $HEARTBEAT, --restart-delay $delay$note)"
  read -r mn md mx < <(stats_ms "$SAMPLES/total-$delay")
  echo "  swarm    min $mn ms  median $md ms  max $mx ms"
  read -r mn md mx < <(stats_ms "$SAMPLES/down-$delay" 2>/dev/null || echo "- - -")
  echo "    of which kill → node judged down (replacement tasks created): min $mn ms  median $md ms  max $mx ms"
done
echo "load at end: $(load)"
