#!/usr/bin/env bash
# bench/leak.sh: does `dash server` give memory back? Its RSS (VmRSS, and how much of it is
# heap and stacks vs the binary's mapped pages) idle, after SERVICES services were created and
# removed (1 replica each, in batches of BATCH), then with one service of REPLICAS replicas
# running, and 60 s after that service was removed; all of it twice (ROUNDS, default 2): a
# leak grows again in the second round, a cache that is full does not. Also checks that
# nothing of the removed replicas is left (containers, mounts, netns, cgroups).
#
#   bench/leak.sh | tee bench/results/leak-$(date +%F).txt
#
# Environment: BIN_DIR (default target/release), SERVICES (default 500), BATCH (default 25),
# REPLICAS (default 200). Needs root; removes everything it made on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

defaults SERVICES=500 BATCH=25 REPLICAS=200 ROUNDS=2
TARGET_MB=20
bench_net leak 7392 10.98.2.0/23
bench_setup jq nft ip findmnt tar
standard_cleanup

rss_mb() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }
# What the RSS is made of: heap and stacks (anonymous) and mapped files (the binary's pages).
# Threads too: each holds its stack's touched pages (sqlx runs a thread per SQLite connection).
rss_parts() { awk '/^RssAnon:/{a=$2} /^RssFile:/{f=$2} /^Threads:/{t=$2} END{printf "anon %.1f, file %.1f, threads %d", a/1024, f/1024, t}' "/proc/$SERVER_PID/status"; }
services() { "$DASH" service ls -o json | jq length; }
running_at_least() { [ "$(running_count)" -ge "$1" ]; }
no_services() { [ "$(services)" = 0 ]; }
# What the removed replicas left: container dirs, mounts, netns, cgroups of this server.
leftovers() {
  local n=0
  n=$((n + $(find "$DATA/containers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
  n=$((n + $(findmnt -rn -o TARGET | grep -cE "^($RUN_DIR|$DATA)/" || true)))
  n=$((n + $(find "$RUN_DIR/netns" -mindepth 1 2>/dev/null | wc -l)))
  n=$((n + $({ find /sys/fs/cgroup/*"$ME"/dash -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true; } | wc -l)))
  echo "$n"
}

header leak
echo "services: $SERVICES created and removed ($BATCH at a time, 1 replica each), then one of $REPLICAS replicas"
echo
"$ROOT/demo/make-busybox-rootfs.sh" "$SCR/rootfs.tar"
start_server
"$DASH" image import --rootfs "$SCR/rootfs.tar" bb:1 >/dev/null
sleep 3
IDLE=$(rss_mb)
IDLE_PARTS=$(rss_parts)
log "idle RSS $IDLE MB"

# One round: SERVICES services created and removed, then REPLICAS replicas and their removal.
# Sets AFTER_SERVICES, WITH_MANY, AFTER_MANY (+ _PARTS) and LEFT_SERVICES, LEFT_MANY.
round() {
  local r=$1 b i
  for ((b = 0; b < SERVICES / BATCH; b++)); do
    for ((i = 0; i < BATCH; i++)); do
      sleep_toml "leak-$r-$b-$i" 600 'stop_grace_period = "100ms"'
      "$DASH" apply -f "$SCR/leak-$r-$b-$i.toml" >/dev/null
    done
    wait_for "batch $b running" 120 running_at_least "$BATCH"
    for ((i = 0; i < BATCH; i++)); do "$DASH" service rm "leak-$r-$b-$i" >/dev/null; done
    wait_for "batch $b removed" 120 no_services
    log "round $r, batch $((b + 1))/$((SERVICES / BATCH)): RSS $(rss_mb) MB"
  done
  sleep 3
  AFTER_SERVICES=$(rss_mb) AFTER_SERVICES_PARTS=$(rss_parts)
  LEFT_SERVICES=$(leftovers)

  sleep_toml "many-$r" 600 "replicas = $REPLICAS" 'stop_grace_period = "100ms"'
  "$DASH" apply -f "$SCR/many-$r.toml" >/dev/null
  wait_for "$REPLICAS replicas running" 600 running_at_least "$REPLICAS"
  sleep 3
  WITH_MANY=$(rss_mb) WITH_MANY_PARTS=$(rss_parts)
  "$DASH" service rm "many-$r" >/dev/null
  wait_for "many removed" 600 no_services
  sleep 60
  AFTER_MANY=$(rss_mb) AFTER_MANY_PARTS=$(rss_parts)
  LEFT_MANY=$(leftovers)
}

echo "## dash server RSS (MB)"
printf '%-52s %8s   (%s)\n' "idle, after an image import" "$IDLE" "$IDLE_PARTS"
for ((r = 1; r <= ROUNDS; r++)); do
  round "$r"
  printf '%-52s %8s   (%s)\n' "round $r: after $SERVICES services created and removed" "$AFTER_SERVICES" "$AFTER_SERVICES_PARTS"
  printf '%-52s %8s   (%s)\n' "round $r: with $REPLICAS replicas running" "$WITH_MANY" "$WITH_MANY_PARTS"
  printf '%-52s %8s   (%s)\n' "round $r: 60 s after they were removed" "$AFTER_MANY" "$AFTER_MANY_PARTS"
  echo "round $r: left behind by removed replicas (container dirs, mounts, netns, cgroups): after the services $LEFT_SERVICES, after the $REPLICAS $LEFT_MANY"
done
echo "idle target ≤ $TARGET_MB MB: $(awk -v a="$AFTER_MANY" -v t="$TARGET_MB" 'BEGIN{print (a <= t) ? "met" : "MISSED"}') after the churn"
echo "load at end: $(load)"
