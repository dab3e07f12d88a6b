#!/usr/bin/env bash
# bench/swarm-update.sh: a rolling update of REPLICAS replicas on one node, Dash next to Docker
# Swarm (Debian's docker.io, its own dockerd in its own network namespace: bench/docker.sh), in
# one run, the same busybox image and the same update policy: one replica at a time, stop-first,
# no delay, no health check. Swarm also watches each new task for `--update-monitor` (5 s by
# default) before the next: measured with its default, and with 1 ms (the closest to Dash,
# which has no such window without a health check).
#
# Timed by the one neutral observer (target/release/observe): from the update command's
# invocation until the last of the REPLICAS new processes (a new command line: `sleep M`) is
# seen in /proc. TRIALS updates per tool, the tools interleaved.
#
#   bench/swarm-update.sh | tee bench/results/swarm-update-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), TRIALS (default 3), REPLICAS (default 10).
# Needs root and docker.io. Everything it makes is removed on exit, also on error.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=docker.sh
. "$(dirname "$0")/docker.sh"

defaults TRIALS=3 REPLICAS=10
MARK=7600000

docker_available || die "docker.io is not installed (apt-get install --no-install-recommends docker.io)"
bench_net up 7397 10.98.7.0/24
bench_setup jq nft ip findmnt tar nsenter
standard_cleanup docker_cleanup docker_left
ensure_observe

# timed LABEL COMMAND...: runs COMMAND (it moves the service to `sleep $MARK`) and records the
# ms until REPLICAS processes `sleep $MARK` were seen.
timed() {
  local label=$1 t0 i
  shift
  observer_start --cmdline "sleep $MARK" --count "$REPLICAS" --timeout 300
  t0=$(now_us)
  "$@" >/dev/null
  for ((i = 0; i < REPLICAS; i++)); do
    observer_next "$label: $REPLICAS new processes not seen within 300 s"
  done
  observer_end
  record "$label" "$(us_to_ms $((SEEN_US - t0)))"
  log "$label: $(us_to_ms $((SEEN_US - t0))) ms"
}

dash_file() { # the service at `sleep $MARK`
  sleep_toml up "$MARK" "replicas = $REPLICAS" 'stop_grace_period = "1s"' '[update]' 'parallelism = 1' \
    'order = "stop-first"'
}
# every replica of Dash's service at the latest version
dash_settled() {
  [ "$("$DASH" ps up -o json | jq --arg v "$1" '[.[] | select(.state == "running" and (.version | tostring) == $v)] | length')" -ge "$REPLICAS" ]
}

header swarm-update "$(docker_version) (swarm)"
echo "$REPLICAS replicas on one node, parallelism 1, stop-first, no delay, no health check; $TRIALS updates per tool, interleaved"
echo
"$ROOT/demo/make-busybox-rootfs.sh" "$SCR/rootfs.tar"
start_server
"$DASH" image import --rootfs "$SCR/rootfs.tar" bb:1 >/dev/null
docker_start up
docker_import "$SCR/rootfs.tar" bb:1
docker_swarm_init

# The first versions (not timed).
MARK=$((MARK + 1))
dash_file
"$DASH" apply -f "$SCR/up.toml" >/dev/null
$DOCKER service create -q --no-resolve-image --name up --replicas "$REPLICAS" \
  --stop-grace-period 1s bb:1 sleep "$MARK" >/dev/null
for _ in $(seq 600); do dash_settled 1 && break; sleep 0.2; done
dash_settled 1 || die "dash: $REPLICAS replicas not running"

version=1
for ((t = 1; t <= TRIALS; t++)); do
  MARK=$((MARK + 1))
  dash_file
  version=$((version + 1))
  timed dash "$DASH" apply -f "$SCR/up.toml"
  for _ in $(seq 600); do dash_settled "$version" && break; sleep 0.2; done
  sleep 1
  MARK=$((MARK + 1))
  timed swarm-default $DOCKER service update -q --detach --args "sleep $MARK" \
    --update-parallelism 1 --update-order stop-first --update-delay 0s --update-monitor 5s up
  sleep 1
  MARK=$((MARK + 1))
  timed swarm-monitor-1ms $DOCKER service update -q --detach --args "sleep $MARK" \
    --update-parallelism 1 --update-order stop-first --update-delay 0s --update-monitor 1ms up
  sleep 1
done

echo "## rolling update of $REPLICAS replicas: update invoked → the last new process seen (ms)"
printf '%-52s %6s %9s %9s %9s %12s\n' tool trials min median max "peer / dash"
read -r n mn md mx < <(stats "$SAMPLES/dash")
printf '%-52s %6s %9s %9s %9s %12s\n' "dash apply (no health check)" "$n" "$mn" "$md" "$mx" ""
D=$md
for l in swarm-default swarm-monitor-1ms; do
  read -r n mn md mx < <(stats "$SAMPLES/$l")
  case $l in
    swarm-default) name="docker service update (--update-monitor 5s, the default)" ;;
    *) name="docker service update (--update-monitor 1ms)" ;;
  esac
  printf '%-52s %6s %9s %9s %9s %12s\n' "$name" "$n" "$mn" "$md" "$mx" "$(awk -v a="$md" -v b="$D" 'BEGIN{printf "%.2f", a/b}')"
done
echo "load at end: $(load)"
