#!/usr/bin/env bash
# bench/vip-propagation.sh: a change of a virtual IP's replicas (scale 1 → 20 → 1) reaching
# every node's nftables map, on a master + 3 workers in network namespaces with real
# containers (release binaries). Target: a change on every node in ≤ 1 s.
#
#   bench/vip-propagation.sh | tee bench/results/vip-propagation-$(date +%F).txt
#
# Environment: TRIALS (default 5), POLL_MS (default 10). Needs root. Everything it creates
# (namespaces, bridge, containers, data dirs) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
driver_bench vip-propagation vip-propagation "$(versions crun runc nft)"
