#!/usr/bin/env bash
# bench/vips.sh: how long a node takes to program the services' virtual IPs, the whole table
# in one nftables transaction (what every node does on each change of the masters' feed):
# SERVICES services × PORTS ports × BACKENDS ready replicas, written N times (each after one
# service's replicas changed), then one service scaled from 1 to 20 replicas. Dash's own code
# (crates/dash-net/examples/vip_bench.rs: Network::set_vips on a throwaway network).
#
#   bench/vips.sh | tee bench/results/vips-$(date +%F).txt
#
# Environment: SERVICES (default 1000), PORTS (10), BACKENDS (2), N (10). Needs root and nft.
# The example removes its bridge, table and netns dir at the end.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need_root_and nft ip
log "building the example (release)"
cargo build --release -p dash-net --example vip_bench >&2
header vips "$(nft --version)"
echo
target/release/examples/vip_bench "${SERVICES:-1000}" "${PORTS:-10}" "${BACKENDS:-2}" "${N:-10}"
echo "target: 1,000 services × 10 ports programmed in one batch in ≤ 1 s"
if nft list tables | grep -q 'dash_vip_bench'; then echo "cleanup: LEFT BEHIND: nft table"; else echo "cleanup: nothing left behind"; fi
