#!/usr/bin/env bash
# bench/vip-path.sh: the cost of a service's virtual IP on the data path. From inside a
# replica's network namespace (nsenter), wrk asks nginx (a replica of a service with port 80)
# once through the service's virtual IP (every node's nftables dnat, decision 0013) and once at
# the replica's own address (the ceiling), alternating, in one run: requests per second and
# latency percentiles. Both replicas run on the one node of a `dash server`.
#
#   bench/vip-path.sh | tee bench/results/vip-path-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), ROUNDS (3), SECONDS_PER_RUN (10), CONNECTIONS
# (16), FILE_BYTES (1024). Needs root, wrk and nginx (nginx-light). Everything it makes
# (server, bridge, tables, run dir, scratch dir) is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults ROUNDS=3 SECONDS_PER_RUN=10 CONNECTIONS=16 FILE_BYTES=1024
bench_net vip 7396 10.98.6.0/24
bench_setup jq nft ip nsenter wrk nginx
standard_cleanup

header vip-path "$(versions wrk nginx), $(nft --version)"
SERVER_FLAGS=(--dns-upstream 127.0.0.1:9)
start_server
"$ROOT/bench/make-nginx-rootfs.sh" "$SCR/nginx.tar" "$FILE_BYTES"
"$DASH" image import --rootfs "$SCR/nginx.tar" nginx:bench >/dev/null
busybox_image
port_service web nginx:bench 80 /usr/sbin/nginx -c /etc/nginx/nginx.conf
WEB_IP=$("$DASH" ps -o json | jq -r '.[] | select(.service == "web") | .ip')
[ "$WEB_IP" != null ] || die "setup incomplete"
log "web: virtual IP $VIP, replica $WEB_IP; wrk runs in $NETNS"

# ask NAME ADDR: one wrk run to http://ADDR/file.bin from the client's namespace.
ask() {
  local name=$1 addr=$2 out
  out=$SCR/wrk-$name.out
  nsenter --net="$NETNS" wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "http://$addr/file.bin" >"$out" 2>&1 ||
    die "wrk to $name failed: $(tail -3 "$out")"
  grep -q "Non-2xx" "$out" && log "$name: $(grep -E 'Non-2xx' "$out")"
  record_wrk "$name" "$out"
}

for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS"
  ask direct "$WEB_IP"
  ask vip "$VIP"
done

echo
echo "wrk -t1 -c$CONNECTIONS, ${SECONDS_PER_RUN} s a run, $ROUNDS runs each (alternating), GET of a $FILE_BYTES-byte file from nginx (one worker), from a replica's network namespace on the same node"
printf '  %-28s %14s %12s %12s\n' path "req/s (median)" "p50 ms" "p99 ms"
printf '  %-28s %14.0f %12s %12s\n' "direct (replica's address)" "$(med "$SAMPLES/direct-rps")" "$(med "$SAMPLES/direct-p50")" "$(med "$SAMPLES/direct-p99")"
printf '  %-28s %14.0f %12s %12s\n' "virtual IP" "$(med "$SAMPLES/vip-rps")" "$(med "$SAMPLES/vip-p50")" "$(med "$SAMPLES/vip-p99")"
echo "  virtual IP ÷ direct (req/s, medians): $(awk -v a="$(med "$SAMPLES/vip-rps")" -v b="$(med "$SAMPLES/direct-rps")" 'BEGIN{printf "%.2f", a / b}')  (target ≥ 0.95)"
for n in direct vip; do
  echo "  $n runs: req/s $(paste -sd' ' "$SAMPLES/$n-rps"); p99 ms $(paste -sd' ' "$SAMPLES/$n-p99")"
done
