#!/usr/bin/env bash
# bench/start-time.sh: "replica created → running" and per-container memory, Dash next to its
# peers on this machine, in one run, with the same busybox-static image:
#
#   dash      apply -f (N replicas of `sleep 600`, no published ports) until `dash ps` shows N
#             running (client wall clock), and max(started_ms) − created_ms (server side)
#   podman    N × `podman run -d` one after the other (default network: netavark bridge), with
#             runc, and with crun through the hybrid-cgroup unshare wrapper
#   crun      N × bare `crun run --detach` of an OCI bundle (no network, no monitor)
#
# then the monitors' memory (dash-monitor vs conmon), the idle `dash server` RSS, and
# attach_bench's numbers if that example is built. Needs root. Everything it creates (server,
# bridge dashbench0, nft table dash_bench, /run/dash-bench, podman containers and image, crun
# containers, cgroup dirs, scratch dirs) is removed on exit, also on error or Ctrl-C.
#
#   bench/start-time.sh | tee bench/results/start-time-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release, relative to the repo root; built when missing),
# TRIALS (default 5), COUNTS (default "1 20"), WARMUP (default 1: one uncounted N=1 round of
# every method), ATTACH_CYCLES (default 50), PODMAN (default 1; 0 skips podman),
# PODMAN_CRUN (default 1; 0 skips the podman+crun-wrapper row). Progress goes to stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"        # helpers; goes to the repo root (ROOT)

BIN_DIR=${BIN_DIR:-target/release}
TRIALS=${TRIALS:-5}
COUNTS=${COUNTS:-1 20}
WARMUP=${WARMUP:-1}
ATTACH_CYCLES=${ATTACH_CYCLES:-50}
PODMAN=${PODMAN:-1}
PODMAN_CRUN=${PODMAN_CRUN:-1}

LISTEN=127.0.0.1:7390
BRIDGE=dashbench0
SUBNET=10.98.0.0/24
NFT_TABLE=dash_bench
RUN_DIR=/run/dash-bench
NODE=bench
RUN_ID=$$                       # tags podman/crun names of this run
NFT_BEFORE=$(nft list tables 2>/dev/null | sed 's/^table //' | tr '\n' ' ')
TARGET_MS=30                    # ARCHITECTURE.md: replica created → running ≤ 30 ms
TIMEOUT_S=120                   # per wait loop

need_root_and jq nft ip crun unshare findmnt tar
if [ "$PODMAN" = 1 ] && ! command -v podman >/dev/null; then
  log "podman not found: skipping it"; PODMAN=0
fi

# ---- binaries -----------------------------------------------------------------------------
# shellcheck disable=SC2119 # no extra check of the binaries
ensure_binaries
ATTACH_BENCH=$BIN_DIR/examples/attach_bench

refuse_if_taken

# ---- state for the cleanup ----------------------------------------------------------------
bench_state dash-bench
CRUN_ROOT=$SCR/crun-root
mkdir -p "$CRUN_ROOT"
PODMAN_IMAGE=localhost/dashbench-bb:$RUN_ID
PODMAN_IMAGE_MADE=0
CRUN_CG=$ME/dashbench-crun-$RUN_ID

cleanup() {
  local rc=$? t s pid id f
  cleanup_begin
  # Dash services, then the server (it leaves containers running when it stops).
  if server_alive; then
    for s in $("$DASH" service ls -o json 2>/dev/null | jq -r '.[].spec.name'); do
      "$DASH" service rm "$s" >/dev/null 2>&1
    done
    t=$SECONDS
    while [ $((SECONDS - t)) -lt 60 ] &&
      [ "$("$DASH" service ls -o json 2>/dev/null | jq length)" != 0 ]; do sleep 0.2; done
    stop_pid "$SERVER_PID"
  fi
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
  for d in /sys/fs/cgroup/*"$ME"/dash/st-n*-t*-"$RUN_ID"-* /sys/fs/cgroup/*/dash/st-n*-t*-"$RUN_ID"-*; do
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
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}$CRUN_CG" ] && find "${h%/}$CRUN_CG" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  cleanup_cgroups_forward
  findmnt -rn -o TARGET | grep -qE "^$SCR(/|$)" || rm -rf --one-file-system "$SCR"
  # What is left (should be nothing).
  local left
  left=$(net_left)
  [ -e "$SCR" ] && left+=" $SCR"
  if [ "$PODMAN" = 1 ]; then
    [ -n "$(podman ps -aq --filter "name=^dashbench-$RUN_ID-" 2>/dev/null)" ] && left+=" podman-containers"
    podman image exists "$PODMAN_IMAGE" 2>/dev/null && left+=" podman-image"
  fi
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}$CRUN_CG" ] && left+=" ${h%/}$CRUN_CG"
  done
  left+=$(cgroups_left)
  if [ -n "$left" ]; then
    echo "cleanup: LEFT BEHIND:$left"
  else
    echo "cleanup: nothing left behind (server, $BRIDGE, table $NFT_TABLE, $RUN_DIR, mounts, podman containers/image, crun containers, cgroups, $SCR)"
  fi
  exit "$rc"
}
trap_cleanup

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
count_running() { # JSON text → number of "state": "running"
  local rest=$1 c=0
  while [[ $rest == *'"state": "running"'* ]]; do rest=${rest#*'"state": "running"'}; c=$((c + 1)); done
  echo $c
}

# ---- header -------------------------------------------------------------------------------
header start-time
echo "peers: $(crun --version | head -1)$(command -v runc >/dev/null && echo ", runc $(runc --version | awk 'NR==1{print $3}')")$( [ "$PODMAN" = 1 ] && echo ", $(podman --version)")"
echo "trials: $TRIALS per N, N in {$COUNTS}, warm-up rounds: $WARMUP"
echo "load at start: $(load)"
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

log "crun bundle"
mkdir -p "$SCR/crun/rootfs"
tar -C "$SCR/crun/rootfs" -xf "$SCR/rootfs.tar"
(cd "$SCR/crun" && crun spec)
jq --arg root "$SCR/crun/rootfs" --argjson h "$HARD_NOFILE" '
  .process.terminal = false | .process.args = ["sleep", "600"] | .root.path = $root
  | .process.rlimits |= map(.hard = ([.hard, $h] | min) | .soft = ([.soft, $h] | min))' \
  "$SCR/crun/config.json" >"$SCR/crun/config.base.json"
crun_bundle() { # crun_bundle ID → bundle dir (own cgroupsPath under ours)
  local b=$SCR/crun/b-$1
  mkdir -p "$b"
  jq --arg cg "$CRUN_CG/$1" '.linux.cgroupsPath = $cg' "$SCR/crun/config.base.json" >"$b/config.json"
  echo "$b"
}

# ---- the methods: each one trial "METHOD N TRIAL [measure-memory]" -------------------------
MEM_DASH=$SCR/mem-dash-monitor
MEM_CONMON=$SCR/mem-conmon

trial_dash() {
  local n=$1 trial=$2 mem=${3:-0} name out c t0 t1 t2 st f pid
  name=st-n$n-t$trial-$RUN_ID
  cat >"$SCR/$name.toml" <<EOF
name = "$name"
image = "bb:1"
command = ["sleep", "600"]
replicas = $n
EOF
  t0=$(now_us)
  "$DASH" apply -f "$SCR/$name.toml" >/dev/null
  while :; do
    out=$("$DASH" ps "$name" -o json)
    c=$(count_running "$out")
    [ "$c" -ge "$n" ] && break
    if [[ $out == *'"state": "failed"'* ]] || [ $(($(now_us) - t0)) -gt $((TIMEOUT_S * 1000000)) ]; then
      "$DASH" ps "$name" >&2; die "dash: $name did not get $n replicas running"
    fi
  done
  t1=$(now_us)
  st=$("$DASH" service inspect "$name" | jq -r '
    if ([.replicas[] | select(.state == "running")] | length) >= '"$n"'
    then ([.replicas[].started_ms] | max) - .created_ms else "x" end')
  [ "$st" != x ] || die "dash: inspect of $name disagrees with ps"
  if [ "$trial" -gt 0 ]; then
    record "dash-client-$n" "$(us_to_ms $((t1 - t0)))"
    record "dash-server-$n" "$st"
  fi
  if [ "$mem" = 1 ]; then
    for f in "$DATA"/containers/"$name"-*/monitor.pid; do
      pid=$(cat "$f")
      proc_mem "$pid" >>"$MEM_DASH"
    done
    if [ ! -s "$MEM_DASH" ]; then # fall back on the command line
      for pid in $(pgrep -f "dash-monitor --id $name-"); do proc_mem "$pid" >>"$MEM_DASH"; done
    fi
  fi
  t1=$(now_us)
  "$DASH" service rm "$name" >/dev/null
  while [[ $("$DASH" service ls -o json) == *"\"$name\""* ]]; do
    [ $(($(now_us) - t1)) -gt $((TIMEOUT_S * 1000000)) ] && die "dash: $name not removed"
    sleep 0.02
  done
  t2=$(now_us)
  [ "$trial" -gt 0 ] && record "rm-dash-$n" "$(us_to_ms $((t2 - t1)))"
  return 0
}

trial_podman() { # trial_podman RUNTIME-LABEL RUNTIME N TRIAL [mem]
  local label=$1 runtime=$2 n=$3 trial=$4 mem=${5:-0} i t0 t1 t2 cid pid names=()
  for ((i = 1; i <= n; i++)); do names+=("dashbench-$RUN_ID-$label-n$n-t$trial-$i"); done
  t0=$(now_us)
  for ((i = 0; i < n; i++)); do
    podman run -d -q --runtime "$runtime" --name "${names[i]}" "$PODMAN_IMAGE" sleep 600 \
      >>"$SCR/podman-ids" 2>>"$SCR/podman.err" </dev/null ||
      { cat "$SCR/podman.err" >&2; die "podman run ($runtime) failed"; }
  done
  t1=$(now_us)
  [ "$trial" -gt 0 ] && record "$label-$n" "$(us_to_ms $((t1 - t0)))"
  if [ "$mem" = 1 ]; then
    for cid in $(podman inspect --format '{{.Id}}' "${names[@]}"); do
      pid=$(pgrep -f "conmon --api-version 1 -c $cid" | head -1)
      [ -n "$pid" ] && proc_mem "$pid" >>"$MEM_CONMON"
    done
  fi
  t1=$(now_us)
  podman rm -f -t 0 "${names[@]}" >/dev/null
  t2=$(now_us)
  [ "$trial" -gt 0 ] && record "rm-$label-$n" "$(us_to_ms $((t2 - t1)))"
  return 0
}

trial_crun() {
  local n=$1 trial=$2 i t0 t1 t2 ids=() bundles=()
  for ((i = 1; i <= n; i++)); do
    ids+=("dashbench-$RUN_ID-n$n-t$trial-$i")
    bundles+=("$(crun_bundle "${ids[-1]}")")
  done
  t0=$(now_us)
  for ((i = 0; i < n; i++)); do
    unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun --root "$1" run --detach -b "$2" "$3"' \
      sh "$CRUN_ROOT" "${bundles[i]}" "${ids[i]}" </dev/null >/dev/null 2>>"$SCR/crun.err" ||
      { cat "$SCR/crun.err" >&2; die "crun run failed"; }
  done
  t1=$(now_us)
  [ "$trial" -gt 0 ] && record "crun-$n" "$(us_to_ms $((t1 - t0)))"
  for ((i = 0; i < n; i++)); do crun --root "$CRUN_ROOT" delete -f "${ids[i]}"; done
  t2=$(now_us)
  [ "$trial" -gt 0 ] && record "rm-crun-$n" "$(us_to_ms $((t2 - t1)))"
  rm -rf "${bundles[@]}"
  return 0
}

METHODS=(dash)
[ "$PODMAN" = 1 ] && METHODS+=(podman-runc)
[ "$PODMAN" = 1 ] && [ "$PODMAN_CRUN" = 1 ] && METHODS+=(podman-crun)
METHODS+=(crun)

run_one() { # run_one METHOD N TRIAL MEM
  case $1 in
    dash) trial_dash "$2" "$3" "$4" ;;
    podman-runc) trial_podman podman-runc runc "$2" "$3" "$4" ;;
    podman-crun) trial_podman podman-crun crunhybrid "$2" "$3" 0 ;;
    crun) trial_crun "$2" "$3" ;;
  esac
}

# Methods interleaved within each trial, so that load from elsewhere hits all of them alike.
for ((w = 1; w <= WARMUP; w++)); do
  log "warm-up round $w"
  for m in "${METHODS[@]}"; do run_one "$m" 1 0 0; done
done
for n in $COUNTS; do
  for ((trial = 1; trial <= TRIALS; trial++)); do
    log "N=$n trial $trial/$TRIALS"
    mem=0
    [ "$n" = 20 ] && [ "$trial" = 1 ] && mem=1
    for m in "${METHODS[@]}"; do run_one "$m" "$n" "$trial" "$mem"; sleep 0.5; done
  done
done

sleep 3
read -r END_RSS END_PSS < <(proc_mem "$SERVER_PID")

# ---- report -------------------------------------------------------------------------------
label() {
  case $1 in
    dash-client) echo "dash apply->ps running (client)" ;;
    dash-server) echo "dash created->started (server)" ;;
    podman-runc) echo "podman run -d (runc)" ;;
    podman-crun) echo "podman run -d (crun+wrapper)" ;;
    crun) echo "crun run --detach (bare)" ;;
  esac
}
echo "## replica created → running (ms; N started one after the other for the peers)"
echo "dash runtime: $RUNTIME; ratio = peer / dash (> 1: Dash faster), vs Dash client wall clock and vs Dash server-side"
echo "columns: total ms for all N (min, median, max over the trials), per replica = total / N (min, median)"
printf '%-32s %3s %6s %8s %8s %8s %9s %9s %10s %10s  %s\n' method N trials min median max "min/repl" "med/repl" ratio/clnt ratio/srv "target ≤ ${TARGET_MS} ms/replica"
for n in $COUNTS; do
  dc=$(median "$SAMPLES/dash-client-$n")
  ds=$(median "$SAMPLES/dash-server-$n")
  rows=(dash-client dash-server)
  [ "$PODMAN" = 1 ] && rows+=(podman-runc)
  [ "$PODMAN" = 1 ] && [ "$PODMAN_CRUN" = 1 ] && rows+=(podman-crun)
  rows+=(crun)
  for m in "${rows[@]}"; do
    f=$SAMPLES/$m-$n
    [ -s "$f" ] || continue
    read -r cnt mn md mx < <(stats "$f")
    per=$(awk -v m="$md" -v n="$n" 'BEGIN{printf "%.1f", m/n}')
    pmin=$(awk -v m="$mn" -v n="$n" 'BEGIN{printf "%.1f", m/n}')
    case $m in
      dash-*)
        rc=-; rs=-
        tgt=$(awk -v p="$per" -v t="$TARGET_MS" 'BEGIN{print (p <= t) ? "met" : "MISSED"}') ;;
      *)
        rc=$(awk -v a="$md" -v b="$dc" 'BEGIN{printf "%.2f", a/b}')
        rs=$(awk -v a="$md" -v b="$ds" 'BEGIN{printf "%.2f", a/b}')
        tgt= ;;
    esac
    printf '%-32s %3s %6s %8s %8s %8s %9s %9s %10s %10s  %s\n' "$(label "$m")" "$n" "$cnt" "$mn" "$md" "$mx" "$pmin" "$per" "$rc" "$rs" "$tgt"
  done
done
echo
echo "## removal (median ms): dash service rm → gone from service ls; podman rm -f -t 0; crun delete -f"
for n in $COUNTS; do
  line="N=$n:"
  for m in dash podman-runc podman-crun crun; do
    [ -s "$SAMPLES/rm-$m-$n" ] && line+="  $m $(median "$SAMPLES/rm-$m-$n")"
  done
  echo "$line"
done
echo
echo "## memory per running container (20 running, RSS = VmRSS, PSS = smaps_rollup Pss)"
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
echo "notes: dash replicas get a netns + veth on bridge $BRIDGE and an overlay root; podman uses its"
echo "default network (netavark bridge 'podman'), runtime runc (its default crun fails on this hybrid"
echo "cgroup layout) or crun through an unshare wrapper, with default_ulimits nofile=$HARD_NOFILE,"
echo "nproc=${HARD_NPROC:-} from a throwaway CONTAINERS_CONF; bare crun shares one read-only rootfs and"
echo "has no network, no monitor, no overlay. netavark creates the podman0 bridge for the first"
echo "container and deletes it with the last, so each podman trial pays for it once. Removal: busybox"
echo "sleep as PID 1 ignores SIGTERM, so dash service rm waits out the worker's 5 s stop grace; podman"
echo "rm uses -t 0 and crun delete -f kills at once."
echo "load at end: $(load)"
