# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share. Sourced (before their cd to the repo root) with
#
#   . "$(dirname "$0")/lib.sh"
#
# It goes to the repo root and sets ROOT; the rest is functions. They use the script's
# settings: BIN_DIR, LISTEN, BRIDGE, SUBNET, NFT_TABLE, RUN_DIR, NODE (set before calling
# them, most often by bench_net), and the state set by bench_state: SCR, DATA, SAMPLES,
# SERVER_PID, OWN_NET, FORWARD_BEFORE, ME, CG_NEW, HELPER_PIDS; start_server sets DASH_ADDR,
# DASH_DATA_DIR and SERVER_PID.
#
# A bench with one `dash server` of its own goes on (after `set -eEuo pipefail` and the line
# above) with:
#
#   defaults ROUNDS=3 CONNECTIONS=16       # its settings, from the environment or these
#   bench_net vip 7396 10.98.6.0/24        # the server's address, bridge, table, run dir, …
#   bench_setup jq nft ip wrk              # root, tools, binaries, names free; bench_state
#   standard_cleanup                       # all of it removed on exit
# shellcheck disable=SC2154 # BIN_DIR, LISTEN, BRIDGE, … are the sourcing script's
export LC_ALL=C

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$t"; }
# us_to_ms MICROSECONDS → "12.34"
us_to_ms() { printf '%d.%02d' $(($1 / 1000)) $((($1 % 1000) / 10)); }

need_root_and() { # need_root_and TOOL...: root, and every TOOL on PATH
  local tool
  [ "$(id -u)" = 0 ] || die "run as root"
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
}

# ---- settings -----------------------------------------------------------------------------
# defaults NAME=VALUE...: each NAME as the environment has it, VALUE when it is unset or empty
# (what NAME=${NAME:-VALUE} does, for the list of a bench's settings).
defaults() {
  local _nv _name
  for _nv in "$@"; do
    _name=${_nv%%=*}
    [ -n "${!_name:-}" ] || printf -v "$_name" '%s' "${_nv#*=}"
  done
}

# bench_net NAME PORT SUBNET [BRIDGE [NFT_TABLE RUN_DIR NODE]]: the names of a bench's one
# `dash server`, its own beside the other benches': LISTEN 127.0.0.1:PORT, the bridge BRIDGE
# (default dashbNAME0; a bridge's name has at most 15 bytes) on SUBNET with the GATEWAY .1, the
# nft table (default dash_bench_NAME), the run dir (/run/dash-bench-NAME), the node name
# (bench-NAME); bench_setup's scratch dir is /tmp/dash-bench-NAME.*.
bench_net() {
  BENCH_NAME=$1
  LISTEN=127.0.0.1:$2
  SUBNET=$3
  GATEWAY=${SUBNET%.*}.1
  BRIDGE=${4:-dashb${1}0}
  NFT_TABLE=${5:-dash_bench_$1}
  RUN_DIR=${6:-/run/dash-bench-$1}
  NODE=${7:-bench-$1}
}

# bench_setup TOOL...: what a bench with bench_net's server does before anything else: root
# and TOOL... (need_root_and), the binaries (ensure_binaries), none of the server's names taken
# (refuse_if_taken), then the state for the cleanup (bench_state).
bench_setup() {
  need_root_and "$@"
  # shellcheck disable=SC2119 # no extra check of the binaries
  ensure_binaries
  refuse_if_taken
  bench_state "dash-bench-$BENCH_NAME"
}

# ---- binaries -----------------------------------------------------------------------------
# ensure_binaries [WHY ARG...]: build dash and dash-monitor (release) when missing from BIN_DIR
# (default target/release, relative to the repo root), or when `dash ARG...` fails (WHY then
# ends the error for a BIN_DIR other than the default); then BIN_DIR is absolute and DASH its
# dash.
ensure_binaries() {
  local why=${1:-}
  BIN_DIR=${BIN_DIR:-target/release}
  if [ ! -x "$BIN_DIR/dash" ] || [ ! -x "$BIN_DIR/dash-monitor" ] ||
    { [ $# -gt 1 ] && ! "$BIN_DIR/dash" "${@:2}" >/dev/null 2>&1; }; then
    [ "$BIN_DIR" = target/release ] || die "$BIN_DIR/dash or dash-monitor missing$why"
    log "building dash and dash-monitor (release)"
    cargo build --release -p dash -p dash-monitor >&2
  fi
  BIN_DIR=$(cd "$BIN_DIR" && pwd)
  DASH=$BIN_DIR/dash
}

# ensure_observe: OBSERVE, the neutral observer (bench/src/bin/observe.rs) in BIN_DIR, built
# (release) when missing. After ensure_binaries.
ensure_observe() {
  OBSERVE=$BIN_DIR/observe
  [ -x "$OBSERVE" ] || cargo build --release -p dash-bench --bin observe >&2
}

# driver_build BIN [PACKAGE...]: release builds of PACKAGE... (default dash and dash-monitor)
# and of the bench driver BIN (bench/src/bin). Then BIN_DIR and DASH are the release ones (for
# header), DASH_BIN_DIR (exported) tells the driver where they are, and DRIVER is the driver.
driver_build() {
  local bin=$1 p packages=()
  shift
  [ $# -gt 0 ] || set -- dash dash-monitor
  for p in "$@"; do packages+=(-p "$p"); done
  cargo build --release "${packages[@]}" >&2
  # The driver unwinds on a failed step so that its cleanup runs (release panics abort).
  cargo build --profile bench-driver -p dash-bench --bin "$bin" >&2
  BIN_DIR=target/release
  DASH=$ROOT/target/release/dash
  export DASH_BIN_DIR=$ROOT/target/release
  DRIVER=$ROOT/target/bench-driver/$bin
}

# driver_bench NAME BIN TOOLS: a bench its driver BIN does all of (machines, trials, cleanup):
# driver_build BIN, the header (NAME, TOOLS) and a blank line, then the driver, whose exit
# status is the script's.
driver_bench() {
  driver_build "$2"
  header "$1" "$3"
  echo
  "$DRIVER"
}

# Refuse to run over someone else's things (the cleanup then removes only ours).
refuse_if_taken() {
  [ -e "/sys/class/net/$BRIDGE" ] && die "bridge $BRIDGE exists: another bench running?"
  nft list table ip "$NFT_TABLE" >/dev/null 2>&1 && die "nft table ip $NFT_TABLE exists"
  [ -e "$RUN_DIR" ] && die "$RUN_DIR exists"
  refuse_if_listening "$LISTEN"
}
refuse_if_listening() { # refuse_if_listening HOST:PORT: dies when something answers there
  if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then die "$1 is in use"; fi
}

# ---- state for the cleanup ----------------------------------------------------------------
# bench_state PREFIX: scratch dir SCR=/tmp/PREFIX.XXXXXX with DATA (the server's) and SAMPLES,
# no server yet, no helper processes yet (HELPER_PIDS: the script's own, e.g. the peers it
# measures against, which cleanup_standard stops first), ip_forward as it is now, our memory
# cgroup ME, and in CG_NEW the cgroup dirs Dash (cgroup parent "dash" under $ME) or a runtime
# (absolute $ME/… paths, copied into every v1 hierarchy; runc: "dash" relative to the root in
# most hierarchies) may create: the ones missing now are ours to rmdir at the end.
bench_state() {
  local h p part parts
  SCR=$(mktemp -d "/tmp/$1.XXXXXX")
  DATA=$SCR/data
  SAMPLES=$SCR/samples
  mkdir -p "$DATA" "$SAMPLES"
  SERVER_PID=
  HELPER_PIDS=()
  OWN_NET=0                      # set once we start the server (bridge, table, run dir are ours)
  FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
  ME=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
  [ "$ME" = / ] && ME=
  CG_NEW=()
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    p=
    IFS=/ read -ra parts <<<"${ME#/}"
    for part in "${parts[@]}" dash; do
      [ -n "$part" ] || continue
      p=$p/$part
      [ -d "$h$p" ] || CG_NEW+=("$h$p")
    done
    [ -d "$h/dash" ] || CG_NEW+=("$h/dash")
  done
}

server_alive() { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; }

stop_pid() { # stop_pid PID: TERM, up to 10 s, then KILL; reaps it
  local pid=$1 t
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  t=$SECONDS
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t)) -lt 10 ]; do sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  wait "$pid" 2>/dev/null
  return 0
}

# ---- cleanup pieces (a script's cleanup calls them, on EXIT) ------------------------------
trap_cleanup() { # the script's cleanup runs on exit, also on error or Ctrl-C
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
trap_error() { # the ERR trap that says where the script failed
  trap 'log "error: exit $? at line $LINENO: $BASH_COMMAND"' ERR
}
# on_exit CMD...: the script's cleanup (trap_cleanup): cleanup_begin, then CMD... (it finds the
# script's exit status in rc), then the exit with that status.
on_exit() {
  CLEANUP_CMD=("$@")
  cleanup() {
    local rc=$?
    cleanup_begin
    "${CLEANUP_CMD[@]}"
    exit "$rc"
  }
  trap_cleanup
}
# standard_cleanup [EXTRA-STEP [EXTRA-LEFT]]: the cleanup of a script that starts one `dash
# server` (and the processes in HELPER_PIDS, and what EXTRA-STEP removes: cleanup_standard) on
# exit, also on error or Ctrl-C, and the ERR trap that says where it failed.
standard_cleanup() {
  on_exit cleanup_standard "$@"
  trap_error
}
cleanup_begin() {
  set +e
  # A cleanup step that finds nothing to remove returns non-zero: not an error to report.
  trap - EXIT INT TERM ERR
  log "cleaning up"
}
# mounts_under DIR...: the mounts at or below a DIR, one a line, deepest first
mounts_under() {
  local re
  re=$(IFS='|'; echo "$*")
  { findmnt -rn -o TARGET | grep -E "^($re)(/|$)" || true; } | sort -r
}
umount_under() { # umount_under DIR...: those mounts unmounted (lazily when busy)
  local m
  mounts_under "$@" | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  return 0
}
# rmdir_cgroup PATH: the cgroup PATH (from a hierarchy's root, e.g. $ME/x) and the cgroups
# beneath it removed, deepest first, in every hierarchy; cgroup_left PATH: " DIR" for each
# hierarchy that still has it.
rmdir_cgroup() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}$1" ] && find "${h%/}$1" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}
cgroup_left() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h%/}$1" ] && printf ' %s' "${h%/}$1"
  done
  return 0
}

# Once the server is gone: mounts under RUN_DIR and SCR, bridge, nft table, run dir, if ours.
cleanup_net() {
  [ "$OWN_NET" = 1 ] || return 0
  umount_under "$RUN_DIR" "$SCR"
  [ -e "/sys/class/net/$BRIDGE" ] && ip link del "$BRIDGE"
  local family
  for family in ip bridge; do # the bridge table: the isolation of networks
    if nft list table "$family" "$NFT_TABLE" >/dev/null 2>&1; then
      nft delete table "$family" "$NFT_TABLE"
    fi
  done
  rm -rf --one-file-system "$RUN_DIR"
}
# The cgroup dirs in CG_NEW (deepest first), then ip_forward put back unless another Dash
# network (table ip dash*) now relies on it.
cleanup_cgroups_forward() {
  local i
  for ((i = ${#CG_NEW[@]} - 1; i >= 0; i--)); do
    [ -d "${CG_NEW[i]}" ] && rmdir "${CG_NEW[i]}" 2>/dev/null
  done
  if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$FORWARD_BEFORE" ] &&
    ! nft list tables 2>/dev/null | grep -q '^table ip dash'; then
    echo "$FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward
  fi
  return 0
}
# stop_dash: the server's services removed (waiting up to 60 s for their replicas to go), then
# the server stopped. Nothing when it is not running.
stop_dash() {
  server_alive || return 0
  local s
  for s in $("$DASH" service ls -o json 2>/dev/null | jq -r '.[].spec.name'); do
    "$DASH" service rm "$s" >/dev/null 2>&1
  done
  for _ in $(seq 300); do
    [ "$("$DASH" service ls -o json 2>/dev/null | jq length)" = 0 ] && break
    sleep 0.2
  done
  stop_pid "$SERVER_PID"
}

# cleanup_standard [EXTRA-STEP [EXTRA-LEFT]]: the whole cleanup of a bench with one dash server
# (the processes in HELPER_PIDS stopped first, and EXTRA-STEP, e.g. docker_cleanup, after its
# network), then the one line saying what is left (with what EXTRA-LEFT, e.g. docker_left,
# finds).
cleanup_standard() {
  local left p
  for p in ${HELPER_PIDS[@]+"${HELPER_PIDS[@]}"}; do stop_pid "$p"; done
  stop_dash
  cleanup_net
  [ -n "${1:-}" ] && "$1"
  cleanup_cgroups_forward
  rm -rf --one-file-system "$SCR"
  left=$(net_left)$(cgroups_left)
  [ -n "${2:-}" ] && left+=$("$2")
  [ -e "$SCR" ] && left+=" $SCR"
  if [ -n "$left" ]; then echo "cleanup: LEFT BEHIND:$left"; else echo "cleanup: nothing left behind"; fi
}

# What is left of the server's network, run dir and mounts, and of CG_NEW: " what" each.
net_left() {
  [ -e "/sys/class/net/$BRIDGE" ] && printf ' %s' "bridge:$BRIDGE"
  nft list table ip "$NFT_TABLE" >/dev/null 2>&1 && printf ' %s' "nft:$NFT_TABLE"
  nft list table bridge "$NFT_TABLE" >/dev/null 2>&1 && printf ' %s' "nft:bridge:$NFT_TABLE"
  [ -e "$RUN_DIR" ] && printf ' %s' "$RUN_DIR"
  [ -n "$(mounts_under "$RUN_DIR" "$SCR")" ] && printf ' %s' mounts
  return 0
}
cgroups_left() {
  local d
  for d in "${CG_NEW[@]}"; do [ -d "$d" ] && printf ' %s' "$d"; done
  return 0
}

# ---- helpers ------------------------------------------------------------------------------
# stats FILE → "n min median max" of the numbers in FILE
stats() {
  sort -n "$1" | awk '{a[NR]=$1} END {
    if (NR == 0) { print "0 - - -"; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%d %.1f %.1f %.1f\n", NR, a[1], m, a[NR] }'
}
median() { stats "$1" | awk '{print $3}'; }
# record_wrk NAME OUT: from wrk --latency output OUT, records NAME-rps, NAME-p50 and NAME-p99
# (ms) and logs them; a run with socket errors is logged as such.
record_wrk() {
  local name=$1 out=$2 p
  grep -q "Socket errors" "$out" && log "$name: $(grep -E 'Socket errors' "$out")"
  record "$name-rps" "$(awk '/^Requests\/sec/{printf "%d", $2}' "$out")"
  # wrk's percentiles: "     99%    1.23ms" (us, ms or s).
  for p in 50 99; do
    record "$name-p$p" "$(awk -v p="$p%" '$1 == p {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+/, "", v);
      printf "%.3f", (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v}' "$out")"
  done
  log "$name: $(tail -1 "$SAMPLES/$name-rps") req/s, p99 $(tail -1 "$SAMPLES/$name-p99") ms"
}
# med FILE: the median of FILE's numbers with three decimals
med() { sort -n "$1" | awk '{a[NR] = $1} END {printf "%.3f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
record() { echo "$2" >>"$SAMPLES/$1"; } # record SAMPLES-FILE VALUE
load() { uptime | sed 's/.*load average/load average/'; }
# free_port → a TCP port on 127.0.0.1 free now (the kernel's pick)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for WHAT SECONDS COMMAND...: COMMAND every WAIT_POLL seconds (default 0.2) until it
# succeeds; dies after SECONDS.
wait_for() {
  local what=$1 secs=$2 end=$((SECONDS + $2))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || die "$what: not within $secs s"
    sleep "${WAIT_POLL:-0.2}"
  done
}

# tee_report: from here on, everything on stdout also goes to OUT (SCR/report.txt); the script's
# cleanup calls tee_report_end RC, which copies it to RESULT when RC (the exit status) is 0.
tee_report() {
  OUT=$SCR/report.txt
  exec 4>&1
  exec > >(tee "$OUT" >&4)
  TEE_PID=$!
}
tee_report_end() {
  # Let tee finish (not forever: a copy of the pipe the shell may still hold keeps it open).
  exec >&4 4>&-
  for _ in $(seq 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$TEE_PID" 2>/dev/null && kill -TERM "$TEE_PID"
  wait "$TEE_PID" 2>/dev/null
  if [ "$1" = 0 ]; then
    cp "$OUT" "$RESULT" && log "report written to ${RESULT#"$ROOT"/}"
  fi
  return 0
}

# cgroup_mode → v1 | hybrid | v2: how this host mounts its cgroups
cgroup_mode() {
  if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then echo v2
  elif [ -d /sys/fs/cgroup/unified ]; then echo hybrid
  else echo v1; fi
}

# header WHAT [TOOL-VERSIONS]: the report's first lines: title and date, the machine (cores,
# memory, kernel, cgroup mode), the commit of the dash tree and its binaries (DASH; unset when
# the bench runs no dash binary), the versions of the tools compared, and the load before the
# run.
header() {
  echo "# Dash $1 bench, $(date -Is)"
  echo "machine: $(uname -n), $(nproc) cores, $(awk '/MemTotal/{printf "%.1f GB", $2/1048576}' /proc/meminfo), kernel $(uname -r), cgroup $(cgroup_mode)"
  local commit
  # Dirty: changed against the commit, results files aside (a bench writing over its own
  # results file is not a change of what it measures).
  commit="commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet -- . ':!bench/results' 2>/dev/null || echo '+dirty')"
  if [ -n "${DASH:-}" ]; then
    echo "dash: $commit, binaries $BIN_DIR (dash built $(date -r "$DASH" '+%F %T'))"
  else
    echo "dash: $commit (no dash binary in this run)"
  fi
  [ -n "${2:-}" ] && echo "tools: $2"
  echo "load before the run: $(load)"
}

# versions TOOL...: "crun 1.8.1, runc 1.1.5, …" for the tools installed
versions() {
  local t out=()
  for t in "$@"; do
    command -v "$t" >/dev/null || continue
    case $t in
      crun) out+=("$(crun --version | head -1)") ;;
      runc) out+=("runc $(runc --version | awk 'NR==1{print $3}')") ;;
      podman) out+=("$(podman --version)") ;;
      docker) out+=("$(/usr/bin/docker --version | sed 's/,.*//')") ;;
      haproxy) out+=("$(haproxy -v | head -1 | awk '{print "haproxy", $3}')") ;;
      nginx) out+=("$(nginx -v 2>&1 | sed 's/.*: //')") ;;
      wrk) out+=("$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')") ;;
      skopeo) out+=("$(skopeo --version)") ;;
      docker-registry) out+=("docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')") ;;
      dnsperf) out+=("dnsperf $(dnsperf -h 2>&1 | awk '/^Version/{print $2}')") ;;
      dnsmasq) out+=("$(dnsmasq --version | head -1 | awk '{print $1, $3}')") ;;
      unbound) out+=("unbound $(unbound -V 2>/dev/null | awk '/^Version/{print $2}')") ;;
      nft) out+=("$(nft --version | awk '{print $1, $2}')") ;;
      *) out+=("$t") ;;
    esac
  done
  local IFS=,
  echo "${out[*]}" | sed 's/,/, /g'
}

# ---- dash server --------------------------------------------------------------------------
# start_server: `dash server` on LISTEN with its own bridge, table, run dir and node name, its
# proxy on PROXY_LISTEN (default: a port the kernel picks), data in DATA, log in SCR/server.log;
# returns once it answers. DASH_ADDR and DASH_DATA_DIR point
# the dash client at it.
start_server() {
  log "starting dash server (data $DATA)"
  OWN_NET=1
  export DASH_ADDR=$LISTEN DASH_DATA_DIR=$DATA
  # 4>&-: pull.sh's copy of its stdout (for tee) is not the server's to keep open.
  # SERVER_FLAGS (an array, optional): more `dash server` flags.
  setsid "$DASH" server --data-dir "$DATA" --listen "$LISTEN" --bridge "$BRIDGE" \
    --subnet "$SUBNET" --nft-table "$NFT_TABLE" --run-dir "$RUN_DIR" --node-name "$NODE" \
    --proxy-listen "${PROXY_LISTEN:-127.0.0.1:0}" --cgroup-parent "${CGROUP_PARENT:-dash}" \
    ${SERVER_FLAGS[@]+"${SERVER_FLAGS[@]}"} </dev/null >>"$SCR/server.log" 2>&1 4>&- &
  SERVER_PID=$!
  for _ in $(seq 300); do
    "$DASH" node ls -o json >/dev/null 2>&1 && break
    server_alive || { cat "$SCR/server.log" >&2; die "dash server exited"; }
    sleep 0.1
  done
  "$DASH" node ls -o json >/dev/null 2>&1 || { tail "$SCR/server.log" >&2; die "dash server not answering"; }
}

# ---- replicas -----------------------------------------------------------------------------
# busybox_image: the busybox rootfs (demo/make-busybox-rootfs.sh, SCR/bb.tar) imported as bb:1
busybox_image() {
  "$ROOT/demo/make-busybox-rootfs.sh" "$SCR/bb.tar"
  "$DASH" image import --rootfs "$SCR/bb.tar" bb:1 >/dev/null
}

# sleep_toml NAME SECONDS [LINE...]: SCR/NAME.toml, the service NAME of image bb:1 running
# `sleep SECONDS`, then each LINE as it is (replicas = 10, [update], …).
sleep_toml() {
  local name=$1 secs=$2
  shift 2
  printf 'name = "%s"\nimage = "bb:1"\ncommand = ["sleep", "%s"]\n' "$name" "$secs" >"$SCR/$name.toml"
  [ $# = 0 ] || printf '%s\n' "$@" >>"$SCR/$name.toml"
}

running_count() { "$DASH" ps -o json | jq '[.[] | select(.state == "running")] | length'; }
# wait_running N: until N replicas run (polled every 0.5 s, at most 600 times); dies when not.
wait_running() {
  local n
  for _ in $(seq 600); do
    [ "$(running_count)" = "$1" ] && break
    sleep 0.5
  done
  n=$(running_count)
  [ "$n" = "$1" ] || die "only $n of $1 replicas running"
}

# port_service NAME IMAGE PORT ARG...: service NAME, one replica of IMAGE running ARG... that
# serves container port PORT (so the service has a virtual IP), and the client replica to
# reach it from (client_replica 2); sets VIP, the service's virtual IP.
port_service() {
  local name=$1 image=$2 port=$3 args
  shift 3
  args=$(printf '"%s", ' "$@")
  cat >"$SCR/$name.toml" <<TOML
name = "$name"
image = "$image"
command = [${args%, }]
[[ports]]
container = $port
TOML
  "$DASH" apply -f "$SCR/$name.toml" >/dev/null
  client_replica 2
  VIP=$("$DASH" service inspect "$name" | jq -r .vip)
  [ "$VIP" != null ] || die "$name has no virtual IP"
}

# client_replica RUNNING: a replica to measure from, inside the cluster's network — service
# `client` (image bb:1, imported by the caller, sleeping) — then waits until RUNNING replicas
# run in all; sets CLIENT_ID and NETNS (its network namespace, for `nsenter --net`).
client_replica() {
  sleep_toml client 100000
  "$DASH" apply -f "$SCR/client.toml" >/dev/null
  for _ in $(seq 300); do
    [ "$(running_count)" = "$1" ] && break
    sleep 0.1
  done
  CLIENT_ID=$("$DASH" ps -o json | jq -r '.[] | select(.service == "client") | .id')
  NETNS=$RUN_DIR/netns/$CLIENT_ID
  [ -e "$NETNS" ] || die "the client replica's network namespace $NETNS is missing"
}

# ---- the observer -------------------------------------------------------------------------
# observer_start ARG...: the neutral observer (OBSERVE: ensure_observe) with ARG... (--cmdline
# CMD, …), its output on fd 7; returns once it is ready, so the clock can start.
# observer_next WHY: the next new process it saw, in SEEN_PID and SEEN_US (when, µs); dies
# with WHY when it saw none in its timeout. observer_end: the observer reaped, fd 7 closed.
observer_start() {
  local ready
  coproc OBS { "$OBSERVE" "$@"; }
  # A copy of its output: bash drops OBS once the observer exits, maybe before we read it all.
  exec 7<&"${OBS[0]}"
  OBS_JOB=$OBS_PID
  read -r ready <&7
  [ "$ready" = ready ] || die "the observer did not start"
}
observer_next() { read -r SEEN_PID SEEN_US <&7 || die "$1"; }
observer_end() { wait "$OBS_JOB" 2>/dev/null || true; exec 7<&-; }
