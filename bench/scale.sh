#!/usr/bin/env bash
# bench/scale.sh: Dash at scale with its simulator (issue 16): three real masters (release
# binaries, Raft between them, no replicas of their own) and WORKERS simulated workers from
# `dash sim` (each its own key, certificate and mutual-TLS connection; containers simulated,
# START_TIME to start). SERVICES services of PER replicas each are applied at once:
#
#   - apply → every replica reported running (the fleet's own clock: first placement to last
#     running), and the rate;
#   - the masters' RSS (peak) and CPU (mean over the convergence), each;
#   - then KILL workers go silent at once: the time until the fleet serves as many replicas as
#     before (their replicas running elsewhere), from the kill.
#
# Targets (issue 16): 1,000,000 replicas on 10,000 workers converge in < 5 min, masters <= 2 GB
# RSS each. The peer is not run here: Nomad's C1M (1,000,000 containers on 5,000 hosts in
# under 5 minutes, 2016) and C2M (2,000,000 on 6,100 hosts in 22 minutes, 2020) are their
# published figures on their hardware, shown as documented, never as a ratio.
#
#   bench/scale.sh | tee bench/results/scale-$(date +%F).txt
#   WORKERS=500 SERVICES=2 PER=10000 KILL=50 bench/scale.sh     # the CI test's size
#
# Environment: BIN_DIR (target/release), WORKERS (10000), SERVICES (10), PER (100000), KILL
# (1000), START_TIME (50ms), DOWN_AFTER (10s), TIMEOUT_S (1800), KEEP_LOGS (a directory the
# masters' and the simulation's logs are copied to). Needs root, jq.
# Everything it makes (masters, the simulation, their bridges, tables, run dirs, scratch dir)
# is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults WORKERS=10000 SERVICES=10 PER=100000 KILL=1000 START_TIME=50ms DOWN_AFTER=10s \
  TIMEOUT_S=1800
CONTROL=127.0.0.1:7499
TOTAL=$((SERVICES * PER))

need_root_and jq
ensure_binaries
for i in 1 2 3; do
  [ -e "/sys/class/net/dashbsc$i" ] && die "bridge dashbsc$i exists: another bench running?"
  [ -e "/run/dash-bench-scale-$i" ] && die "/run/dash-bench-scale-$i exists"
  refuse_if_listening "127.0.0.1:74${i}0"
done
refuse_if_listening "$CONTROL"

SCR=$(mktemp -d /tmp/dash-bench-scale.XXXXXX)
PIDS=()
SIM_PID=
scale_cleanup() { # on_exit's
  [ -n "$SIM_PID" ] && stop_pid "$SIM_PID"
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  for i in 1 2 3; do
    [ -e "/sys/class/net/dashbsc$i" ] && ip link del "dashbsc$i"
    nft delete table ip "dash_bench_scale$i" 2>/dev/null
    nft delete table bridge "dash_bench_scale$i" 2>/dev/null
    rm -rf "/run/dash-bench-scale-$i"
  done
  if [ -n "${KEEP_LOGS:-}" ]; then
    mkdir -p "$KEEP_LOGS" && cp "$SCR"/*.log "$KEEP_LOGS"/ && log "logs kept in $KEEP_LOGS"
  fi
  rm -rf "$SCR"
}
on_exit scale_cleanup
trap_error

master() { # master I [--join TOKEN@ADDR]: `dash server` I on 127.0.0.1:74I0 (admin), :74I1 (cluster)
  local i=$1
  shift
  setsid "$DASH" server --data-dir "$SCR/m$i" --listen "127.0.0.1:74${i}0" --cluster-port "74${i}1" \
    --advertise-addr 127.0.0.1 --node-name "bench-m$i" --no-worker --bridge "dashbsc$i" \
    --nft-table "dash_bench_scale$i" --run-dir "/run/dash-bench-scale-$i" \
    --subnet "10.98.7$i.0/24" --cluster-cidr 10.64.0.0/10 --node-down-after "$DOWN_AFTER" \
    --cgroup-parent "dash-bench-scale-$i" "$@" </dev/null >>"$SCR/m$i.log" 2>&1 &
  PIDS+=($!)
}
rss_cpu() { # rss_cpu PID: "RSS_KB CPU_TICKS"
  awk '/^VmRSS/{print $2}' "/proc/$1/status" | tr '\n' ' '
  awk '{print $14 + $15}' "/proc/$1/stat"
}
report() { "$DASH" sim report --control "$CONTROL" -o json; }
masters_view() { # masters_view LABEL: the leader's own instruments (its /metrics), summed up
  local m
  m=$(curl -sf -H "Authorization: Bearer $DASH_TOKEN" "http://127.0.0.1:74${1}0/metrics") || return 0
  awk -v who="m$1" '
    /^dash_raft_apply_duration_seconds_(sum|count) / { a[$1] = $2 }
    /^dash_assignments_compute_duration_seconds_(sum|count) / { a[$1] = $2 }
    /^dash_reconcile_duration_seconds_(sum|count) / { a[$1] = $2 }
    /^dash_placements_total / { p = $2 }
    /^dash_watch_sent_bytes_total / { wb = $2 }
    /^dash_watch_sends_total / { ws = $2 }
    /^dash_assignment_lists_built_total / { lb = $2 }
    function mean(n) { return a[n "_count"] > 0 ? sprintf("%.1f ms", 1000 * a[n "_sum"] / a[n "_count"]) : "-" }
    END {
      printf "%s (its /metrics): proposals %d, applied after %s mean; reconcile passes %d, %s mean; assignment computations %d, %s mean, %d lists built; watches sent %d lists, %.1f MB; placements %d\n",
        who, a["dash_raft_apply_duration_seconds_count"], mean("dash_raft_apply_duration_seconds"),
        a["dash_reconcile_duration_seconds_count"], mean("dash_reconcile_duration_seconds"),
        a["dash_assignments_compute_duration_seconds_count"], mean("dash_assignments_compute_duration_seconds"),
        lb, ws, wb / 1e6, p
    }' <<<"$m"
}

{
  header "scale" "$("$DASH" --version 2>/dev/null || echo dash)"
  echo "fleet: $WORKERS simulated workers, $SERVICES services x $PER replicas = $TOTAL, start $START_TIME, --node-down-after $DOWN_AFTER, then $KILL workers killed"
}

log "starting three masters"
master 1
export DASH_ADDR=127.0.0.1:7410
for _ in $(seq 300); do [ -s "$SCR/m1/admin.token" ] && "$DASH" --addr "$DASH_ADDR" node ls >/dev/null 2>&1 && break; sleep 0.1; done
export DASH_TOKEN
DASH_TOKEN=$(cat "$SCR/m1/admin.token")
for i in 2 3; do
  master "$i" --join "$("$DASH" token create --role master --ttl 1h -o json | jq -r .token)@127.0.0.1:7411"
  for _ in $(seq 300); do
    [ "$("$DASH" cluster status -o json | jq '[.masters[] | select(.role == "follower")] | length')" -ge $((i - 1)) ] && break
    sleep 0.2
  done
done
export DASH_ADDR=127.0.0.1:7410,127.0.0.1:7420,127.0.0.1:7430

log "joining $WORKERS simulated workers"
TOKEN=$("$DASH" token create --role worker --ttl 2h -o json | jq -r .token)
setsid "$DASH" sim --join "$TOKEN@127.0.0.1:7411" --workers "$WORKERS" --start-time "$START_TIME" \
  --labels zone=a,zone=b,zone=c --control "$CONTROL" --join-rate 500 \
  --replicas-per-worker $(((TOTAL + WORKERS - 1) / WORKERS)) </dev/null >>"$SCR/sim.log" 2>&1 &
SIM_PID=$!
t=$(now_us)
until [ "$(report 2>/dev/null | jq .live)" = "$WORKERS" ]; do
  kill -0 "$SIM_PID" 2>/dev/null || { tail "$SCR/sim.log" >&2; die "dash sim exited"; }
  [ $(($(now_us) - t)) -lt 900000000 ] || die "the workers did not all join in 15 minutes"
  sleep 1
done
echo "join: $WORKERS workers in $(us_to_ms $(($(now_us) - t))) ms"

log "applying $TOTAL replicas"
declare -A RSS_PEAK CPU0
for i in 1 2 3; do
  read -r _ c <<<"$(rss_cpu "${PIDS[$((i - 1))]}")"
  CPU0[$i]=$c
  RSS_PEAK[$i]=0
done
for s in $(seq "$SERVICES"); do
  printf 'name = "scale-%d"\nimage = "sim/app:1"\nreplicas = %d\n[resources]\ncpu = 0.001\nmemory = "4MiB"\n' \
    "$s" "$PER" >"$SCR/scale-$s.toml"
  "$DASH" apply -f "$SCR/scale-$s.toml" >/dev/null
done
t=$(now_us)
while :; do
  for i in 1 2 3; do
    read -r r _ <<<"$(rss_cpu "${PIDS[$((i - 1))]}")"
    [ "$r" -gt "${RSS_PEAK[$i]}" ] && RSS_PEAK[$i]=$r
  done
  r=$(report)
  [ "$(jq -r '.converged and .replicas == '"$TOTAL" <<<"$r")" = true ] && break
  [ $(($(now_us) - t)) -lt $((TIMEOUT_S * 1000000)) ] || {
    echo "not converged after $TIMEOUT_S s: $(jq -c '{replicas, by_state, placements}' <<<"$r")"
    break
  }
  sleep 2
done
wall=$(($(now_us) - t))
ticks=$(getconf CLK_TCK)
echo "converge: $(jq -r '"\(.replicas) replicas running; first placement to last running \(.time_to_all_running_ms) ms; placements \(.placements_per_s_mean)/s mean, \(.placements_per_s_peak)/s peak"' <<<"$r")"
echo "converge (this script's clock, apply done to all running): $(us_to_ms "$wall") ms"
for i in 1 2 3; do
  read -r _ c <<<"$(rss_cpu "${PIDS[$((i - 1))]}")"
  echo "master m$i: peak RSS $((RSS_PEAK[$i] / 1024)) MiB, CPU $(awk -v d=$((c - CPU0[$i])) -v t="$ticks" -v w="$wall" 'BEGIN{printf "%.0f%%", 100 * d / t / (w / 1e6)}') of one core over the convergence"
done
echo "simulation: RSS $(($(awk '/^VmRSS/{print $2}' "/proc/$SIM_PID/status") / 1024)) MiB"
for i in 1 2 3; do masters_view "$i"; done
echo "heartbeats: $(jq -r '"round trip p50 \(.heartbeat_rtt_p50_ms) ms, p99 \(.heartbeat_rtt_p99_ms) ms; latest \(.heartbeat_late_max_ms) ms late at worst"' <<<"$r")"

log "killing $KILL workers"
"$DASH" sim kill --workers "$KILL" --control "$CONTROL" >/dev/null
t=$(now_us)
while :; do
  r=$(report)
  rec=$(jq -r '.last_kill.recovered_after_ms // empty' <<<"$r")
  [ -n "$rec" ] && break
  [ $(($(now_us) - t)) -lt $((TIMEOUT_S * 1000000)) ] || { rec="not within $TIMEOUT_S s"; break; }
  sleep 0.5
done
echo "kill: $(jq -r '.last_kill | "\(.workers) workers with \(.replicas) replicas"' <<<"$r"); as many serving as before after $rec ms (--node-down-after $DOWN_AFTER); replacements reached the fleet from $(jq -r '.last_kill | "\(.first_new_after_ms) to \(.last_new_after_ms)"' <<<"$r") ms"
for i in 1 2 3; do masters_view "$i"; done
echo "documented peer (not run here): Nomad C1M 1,000,000 containers on 5,000 hosts in < 5 min (2016); C2M 2,000,000 on 6,100 hosts in 22 min (2020)"
echo "load after the run: $(load)"
