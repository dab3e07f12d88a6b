#!/usr/bin/env bash
# The README's second command: every check and every test (unit, property, integration and
# end-to-end with real containers), as root. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-}
# A one-shot build gains nothing from incremental data and would write gigabytes of it (a
# full disk failed a CI run at 521 s): off unless the caller set it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# What the tests themselves need: a throwaway registry (Debian's docker-registry) and skopeo
# to push test images into it (the package's own service is not wanted: the tests start
# theirs), sqlite3 to write a data dir of an earlier layout (the upgrade test), and dnsmasq
# (the binary only: dnsmasq-base) as the upstream resolver the DNS tests run on loopback, and
# Node.js with npm for the OpenID Connect provider the login tests run on loopback
# (tests/e2e/oidc: npm's oidc-provider, installed there by the test from its package-lock),
# prometheus for `promtool check metrics` (the /metrics tests parse with it), and Chromium with
# its WebDriver for the portal's browser test.
missing=()
for p in docker-registry skopeo sqlite3 dnsmasq-base prometheus chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (with its own npm): the commands are what count.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing test prerequisites: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services are not wanted: the tests start what they need.
  for svc in docker-registry prometheus; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> the core stays pure"
if cargo tree -p dash-core -e normal --prefix none | grep -E '^(tokio|sqlx|tonic|hyper|axum|nix) '; then
  echo "error: dash-core must not depend on the crates above" >&2
  exit 1
fi
echo "==> the masters know images, not containers"
if cargo tree -p dash-master -e normal --prefix none | grep -E '^dash-runtime '; then
  echo "error: dash-master must depend on dash-image only, not on dash-runtime" >&2
  exit 1
fi
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> build (the end-to-end tests run the real binaries)"
cargo build --locked --workspace
echo "==> the admin API keeps its OpenAPI contract (schemathesis)"
./scripts/api-contract.sh
echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo's last line is a crate's doc tests, often 0).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
