#!/usr/bin/env bash
# bench/crash-restart.sh: a replica's process is killed (kill -9): how long until its new
# process runs. Dash next to Docker Swarm (if Debian's docker.io is installed) in one run, the
# same busybox image, the same restart policy (restart at once: Dash's first restart is
# immediate, Swarm's service gets --restart-delay 0s; Swarm's default delay, 5 s, is noted).
#
# Timed by one neutral observer for both (target/release/observe, bench/src/bin/observe.rs):
# from just before the kill until a new process with the replica's command line is seen in the
# host's process table. Each replica is killed once ("the first crash of a replica", which
# Dash restarts at once; later crashes in a row back off), TRIALS replicas per tool, the two
# tools interleaved trial by trial.
#
#   bench/crash-restart.sh | tee bench/results/crash-restart-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), TRIALS (default 10), DOCKER (default 1;
# 0 skips Swarm). Needs root. Everything it makes (server, bridge, table, run dir, dockerd
# and its netns, containers, cgroups, scratch dir) is removed on exit, also on error.
set -eEuo pipefail
# Read before docker.sh, which takes DOCKER for its client command line.
DOCKER_ON=${DOCKER:-1}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=docker.sh
. "$(dirname "$0")/docker.sh"

defaults TRIALS=10
TARGET_MS=100
# Unique command lines: the observer finds each tool's replicas by them.
DASH_CMD="sleep 600701"
SWARM_CMD="sleep 600702"

if [ "$DOCKER_ON" = 1 ] && ! docker_available; then
  log "docker.io not installed: Swarm is not measured"; DOCKER_ON=0
fi
bench_net cr 7391 10.98.1.0/24
bench_setup jq nft ip crun findmnt tar nsenter
standard_cleanup docker_cleanup docker_left
ensure_observe

pids_of() { { pgrep -xf "$1" || true; } | sort -n; } # pids_of CMDLINE

# kill_and_observe LABEL CMDLINE PID: kills PID, records the time until a new CMDLINE process
# other than the ones running now is seen.
kill_and_observe() {
  local label=$1 cmd=$2 victim=$3 t0 nots=() p
  for p in $(pids_of "$cmd"); do nots+=(--not "$p"); done
  observer_start --cmdline "$cmd" "${nots[@]}" --timeout 60
  t0=$(now_us)
  kill -KILL "$victim"
  observer_next "$label: no new process within 60 s"
  observer_end
  record "$label" "$(us_to_ms $((SEEN_US - t0)))"
  log "$label: $victim killed, $SEEN_PID running after $(us_to_ms $((SEEN_US - t0))) ms"
}

# ---- setup --------------------------------------------------------------------------------
header crash-restart "$(versions crun runc)$([ "$DOCKER_ON" = 1 ] && echo ", $(docker_version) (swarm)")"
echo "trials: $TRIALS replicas per tool, each killed once; tools interleaved"
echo
"$ROOT/demo/make-busybox-rootfs.sh" "$SCR/rootfs.tar"
start_server
"$DASH" image import --rootfs "$SCR/rootfs.tar" bb:1 >/dev/null
sleep_toml crash "${DASH_CMD#sleep }" "replicas = $TRIALS"
"$DASH" apply -f "$SCR/crash.toml" >/dev/null
if [ "$DOCKER_ON" = 1 ]; then
  docker_start cr
  docker_import "$SCR/rootfs.tar" bb:1
  docker_swarm_init
  $DOCKER service create -q --detach --no-resolve-image --name crash --replicas "$TRIALS" \
    --restart-condition any --restart-delay 0s bb:1 ${SWARM_CMD} >/dev/null
fi
for _ in $(seq 600); do
  n=$(pids_of "$DASH_CMD" | wc -l)
  s=$TRIALS
  [ "$DOCKER_ON" = 1 ] && s=$(pids_of "$SWARM_CMD" | wc -l)
  [ "$n" -ge "$TRIALS" ] && [ "$s" -ge "$TRIALS" ] && break
  sleep 0.1
done
[ "$(pids_of "$DASH_CMD" | wc -l)" -ge "$TRIALS" ] || die "dash: $TRIALS replicas not running"
sleep 2 # let both settle

# ---- trials: each replica killed once, interleaved ----------------------------------------
mapfile -t DASH_VICTIMS < <(pids_of "$DASH_CMD")
SWARM_VICTIMS=()
[ "$DOCKER_ON" = 1 ] && mapfile -t SWARM_VICTIMS < <(pids_of "$SWARM_CMD")
for ((i = 0; i < TRIALS; i++)); do
  kill_and_observe dash "$DASH_CMD" "${DASH_VICTIMS[i]}"
  sleep 0.5
  if [ "$DOCKER_ON" = 1 ]; then
    kill_and_observe swarm "$SWARM_CMD" "${SWARM_VICTIMS[i]}"
    sleep 0.5
  fi
done

# ---- report -------------------------------------------------------------------------------
echo "## kill -9 of a replica's process → its new process running (ms, observed in /proc)"
printf '%-44s %6s %8s %8s %8s %12s  %s\n' tool trials min median max "peer / dash" "target ≤ ${TARGET_MS} ms"
read -r n mn md mx < <(stats "$SAMPLES/dash")
printf '%-44s %6s %8s %8s %8s %12s  %s\n' "dash (restart policy default: first restart at once)" "$n" "$mn" "$md" "$mx" "" \
  "$(awk -v m="$md" -v t="$TARGET_MS" 'BEGIN{print (m <= t) ? "met" : "MISSED"}')"
DASH_MED=$md
if [ "$DOCKER_ON" = 1 ]; then
  read -r n mn md mx < <(stats "$SAMPLES/swarm")
  printf '%-44s %6s %8s %8s %8s %12s\n' "swarm service (--restart-delay 0s)" "$n" "$mn" "$md" "$mx" \
    "$(awk -v a="$md" -v b="$DASH_MED" 'BEGIN{printf "%.2f", a/b}')"
  echo "(Swarm's default --restart-delay is 5 s: with defaults its restart comes ≥ 5 s after the crash.)"
else
  echo "swarm: not measured (docker.io not installed); its default --restart-delay is 5 s (documented)"
fi
echo "load at end: $(load)"
