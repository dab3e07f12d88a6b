#!/usr/bin/env bash
# bench/userns-breakdown.sh: where a user namespace's start-time cost goes, in the OCI runtime
# alone (no Dash): bare `crun run` of a busybox bundle that joins a network namespace (as a
# Dash replica does), in three variants, interleaved, ROUNDS rounds:
#
#   plain        no user namespace (rootfs owned by root)
#   userns       a user namespace (rootfs owned by the range's root), the default mounts
#   userns-nocg  the same without the /sys/fs/cgroup mount (crun cannot mount cgroup v1 in a
#                user namespace and binds every controller instead)
#
#   bench/userns-breakdown.sh | tee bench/results/userns-breakdown-$(date +%F).txt
#
# Each run is `crun run` of `true` to its exit, then `crun delete`; timed around the run only.
# crun runs through the hybrid-cgroup wrapper Dash uses (a private mount namespace with
# /sys/fs/cgroup/unified covered). Needs root, crun, busybox-static. Everything it makes (the
# scratch dir, the network namespace, crun state) is removed on exit.
set -eEuo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-20}
HOST_ID=$(((1 << 30) + 4095 * 65536))
NETNS=dash-bench-userns-$$

need_root_and crun busybox python3
SCR=$(mktemp -d /tmp/dash-bench-userns.XXXXXX)
# The range's root must pass through to its rootfs (mktemp makes the dir 0700).
chmod 711 "$SCR"
SAMPLES=$SCR/samples
mkdir -p "$SAMPLES"
cleanup() {
  set +e
  for d in "$SCR"/state/*/; do [ -d "$d" ] && crun --root "$SCR/state" delete -f "$(basename "$d")" >/dev/null 2>&1; done
  ip netns del "$NETNS" 2>/dev/null
  rm -rf "$SCR"
  echo "cleanup: nothing left behind ($SCR, netns $NETNS, crun state)"
}
trap cleanup EXIT

header userns-breakdown "$(versions crun)"
ip netns add "$NETNS"
for v in plain userns; do
  mkdir -p "$SCR/$v/rootfs/bin" "$SCR/$v/rootfs"/{proc,sys,dev,tmp,etc}
  cp /bin/busybox "$SCR/$v/rootfs/bin/busybox"
  ln -s busybox "$SCR/$v/rootfs/bin/true"
done
chown -R "$HOST_ID:$HOST_ID" "$SCR/userns/rootfs"
python3 - "$SCR" "$NETNS" "$HOST_ID" <<'PYEOF'
import json, os, subprocess, sys
scr, netns, host = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.check_call(["crun", "spec"], cwd=scr)
spec = json.load(open(os.path.join(scr, "config.json")))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/true"]
spec["root"]["readonly"] = False
def ns(user):
    n = [{"type": t} for t in ["pid", "ipc", "uts", "mount"]]
    n.append({"type": "network", "path": f"/run/netns/{netns}"})
    if user:
        n.append({"type": "user"})
    return n
for name, user, cg in [("plain", False, True), ("userns", True, True), ("userns-nocg", True, False)]:
    s = json.loads(json.dumps(spec))
    s["root"]["path"] = os.path.join(scr, "plain" if not user else "userns", "rootfs")
    s["linux"]["namespaces"] = ns(user)
    if user:
        m = [{"containerID": 0, "hostID": host, "size": 65536}]
        s["linux"]["uidMappings"] = m
        s["linux"]["gidMappings"] = m
    if not cg:
        s["mounts"] = [x for x in s["mounts"] if x["destination"] != "/sys/fs/cgroup"]
    os.makedirs(os.path.join(scr, "b-" + name), exist_ok=True)
    json.dump(s, open(os.path.join(scr, "b-" + name, "config.json"), "w"))
PYEOF

run() { # run VARIANT ID: one crun run to the container's exit, timed
  local t0 t1
  t0=$(now_us)
  unshare -m sh -c "mount -t tmpfs none /sys/fs/cgroup/unified 2>/dev/null; exec crun --root '$SCR/state' run -b '$SCR/b-$1' '$2'" >/dev/null 2>"$SCR/err" ||
    die "crun run ($1) failed: $(cat "$SCR/err")"
  t1=$(now_us)
  crun --root "$SCR/state" delete -f "$2" >/dev/null 2>&1 || true
  record "$1" "$(us_to_ms $((t1 - t0)))"
}

log "warm-up"
for v in plain userns userns-nocg; do run "$v" "warm-$v-$$"; done
for r in $(seq "$ROUNDS"); do
  for v in plain userns userns-nocg; do run "$v" "r$r-$v-$$"; done
done

echo
echo "crun run of /bin/true to its exit, joining a network namespace; $ROUNDS runs each, interleaved (ms)"
printf '  %-14s %s\n' variant "median (min–max)"
for v in plain userns userns-nocg; do
  printf '  %-14s %s\n' "$v" "$(stats "$SAMPLES/$v" | awk '{printf "%s (%s–%s)", $3, $2, $4}')"
done
echo "  userns ÷ plain: $(awk -v a="$(median "$SAMPLES/userns")" -v b="$(median "$SAMPLES/plain")" 'BEGIN{printf "%.2f", a/b}')" \
  "  userns-nocg ÷ plain: $(awk -v a="$(median "$SAMPLES/userns-nocg")" -v b="$(median "$SAMPLES/plain")" 'BEGIN{printf "%.2f", a/b}')"
