#!/usr/bin/env bash
# The README's first command: installs what is missing, starts a single-node `dash server`
# and runs the demo service (busybox httpd with a page, published on 127.0.0.1:8081 and routed
# by the built-in proxy on 127.0.0.1:8080 for Host: web.local).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh

DATA=${DASH_DATA_DIR:-/var/lib/dash}
export DASH_DATA_DIR=$DATA
if ! curl -fs http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
  echo "==> starting dash server (data in $DATA, log in /var/log/dash.log)"
  mkdir -p "$DATA"
  setsid nohup dash server --data-dir "$DATA" >>/var/log/dash.log 2>&1 < /dev/null &
  for _ in $(seq 100); do curl -fs http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break; sleep 0.1; done
  if ! curl -fs http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
    echo "error: dash server did not start; the end of /var/log/dash.log:" >&2
    tail -n 5 /var/log/dash.log >&2
    exit 1
  fi
fi

echo "==> building the demo image from busybox-static"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./demo/make-busybox-rootfs.sh "$work/rootfs.tar"
dash image import --rootfs "$work/rootfs.tar" demo/busybox:1
dash apply -f demo/web.toml
for _ in $(seq 100); do curl -fs -H 'Host: web.local' http://127.0.0.1:8080/ >/dev/null 2>&1 && break; sleep 0.1; done
dash ps web
echo
curl -fsS http://127.0.0.1:8081/
curl -fsS -H 'Host: web.local' http://127.0.0.1:8080/
echo
echo "Dash is running. Try: dash ps, dash logs -f web, dash scale web 5, dash events"
