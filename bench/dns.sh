#!/usr/bin/env bash
# bench/dns.sh: the cluster's DNS beside dnsmasq and unbound, in one run. Each serves the same
# record (a service's name → its virtual IP) on the node's gateway address (Dash on port 53,
# dnsmasq on 5302, unbound on 5303); dnsperf asks from inside a replica's network namespace
# (nsenter), so every query crosses the replica's veth and the bridge as a replica's would.
# Rounds alternate between the three; each reports queries per second and the latency of
# every answer (average, p99, from dnsperf -v).
#
#   bench/dns.sh | tee bench/results/dns-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), ROUNDS (default 3), SECONDS_PER_RUN
# (default 10), CLIENTS (dnsperf clients, default 4). Needs root, dnsperf, dnsmasq (the
# dnsmasq-base package is enough) and unbound (Debian packages). Everything it makes (server,
# bridge, tables, run dir, dnsmasq and unbound, scratch dir) is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults ROUNDS=3 SECONDS_PER_RUN=10 CLIENTS=4
bench_net dns 7395 10.98.5.0/24
bench_setup jq nft ip nsenter dnsperf dnsmasq unbound
# The cleanup stops the peers (dnsmasq, unbound: HELPER_PIDS) first.
standard_cleanup

header dns "$(versions dnsperf dnsmasq unbound)"
# Names outside the cluster are not asked here; the upstream is a closed port on loopback.
SERVER_FLAGS=(--dns-upstream 127.0.0.1:9)
start_server
busybox_image
port_service api bb:1 8080 httpd -f -p 8080 -h /
log "api.dash → $VIP; dnsperf runs in $NETNS"

# The peers, serving the same record on the gateway address.
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address="$GATEWAY" --port=5302 --pid-file= --user=root \
  --address="/api.dash/$VIP" </dev/null >"$SCR/dnsmasq.log" 2>&1 &
HELPER_PIDS+=($!)
cat >"$SCR/unbound.conf" <<CONF
server:
  interface: $GATEWAY@5303
  access-control: $SUBNET allow
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$SCR"
  pidfile: "$SCR/unbound.pid"
  use-syslog: no
  logfile: ""
  do-ip6: no
  local-zone: "dash." static
  local-data: "api.dash. 1 IN A $VIP"
CONF
unbound -c "$SCR/unbound.conf" </dev/null >"$SCR/unbound.log" 2>&1 &
HELPER_PIDS+=($!)
echo "api.dash A" >"$SCR/queries"

# ask NAME PORT: one dnsperf run from the replica's namespace; records qps, mean and p99 (ms).
ask() {
  local name=$1 port=$2 out
  out=$SCR/dnsperf-$name.out
  nsenter --net="$NETNS" dnsperf -s "$GATEWAY" -p "$port" -d "$SCR/queries" -l "$SECONDS_PER_RUN" \
    -c "$CLIENTS" -v >"$out" 2>&1 || die "dnsperf against $name failed: $(tail -3 "$out")"
  grep -q 'Queries lost: *0 ' "$out" || log "$name: $(grep 'Queries lost' "$out")"
  record "$name-qps" "$(awk '/Queries per second/{printf "%d", $4}' "$out")"
  # Each answer: "> NOERROR api.dash A 0.000123" (seconds).
  awk '/^> NOERROR/{print $NF * 1000}' "$out" | sort -n >"$SCR/lat"
  record "$name-mean" "$(awk '{s += $1} END {printf "%.3f", s / NR}' "$SCR/lat")"
  record "$name-p50" "$(awk '{a[NR] = $1} END {printf "%.3f", a[int((NR + 1) / 2)]}' "$SCR/lat")"
  record "$name-p99" "$(awk '{a[NR] = $1} END {printf "%.3f", a[int(NR * 0.99)]}' "$SCR/lat")"
  record "$name-answers" "$(wc -l <"$SCR/lat")"
  log "$name: $(tail -1 "$SAMPLES/$name-qps") q/s, p99 $(tail -1 "$SAMPLES/$name-p99") ms"
}

sleep 1
for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS"
  ask dash 53
  ask dnsmasq 5302
  ask unbound 5303
done

echo
echo "query: api.dash A (the service's virtual IP), $CLIENTS dnsperf clients, $SECONDS_PER_RUN s a run, $ROUNDS runs each (alternating), from a replica's network namespace to the node's gateway address"
printf '  %-8s %12s %14s %14s %14s\n' server "q/s (median)" "mean ms (med)" "p50 ms (med)" "p99 ms (med)"
# med FILE → the median of its numbers, to the microsecond
for n in dash dnsmasq unbound; do
  printf '  %-8s %12.0f %14s %14s %14s\n' "$n" "$(med "$SAMPLES/$n-qps")" "$(med "$SAMPLES/$n-mean")" "$(med "$SAMPLES/$n-p50")" "$(med "$SAMPLES/$n-p99")"
done
for n in dnsmasq unbound; do
  echo "  dash ÷ $n (q/s, medians): $(awk -v a="$(med "$SAMPLES/dash-qps")" -v b="$(med "$SAMPLES/$n-qps")" 'BEGIN{printf "%.2f", a / b}')"
done
for n in dash dnsmasq unbound; do
  echo "  $n runs: q/s $(paste -sd' ' "$SAMPLES/$n-qps"); p99 ms $(paste -sd' ' "$SAMPLES/$n-p99")"
done
