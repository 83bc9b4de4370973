#!/usr/bin/env bash
# Brings up r8s on a fresh Debian 12 machine: installs the Debian packages it needs, builds the
# release binary and starts `r8s server` with its state in ${R8S_DATA_DIR:-/var/lib/r8s}.
# Usage: scripts/up.sh [extra r8s server flags]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || {
  echo "up: cargo not found; install Rust with rustup first: https://rustup.rs" >&2
  exit 1
}
scripts/deps.sh
cargo build --release --locked -p r8s
exec target/release/r8s server --data-dir "${R8S_DATA_DIR:-/var/lib/r8s}" "$@"
