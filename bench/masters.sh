#!/usr/bin/env bash
# bench/masters.sh: Dash's replicated masters beside a 3-member etcd 3.4, in one run: leader
# failover (SIGKILL → first acknowledged write started after it), write throughput through 1
# and 3 members with 1 and 16 clients, idle memory per member. Release binaries; Dash's masters
# in network namespaces (`--no-worker`), etcd on loopback. What each figure means:
# bench/src/bin/masters.rs.
#
#   bench/masters.sh | tee bench/results/masters-$(date +%F).txt
#
# Environment: TRIALS (default 20), SECONDS_PER_RUN (default 5), ATTEMPT_TIMEOUT (ms, default
# 1000), ETCD_HEARTBEAT / ETCD_ELECTION (ms; default: etcd's own). Needs root and etcd
# (apt-get install etcd-server). Everything it creates (namespaces, bridges dcb56 and dcb57,
# etcd's and Dash's data dirs, their processes) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_root_and etcd nsenter jq
driver_build masters dash
header masters "$(etcd --version | head -1)"
echo

# The driver cleans up after itself, also on a failed step; killed by a signal it cannot, so
# this does: its processes (Dash masters of slots 56 and 57, etcd members of its cluster
# tokens), their data dirs, namespaces, bridges and run dirs.
driver=
interrupted() {
  trap - INT TERM
  [ -n "$driver" ] && kill -KILL "$driver" 2>/dev/null
  local pid dirs=()
  for pid in $(pgrep -f -- '--run-dir /run/dash-e2e-c5[67]-|--initial-cluster-token dash-bench-'); do
    dirs+=("$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | awk 'p{print; exit} /^--data-dir$/{p=1}')")
    kill -KILL "$pid" 2>/dev/null
  done
  sleep 0.5
  for d in "${dirs[@]}"; do
    case $d in /tmp/.tmp*/*) rm -rf --one-file-system "${d%/*}" ;; esac
  done
  for ns in $(ip netns list | awk '/^dash-c5[67]-/{print $1}'); do ip netns del "$ns"; done
  for br in dcb56 dcb57; do [ -e "/sys/class/net/$br" ] && ip link del "$br"; done
  rm -rf --one-file-system /run/dash-e2e-c56-* /run/dash-e2e-c57-*
  log "interrupted: what the driver made is removed"
  exit 130
}
trap interrupted INT TERM
"$DRIVER" &
driver=$!
wait "$driver"
