#!/usr/bin/env bash
# bench/portal.sh: the web portal's overview with SERVICES (default 100) services of one
# replica each, loaded ROUNDS (default 10) times in headless Chromium (Debian's chromium and
# chromium-driver, through bench/portal-load.py): bytes transferred and the time to the first
# render of the services table. Targets (issue 14): <= 300 KB, <= 500 ms. No peer runs here
# (Portainer, the Nomad UI and the Kubernetes dashboard need images or binaries from outside):
# the figures stand against the targets only.
#
#   bench/portal.sh | tee bench/results/portal-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), SERVICES (100), ROUNDS (10). Needs root, jq,
# python3, chromium, chromedriver. Everything it makes is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults SERVICES=100 ROUNDS=10
bench_net portal 7395 10.98.9.0/24
bench_setup jq python3 chromium chromedriver
standard_cleanup

header portal "$(chromium --version 2>/dev/null | head -1)"
start_server
busybox_image
log "creating $SERVICES services of one replica"
for i in $(seq -w 1 "$SERVICES"); do
  sleep_toml "svc-$i" 1000000
  "$DASH" apply -f "$SCR/svc-$i.toml" >/dev/null
done
wait_running "$SERVICES"
sizes=$(for f in index.html app.js app.css; do printf '%s %s B, ' "$f" "$(curl -s "http://$LISTEN/ui/$f" | wc -c)"; done)
echo "portal files: ${sizes%, } (served uncompressed)"
echo "cluster: $SERVICES services, $SERVICES replicas running; $ROUNDS loads of /ui/ after one login"
python3 "$ROOT/bench/portal-load.py" --addr "$LISTEN" --token "$(cat "$DATA/admin.token")" \
  --rounds "$ROUNDS" --chromedriver-port 17977 >"$SCR/loads.jsonl"
jq -r '.bytes' "$SCR/loads.jsonl" >"$SAMPLES/bytes"
jq -r '.render_ms' "$SCR/loads.jsonl" >"$SAMPLES/render"
jq -r '.fcp_ms // empty' "$SCR/loads.jsonl" >"$SAMPLES/fcp"
listed=$(jq -r '.services' "$SCR/loads.jsonl" | sort -u | tr '\n' ' ')
echo "services listed on the page: $listed"
echo "overview bytes: median $(median "$SAMPLES/bytes") (n min median max: $(stats "$SAMPLES/bytes")); target <= 300 KB"
echo "first render of the services table: median $(med "$SAMPLES/render") ms (n min median max: $(stats "$SAMPLES/render")); target <= 500 ms"
[ -s "$SAMPLES/fcp" ] && echo "first contentful paint: median $(med "$SAMPLES/fcp") ms"
