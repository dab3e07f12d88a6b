#!/usr/bin/env bash
# Installs what Dash needs on Debian 12 (as root): the system packages, then a release build of
# `dash` and `dash-monitor` into /usr/local/bin. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(crun runc busybox-static nftables iproute2 util-linux curl tar ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The workspace's rust-version (Cargo.toml): let-chains need 1.88.
MIN_RUST=1.88
if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; Dash needs Rust $MIN_RUST or newer: install it with rustup" \
       "(https://rustup.rs), then run this again" >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$have" | sort -V | head -n1)" != "$MIN_RUST" ]; then
  echo "error: rustc $have is too old; Dash needs Rust $MIN_RUST or newer: run \`rustup update stable\`" \
       "(or install a newer toolchain with rustup), then run this again" >&2
  exit 1
fi

echo "==> building dash (release)"
cargo build --release --locked -p dash -p dash-monitor
install -m 0755 target/release/dash target/release/dash-monitor /usr/local/bin/
echo "==> installed /usr/local/bin/dash and /usr/local/bin/dash-monitor"
