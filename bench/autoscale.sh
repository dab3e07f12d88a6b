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
cargo build --release -p dash -p dash-monitor >&2
# The driver unwinds on a failed step so that its cleanup runs (release panics abort).
cargo build --profile bench-driver -p dash-bench --bin autoscale-reaction >&2
BIN_DIR=target/release
DASH=$ROOT/target/release/dash
header autoscale "$(versions crun runc)"
echo
DASH_BIN_DIR="$ROOT/target/release" "$ROOT/target/bench-driver/autoscale-reaction"
