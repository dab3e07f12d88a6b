#!/usr/bin/env bash
# bench/proxy.sh: Dash's built-in L7 proxy as users run it — inside `dash server`, in front of a
# replica behind a `[[routes]]` entry — next to haproxy and nginx as reverse proxies to the same
# replica, in one run:
#
#   direct   wrk → the replica                (the ceiling: no proxy)
#   dash     wrk → `dash server`'s proxy (its --proxy-listen; route host bench.local) → replica
#   haproxy  wrk → haproxy (nbthread THREADS, mode http, http-reuse always, no log) → replica
#   nginx    wrk → nginx (worker_processes THREADS, upstream keepalive 64, HTTP/1.1, no log)
#            → replica
#   dash-lib (LIB=1) wrk → bench_proxy (crates/dash-proxy/examples/bench_proxy.rs: the proxy
#            library alone, THREADS runtime threads) → replica: what the product loses, if any
#
# The replica: nginx (Debian's nginx-light, 1 worker, access_log off, keep-alive) in a Dash
# container (bench/make-nginx-rootfs.sh), serving a FILE_BYTES file on its own address; Dash's
# proxy has 2 runtimes, haproxy 2 threads, nginx 2 workers (THREADS). Every proxy speaks
# HTTP/1.1 keep-alive to it and adds the forwarding headers Dash adds. Each measurement is a
# `wrk -t2 -c50 -d3s` warm-up and then `wrk -t2 -c50 -d10s --latency -H 'Host: bench.local'`;
# TRIALS rounds over the targets, interleaved, the order rotated per round; the whole is done
# RUNS times (separate runs: the verdict is "met" only when the median ratios hold in every
# run). The report: median req/s and p99 per target and run, ratios to haproxy. wrk, the
# proxies, `dash server` and the replica share the machine's cores: the CPU other processes use
# during each run is measured and reported.
#
#   bench/proxy.sh
#
# Run as root (as the other benches). Needs wrk, haproxy, nginx, curl, python3, jq
# (apt-get install wrk haproxy nginx-light; their system services are not used). Builds dash and
# dash-monitor (release) when missing, and bench_proxy when LIB=1. Everything it starts (server,
# replica, proxies, wrk), its network and its scratch dir are removed on exit, also on error or
# Ctrl-C. The output also goes to bench/results/proxy-<date>.txt (on success).
#
# Environment: BIN_DIR (default target/release), TRIALS (default 5), RUNS (default 2),
# DURATION (default 10s), WARMUP (default 3s; 0 skips the warm-ups), THREADS (proxy threads
# for haproxy, workers for nginx; Dash's proxy has one runtime per core), CONNS (default 50),
# WRK_THREADS (default 2), FILE_BYTES (default 1024), LIB (default 0; 1 adds dash-lib). On a
# shared machine: before each run it waits (at most QUIET_WAIT s, default 120) until other
# processes use less than QUIET_MAX % of a core (default 10), and a measured run during which
# they used more is redone, at most REDO times (default 3); the report says what they used.
# Progress: stderr.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"        # helpers; goes to the repo root (ROOT)

defaults TRIALS=5 RUNS=2 DURATION=10s WARMUP=3s THREADS=2 CONNS=50 WRK_THREADS=2 \
  FILE_BYTES=1024 LIB=0 QUIET_MAX=10 QUIET_WAIT=120 REDO=3

bench_net proxy 7393 10.98.3.0/24
HOST=bench.local
FILE=file.bin
TARGETS=(direct dash haproxy nginx)
[ "$LIB" = 1 ] && TARGETS+=(dash-lib)
RESULT=$ROOT/bench/results/proxy-$(date +%F).txt
HZ=$(getconf CLK_TCK)

[ "$TRIALS" -ge 1 ] || die "TRIALS must be ≥ 1"

# ---- state for the cleanup ----------------------------------------------------------------
bench_setup wrk haproxy nginx curl python3 setsid jq nft ip findmnt
chmod 755 "$SCR"                # nginx workers run as nobody: they read the temp dirs
PIDS=()                         # servers we started (haproxy, nginx, bench_proxy), by pid
NAMES=()
EXCL=()                         # more processes of ours for foreign_cpu (server, monitor, replica)
WRK_PID=

# Everything on stdout also goes to $OUT, copied to $RESULT when the run succeeds.
tee_report

proxy_cleanup() { # on_exit's (rc: the exit status)
  local left='' i pid k kids all_kids=''
  [ -n "$WRK_PID" ] && kill -0 "$WRK_PID" 2>/dev/null && kill -TERM "$WRK_PID" && wait "$WRK_PID" 2>/dev/null
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kids=$(pgrep -P "$pid" | tr '\n' ' ' || true)
    all_kids+=" $kids"
    stop_pid "$pid"
    for k in $kids; do # nginx workers outliving a killed master
      kill -0 "$k" 2>/dev/null && kill -KILL "$k"
    done
  done
  for ((i = 0; i < ${#PIDS[@]}; i++)); do
    kill -0 "${PIDS[i]}" 2>/dev/null && left+=" ${NAMES[i]}:${PIDS[i]}"
  done
  # The replica, then the server (it leaves containers running when it stops), its network.
  stop_dash
  cleanup_net
  cleanup_cgroups_forward
  left+=$(net_left)$(cgroups_left)
  for pid in $all_kids $(pgrep -f "$SCR/"); do # workers; anything still running from SCR
    [ "$pid" != "$TEE_PID" ] && kill -0 "$pid" 2>/dev/null && left+=" $(ps -o comm= -p "$pid"):$pid"
  done
  if [ -n "$left" ]; then
    echo "cleanup: LEFT BEHIND:$left"
  else
    echo "cleanup: nothing left behind (server, replica, proxies, wrk, network, scratch dir)"
  fi
  tee_report_end "$rc"
  rm -rf --one-file-system "$SCR"
  [ -e "$SCR" ] && log "LEFT BEHIND: $SCR"
}
on_exit proxy_cleanup
trap_error

# ---- helpers ------------------------------------------------------------------------------
start() { # start NAME LOG CMD...: CMD in its own session, recorded for the cleanup
  local name=$1 logf=$2
  shift 2
  setsid "$@" </dev/null >>"$logf" 2>&1 4>&- &
  PIDS+=("$!")
  NAMES+=("$name")
}

# wait_http NAME ADDR LOG [PID]: until GET /FILE at ADDR answers 200 with FILE_BYTES bytes
wait_http() {
  local name=$1 addr=$2 logf=$3 got='' pid=${4:-${PIDS[${#PIDS[@]} - 1]}}
  for _ in $(seq 100); do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $HOST" \
      "http://$addr/$FILE" 2>/dev/null || true)
    [ "$got" = "200 $FILE_BYTES" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "$name exited"; }
    sleep 0.1
  done
  tail "$logf" >&2
  die "$name at $addr not answering 200 with $FILE_BYTES bytes (got: ${got:-nothing})"
}

# cpu_snap: "pid ppid ticks comm" of every process, kernel threads left out
cpu_snap() {
  # (cat fails when a process exits between the glob and the read: not an error here)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
    pid = $1; c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) [A-Za-z] .*/, "", c); gsub(/[^A-Za-z0-9_.:-]/, "_", c)
    s = $0; sub(/.*\) /, "", s); split(s, f, " ")
    # f[1] state, f[2] ppid, f[7] flags (PF_KTHREAD 0x200000), f[12] utime, f[13] stime
    if (pid == 2 || f[2] == 2) next
    print pid, f[2], f[12] + f[13], c }'
}

# foreign_cpu BEFORE AFTER SECONDS EXCLUDE...: "PCT TOP" — CPU (% of one core) that processes
# other than ours (this shell's descendants and EXCLUDE) used between the two snapshots, and the
# busiest of them as comm:pct
foreign_cpu() {
  local before=$1 after=$2 secs=$3
  shift 3
  awk -v hz="$HZ" -v secs="$secs" -v me="$$" -v excl="$*" '
    BEGIN { n = split(excl, e, " "); for (i = 1; i <= n; i++) ours[e[i]] = 1 }
    FNR == NR { t0[$1] = $3; next }
    { pp[$1] = $2; t[$1] = $3; comm[$1] = $4 }
    END {
      for (p in t) {
        q = p; mine = 0
        for (d = 0; d < 64 && q != "" && q != 0 && q != 1; d++) {
          if (q == me || (q in ours)) { mine = 1; break }
          q = pp[q]
        }
        if (mine) continue
        dt = t[p] - ((p in t0) ? t0[p] : 0)
        if (dt <= 0) continue
        sum += dt; by[comm[p]] += dt
      }
      top = "-"; best = 0
      for (c in by) if (by[c] > best) { best = by[c]; top = c }
      f = 100 / (hz * secs)
      if (best * f < 1) top = "-"; else top = sprintf("%s:%.0f%%", top, best * f)
      printf "%.0f %s\n", sum * f, top }' "$before" "$after"
}

# backend_accepts: connections the replica has accepted so far (its stub_status)
backend_accepts() {
  curl -s "http://$BACKEND/status" | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ *$/ {print $1; exit}'
}

# to_ms VALUE-WITH-UNIT (wrk: 512.00us, 1.23ms, 1.02s, 2.00m) → milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    u = v; sub(/^[0-9.]+/, "", u); n = v + 0
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    else if (u != "ms") { print "nan"; exit }
    printf "%.3f\n", n }'
}

addr_of() { # addr_of TARGET
  case $1 in
    direct) echo "$BACKEND" ;; dash) echo "$DASH_PROXY" ;; dash-lib) echo "127.0.0.1:$LIB_PORT" ;;
    haproxy) echo "127.0.0.1:$HAPROXY_PORT" ;; nginx) echo "127.0.0.1:$NGINX_PORT" ;;
  esac
}

# run_wrk OUTFILE DURATION TARGET [--latency]: wrk in the background (the cleanup can stop it)
run_wrk() {
  local outf=$1 dur=$2 addr
  addr=$(addr_of "$3")
  shift 3
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"$dur" "$@" -H "Host: $HOST" \
    "http://$addr/$FILE" >"$outf" 2>&1 4>&- &
  WRK_PID=$!
  wait "$WRK_PID" || { cat "$outf" >&2; die "wrk against $1 failed"; }
  WRK_PID=
}

# ---- build --------------------------------------------------------------------------------
if [ "$LIB" = 1 ]; then
  # Built here for the default BIN_DIR; another (e.g. target/profiling, with symbols for perf)
  # must hold examples/bench_proxy already.
  if [ "$BIN_DIR" = "$ROOT/target/release" ]; then
    log "building bench_proxy (release)"
    cargo build --release -p dash-proxy --example bench_proxy >&2
  fi
  [ -x "$BIN_DIR/examples/bench_proxy" ] || die "$BIN_DIR/examples/bench_proxy missing"
  # A copy: another build may replace it during the run.
  cp "$BIN_DIR/examples/bench_proxy" "$SCR/bench_proxy"
fi

# ---- header -------------------------------------------------------------------------------
header proxy "$(versions haproxy nginx wrk)"
echo "replica: nginx in a Dash container, 1 worker, access_log off, GET /$FILE ($FILE_BYTES bytes), keep-alive"
echo "proxies: dash server's proxy (one runtime per core), haproxy nbthread $THREADS, nginx worker_processes $THREADS; all add X-Forwarded-For/-Proto/-Host and Forwarded"
echo "load: wrk ($WRK_THREADS threads, $CONNS connections, keep-alive), the proxy under test, dash server and the replica all share the $(nproc) cores"
echo "trials: $TRIALS per target and run (interleaved, order rotated per trial), $RUNS runs; each a ${WARMUP} warm-up (uncounted) and a $DURATION run"
echo "        before each: wait ≤ ${QUIET_WAIT}s for other processes < ${QUIET_MAX}% of a core; a run they disturbed (≥ ${QUIET_MAX}%) is redone ≤ $REDO times"

# ---- the replica --------------------------------------------------------------------------
DASH_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
NGINX_PORT=$(free_port)
LIB_PORT=$(free_port)
ports=$(printf '%s\n' "$DASH_PORT" "$HAPROXY_PORT" "$NGINX_PORT" "$LIB_PORT" | sort -u | wc -l)
[ "$ports" = 4 ] || die "got the same free port twice; run again"
DASH_PROXY=127.0.0.1:$DASH_PORT
PROXY_LISTEN=$DASH_PROXY
mkdir -p "$SCR/nginx" "$SCR/haproxy"

"$ROOT/bench/make-nginx-rootfs.sh" "$SCR/nginx.tar" "$FILE_BYTES"
start_server
"$DASH" image import --rootfs "$SCR/nginx.tar" ngx:1 >/dev/null
cat >"$SCR/backend.toml" <<EOF
name = "backend"
image = "ngx:1"
command = ["/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf"]
stop_grace_period = "1s"
[[routes]]
host = "$HOST"
port = 80
EOF
# The replica's config answers /status (stub_status) for the keep-alive check.
"$DASH" apply -f "$SCR/backend.toml" >/dev/null
for _ in $(seq 300); do
  IP=$("$DASH" ps backend -o json | jq -r '.[] | select(.state == "running") | .ip' | head -1)
  [ -n "$IP" ] && break
  sleep 0.1
done
[ -n "$IP" ] || { "$DASH" ps backend >&2; die "the nginx replica is not running"; }
BACKEND=$IP:80
REPLICA_ID=$("$DASH" ps backend -o json | jq -r '.[0].id')
MONITOR_PID=$(cat "$DATA/containers/$REPLICA_ID/monitor.pid")
EXCL=("$SERVER_PID" "$MONITOR_PID")
log "the replica $REPLICA_ID serves on $BACKEND"
wait_http replica "$BACKEND" "$SCR/server.log" "$SERVER_PID"
wait_http "dash server's proxy" "$DASH_PROXY" "$SCR/server.log" "$SERVER_PID"

nginx_common() { # nginx_common DIR WORKERS
  cat <<EOF
worker_processes $2;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_temps() {
  local t
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $1/tmp-$t;"; done
}

# ---- the proxies --------------------------------------------------------------------------
hap_headers="  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request add-header Forwarded for=%[src]"
ngx_headers="      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header Forwarded for=\$remote_addr;"
cat >"$SCR/haproxy/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 4000
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  http-reuse always
$hap_headers
  server s1 $BACKEND
EOF
haproxy -c -q -f "$SCR/haproxy/haproxy.cfg" >&2 || die "haproxy config rejected"
log "starting haproxy on 127.0.0.1:$HAPROXY_PORT"
start haproxy "$SCR/haproxy/out.log" haproxy -db -f "$SCR/haproxy/haproxy.cfg"
wait_http haproxy "127.0.0.1:$HAPROXY_PORT" "$SCR/haproxy/out.log"

{
  nginx_common "$SCR/nginx" "$THREADS"
  cat <<EOF
http {
  access_log off;
$(nginx_temps "$SCR/nginx")
  keepalive_timeout 65s;
  keepalive_requests 1000000000;
  upstream backend {
    server $BACKEND;
    keepalive 64;
    keepalive_requests 1000000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
$ngx_headers
    }
  }
}
EOF
} >"$SCR/nginx/nginx.conf"
nginx -t -q -p "$SCR/nginx/" -e "$SCR/nginx/error.log" -c "$SCR/nginx/nginx.conf" ||
  { cat "$SCR/nginx/error.log" >&2; die "proxy nginx config rejected"; }
log "starting nginx (proxy) on 127.0.0.1:$NGINX_PORT"
start nginx "$SCR/nginx/out.log" \
  nginx -p "$SCR/nginx/" -e "$SCR/nginx/error.log" -c "$SCR/nginx/nginx.conf"
wait_http nginx "127.0.0.1:$NGINX_PORT" "$SCR/nginx/error.log"

if [ "$LIB" = 1 ]; then
  log "starting bench_proxy on 127.0.0.1:$LIB_PORT"
  start dash-lib "$SCR/dash-lib.log" "$SCR/bench_proxy" "127.0.0.1:$LIB_PORT" "$THREADS" "$BACKEND"
  wait_http dash-lib "127.0.0.1:$LIB_PORT" "$SCR/dash-lib.log"
fi

# ---- the runs -----------------------------------------------------------------------------
mkdir -p "$SCR/samples" "$SCR/wrk"
echo
echo "## per run: req/s, p99, errors (wrk socket errors + non-2xx), connections the backend accepted
## during the run (keep-alive check: ~0 for a pooling proxy), other processes' CPU (% of one core)"
# wait_quiet: until other processes use less than QUIET_MAX % of a core (1 s samples), at
# most QUIET_WAIT seconds; adds the seconds waited to WAITED
wait_quiet() {
  local t=$SECONDS c
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  while :; do
    cpu_snap >"$SCR/q0"
    sleep 1
    cpu_snap >"$SCR/q1"
    c=$(foreign_cpu "$SCR/q0" "$SCR/q1" 1 ${PIDS[@]+"${PIDS[@]}"} "${EXCL[@]}")
    [ "${c%% *}" -lt "$QUIET_MAX" ] && break
    if [ $((SECONDS - t)) -ge "$QUIET_WAIT" ]; then
      log "other processes still use ${c%% *}% of a core (busiest: ${c#* }); going on"
      break
    fi
    log "waiting for other processes to go quiet: ${c%% *}% of a core (busiest: ${c#* })"
    sleep 1
  done
  WAITED=$((WAITED + SECONDS - t))
}

run_one() { # run_one TRIAL TARGET: a warm-up and a measured run, redone while disturbed
  local trial=$1 t=$2 f rps p99raw p99 errs s0 s1 cpu a0 a1 attempt
  f=$SCR/wrk/$t-$trial.txt
  for ((attempt = 1; ; attempt++)); do
    wait_quiet
    if [ "$WARMUP" != 0 ]; then run_wrk "$SCR/wrk/warm.txt" "$WARMUP" "$t"; fi
    a0=$(backend_accepts)
    cpu_snap >"$SCR/cpu0"
    s0=$EPOCHREALTIME
    run_wrk "$f" "$DURATION" "$t" --latency
    s1=$EPOCHREALTIME
    cpu_snap >"$SCR/cpu1"
    a1=$(backend_accepts)
    cpu=$(foreign_cpu "$SCR/cpu0" "$SCR/cpu1" "$(awk -v a="$s0" -v b="$s1" 'BEGIN{print b - a}')" ${PIDS[@]+"${PIDS[@]}"} "${EXCL[@]}")
    [ "${cpu%% *}" -ge "$QUIET_MAX" ] || break
    [ "$attempt" -le "$REDO" ] || break
    REDONE=$((REDONE + 1))
    log "$t: other processes used ${cpu%% *}% of a core (busiest: ${cpu#* }): redoing the run"
  done
  rps=$(awk '/^Requests\/sec:/{print $2}' "$f")
  p99raw=$(awk '$1=="99%"{print $2}' "$f")
  if [ -z "$rps" ] || [ -z "$p99raw" ]; then cat "$f" >&2; die "could not parse wrk's output ($t)"; fi
  p99=$(to_ms "$p99raw")
  errs=$(awk '/Socket errors:/{gsub(/,/, ""); s += $4 + $6 + $8 + $10} /Non-2xx/{s += $NF} END{print s + 0}' "$f")
  echo "$rps" >>"$SAMPLES_RUN/$t.rps"
  echo "$p99" >>"$SAMPLES_RUN/$t.p99"
  echo "$errs" >>"$SAMPLES_RUN/$t.err"
  echo "${cpu%% *}" >>"$SCR/samples/foreign.cpu"
  printf 'run %d trial %d  %-8s %10.0f req/s  p99 %8.2f ms  errors %d  backend conns opened %4d  other cpu %3s%% (busiest: %s)\n' \
    "$RUN" "$trial" "$t" "$rps" "$p99" "$errs" $((a1 - a0 - 1)) "${cpu%% *}" "${cpu#* }"
}
WAITED=0
REDONE=0
n=${#TARGETS[@]}
for ((RUN = 1; RUN <= RUNS; RUN++)); do
  SAMPLES_RUN=$SCR/samples/run$RUN
  mkdir -p "$SAMPLES_RUN"
  for ((trial = 1; trial <= TRIALS; trial++)); do
    for ((k = 0; k < n; k++)); do
      t=${TARGETS[(k + trial - 1) % n]}
      log "run $RUN/$RUNS, trial $trial/$TRIALS: $t"
      run_one "$trial" "$t"
    done
  done
done

# ---- the report ---------------------------------------------------------------------------
# med FILE [FMT] → median; range FILE → "min..max"
med() {
  sort -g "$1" | awk -v fmt="${2:-%.2f}" '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf fmt "\n", m }'
}
range() { sort -g "$1" | awk -v fmt="${2:-%.2f}" 'NR == 1 {lo = $1} {hi = $1} END {printf fmt ".." fmt "\n", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f\n", a / b; else print "-" }'; }

echo
echo "## wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency, GET /$FILE ($FILE_BYTES bytes), Host: $HOST; medians over $TRIALS trials per run"
echo "ratios to haproxy: req/s ratio > 1 = more throughput than haproxy; p99 ratio < 1 = lower tail latency than haproxy"
VERDICT=MET
for ((RUN = 1; RUN <= RUNS; RUN++)); do
  S=$SCR/samples/run$RUN
  H_RPS=$(med "$S/haproxy.rps" %.1f)
  H_P99=$(med "$S/haproxy.p99" %.3f)
  echo
  echo "run $RUN:"
  printf '%-8s %12s %21s %11s %17s %12s %10s %7s\n' target 'req/s' '(min..max)' 'p99 ms' '(min..max)' 'req/s/hap' 'p99/hap' errors
  for t in "${TARGETS[@]}"; do
    rps=$(med "$S/$t.rps" %.1f)
    p99=$(med "$S/$t.p99" %.3f)
    printf '%-8s %12.0f %21s %11.2f %17s %12s %10s %7d\n' "$t" "$rps" "$(range "$S/$t.rps" %.0f)" \
      "$p99" "$(range "$S/$t.p99")" "$(ratio "$rps" "$H_RPS")" "$(ratio "$p99" "$H_P99")" \
      "$(awk '{s += $1} END {print s + 0}' "$S/$t.err")"
  done
  R_RPS=$(ratio "$(med "$S/dash.rps" %.1f)" "$H_RPS")
  R_P99=$(ratio "$(med "$S/dash.p99" %.3f)" "$H_P99")
  v=$(awk -v r="$R_RPS" -v p="$R_P99" 'BEGIN { print (r >= 1 && p <= 1) ? "held" : "not held" }')
  [ "$v" = held ] || VERDICT=MISSED
  echo "run $RUN dash/haproxy: req/s ratio $R_RPS (target ≥ 1), p99 ratio $R_P99 (target ≤ 1): $v"
done
echo
echo "target (dash server's proxy ≥ haproxy in req/s and ≤ in p99, the median ratios holding in all $RUNS runs): $VERDICT"
echo "other processes' CPU during the measured runs (% of one core): median $(med "$SCR/samples/foreign.cpu" %.0f), max $(sort -g "$SCR/samples/foreign.cpu" | tail -1)"
echo "waited ${WAITED}s in all for other processes to go quiet (< ${QUIET_MAX}% of a core); $REDONE runs redone as disturbed"
FOREIGN_MAX=$(sort -g "$SCR/samples/foreign.cpu" | tail -1)
if [ "$FOREIGN_MAX" -ge "$QUIET_MAX" ]; then
  echo "WARNING: other processes used up to ${FOREIGN_MAX}% of a core during some runs: those numbers are disturbed"
fi
echo "load at end: $(load)"
if grep -qi 'panic\|ERROR' "$SCR/server.log"; then
  echo "dash server log (errors):"
  grep -i 'panic\|ERROR' "$SCR/server.log" | tail -5 | sed 's/^/  /'
fi
[ -s "$SCR/nginx/error.log" ] && { echo "nginx/error.log:"; tail -5 "$SCR/nginx/error.log" | sed 's/^/  /'; }
exit 0
