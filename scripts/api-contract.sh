#!/usr/bin/env bash
# The admin API keeps its OpenAPI contract: schemathesis runs every check it has against a real
# `dash server` and fails on any failure or error. The server runs in a network namespace of
# its own holding only `lo`, so the image pulls and registry logins schemathesis makes it try
# cannot leave the machine; everything it makes is removed on exit, whatever happens.
#
#   cargo build -p dash -p dash-monitor && ./scripts/api-contract.sh      # as root, ~1 min
#
# scripts/test.sh runs it. SCHEMATHESIS_MAX_EXAMPLES (default 100) sets the examples per
# operation; SCHEMATHESIS_ARGS adds arguments (e.g. `--seed N` to replay a run). What
# schemathesis is not asked, and why, is in the config below and in docs/api.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The version this was tested with: a newer one brings new checks, to be met deliberately.
SCHEMATHESIS_VERSION=4.32.5
venv=$root/target/schemathesis-venv
dash=$root/target/debug/dash
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}

if [ "$(id -u)" != 0 ]; then
  echo "error: run as root (the server makes a bridge and nftables rules in its namespace)" >&2
  exit 1
fi
for bin in dash dash-monitor; do
  if [ ! -x "target/debug/$bin" ]; then
    echo "error: target/debug/$bin is missing; run cargo build -p dash -p dash-monitor first" >&2
    exit 1
  fi
done
for cmd in python3 ip nsenter curl; do
  if ! command -v "$cmd" >/dev/null; then
    echo "error: $cmd is missing (apt-get install python3 iproute2 util-linux curl)" >&2
    exit 1
  fi
done

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF " $SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian keeps venv's ensurepip in a package of its own.
    rm -rf "$venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Names of their own for everything the server makes, so that it never meets another daemon's.
id=$$
ns=dash-api-$id
run_dir=/run/dash-api-$id
bridge=dapi$((id % 100000))
nft_table=dash_api_$id
cgroup_parent=dash-api-$id
subnet=10.96.$((id % 256)).0/24
work=$(mktemp -d /tmp/dash-api-contract.XXXXXX)
data=$work/data
server_pid=
checker_pid=
status=0

in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
client() { DASH_ADDR=127.0.0.1:7070 DASH_DATA_DIR=$data in_ns "$dash" "$@"; }

# Whatever happens: remove every service the run made, wait until their containers are gone,
# stop the server, then delete the namespace and the directories.
cleanup() {
  status=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$checker_pid" ]; then
    kill "$checker_pid" 2>/dev/null
    wait "$checker_pid" 2>/dev/null
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    for name in $(client service ls -o json 2>/dev/null | python3 -c \
      'import json, sys; print("\n".join(s["spec"]["name"] for s in json.load(sys.stdin)))'); do
      client service rm "$name" >/dev/null || echo "warning: could not remove service $name" >&2
    done
    for _ in $(seq 300); do
      [ -z "$(ls -A "$data/containers" 2>/dev/null)" ] && break
      sleep 0.2
    done
    if [ -n "$(ls -A "$data/containers" 2>/dev/null)" ]; then
      echo "warning: containers left in $data/containers:" $(ls "$data/containers") >&2
    fi
    kill "$server_pid"
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null
  fi
  if [ "$status" != 0 ] && [ -s "$work/server.log" ]; then
    echo "==> the server's log (last 40 lines)" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  ip netns delete "$ns" 2>/dev/null
  rm -rf "$run_dir" "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns"
in_ns ip link set lo up
mkdir -p "$data"
# --advertise-addr turns on master_api, so that /v1/tokens answers as in a cluster.
# Not through in_ns: a function would run in a subshell, and $! would be that shell's pid.
nsenter --net="/run/netns/$ns" "$dash" server --data-dir "$data" --run-dir "$run_dir" \
  --listen 127.0.0.1:7070 --proxy-listen 127.0.0.1:8080 --advertise-addr 127.0.0.1 \
  --bridge "$bridge" --nft-table "$nft_table" --subnet "$subnet" \
  --cgroup-parent "$cgroup_parent" --node-name contract >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 150); do
  in_ns curl -sf http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "error: the server exited" >&2; exit 1; }
  sleep 0.2
done
token=$(cat "$data/admin.token")
auth="Authorization: Bearer $token"

# What schemathesis cannot see, checked here against the same document with the validator it
# uses (jsonschema_rs):
# - a valid GET /v1/events: a stream that never ends (newline-delimited JSON, which schemathesis
#   reads to the end; it cuts only text/event-stream short), so it sends /v1/events only
#   invalid requests (config below). Here: the kept events, read for a second;
# - the lines of newline-delimited answers (schemathesis has no reader for them): those of
#   the stream above, of a pull (from a refused loopback port: one `error` line) and of logs;
# - the answers about a service: schemathesis cannot make one (the service file is TOML it
#   cannot write). Here: one whose image cannot be pulled (no container is made), once its
#   replica was tried. It is removed before schemathesis runs, which would scale it to
#   thousands of replicas.
echo "==> the answers schemathesis cannot get match the document"
cat >"$work/contract.toml" <<'EOF'
name = "contract"
image = "127.0.0.1:1/contract/none:1"
[resources]
memory = "64MiB"
cpu = 0.5
[[routes]]
host = "contract.local"
port = 8080
EOF
client apply -f "$work/contract.toml" >/dev/null
in_ns "$venv/bin/python" - "$token" <<'EOF'
import json, socket, sys, time, urllib.request

import jsonschema_rs

def call(method, path, body=None, timeout=10):
    headers = {"Authorization": "Bearer " + sys.argv[1]}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    request = urllib.request.Request(
        "http://127.0.0.1:7070" + path, data=body, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)

doc = json.load(call("GET", "/openapi.json"))

def check(method, path, template, response, body):
    """The answer's status, content type and body are documented (each line of ndjson)."""
    documented = doc["paths"][template][method.lower()]["responses"]
    assert str(response.status) in documented, f"{method} {path}: {response.status}"
    (media, content), = documented[str(response.status)]["content"].items()
    content_type = response.headers.get("content-type")
    assert content_type == media, f"{method} {path}: {content_type}, documented {media}"
    validator = jsonschema_rs.validator_for({**content["schema"], "components": doc["components"]})
    lines = body.splitlines() if media == "application/x-ndjson" else [body]
    for value in map(json.loads, lines):
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(value)]
        assert not errors, f"{method} {path}: {value}: {errors}"

def get(path, template):
    with call("GET", path) as r:
        check("GET", path, template, r, r.read())

# The stream ends only when the client goes: whatever came within a second.
with call("GET", "/v1/events?since=0", timeout=1) as r:
    body = b""
    try:
        while chunk := r.read1(65536):
            body += chunk
    except (TimeoutError, socket.timeout):
        pass
    body = body[: body.rfind(b"\n") + 1]
    assert body, "no event in a second (the node's own are kept from its start)"
    check("GET", "/v1/events?since=0", "/v1/events", r, body)

with call("POST", "/v1/images/pull", {"reference": "127.0.0.1:1/contract/none:1"}) as r:
    check("POST", "/v1/images/pull", "/v1/images/pull", r, r.read())

deadline = time.monotonic() + 30
while not any(r["restarts"] > 0 or r["state"] == "failed"
              for r in json.load(call("GET", "/v1/replicas?service=contract"))):
    assert time.monotonic() < deadline, "the replica was never tried"
    time.sleep(0.2)
for path, template in [
    ("/v1/services", "/v1/services"),
    ("/v1/services/contract", "/v1/services/{name}"),
    ("/v1/services/contract/explain", "/v1/services/{name}/explain"),
    ("/v1/replicas?service=contract", "/v1/replicas"),
    ("/v1/stats?service=contract", "/v1/stats"),
    ("/v1/routes", "/v1/routes"),
    ("/v1/logs/contract?tail=5", "/v1/logs/{service}"),
]:
    get(path, template)
EOF
# Removing a replica whose container was never made takes the worker a few retries (~15 s).
client service rm contract >/dev/null
for _ in $(seq 300); do
  [ "$(client service ls -o json)" = "[]" ] && break
  sleep 0.2
done
if [ "$(client service ls -o json)" != "[]" ]; then
  echo "error: the service contract was not removed within 60 s" >&2
  exit 1
fi

cat >"$work/schemathesis.toml" <<'EOF'
# What differs from schemathesis' defaults, operation by operation, and why. One filter a
# section, by operation id: schemathesis ORs the filters of a section.

# The service file in `content` is TOML; JSON Schema cannot say which strings are valid
# service files, so a schema-valid body may well be answered 400 (with `diagnostics`).
[[operations]]
include-operation-id = "apply_service"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409"]

# The body is an image archive, which random bytes are not: 400 (`archive`).
[[operations]]
include-operation-id = "import_image"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409"]

# Login asks the registry, and no registry can be reached from the server's namespace: 502
# (`registry`) is the documented answer to that.
[[operations]]
include-operation-id = "login_registry"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]

# A valid request is an endless stream (checked above); invalid ones are answered at once, so
# only those are sent. Unknown query parameters are ignored, as everywhere, so a request whose
# only fault is one of those is a valid, endless one too: none are added.
[[operations]]
include-operation-id = "stream_events"
generation.mode = "negative"
generation.allow-extra-parameters = false
EOF

echo "==> schemathesis $SCHEMATHESIS_VERSION, every check, $max_examples examples per operation"
# In the background and waited for, so that a signal is handled at once (bash runs a trap only
# once the foreground command is done); the cleanup stops it.
# --suppress-health-check filter_too_much: the image reference's pattern (the grammar of
# dash_core::image_ref, on import's `rootfs` and elsewhere) is one that hypothesis can only meet
# by filtering many candidates; how many varies from run to run, and its health check failed
# one run (2026-12-06) in which every request sent passed every check. It is a limit of the
# generator, not a fault of the API: the operations are still tested.
# shellcheck disable=SC2086 # SCHEMATHESIS_ARGS is a list of arguments
(cd "$work" && exec nsenter --net="/run/netns/$ns" "$venv/bin/schemathesis" \
  --config-file "$work/schemathesis.toml" run http://127.0.0.1:7070/openapi.json -H "$auth" \
  --checks all --max-examples "$max_examples" --request-timeout 10 \
  --suppress-health-check filter_too_much \
  --generation-database none --no-color ${SCHEMATHESIS_ARGS:-}) &
checker_pid=$!
wait "$checker_pid"
checker_pid=
