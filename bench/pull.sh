#!/usr/bin/env bash
# bench/pull.sh: cold pull of a ~50 MB multi-layer image from a loopback registry, Dash next to
# its peers on this machine, in one run, from the same registry and image:
#
#   dash     dash image pull REF -o json  (after dash image rm REF + dash image prune: no blob,
#            no unpacked layer left), client wall clock; then dash image ls must list it
#   skopeo   skopeo copy docker://REF oci:DIR:1  (after rm -rf DIR): blobs only, no unpacking
#   podman   podman pull REF  (after podman rmi -f REF): into containers-storage, unpacked
#
# The image (built here, pushed with skopeo into Debian's docker-registry on 127.0.0.1:<free
# port>): a busybox-static layer (/bin/busybox) and LAYERS layers of LAYER_BYTES random bytes
# each (incompressible), all gzip'd, OCI manifest + config with their diff_ids. Needs root.
# Everything it creates (registry and its storage, server, bridge dashpull0, nft table
# dash_pull, /run/dash-pull, the podman image, scratch dirs) is removed on exit, also on error
# or Ctrl-C. The output also goes to bench/results/pull-<date>.txt (on success).
#
#   bench/pull.sh
#
# Environment: BIN_DIR (default target/release, relative to the repo root; built when missing
# or too old to know `image pull`), TRIALS (default 5), WARMUP (default 1: one uncounted round
# of every tool), LAYERS (default 5), LAYER_BYTES (default 10485760). Progress goes to stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"        # helpers; goes to the repo root (ROOT)

defaults TRIALS=5 WARMUP=1 LAYERS=5 LAYER_BYTES=10485760

bench_net pull 7392 10.95.0.0/24 dashpull0 dash_pull /run/dash-pull pullbench
REPO=bench/big
TAG=1
TIMEOUT_S=300                   # per timed pull
RESULT=$ROOT/bench/results/pull-$(date +%F).txt

need_root_and jq nft ip python3 skopeo podman findmnt timeout setsid
[ -x /usr/bin/docker-registry ] || die "/usr/bin/docker-registry is missing (Debian docker-registry)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (Debian busybox-static)"

# ---- binaries -----------------------------------------------------------------------------
ensure_binaries " or without image pull" image pull --help

refuse_if_taken

# ---- state for the cleanup ----------------------------------------------------------------
bench_state dash-pull            # (Dash should create no cgroup here: no container runs)
REG=$SCR/registry
mkdir -p "$REG"
REGISTRY_PID=
PODMAN_REF=

# Everything on stdout also goes to $OUT, copied to $RESULT when the run succeeds.
tee_report

pull_cleanup() { # on_exit's (rc: the exit status)
  local left=''
  [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
  [ -n "$REGISTRY_PID" ] && stop_pid "$REGISTRY_PID"
  cleanup_net
  [ -n "$PODMAN_REF" ] && podman image exists "$PODMAN_REF" 2>/dev/null &&
    podman rmi -f "$PODMAN_REF" >/dev/null 2>&1
  cleanup_cgroups_forward
  # What is left (should be nothing).
  [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null && left+=" server:$SERVER_PID"
  [ -n "$REGISTRY_PID" ] && kill -0 "$REGISTRY_PID" 2>/dev/null && left+=" registry:$REGISTRY_PID"
  left+=$(net_left)
  [ -n "$PODMAN_REF" ] && podman image exists "$PODMAN_REF" 2>/dev/null && left+=" podman:$PODMAN_REF"
  left+=$(cgroups_left)
  if [ -n "$left" ]; then
    echo "cleanup: LEFT BEHIND:$left"
  else
    echo "cleanup: nothing left behind (registry, server, $BRIDGE, table $NFT_TABLE, $RUN_DIR, mounts, podman image, scratch dir)"
  fi
  # Let tee finish, keep the report if the run succeeded, then the scratch dir goes.
  tee_report_end "$rc"
  if [ -n "$(mounts_under "$SCR")" ]; then
    log "LEFT BEHIND: mounts under $SCR (not removed)"
  else
    rm -rf --one-file-system "$SCR"
    [ -e "$SCR" ] && log "LEFT BEHIND: $SCR"
  fi
}
on_exit pull_cleanup

# ---- header -------------------------------------------------------------------------------
header pull "$(versions skopeo podman docker-registry)"
echo "peers: $(skopeo --version), $(podman --version), registry: Debian docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"
echo "trials: $TRIALS per tool (interleaved, order rotated per trial), warm-up rounds: $WARMUP"
echo "load at start: $(load)"

# ---- the image: an OCI layout built here --------------------------------------------------
log "building the OCI layout ($LAYERS x $LAYER_BYTES random bytes + busybox)"
python3 - "$SCR/layout" "$TAG" "$LAYERS" "$LAYER_BYTES" "$SCR/digests" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

out, tag, n, size, digests_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)

def put(data):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd, len(data)

def tar_of(entries):  # entries: (name, kind, payload) kind: dir | file | link
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
                t.addfile(ti)
            else:
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()

with open("/bin/busybox", "rb") as f:
    bb = f.read()
tars = [tar_of([("bin", "dir", None, 0o755), ("bin/busybox", "file", bb, 0o755),
                ("bin/sh", "link", "busybox", 0o777)])]
for i in range(n):
    tars.append(tar_of([("data", "dir", None, 0o755),
                        ("data/random-%d.bin" % i, "file", os.urandom(size), 0o644)]))

diff_ids, descs, lines = [], [], []
for t in tars:
    diff_id = "sha256:" + hashlib.sha256(t).hexdigest()
    digest, length = put(gzip.compress(t, compresslevel=1, mtime=0))
    diff_ids.append(diff_id)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": length})
    lines.append("layer %s %d %s" % (digest, length, diff_id))
config = {"architecture": "amd64", "os": "linux",
          "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cdigest, csize = put(json.dumps(config).encode())
lines.append("config %s %d -" % (cdigest, csize))
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
            "layers": descs}
mdigest, msize = put(json.dumps(manifest).encode())
lines.append("manifest %s %d -" % (mdigest, msize))
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": mdigest, "size": msize, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(digests_out, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
# Bytes a pull downloads: layers + config (the manifest is tiny and left out).
BYTES=$(awk '$1=="layer"||$1=="config"{s+=$3} END{print s}' "$SCR/digests")
LAYER_COUNT=$(awk '$1=="layer"' "$SCR/digests" | wc -l)
UNPACKED=$((LAYERS * LAYER_BYTES + $(stat -c %s /bin/busybox)))

# ---- the registry -------------------------------------------------------------------------
PORT=$(free_port)
REGADDR=127.0.0.1:$PORT
REF=$REGADDR/$REPO:$TAG
cat >"$REG/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG/storage
  delete:
    enabled: true
http:
  addr: $REGADDR
EOF
log "starting docker-registry on $REGADDR"
setsid /usr/bin/docker-registry serve "$REG/config.yml" </dev/null >>"$REG/registry.log" 2>&1 4>&- &
REGISTRY_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$REG/registry.log" >&2; die "docker-registry exited"; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || { tail "$REG/registry.log" >&2; die "docker-registry not answering"; }
log "pushing $REF"
skopeo copy --quiet --dest-tls-verify=false "oci:$SCR/layout:$TAG" "docker://$REF" >&2
rm -rf "$SCR/layout"

echo "image: $REF, $LAYER_COUNT gzip layers (busybox-static + $LAYERS x $LAYER_BYTES random bytes),"
awk -v b="$BYTES" -v u="$UNPACKED" 'BEGIN{printf "       %.1f MB compressed (layers + config), %.1f MB of file data unpacked\n", b/1e6, u/1e6}'

# ---- dash server --------------------------------------------------------------------------
start_server

# ---- podman -------------------------------------------------------------------------------
podman image exists "$REF" && die "podman already has $REF"
PODMAN_REF=$REF                  # from here on the cleanup removes it

# ---- the tools: one cold pull each --------------------------------------------------------
# Every hex digest and diff_id of the image: none may be left in Dash's data dir before a pull.
HEXES=$(awk '$1=="layer"{print $2; print $4} $1=="config"{print $2}' "$SCR/digests" | sed 's/^sha256://')

pull_dash() { # pull_dash TRIAL
  local t0 t1 f
  "$DASH" image rm "$REF" >/dev/null 2>&1 || true
  "$DASH" image prune -o json >"$SCR/prune.json" || die "dash image prune failed"
  "$DASH" image ls -o json | jq -e --arg r "$REF" 'any(.[].tags[]; . == $r)' >/dev/null &&
    die "dash: $REF still listed after image rm"
  for h in $HEXES; do
    f=$(find "$DATA" -name "$h*" -print -quit)
    [ -z "$f" ] || die "dash: $f still there after rm + prune: not a cold pull"
  done
  sync
  t0=$(now_us)
  timeout "$TIMEOUT_S" "$DASH" image pull "$REF" -o json >"$SCR/dash-pull.json" 2>"$SCR/dash-pull.err" ||
    { cat "$SCR/dash-pull.err" "$SCR/dash-pull.json" >&2; die "dash image pull failed"; }
  t1=$(now_us)
  # Output: one JSON event a line ({"kind": "resolved" | "blob" | "blob_done" | "unpacking" | "done"}).
  jq -se 'any(.[]; .kind == "done")' "$SCR/dash-pull.json" >/dev/null ||
    { tail -3 "$SCR/dash-pull.json" >&2; die "dash: no done event"; }
  jq -se 'any(.[]; .kind == "blob_done" and .cached)' "$SCR/dash-pull.json" >/dev/null &&
    die "dash: a blob was already there: not a cold pull"
  "$DASH" image ls -o json | jq -e --arg r "$REF" 'any(.[].tags[]; . == $r)' >/dev/null ||
    { "$DASH" image ls >&2; die "dash: $REF not in dash image ls after the pull"; }
  [ "$1" -gt 0 ] && record dash "$(us_to_ms $((t1 - t0)))"
  return 0
}

pull_skopeo() {
  local t0 t1 dir=$SCR/skopeo-oci
  rm -rf "$dir"
  sync
  t0=$(now_us)
  timeout "$TIMEOUT_S" skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$dir:$TAG" \
    2>"$SCR/skopeo.err" || { cat "$SCR/skopeo.err" >&2; die "skopeo copy failed"; }
  t1=$(now_us)
  [ "$(find "$dir/blobs/sha256" -type f | wc -l)" -ge $((LAYER_COUNT + 2)) ] || die "skopeo: blobs missing in $dir"
  [ "$1" -gt 0 ] && record skopeo "$(us_to_ms $((t1 - t0)))"
  rm -rf "$dir"
  return 0
}

pull_podman() {
  local t0 t1
  podman image exists "$REF" && podman rmi -f "$REF" >/dev/null
  podman image exists "$REF" && die "podman: $REF still there after rmi"
  sync
  t0=$(now_us)
  timeout "$TIMEOUT_S" podman pull -q --tls-verify=false "$REF" >/dev/null 2>"$SCR/podman.err" ||
    { cat "$SCR/podman.err" >&2; die "podman pull failed"; }
  t1=$(now_us)
  podman image exists "$REF" || die "podman: $REF missing after the pull"
  [ "$1" -gt 0 ] && record podman "$(us_to_ms $((t1 - t0)))"
  return 0
}

TOOLS=(dash skopeo podman)
run_round() { # run_round TRIAL (0: warm-up): every tool once, starting at a rotating tool
  local k n=${#TOOLS[@]} tool
  for ((k = 0; k < n; k++)); do
    tool=${TOOLS[(($1 + k) % n)]}
    "pull_$tool" "$1"
    sleep 0.5
  done
}
for ((w = 1; w <= WARMUP; w++)); do
  log "warm-up round $w"
  run_round 0
done
for ((trial = 1; trial <= TRIALS; trial++)); do
  log "trial $trial/$TRIALS"
  run_round "$trial"
done
DASH_RSS=$(awk '/^VmHWM:/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status" 2>/dev/null)

# ---- report -------------------------------------------------------------------------------
label() {
  case $1 in
    dash) echo "dash image pull" ;;
    skopeo) echo "skopeo copy -> oci dir" ;;
    podman) echo "podman pull" ;;
  esac
}
echo
echo "## cold pull of $REF (ms, client wall clock); MB/s = compressed MB / median; ratio = peer / dash (> 1: Dash faster)"
printf '%-24s %6s %9s %9s %9s %8s %11s\n' tool trials min median max MB/s ratio
DM=$(median "$SAMPLES/dash")
for m in "${TOOLS[@]}"; do
  read -r cnt mn md mx < <(stats "$SAMPLES/$m")
  mbs=$(awk -v b="$BYTES" -v t="$md" 'BEGIN{printf "%.1f", b/1e6/(t/1000)}')
  if [ "$m" = dash ]; then r=-; else r=$(awk -v a="$md" -v b="$DM" 'BEGIN{printf "%.2f", a/b}'); fi
  printf '%-24s %6s %9s %9s %9s %8s %11s\n' "$(label "$m")" "$cnt" "$mn" "$md" "$mx" "$mbs" "$r"
done
echo
echo "notes: not the same work. Dash and podman also unpack every layer (Dash into its image store,"
echo "podman into containers-storage overlay) and check the diff_ids; skopeo only stores the blobs"
echo "(digest-verified) in an OCI layout dir, no unpacking. Each trial is cold for every tool: Dash"
echo "after image rm + image prune (no blob, pull-cache entry or unpacked layer of the image left,"
echo "checked), skopeo into a fresh dir, podman after rmi -f. The registry's files stay in the page"
echo "cache (pushed before, read by every trial); nothing is dropped from it. Plain HTTP on loopback."
echo "dash server peak RSS (VmHWM) over the run: ${DASH_RSS:-?} MB"
echo "load at end: $(load)"
