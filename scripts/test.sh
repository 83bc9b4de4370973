#!/usr/bin/env bash
# Runs every test r8s has: formatting, lints, and the whole test suite (store conformance on
# the embedded store and a real etcd, durability, the test toolchain, the r8s CLI).
# Usage: scripts/test.sh [extra cargo-nextest arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || {
  echo "test: cargo not found; install Rust with rustup: https://rustup.rs" >&2
  exit 1
}
scripts/deps.sh
# kubectl v1.37 and helm v4, cached under .cache/tools; tests find them there.
R8S_TOOLS_BIN=$(scripts/fetch-k8s-tools.sh | tail -n1)
export R8S_TOOLS_BIN

# A one-off build gains nothing from incremental state, which is gigabytes on disk.
if [[ ${CI:-} == true ]]; then
  export CARGO_INCREMENTAL=0
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --locked --no-fail-fast "$@"
