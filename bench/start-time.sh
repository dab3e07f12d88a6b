#!/usr/bin/env bash
# bench/start-time.sh: how long until a container's own process runs, Dash next to its peers on
# this machine, in one run, with the same busybox-static image, all timed the same way:
#
#   from the moment the tool's command is invoked until the container's process (`sleep M`,
#   a number M unique to the trial) is seen in the host's process table by one neutral
#   observer (target/release/observe, bench/src/bin/observe.rs), the same for every tool.
#
# Networks are warm for every tool: Dash's bridge exists from the server's start; podman's
# netavark bridge is kept up by a long-running keeper container (else netavark makes and
# deletes it with the first and last container); Docker's docker0 exists from dockerd's start;
# bare crun has no network.
#
# For each tool, three measurements per trial (tools interleaved within the trial):
#   N=1      one container started alone: the "per replica" figure of one replica
#   N=20 seq 20 one after the other: the next command is invoked once the previous returned
#            and its process was seen (for Dash: 20 services of one replica, applied in turn)
#   N=20 par 20 at once: 20 concurrent `podman run -d`, `docker run -d`, `crun run`; one Dash
#            apply of 20 replicas; one Swarm service of 20 replicas; reported as the total and
#            as total ÷ 20 (concurrent, so not a per-replica start time)
#
#   dash      `dash apply -f` (replicas under the default seccomp profile)
#   dash-unconfined  the same with `[security] seccomp = "unconfined"`: the filter's cost
#   dash-userns  the same with `[security] user_namespace = true`: the user namespace's cost
#            (a range of host ids, idmapped image layers)
#   podman    `podman run -d` with runc, and with crun through the hybrid-cgroup unshare wrapper
#   crun      bare `crun run --detach` of an OCI bundle (through the same wrapper; no network,
#             no monitor, no overlay)
#   docker    `docker run -d` and a Swarm service, when Debian's docker.io is installed
#             (bench/docker.sh: its own dockerd in its own network namespace)
#
# Then the kernel's share: bare crun N=1 again, right after a process was moved into another new
# cgroup (the first cgroup move after a quiet spell waits for an RCU grace period; one just
# before makes it cheap), the monitors' memory (dash-monitor vs conmon), the idle `dash server`
# RSS, and attach_bench's numbers if that example is built. Needs root. Everything it creates
# is removed on exit, also on error or Ctrl-C.
#
#   bench/start-time.sh | tee bench/results/start-time-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release, relative to the repo root; built when missing),
# TRIALS (default 5), WARMUP (default 1: one uncounted N=1 round of every tool),
# ATTACH_CYCLES (default 50), PODMAN (default 1; 0 skips podman), PODMAN_CRUN (default 1;
# 0 skips the podman+crun-wrapper row), DOCKER (default 1; 0 skips Docker and Swarm).
# Progress goes to stderr.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"        # helpers; goes to the repo root (ROOT)
# DOCKER is the caller's switch here; docker.sh uses the name for its own command line.
DOCKER_ON=${DOCKER:-1}
# shellcheck source-path=SCRIPTDIR source=docker.sh
. "$(dirname "$0")/docker.sh"

defaults TRIALS=5 WARMUP=1 ATTACH_CYCLES=50 PODMAN=1 PODMAN_CRUN=1
N=20

bench_net bench 7390 10.98.0.0/24 dashbench0 dash_bench /run/dash-bench bench
RUN_ID=$$                       # tags names of this run
NFT_BEFORE=$(nft list tables 2>/dev/null | sed 's/^table //' | tr '\n' ' ')
TARGET_MS=30                    # ARCHITECTURE.md: replica created → running ≤ 30 ms
TIMEOUT_S=120                   # per measurement
MARK=7000000                    # `sleep MARK`: each measurement's containers run their own
PROBE_PID=

need_root_and jq nft ip crun unshare findmnt tar nsenter
if [ "$PODMAN" = 1 ] && ! command -v podman >/dev/null; then
  log "podman not found: skipping it"; PODMAN=0
fi
if [ "$DOCKER_ON" = 1 ] && ! docker_available; then
  log "docker.io not installed: Docker and Swarm are not measured"; DOCKER_ON=0
fi

# ---- binaries -----------------------------------------------------------------------------
# shellcheck disable=SC2119 # no extra check of the binaries
ensure_binaries
ATTACH_BENCH=$BIN_DIR/examples/attach_bench
ensure_observe

refuse_if_taken

# ---- state for the cleanup ----------------------------------------------------------------
bench_state dash-bench
CRUN_ROOT=$SCR/crun-root
mkdir -p "$CRUN_ROOT"
PODMAN_IMAGE=localhost/dashbench-bb:$RUN_ID
PODMAN_IMAGE_MADE=0
CRUN_CG=$ME/dashbench-crun-$RUN_ID

start_time_cleanup() { # on_exit's
  local t pid id f
  # Dash services, then the server (it leaves containers running when it stops).
  stop_dash
  # Whatever the server did not remove (it died?): containers in its runtime roots
  # (<run-dir>/runtime/<crun|runc>), the monitors of our bundles, processes left in our
  # replicas' cgroups (a container killed between create and start), then mounts.
  for rt in crun runc; do
    command -v $rt >/dev/null || continue
    for root in "$RUN_DIR/runtime/$rt" "$RUN_DIR/runtime"; do
      [ -d "$root" ] || continue
      for id in $($rt --root "$root" list -q 2>/dev/null); do
        log "deleting leftover $rt container $id"; $rt --root "$root" delete -f "$id" >/dev/null 2>&1
      done
    done
  done
  for f in "$DATA"/containers/*/monitor.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx "$(dirname "$f")"; then
      log "killing leftover monitor $pid"; kill -KILL "$pid"
    fi
  done
  for d in /sys/fs/cgroup/*"$ME"/dash/st-r"$RUN_ID"-* /sys/fs/cgroup/*/dash/st-r"$RUN_ID"-*; do
    [ -d "$d" ] || continue
    for pid in $(cat "$d/cgroup.procs" 2>/dev/null); do
      log "killing leftover process $pid of cgroup $d"; kill -KILL "$pid"
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
  done
  cleanup_net
  # podman containers and image of this run.
  if [ "$PODMAN" = 1 ]; then
    ids=$(podman ps -aq --filter "name=^dashbench-$RUN_ID-" 2>/dev/null)
    [ -n "$ids" ] && podman rm -f -t 0 $ids >/dev/null 2>&1
    [ "$PODMAN_IMAGE_MADE" = 1 ] && podman rmi -f "$PODMAN_IMAGE" >/dev/null 2>&1
    # netavark (podman's network) leaves its `ip nat` / `ip filter` tables behind: remove
    # them if this run created them.
    for t in nat filter; do
      case " $NFT_BEFORE " in *" ip $t "*) ;; *) nft delete table ip "$t" 2>/dev/null ;; esac
    done
  fi
  # bare crun containers and their cgroups.
  for id in $(crun --root "$CRUN_ROOT" list -q 2>/dev/null); do
    crun --root "$CRUN_ROOT" delete -f "$id" >/dev/null 2>&1
  done
  rmdir_cgroup "$CRUN_CG"
  docker_cleanup
  [ -n "$PROBE_PID" ] && kill -KILL "$PROBE_PID" 2>/dev/null
  for h in /sys/fs/cgroup/*/; do
    for d in "${h%/}$ME"/dashbench-probe-"$RUN_ID"-*; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  done
  cleanup_cgroups_forward
  [ -n "$(mounts_under "$SCR")" ] || rm -rf --one-file-system "$SCR"
  # What is left (should be nothing).
  local left
  left=$(net_left)
  [ -e "$SCR" ] && left+=" $SCR"
  if [ "$PODMAN" = 1 ]; then
    [ -n "$(podman ps -aq --filter "name=^dashbench-$RUN_ID-" 2>/dev/null)" ] && left+=" podman-containers"
    podman image exists "$PODMAN_IMAGE" 2>/dev/null && left+=" podman-image"
  fi
  left+=$(cgroup_left "$CRUN_CG")$(cgroups_left)$(docker_left)
  if [ -n "$left" ]; then
    echo "cleanup: LEFT BEHIND:$left"
  else
    echo "cleanup: nothing left behind (server, $BRIDGE, table $NFT_TABLE, $RUN_DIR, mounts, podman containers/image, crun containers, cgroups, $SCR)"
  fi
}
on_exit start_time_cleanup
trap_error

# ---- helpers ------------------------------------------------------------------------------
# kB of a process: "rss pss"
proc_mem() {
  local rss pss
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null)
  pss=$(awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null)
  echo "${rss:-?} ${pss:-?}"
}
# mem_line LABEL FILE(kB per line) → min/median/max in MB
mem_line() {
  sort -n "$2" | awk -v l="$1" '{a[NR]=$1} END {
    if (NR == 0) { printf "  %-34s (none found)\n", l; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "  %-34s n=%-3d min %6.2f  median %6.2f  max %6.2f MB\n", l, NR, a[1]/1024, m/1024, a[NR]/1024 }'
}

# The observer: observe_start COUNT starts it for the next marker (MARK+1, in CMD) and waits
# until it is ready; observe_next prints the time (µs) the next matching process was seen.
observe_start() {
  MARK=$((MARK + 1))
  CMD="sleep $MARK"
  observer_start --cmdline "$CMD" --count "$1" --timeout "$TIMEOUT_S"
}
observe_next() { observer_next "$CMD: not seen within $TIMEOUT_S s"; echo "$SEEN_US"; }

# ---- header -------------------------------------------------------------------------------
header start-time "$(versions crun runc podman)$([ "$DOCKER_ON" = 1 ] && echo ", $(docker_version)")"
echo "trials: $TRIALS, N = 1 and $N (one after the other, and at once), warm-up rounds: $WARMUP"
echo "timing: from the command's invocation until the container's process is seen in /proc ($OBSERVE, polled every 0.5 ms)"
echo

# ---- attach_bench (before the server: it uses the same bridge and table names) -----------
if [ -x "$ATTACH_BENCH" ]; then
  log "attach_bench ($ATTACH_CYCLES cycles)"
  echo "## attach_bench: $ATTACH_CYCLES attach/detach cycles of one replica (crates/dash-net/examples/attach_bench.rs)"
  for ports in 0 1; do
    echo "published ports: $ports"
    if ! "$ATTACH_BENCH" "$ATTACH_CYCLES" "$ports" 2>&1 | sed 's/^/  /'; then
      echo "  (attach_bench failed)"
    fi
  done
  echo
else
  echo "## attach_bench: $ATTACH_BENCH not built (cargo build --release -p dash-net --example attach_bench)"
  echo
fi
[ -e "/sys/class/net/$BRIDGE" ] && die "attach_bench left bridge $BRIDGE behind"
nft list table ip "$NFT_TABLE" >/dev/null 2>&1 && die "attach_bench left table $NFT_TABLE behind"

# ---- image --------------------------------------------------------------------------------
log "making the busybox rootfs"
"$ROOT/demo/make-busybox-rootfs.sh" "$SCR/rootfs.tar"

# ---- dash server --------------------------------------------------------------------------
start_server
RUNTIME=$("$DASH" node ls -o json | jq -r '.[0].runtime')
"$DASH" image import --rootfs "$SCR/rootfs.tar" bb:1 >/dev/null
sleep 3
read -r IDLE_RSS IDLE_PSS < <(proc_mem "$SERVER_PID")

# ---- peers' setup -------------------------------------------------------------------------
HARD_NOFILE=$(ulimit -Hn)
if [ "$PODMAN" = 1 ]; then
  # podman 4 gives root containers nofile and nproc 1048576, which root without
  # CAP_SYS_RESOURCE cannot set ("setrlimit RLIMIT_NOFILE: Operation not permitted"); podman
  # itself runs with an RLIMIT_NPROC hard limit of 32768 (seen in /proc/<podman>/limits while
  # the shell has more), so clamp to that too. crun, podman's default runtime, refuses this
  # hybrid cgroup layout: podman uses runc, and crun through the unshare wrapper as a 2nd row.
  HARD_NPROC=$(ulimit -Hu)
  [ "$HARD_NPROC" = unlimited ] || [ "$HARD_NPROC" -gt 32768 ] && HARD_NPROC=32768
  [ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
  cat >"$SCR/crun-hybrid" <<'EOF'
#!/bin/sh
# crun with the hybrid-cgroup workaround (RECIPES.md) for create/run
for a in "$@"; do
  case $a in create|run) exec unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun "$@"' crun "$@" ;; esac
done
exec crun "$@"
EOF
  chmod +x "$SCR/crun-hybrid"
  cat >"$SCR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$HARD_NOFILE:$HARD_NOFILE", "nproc=$HARD_NPROC:$HARD_NPROC"]
[engine]
runtime = "runc"
[engine.runtimes]
crunhybrid = ["$SCR/crun-hybrid"]
EOF
  export CONTAINERS_CONF=$SCR/containers.conf
  log "podman import"
  podman import -q "$SCR/rootfs.tar" "$PODMAN_IMAGE" >/dev/null
  PODMAN_IMAGE_MADE=1
fi
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576

if [ "$PODMAN" = 1 ]; then
  # Keeps netavark's bridge up for the whole run: warm for podman as for everyone else.
  podman run -d -q --name "dashbench-$RUN_ID-keeper" "$PODMAN_IMAGE" sleep 999999 >/dev/null
fi
if [ "$DOCKER_ON" = 1 ]; then
  docker_start st
  docker_import "$SCR/rootfs.tar" bb:1
  docker_swarm_init
fi

log "crun bundle"
mkdir -p "$SCR/crun/rootfs"
tar -C "$SCR/crun/rootfs" -xf "$SCR/rootfs.tar"
(cd "$SCR/crun" && crun spec)
jq --arg root "$SCR/crun/rootfs" --argjson h "$HARD_NOFILE" '
  .process.terminal = false | .process.args = ["sleep", "600"] | .root.path = $root
  | .process.rlimits |= map(.hard = ([.hard, $h] | min) | .soft = ([.soft, $h] | min))' \
  "$SCR/crun/config.json" >"$SCR/crun/config.base.json"
crun_bundle() { # crun_bundle ID MARK → bundle dir (own cgroupsPath under ours; runs `sleep MARK`)
  local b=$SCR/crun/b-$1
  mkdir -p "$b"
  jq --arg cg "$CRUN_CG/$1" --arg m "$2" '.linux.cgroupsPath = $cg | .process.args = ["sleep", $m]' \
    "$SCR/crun/config.base.json" >"$b/config.json"
  echo "$b"
}


# ---- the tools: start_TOOL ID (one container, returns when the command does), many_TOOL N
# (N at once; returns when every command did), clean_TOOL (removes this trial's containers) ---
TRIAL_IDS=()

# (On the clock, in start_dash: not lib.sh's sleep_toml, whose cost differs from this one's.)
dash_toml() { # dash_toml NAME REPLICAS [SECURITY]: a SECURITY line (e.g. seccomp = "unconfined") goes in [security]
  cat >"$SCR/$1.toml" <<EOF
name = "$1"
image = "bb:1"
command = ["sleep", "$MARK"]
replicas = $2
stop_grace_period = "100ms"
EOF
  [ -z "${3:-}" ] || printf '[security]\n%s\n' "$3" >>"$SCR/$1.toml"
}
UNCONFINED='seccomp = "unconfined"'
USERNS='user_namespace = true'
# start_dash ID [SECURITY], many_dash N ID [SECURITY]
start_dash() { dash_toml "$1" 1 "${2:-}"; "$DASH" apply -f "$SCR/$1.toml" >/dev/null; TRIAL_IDS+=("$1"); }
many_dash() { dash_toml "$2" "$1" "${3:-}"; "$DASH" apply -f "$SCR/$2.toml" >/dev/null; TRIAL_IDS+=("$2"); }
clean_dash() {
  local id t=$SECONDS
  for id in "${TRIAL_IDS[@]}"; do "$DASH" service rm "$id" >/dev/null; done
  while [ "$("$DASH" service ls -o json | jq length)" != 0 ]; do
    [ $((SECONDS - t)) -lt "$TIMEOUT_S" ] || die "dash: services not removed"
    sleep 0.05
  done
}

start_podman() { # start_podman RUNTIME NAME
  podman run -d -q --runtime "$1" --name "$2" "$PODMAN_IMAGE" sleep "$MARK" \
    >/dev/null 2>>"$SCR/podman.err" </dev/null || { cat "$SCR/podman.err" >&2; die "podman run ($1) failed"; }
  TRIAL_IDS+=("$2")
}
many_podman() { # many_podman RUNTIME N NAME
  local i
  for ((i = 1; i <= $2; i++)); do
    podman run -d -q --runtime "$1" --name "$3-$i" "$PODMAN_IMAGE" sleep "$MARK" \
      >/dev/null 2>>"$SCR/podman.err" </dev/null &
    BG+=("$!")
    TRIAL_IDS+=("$3-$i")
  done
  wait_all "podman run ($1)"
}
clean_podman() { podman rm -f -t 0 "${TRIAL_IDS[@]}" >/dev/null; }

crun_run() { # crun_run ID: its bundle was made beforehand (prepare), off the clock
  unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun --root "$1" run --detach -b "$2" "$3"' \
    sh "$CRUN_ROOT" "$SCR/crun/b-$1" "$1" </dev/null >/dev/null 2>>"$SCR/crun.err"
}
start_crun() { crun_run "$1" || { cat "$SCR/crun.err" >&2; die "crun run failed"; }; TRIAL_IDS+=("$1"); }
many_crun() {
  local i
  for ((i = 1; i <= $1; i++)); do TRIAL_IDS+=("$2-$i"); done
  for ((i = 1; i <= $1; i++)); do crun_run "$2-$i" & BG+=("$!"); done
  wait_all "crun run"
}
clean_crun() {
  local id
  for id in "${TRIAL_IDS[@]}"; do crun --root "$CRUN_ROOT" delete -f "$id" 2>/dev/null; rm -rf "$SCR/crun/b-$id"; done
}

start_docker() { $DOCKER run -d --name "$1" bb:1 sleep "$MARK" >/dev/null </dev/null || die "docker run failed"; TRIAL_IDS+=("$1"); }
many_docker() {
  local i
  for ((i = 1; i <= $1; i++)); do
    $DOCKER run -d --name "$2-$i" bb:1 sleep "$MARK" >/dev/null </dev/null &
    BG+=("$!")
    TRIAL_IDS+=("$2-$i")
  done
  wait_all "docker run"
}
clean_docker() { $DOCKER rm -f "${TRIAL_IDS[@]}" >/dev/null; }

start_swarm() { # a service of one replica; `--detach`: returns once the service is created
  $DOCKER service create -q --detach --no-resolve-image --name "$1" bb:1 sleep "$MARK" >/dev/null || die "docker service create failed"
  TRIAL_IDS+=("$1")
}
many_swarm() {
  $DOCKER service create -q --detach --no-resolve-image --replicas "$1" --name "$2" bb:1 sleep "$MARK" >/dev/null || die "docker service create failed"
  TRIAL_IDS+=("$2")
}
clean_swarm() {
  local t=$SECONDS
  $DOCKER service rm "${TRIAL_IDS[@]}" >/dev/null
  while [ -n "$($DOCKER ps -q --filter label=com.docker.swarm.service.id)" ]; do
    [ $((SECONDS - t)) -lt "$TIMEOUT_S" ] || die "swarm: tasks not removed"
    sleep 0.1
  done
}

BG=()                           # the commands many_* started in the background
wait_all() { # wait for the commands in BG; dies naming WHAT if one failed
  local pid
  for pid in "${BG[@]}"; do
    wait "$pid" || { cat "$SCR"/*.err >&2 2>/dev/null; die "$1 failed"; }
  done
  BG=()
}

TOOLS=(dash dash-unconfined dash-userns)
[ "$PODMAN" = 1 ] && TOOLS+=(podman-runc)
[ "$PODMAN" = 1 ] && [ "$PODMAN_CRUN" = 1 ] && TOOLS+=(podman-crun)
TOOLS+=(crun)
[ "$DOCKER_ON" = 1 ] && TOOLS+=(docker swarm)

start_one() { # start_one TOOL ID
  case $1 in
    dash) start_dash "$2" ;;
    dash-unconfined) start_dash "$2" "$UNCONFINED" ;;
    dash-userns) start_dash "$2" "$USERNS" ;;
    podman-runc) start_podman runc "$2" ;;
    podman-crun) start_podman crunhybrid "$2" ;;
    crun) start_crun "$2" ;;
    docker) start_docker "$2" ;;
    swarm) start_swarm "$2" ;;
  esac
}
start_many() { # start_many TOOL N ID
  case $1 in
    dash) many_dash "$2" "$3" ;;
    dash-unconfined) many_dash "$2" "$3" "$UNCONFINED" ;;
    dash-userns) many_dash "$2" "$3" "$USERNS" ;;
    podman-runc) many_podman runc "$2" "$3" ;;
    podman-crun) many_podman crunhybrid "$2" "$3" ;;
    crun) many_crun "$2" "$3" ;;
    docker) many_docker "$2" "$3" ;;
    swarm) many_swarm "$2" "$3" ;;
  esac
}
clean_tool() {
  case $1 in
    dash | dash-unconfined | dash-userns) clean_dash ;;
    podman-*) clean_podman ;;
    crun) clean_crun ;;
    docker) clean_docker ;;
    swarm) clean_swarm ;;
  esac
  TRIAL_IDS=()
}

# measure TOOL KIND TRIAL (KIND: one | seq | par): records the ms from the first invocation
# until the last container's process was seen.
measure() {
  local tool=$1 kind=$2 trial=$3 base t0 end i
  base=st-r$RUN_ID-t$trial-$tool-$kind
  case $tool in dash*) ;; *) base=dashbench-$RUN_ID-t$trial-$tool-$kind ;; esac
  if [ "$tool" = crun ]; then # bundles (jq) off the clock, for the marker observe_start sets
    prepare() { crun_bundle "$base" "$((MARK + 1))" >/dev/null; for ((i = 1; i <= N; i++)); do crun_bundle "$base-$i" "$((MARK + 1))" >/dev/null; done; }
    prepare
  fi
  case $kind in
    one)
      observe_start 1
      t0=$(now_us)
      start_one "$tool" "$base"
      end=$(observe_next) ;;
    seq)
      observe_start "$N"
      t0=$(now_us)
      for ((i = 1; i <= N; i++)); do
        start_one "$tool" "$base-$i"
        end=$(observe_next)
      done ;;
    par)
      observe_start "$N"
      t0=$(now_us)
      start_many "$tool" "$N" "$base"
      for ((i = 1; i <= N; i++)); do end=$(observe_next); done ;;
  esac
  observer_end
  [ "$trial" -gt 0 ] && record "$tool-$kind" "$(us_to_ms $((end - t0)))"
  if [ "$tool" = dash ] && [ "$kind" = par ] && [ "$trial" = 1 ]; then
    local f pid
    for f in "$DATA"/containers/"$base"-*/monitor.pid; do
      pid=$(cat "$f" 2>/dev/null) && proc_mem "$pid" >>"$MEM_DASH"
    done
  fi
  if [ "$tool" = podman-runc ] && [ "$kind" = par ] && [ "$trial" = 1 ]; then
    local cid pid
    for cid in $(podman inspect --format '{{.Id}}' "${TRIAL_IDS[@]}"); do
      pid=$(pgrep -f "conmon --api-version 1 -c $cid" | head -1)
      [ -n "$pid" ] && proc_mem "$pid" >>"$MEM_CONMON"
    done
  fi
  clean_tool "$tool"
}

# The kernel's share: bare crun N=1 right after another process was moved into a new cgroup.
measure_crun_after_move() {
  local trial=$1 h=/sys/fs/cgroup/pids d t0 end
  d=$h$ME/dashbench-probe-$RUN_ID-$trial
  mkdir "$d"
  sleep 60 &
  PROBE_PID=$!
  crun_bundle "dashbench-$RUN_ID-t$trial-crun-aftermove" "$((MARK + 1))" >/dev/null
  observe_start 1
  echo "$PROBE_PID" >"$d/cgroup.procs"   # this move pays the wait; the next one should not
  t0=$(now_us)
  start_crun "dashbench-$RUN_ID-t$trial-crun-aftermove"
  end=$(observe_next)
  observer_end
  record crun-aftermove "$(us_to_ms $((end - t0)))"
  clean_tool crun
  kill -KILL "$PROBE_PID"; wait "$PROBE_PID" 2>/dev/null || true; PROBE_PID=
  for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.05; done
}

MEM_DASH=$SCR/mem-dash-monitor
MEM_CONMON=$SCR/mem-conmon

# Tools interleaved within each trial, so that load from elsewhere hits all of them alike.
for ((w = 1; w <= WARMUP; w++)); do
  log "warm-up round $w"
  for t in "${TOOLS[@]}"; do measure "$t" one 0; done
done
for ((trial = 1; trial <= TRIALS; trial++)); do
  for kind in ${KINDS:-one seq par}; do
    log "trial $trial/$TRIALS: $kind"
    for t in "${TOOLS[@]}"; do measure "$t" "$kind" "$trial"; sleep 0.5; done
  done
  sleep 1   # a quiet spell, then the cgroup-move probe
  measure_crun_after_move "$trial"
done

sleep 3
read -r END_RSS END_PSS < <(proc_mem "$SERVER_PID")

# ---- report -------------------------------------------------------------------------------
label() {
  case $1 in
    dash) echo "dash apply" ;;
    dash-unconfined) echo "dash apply (seccomp unconfined)" ;;
    dash-userns) echo "dash apply (user namespace)" ;;
    podman-runc) echo "podman run -d (runc)" ;;
    podman-crun) echo "podman run -d (crun+wrapper)" ;;
    crun) echo "crun run --detach (bare)" ;;
    docker) echo "docker run -d" ;;
    swarm) echo "docker service create (swarm)" ;;
  esac
}
cell() { # cell FILE → "median (min–max)"
  [ -s "$1" ] || { echo "-"; return; }
  stats "$1" | awk '{printf "%s (%s–%s)", $3, $2, $4}'
}
ratio() { # ratio FILE DASH-FILE → peer median / dash median
  [ -s "$1" ] && [ -s "$2" ] || { echo "-"; return; }
  awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN{printf "%.2f", a/b}'
}
echo "## container started → its process running (ms: median (min–max) over $TRIALS trials)"
echo "dash runtime: $RUNTIME; ratio = peer / dash (> 1: Dash faster), same column, same run"
printf '%-32s %-24s %-24s %-24s %8s %8s %8s\n' tool "N=1 (alone)" "N=$N one after the other" "N=$N at once" "ratio 1" "ratio seq" "ratio par"
for t in "${TOOLS[@]}"; do
  d=$SAMPLES/dash
  if [ "$t" = dash ]; then r1=; rs=; rp=; else
    r1=$(ratio "$SAMPLES/$t-one" "$d-one"); rs=$(ratio "$SAMPLES/$t-seq" "$d-seq"); rp=$(ratio "$SAMPLES/$t-par" "$d-par"); fi
  printf '%-32s %-24s %-24s %-24s %8s %8s %8s\n' "$(label "$t")" "$(cell "$SAMPLES/$t-one")" "$(cell "$SAMPLES/$t-seq")" "$(cell "$SAMPLES/$t-par")" "$r1" "$rs" "$rp"
done
echo
echo "per replica: N=1 is one replica started alone; N=$N one after the other ÷ $N is the mean per replica;"
echo "N=$N at once ÷ $N is a batch figure (concurrent starts), not a per-replica start time:"
for t in "${TOOLS[@]}"; do
  printf '  %-32s seq ÷ %d = %s ms   par ÷ %d = %s ms\n' "$(label "$t")" "$N" \
    "$(awk -v m="$(median "$SAMPLES/$t-seq")" -v n="$N" 'BEGIN{printf "%.1f", m/n}')" "$N" \
    "$(awk -v m="$(median "$SAMPLES/$t-par")" -v n="$N" 'BEGIN{printf "%.1f", m/n}')"
done
echo "target ≤ ${TARGET_MS} ms for one replica (Dash, N=1 median): $(awk -v m="$(median "$SAMPLES/dash-one")" -v t="$TARGET_MS" 'BEGIN{print (m <= t) ? "met" : "MISSED"}')"
echo
echo "## the default seccomp profile's cost: dash (default profile) ÷ dash (seccomp unconfined), medians"
for k in one seq par; do
  [ -s "$SAMPLES/dash-$k" ] && [ -s "$SAMPLES/dash-unconfined-$k" ] || continue
  r=$(awk -v a="$(median "$SAMPLES/dash-$k")" -v b="$(median "$SAMPLES/dash-unconfined-$k")" 'BEGIN{printf "%.2f", a/b}')
  printf '  %-4s %s   (target ≤ 1.10: %s)\n' "$k" "$r" "$(awk -v r="$r" 'BEGIN{print (r <= 1.10) ? "met" : "not met"}')"
done
echo
echo "## a user namespace's cost: dash (user_namespace = true) ÷ dash (without), medians"
for k in one seq par; do
  [ -s "$SAMPLES/dash-$k" ] && [ -s "$SAMPLES/dash-userns-$k" ] || continue
  r=$(awk -v a="$(median "$SAMPLES/dash-userns-$k")" -v b="$(median "$SAMPLES/dash-$k")" 'BEGIN{printf "%.2f", a/b}')
  printf '  %-4s %s   (target ≤ 1.10: %s)\n' "$k" "$r" "$(awk -v r="$r" 'BEGIN{print (r <= 1.10) ? "met" : "not met"}')"
done
echo
echo "## the kernel's share: bare crun N=1 alone vs right after another process was moved into a new cgroup"
printf '  %-44s %s\n' "crun run --detach, alone (as above)" "$(cell "$SAMPLES/crun-one")"
printf '  %-44s %s\n' "crun run --detach, right after a cgroup move" "$(cell "$SAMPLES/crun-aftermove")"
echo
echo "## memory per running container ($N running, RSS = VmRSS, PSS = smaps_rollup Pss)"
echo "target: monitor ≤ 1 MB (ARCHITECTURE.md; conmon measured there: 2.4 MB RSS)"
awk '{print $1}' "$MEM_DASH" 2>/dev/null >"$SCR/m1" || true
awk '{print $2}' "$MEM_DASH" 2>/dev/null >"$SCR/m2" || true
mem_line "dash-monitor RSS" "$SCR/m1"
mem_line "dash-monitor PSS" "$SCR/m2"
if [ "$PODMAN" = 1 ]; then
  awk '{print $1}' "$MEM_CONMON" 2>/dev/null >"$SCR/m3" || true
  awk '{print $2}' "$MEM_CONMON" 2>/dev/null >"$SCR/m4" || true
  mem_line "conmon RSS (podman, runc)" "$SCR/m3"
  mem_line "conmon PSS (podman, runc)" "$SCR/m4"
fi
echo
echo "## idle dash server (no services, 3 s after the last change)"
echo "target: ≤ 20 MB RSS (ARCHITECTURE.md; containerd 45 MB, podman service 35 MB)"
awk -v r="$IDLE_RSS" -v p="$IDLE_PSS" 'BEGIN{printf "  after image import:       RSS %6.2f MB  PSS %6.2f MB\n", r/1024, p/1024}'
awk -v r="$END_RSS" -v p="$END_PSS" 'BEGIN{printf "  after all trials:         RSS %6.2f MB  PSS %6.2f MB\n", r/1024, p/1024}'
echo
echo "notes: dash replicas get a netns + veth on bridge $BRIDGE, an overlay root and a monitor; podman"
echo "uses its default network (netavark bridge, kept up by a keeper container), runtime runc (its"
echo "default crun fails on this hybrid cgroup layout) or crun through an unshare wrapper, with"
echo "default_ulimits nofile=$HARD_NOFILE, nproc=${HARD_NPROC:-} from a throwaway CONTAINERS_CONF; bare"
echo "crun shares one read-only rootfs and has no network, no monitor, no overlay; docker uses its own"
echo "dockerd (bench/docker.sh) with docker0 and overlay2, swarm the same daemon in swarm mode."
echo "load at end: $(load)"
