#!/usr/bin/env bash
# The README's second command: every check and every test (unit, property, integration and
# end-to-end with real containers), as root. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-}

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> the core stays pure"
if cargo tree -p dash-core -e normal --prefix none | grep -E '^(tokio|sqlx|tonic|hyper|axum|nix) '; then
  echo "error: dash-core must not depend on the crates above" >&2
  exit 1
fi
echo "==> cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "==> build (the end-to-end tests run the real binaries)"
cargo build --locked --workspace
echo "==> cargo test"
cargo test --locked --workspace --no-fail-fast
