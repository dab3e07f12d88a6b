# shellcheck shell=bash
# bench/lib.sh: what bench/start-time.sh and bench/pull.sh share. Sourced (before their cd to
# the repo root) with
#
#   . "$(dirname "$0")/lib.sh"
#
# It goes to the repo root and sets ROOT; the rest is functions. They use the script's
# settings: BIN_DIR, LISTEN, BRIDGE, SUBNET, NFT_TABLE, RUN_DIR, NODE (set before calling
# them), and the state set by bench_state: SCR, DATA, SAMPLES, SERVER_PID, OWN_NET,
# FORWARD_BEFORE, ME, CG_NEW; start_server sets DASH_ADDR, DASH_DATA_DIR and SERVER_PID.
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

# ---- binaries -----------------------------------------------------------------------------
# ensure_binaries [WHY ARG...]: build dash and dash-monitor (release) when missing from BIN_DIR,
# or when `dash ARG...` fails (WHY then ends the error for a BIN_DIR other than the default);
# then BIN_DIR is absolute and DASH its dash.
ensure_binaries() {
  local why=${1:-}
  if [ ! -x "$BIN_DIR/dash" ] || [ ! -x "$BIN_DIR/dash-monitor" ] ||
    { [ $# -gt 1 ] && ! "$BIN_DIR/dash" "${@:2}" >/dev/null 2>&1; }; then
    [ "$BIN_DIR" = target/release ] || die "$BIN_DIR/dash or dash-monitor missing$why"
    log "building dash and dash-monitor (release)"
    cargo build --release -p dash -p dash-monitor >&2
  fi
  BIN_DIR=$(cd "$BIN_DIR" && pwd)
  DASH=$BIN_DIR/dash
}

# Refuse to run over someone else's things (the cleanup then removes only ours).
refuse_if_taken() {
  [ -e "/sys/class/net/$BRIDGE" ] && die "bridge $BRIDGE exists: another bench running?"
  nft list table ip "$NFT_TABLE" >/dev/null 2>&1 && die "nft table ip $NFT_TABLE exists"
  [ -e "$RUN_DIR" ] && die "$RUN_DIR exists"
  if (exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN#*:}") 2>/dev/null; then die "$LISTEN is in use"; fi
}

# ---- state for the cleanup ----------------------------------------------------------------
# bench_state PREFIX: scratch dir SCR=/tmp/PREFIX.XXXXXX with DATA (the server's) and SAMPLES,
# no server yet, ip_forward as it is now, our memory cgroup ME, and in CG_NEW the cgroup dirs
# Dash (cgroup parent "dash" under $ME) or a runtime (absolute $ME/… paths, copied into every
# v1 hierarchy; runc: "dash" relative to the root in most hierarchies) may create: the ones
# missing now are ours to rmdir at the end.
bench_state() {
  local h p part parts
  SCR=$(mktemp -d "/tmp/$1.XXXXXX")
  DATA=$SCR/data
  SAMPLES=$SCR/samples
  mkdir -p "$DATA" "$SAMPLES"
  SERVER_PID=
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
# standard_cleanup: the cleanup of a script that starts one `dash server` and nothing else of
# its own (cleanup_standard on exit, also on error or Ctrl-C), and the ERR trap that says
# where it failed.
standard_cleanup() {
  cleanup() {
    local rc=$?
    cleanup_begin
    cleanup_standard
    exit "$rc"
  }
  trap_cleanup
  trap 'log "error: exit $? at line $LINENO: $BASH_COMMAND"' ERR
}
cleanup_begin() {
  set +e
  # A cleanup step that finds nothing to remove returns non-zero: not an error to report.
  trap - EXIT INT TERM ERR
  log "cleaning up"
}
# Once the server is gone: mounts under RUN_DIR and SCR, bridge, nft table, run dir, if ours.
cleanup_net() {
  [ "$OWN_NET" = 1 ] || return 0
  findmnt -rn -o TARGET | grep -E "^($RUN_DIR|$SCR)(/|$)" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
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

# cleanup_standard [EXTRA-STEP]: the whole cleanup of a bench with one dash server (and
# EXTRA-STEP, e.g. docker_cleanup, after its network), then the one line saying what is left.
cleanup_standard() {
  local left
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
  findmnt -rn -o TARGET | grep -qE "^($RUN_DIR|$SCR)(/|$)" && printf ' %s' mounts
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

# client_replica RUNNING: a replica to measure from, inside the cluster's network — service
# `client` (image bb:1, imported by the caller, sleeping) — then waits until RUNNING replicas
# run in all; sets CLIENT_ID and NETNS (its network namespace, for `nsenter --net`).
client_replica() {
  cat >"$SCR/client.toml" <<TOML
name = "client"
image = "bb:1"
command = ["sleep", "100000"]
TOML
  "$DASH" apply -f "$SCR/client.toml" >/dev/null
  for _ in $(seq 300); do
    [ "$("$DASH" ps -o json | jq '[.[] | select(.state == "running")] | length')" = "$1" ] && break
    sleep 0.1
  done
  CLIENT_ID=$("$DASH" ps -o json | jq -r '.[] | select(.service == "client") | .id')
  NETNS=$RUN_DIR/netns/$CLIENT_ID
  [ -e "$NETNS" ] || die "the client replica's network namespace $NETNS is missing"
}
