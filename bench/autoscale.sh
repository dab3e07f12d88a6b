#!/usr/bin/env bash
# bench/autoscale.sh: how fast the service_scaler reacts, with its defaults (--autoscale-interval
# 5s, scale_down_delay 60s), on one node with real containers and release binaries.
#
#   bench/autoscale.sh | tee bench/results/autoscale-$(date +%F).txt
#
# Environment: TRIALS (default 5; each takes about 1.5 min). Needs root. Everything it creates
# (containers, bridge dashe2e81, data dir) is removed on exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
driver_bench autoscale autoscale-reaction "$(versions crun runc)"
