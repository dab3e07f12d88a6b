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
cargo build --release -p dash -p dash-monitor >&2
# The driver unwinds on a failed step so that its cleanup runs (release panics abort).
cargo build --profile bench-driver -p dash-bench --bin cluster-failover >&2
BIN_DIR=target/release
DASH=$ROOT/target/release/dash
header failover "$(versions crun runc)"
echo
DASH_BIN_DIR="$ROOT/target/release" "$ROOT/target/bench-driver/cluster-failover"
