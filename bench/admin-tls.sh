#!/usr/bin/env bash
# bench/admin-tls.sh: what HTTPS costs the admin API. One `dash server` serves the same API on
# two loopback addresses, plain HTTP (--listen 127.0.0.1:P) and HTTPS (--listen
# https://127.0.0.1:Q, the certificate its cluster CA issued); wrk asks each, alternating, for
# GET /v1/services with a `read` token (a DASH1- token: its hash is looked up in the state on
# every request, as for a team's tokens):
#
#   keep-alive    wrk -t2 -cCONNECTIONS: connections reused (a portal, a client library)
#   new conn      the same with `Connection: close`: a TCP connection (and for HTTPS a full TLS
#                 handshake: wrk does not resume sessions) per request, as each `dash` command
#                 makes one
#
#   bench/admin-tls.sh | tee bench/results/admin-tls-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), ROUNDS (3), SECONDS_PER_RUN (10), CONNECTIONS
# (16). Needs root, wrk, jq. Everything it makes (server, bridge, table, run dir, scratch dir) is
# removed on exit. wrk and the server share the machine's cores.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults ROUNDS=3 SECONDS_PER_RUN=10 CONNECTIONS=16
bench_net tls 7397 10.98.7.0/24
TLS_LISTEN=127.0.0.1:7398
refuse_if_listening "$TLS_LISTEN"
bench_setup jq wrk
standard_cleanup

header admin-tls "$(versions wrk)"
SERVER_FLAGS=(--listen "https://$TLS_LISTEN" --dns-upstream 127.0.0.1:9)
start_server
TOKEN=$("$DASH" token create --role read)
# The HTTPS side answers as the plain one does (and is HTTPS: plain HTTP there is refused).
curl -sf --cacert "$DATA/pki/ca.crt" -H "Authorization: Bearer $TOKEN" "https://$TLS_LISTEN/v1/services" >/dev/null ||
  die "the HTTPS listener does not answer"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$TLS_LISTEN/v1/services")" = 400 ] ||
  die "plain HTTP on the HTTPS listener was not refused"

# ask NAME URL [HEADER]: one wrk run; records req/s and p50/p99 (ms).
ask() {
  local name=$1 url=$2 out
  out=$SCR/wrk-$name.out
  local extra=()
  [ -n "${3:-}" ] && extra=(-H "$3")
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "Authorization: Bearer $TOKEN" \
    ${extra[@]+"${extra[@]}"} "$url" >"$out" 2>&1 || die "wrk $name failed: $(tail -3 "$out")"
  grep -q "Non-2xx" "$out" && die "$name: $(grep -E 'Non-2xx' "$out")"
  record_wrk "$name" "$out"
}

for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS"
  ask plain-keepalive "http://$LISTEN/v1/services"
  ask https-keepalive "https://$TLS_LISTEN/v1/services"
  ask plain-newconn "http://$LISTEN/v1/services" "Connection: close"
  ask https-newconn "https://$TLS_LISTEN/v1/services" "Connection: close"
done

echo
echo "wrk -t2 -c$CONNECTIONS, ${SECONDS_PER_RUN} s a run, $ROUNDS runs each (alternating), GET /v1/services with a read token, one dash server, loopback"
printf '  %-22s %14s %10s %10s\n' listener "req/s (median)" "p50 ms" "p99 ms"
for n in plain-keepalive https-keepalive plain-newconn https-newconn; do
  printf '  %-22s %14.0f %10s %10s\n' "$n" "$(med "$SAMPLES/$n-rps")" "$(med "$SAMPLES/$n-p50")" "$(med "$SAMPLES/$n-p99")"
done
for m in keepalive newconn; do
  echo "  HTTPS ÷ plain, $m (req/s, medians): $(awk -v a="$(med "$SAMPLES/https-$m-rps")" -v b="$(med "$SAMPLES/plain-$m-rps")" 'BEGIN{printf "%.2f", a / b}')"
done
for n in plain-keepalive https-keepalive plain-newconn https-newconn; do
  echo "  $n runs: req/s $(paste -sd' ' "$SAMPLES/$n-rps"); p99 ms $(paste -sd' ' "$SAMPLES/$n-p99")"
done
