#!/usr/bin/env bash
# bench/failover.sh: node death → replicas running elsewhere, and a 10-replica rolling update,
# on a master + 3 workers in network namespaces with real containers (release binaries).
#
#   bench/failover.sh | tee bench/results/failover-$(date +%F).txt
#
# Environment: TRIALS (default 10), DOWN_AFTER (--node-down-after, default 3s). Needs root.
# Everything it creates (namespaces, bridge dcb61, containers, data dirs) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
driver_bench failover cluster-failover "$(versions crun runc)"
