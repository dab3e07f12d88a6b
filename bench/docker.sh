# shellcheck shell=bash
# bench/docker.sh: Docker (and Swarm) as a peer in the benchmarks, without touching the host's
# network. Sourced after lib.sh by scripts that compare with Docker:
#
#   . "$(dirname "$0")/docker.sh"
#
# A dockerd of our own runs in a network namespace of its own (its iptables rules, docker0 and
# the swarm's overlay networks stay in there), with its data root under SCR, its exec root under
# /run, its socket under SCR, and its containers' cgroups beneath this script's own cgroup. It
# never reaches a registry: images are imported from the same busybox rootfs tarball Dash uses
# (`docker import`) and services are created with `--no-resolve-image`.
#
# Needs Debian's docker.io (`/usr/bin/docker`, `/usr/sbin/dockerd`). Functions:
#   docker_available          → 0 when both binaries are there
#   docker_start NAME         → starts dockerd NAME; sets DOCKER (the client command line)
#   docker_import TAR REF     → the rootfs tarball as image REF
#   docker_swarm_init         → a one-node swarm on the namespace's loopback
#   docker_cleanup            → (in the script's cleanup) everything docker_start made
#   docker_left               → " what" for each thing left behind
# shellcheck disable=SC2154 # SCR, ME are lib.sh's (bench_state)

DOCKER_BIN=/usr/bin/docker
DOCKERD_BIN=/usr/sbin/dockerd
DOCKER_NAME=
DOCKER_NS=
DOCKER_PID=
DOCKER=

docker_available() { [ -x "$DOCKER_BIN" ] && [ -x "$DOCKERD_BIN" ]; }

docker_version() { "$DOCKER_BIN" --version 2>/dev/null | sed 's/,.*//'; }

docker_start() {
  DOCKER_NAME=dash-bench-$1-$$
  DOCKER_NS=$DOCKER_NAME
  local root=$SCR/docker
  mkdir -p "$root"
  ip netns add "$DOCKER_NS"
  nsenter --net="/run/netns/$DOCKER_NS" ip link set lo up
  log "starting dockerd $DOCKER_NAME in netns $DOCKER_NS"
  # --cgroup-parent: container cgroups go beneath ours, never at the hierarchy's root.
  # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: a Swarm task starts from the local image without
  # first trying a pull of its tag (see dnode_start below).
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nsenter --net="/run/netns/$DOCKER_NS" "$DOCKERD_BIN" \
    --data-root "$root/data" --exec-root "/run/$DOCKER_NAME" --pidfile "$root/dockerd.pid" \
    -H "unix://$root/docker.sock" --cgroup-parent "$ME/$DOCKER_NAME" \
    </dev/null >>"$root/dockerd.log" 2>&1 &
  DOCKER_PID=$!
  DOCKER="$DOCKER_BIN -H unix://$root/docker.sock"
  for _ in $(seq 150); do
    $DOCKER version >/dev/null 2>&1 && return 0
    kill -0 "$DOCKER_PID" 2>/dev/null || { tail "$root/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.2
  done
  tail "$root/dockerd.log" >&2
  die "dockerd did not answer in 30 s"
}

docker_import() { $DOCKER import "$1" "$2" >/dev/null; }

docker_swarm_init() { $DOCKER swarm init --advertise-addr 127.0.0.1 >/dev/null; }

docker_cleanup() {
  [ -n "$DOCKER_NAME" ] || return 0
  local root=$SCR/docker pid
  if [ -n "$DOCKER_PID" ] && kill -0 "$DOCKER_PID" 2>/dev/null; then
    for s in $($DOCKER service ls -q 2>/dev/null); do $DOCKER service rm "$s" >/dev/null 2>&1; done
    $DOCKER swarm leave --force >/dev/null 2>&1
    for _ in $(seq 50); do [ -z "$($DOCKER ps -q 2>/dev/null)" ] && break; sleep 0.2; done
    ids=$($DOCKER ps -aq 2>/dev/null)
    # shellcheck disable=SC2086 # a list of ids
    [ -n "$ids" ] && $DOCKER rm -f $ids >/dev/null 2>&1
    stop_pid "$DOCKER_PID"
  fi
  # Its containerd and shims, should any outlive it (they name the exec root).
  for pid in $(pgrep -f "/run/$DOCKER_NAME" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  docker_remove "$DOCKER_NAME" "$root"
}

# docker_remove NAME ROOT: what a dockerd whose processes are gone leaves: the mounts under its
# exec root /run/NAME and its data dir ROOT, both dirs, its network namespace NAME and its
# containers' cgroups (ME/NAME).
docker_remove() {
  umount_under "/run/$1" "$2"
  rm -rf --one-file-system "/run/$1" "$2"
  ip netns del "$1" 2>/dev/null
  rmdir_cgroup "$ME/$1"
}

docker_left() {
  [ -n "$DOCKER_NAME" ] || return 0
  pgrep -f "/run/$DOCKER_NAME" >/dev/null 2>&1 && printf ' %s' "docker-processes"
  [ -e "/run/$DOCKER_NAME" ] && printf ' %s' "/run/$DOCKER_NAME"
  [ -e "/run/netns/$DOCKER_NS" ] && printf ' %s' "netns:$DOCKER_NS"
  cgroup_left "$ME/$DOCKER_NAME"
}

# ---- several dockerds: a swarm of nodes (bench/swarm-failover.sh) --------------------------
# Each node NAME is a dockerd of its own like the one above (data root SCR/docker-NAME, exec
# root /run/dash-bench-NAME-PID, pidfile and socket in its data dir, containers' cgroups
# beneath ours) in a network namespace of its own, dash-bench-NAME-PID, whose only link (eth0)
# goes to a bridge in one more namespace, the hub: nothing is added to the host's namespace,
# and iptables are off in every dockerd (--iptables=false; swarm's ingress network still runs
# a few read-only checks, iptables -C / -nL, and those in the node's namespace). Each dockerd
# also has a UTS namespace of its own, whose hostname (NAME) is the swarm node's name.
#
#   dcluster_net HUB PREFIX     → hub namespace dash-bench-HUB-PID with bridge br0, PREFIX.1/24
#                                  (PREFIX: three octets, e.g. 10.251.7)
#   dnode_add NAME              → NAME's namespace, veth and address PREFIX.(10 + its index)
#   dnode_start NAME            → starts NAME's dockerd (again after dnode_kill: the same data)
#                                  with DNODE_FLAGS (an array, optional) more dockerd flags
#   dnode_docker NAME ARG...    → the docker client against NAME's dockerd
#   dnode_sock NAME / dnode_ip NAME
#   dnode_container_pids NAME   → the processes in NAME's containers' cgroups, one a line
#   dnode_note_shims NAME       → notes the sockets of NAME's shims (dcluster_cleanup removes
#                                  them): call it before dnode_kill, outside any clock
#   dnode_kill NAME             → kill -9 of NAME's dockerd, containerd and shims, then of the
#                                  processes in its containers (the node dies)
#   dcluster_cleanup            → (in the script's cleanup) everything the functions above made
#   dcluster_left               → " what" for each thing left behind
DNODES=()
declare -A DNODE_PID=() DNODE_JOB=() DNODE_IP=()
DHUB_NS=
DHUB_PREFIX=
# Shims (containerd-shim-runc-v2) put their sockets in /run/containerd/s whatever containerd's
# root; one killed with -9 leaves its socket there. Before a node's shims are killed, the
# sockets listening in its namespace (only its shims') are noted: those are removed at the end.
DSHIM_DIR=/run/containerd/s
DSHIM_DIR_NEW=
DSHIM_OURS=
# dockerd asks a containerd it gives up on for its stacks (SIGUSR1) before it kills it; containerd
# writes them to /tmp/containerd.PID.stacks.log. Those that were not there before are ours.
DSTACKS_BEFORE=

dnode_full() { printf 'dash-bench-%s-%s' "$1" "$$"; }
dnode_root() { printf '%s/docker-%s' "$SCR" "$1"; }
dnode_sock() { printf '%s/docker.sock' "$(dnode_root "$1")"; }
dnode_ip() { printf '%s' "${DNODE_IP[$1]}"; }
dnode_docker() { local n=$1; shift; "$DOCKER_BIN" -H "unix://$(dnode_sock "$n")" "$@"; }

dcluster_net() {
  DHUB_NS=dash-bench-$1-$$
  DHUB_PREFIX=$2
  [ -d "$DSHIM_DIR" ] || DSHIM_DIR_NEW=1
  DSTACKS_BEFORE=$(dstacks)
  ip netns add "$DHUB_NS"
  ip -n "$DHUB_NS" link set lo up
  ip -n "$DHUB_NS" link add br0 type bridge
  ip -n "$DHUB_NS" addr add "$DHUB_PREFIX.1/24" dev br0
  ip -n "$DHUB_NS" link set br0 up
}

dnode_add() {
  local n=$1 ns i=$((${#DNODES[@]} + 10))
  ns=$(dnode_full "$n")
  DNODES+=("$n")
  DNODE_IP[$n]=$DHUB_PREFIX.$i
  DNODE_PID[$n]=
  DNODE_JOB[$n]=
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$DHUB_NS" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$DHUB_NS" link set "v$i" master br0 up
  ip -n "$ns" addr add "${DNODE_IP[$n]}/24" dev eth0
  ip -n "$ns" link set eth0 up
}

dnode_alive() { [ -n "${DNODE_PID[$1]}" ] && kill -0 "${DNODE_PID[$1]}" 2>/dev/null; }

dnode_start() {
  local n=$1 full root
  full=$(dnode_full "$n")
  root=$(dnode_root "$n")
  mkdir -p "$root"
  # setsid, nsenter, unshare (no --fork) and sh all exec into dockerd, a child of a subshell of
  # ours (DNODE_JOB) that outlives it and says nothing: a dockerd killed with -9 is no job of
  # ours that bash would report. dockerd's pid comes from its pidfile.
  # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (as moby's own integration tests set it): a task's
  # image is used as it is on the node, no pull is even tried (by default each task start first
  # tries a pull of its tag, and falls back to the local image when that fails).
  # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
  (
    trap - ERR
    set +e
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nsenter --net="/run/netns/$full" \
      unshare --uts sh -c 'hostname "$0" && exec "$@"' "$n" "$DOCKERD_BIN" \
      --data-root "$root/data" --exec-root "/run/$full" --pidfile "$root/dockerd.pid" \
      -H "unix://$root/docker.sock" --cgroup-parent "$ME/$full" --iptables=false \
      --ip6tables=false ${DNODE_FLAGS[@]+"${DNODE_FLAGS[@]}"} </dev/null >>"$root/dockerd.log" 2>&1
    exit 0
  ) 2>/dev/null &
  DNODE_JOB[$n]=$!
  DNODE_PID[$n]=
  for _ in $(seq 150); do
    if dnode_docker "$n" version >/dev/null 2>&1; then
      DNODE_PID[$n]=$(cat "$root/dockerd.pid")
      return 0
    fi
    kill -0 "${DNODE_JOB[$n]}" 2>/dev/null || { tail "$root/dockerd.log" >&2; die "dockerd $n exited"; }
    sleep 0.2
  done
  tail "$root/dockerd.log" >&2
  die "dockerd $n did not answer in 30 s"
}

dnode_container_pids() {
  local full
  full=$(dnode_full "$1")
  { find /sys/fs/cgroup/*"$ME/$full" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -nu
}

# dnode_note_shims NAME: the shim sockets listening in NAME's namespace, added to DSHIM_OURS.
dnode_note_shims() {
  local s
  [ -e "/run/netns/$(dnode_full "$1")" ] || return 0
  s=$(nsenter --net="/run/netns/$(dnode_full "$1")" ss -xlnH 2>/dev/null |
    awk -v d="$DSHIM_DIR/" 'index($5, d) == 1 {print $5}')
  [ -z "$s" ] || DSHIM_OURS+=$s$'\n'
}

# Its dockerd, its containerd and its shims (they name its exec root).
dnode_daemon_pids() {
  if [ -n "${DNODE_PID[$1]}" ]; then echo "${DNODE_PID[$1]}"; fi
  pgrep -f "/run/$(dnode_full "$1")/" 2>/dev/null || true
}

dnode_kill() {
  local n=$1 pids
  pids=$(dnode_daemon_pids "$n")
  # shellcheck disable=SC2086 # a list of pids
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  pids=$(dnode_container_pids "$n")
  # shellcheck disable=SC2086 # a list of pids
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  if [ -n "${DNODE_JOB[$n]}" ]; then wait "${DNODE_JOB[$n]}" 2>/dev/null || true; fi
  DNODE_PID[$n]=
  DNODE_JOB[$n]=
}

# One node: its dockerd stopped (it stops its containers), whatever outlived it killed, its
# mounts, dirs, namespace and cgroups removed.
dnode_teardown() {
  local n=$1 full root pids
  full=$(dnode_full "$n")
  root=$(dnode_root "$n")
  dnode_note_shims "$n"
  if dnode_alive "$n"; then stop_pid "${DNODE_PID[$n]}"; fi
  if [ -n "${DNODE_JOB[$n]}" ]; then
    kill -0 "${DNODE_JOB[$n]}" 2>/dev/null && kill -KILL "${DNODE_JOB[$n]}" 2>/dev/null
    wait "${DNODE_JOB[$n]}" 2>/dev/null
  fi
  DNODE_PID[$n]=
  DNODE_JOB[$n]=
  for _ in 1 2 3; do
    pids="$(pgrep -f "/run/$full/" 2>/dev/null || true) $(dnode_container_pids "$n")"
    [ -n "${pids// /}" ] || break
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null
    sleep 0.5
  done
  docker_remove "$full" "$root"
}

dstacks() { find /tmp -maxdepth 1 -name 'containerd.*.stacks.log' 2>/dev/null | sort; }

dcluster_cleanup() {
  local i f
  for ((i = ${#DNODES[@]} - 1; i >= 0; i--)); do dnode_teardown "${DNODES[i]}"; done
  [ -n "$DHUB_NS" ] && ip netns del "$DHUB_NS" 2>/dev/null
  for f in $DSHIM_OURS; do [ -S "$f" ] && rm -f "$f"; done
  [ -n "$DSHIM_DIR_NEW" ] && rmdir "$DSHIM_DIR" "${DSHIM_DIR%/s}" 2>/dev/null
  if [ -n "$DHUB_NS" ]; then
    for f in $(dstacks); do grep -qxF "$f" <<<"$DSTACKS_BEFORE" || rm -f "$f"; done
  fi
  return 0
}

dcluster_left() {
  local n full f
  for n in "${DNODES[@]}"; do
    full=$(dnode_full "$n")
    pgrep -f "/run/$full/" >/dev/null 2>&1 && printf ' %s' "docker-processes:$n"
    [ -n "$(dnode_container_pids "$n")" ] && printf ' %s' "container-processes:$n"
    [ -e "/run/$full" ] && printf ' %s' "/run/$full"
    [ -e "/run/netns/$full" ] && printf ' %s' "netns:$full"
    [ -n "$(mounts_under "/run/$full" "$(dnode_root "$n")")" ] && printf ' %s' "mounts:$n"
    cgroup_left "$ME/$full"
  done
  [ -n "$DHUB_NS" ] || return 0
  [ -e "/run/netns/$DHUB_NS" ] && printf ' %s' "netns:$DHUB_NS"
  for f in $DSHIM_OURS; do [ -S "$f" ] && printf ' %s' "$f"; done
  for f in $(dstacks); do grep -qxF "$f" <<<"$DSTACKS_BEFORE" || printf ' %s' "$f"; done
  return 0
}
