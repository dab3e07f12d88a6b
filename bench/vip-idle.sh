#!/usr/bin/env bash
# bench/vip-idle.sh: a TCP connection through a service's virtual IP, idle for IDLE_SECONDS
# (default 1200: 20 minutes), still works. From inside a replica's network namespace, busybox
# nc opens one connection to an echo service (busybox nc -ll -e cat) by its virtual IP, sends
# a line, stays silent, sends another: both must come back on that one connection. Swarm's
# IPVS drops connections idle for 900 s (moby#31208); Dash's path is conntrack's, whose
# established timeout (5 days by default) the run prints at the start and the end.
#
#   bench/vip-idle.sh | tee bench/results/vip-idle-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), IDLE_SECONDS (1200). Needs root. Everything
# it makes (server, bridge, tables, run dir, scratch dir) is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults IDLE_SECONDS=1200
bench_net idle 7397 10.98.7.0/24
bench_setup jq nft ip nsenter
standard_cleanup

header vip-idle "$(versions nft)"
SERVER_FLAGS=(--dns-upstream 127.0.0.1:9)
start_server
busybox_image
port_service echo bb:1 9000 nc -ll -p 9000 -e cat
entry() { grep -E " ESTABLISHED .*dst=$VIP .*dport=9000 " /proc/net/nf_conntrack || true; }

echo "conntrack established timeout: $(cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established) s"
log "one connection to $VIP:9000, idle for $IDLE_SECONDS s"
out=$SCR/idle.out
start=$(now_us)
( echo ping1; sleep "$IDLE_SECONDS"; echo ping2; sleep 2 ) | nsenter --net="$NETNS" busybox nc -w 3 "$VIP" 9000 >"$out" 2>&1 &
client=$!
sleep 2
echo "entry after 2 s:  $(entry)"
wait "$client" || true
elapsed=$(($(now_us) - start))
echo "connection idle for $IDLE_SECONDS s (total $(us_to_ms "$elapsed") ms), answers: $(tr '\n' ' ' <"$out")"
if [ "$(cat "$out")" = "$(printf 'ping1\nping2')" ]; then
  echo "result: the connection still worked after $IDLE_SECONDS s idle"
else
  echo "result: FAILED: the connection did not answer after $IDLE_SECONDS s idle"
  exit 1
fi
