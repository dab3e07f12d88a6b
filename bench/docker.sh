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
  setsid nsenter --net="/run/netns/$DOCKER_NS" "$DOCKERD_BIN" \
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
  local root=$SCR/docker pid h d
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
  findmnt -rn -o TARGET | grep -E "^(/run/$DOCKER_NAME|$root)(/|$)" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf --one-file-system "/run/$DOCKER_NAME" "$root"
  ip netns del "$DOCKER_NS" 2>/dev/null
  for h in /sys/fs/cgroup/*/; do
    d=${h%/}$ME/$DOCKER_NAME
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

docker_left() {
  [ -n "$DOCKER_NAME" ] || return 0
  local h
  pgrep -f "/run/$DOCKER_NAME" >/dev/null 2>&1 && printf ' %s' "docker-processes"
  [ -e "/run/$DOCKER_NAME" ] && printf ' %s' "/run/$DOCKER_NAME"
  [ -e "/run/netns/$DOCKER_NS" ] && printf ' %s' "netns:$DOCKER_NS"
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}$ME/$DOCKER_NAME" ] && printf ' %s' "${h%/}$ME/$DOCKER_NAME"
  done
  return 0
}
