#!/usr/bin/env bash
# bench/scheduler.sh: the scheduler's placements at 10,000 nodes (criterion,
# bench/benches/scheduler.rs), with the results header the other benches write:
#
#   bench/scheduler.sh | tee bench/results/scheduler-$(date +%F).txt
#
# Pure code, no root needed. Progress (the build, criterion's own chatter) goes to stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
cargo bench -p dash-bench --bench scheduler --no-run >&2
header scheduler "$(rustc --version)"
echo
# criterion prints each benchmark's name, time [low median high] and throughput on stdout.
cargo bench -p dash-bench --bench scheduler 2>/dev/null | grep -E '^place_on|^ +(time|thrpt):' | grep -v '%' || true
