#!/usr/bin/env bash
# Records which functions an idle `r8s server` runs, into crates/r8s/layout/functions.txt.gz:
# release builds place them together (see crates/r8s/build.rs). Run it again after large
# changes; a stale list costs idle memory, never correctness. Needs Debian's valgrind.
# Usage: scripts/order-functions.sh [seconds to record, default 60]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
command -v valgrind >/dev/null || {
  echo "order-functions: valgrind not found: apt-get install valgrind" >&2
  exit 1
}
cargo build --release --locked -p r8s
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Names stay mangled: the list is matched against the linker's section names.
timeout -s INT "$seconds" valgrind --tool=callgrind --demangle=no --dump-instr=no \
  --callgrind-out-file="$work/callgrind.out" \
  target/release/r8s server --disable-agent --bind-address 127.0.0.1 --https-listen-port 0 \
  --data-dir "$work/data" >"$work/server.log" 2>&1 || true
[ -s "$work/callgrind.out" ] || {
  echo "order-functions: no profile recorded; the server said:" >&2
  tail -n 20 "$work/server.log" >&2
  exit 1
}
# Runs differ (timers, the order start-up tasks finish in), so the list keeps what earlier runs
# recorded and adds this run's functions, in the order the profile first names them; names
# this binary no longer has drop out.
list=crates/r8s/layout/functions.txt.gz
nm --defined-only target/release/r8s | awk '$2 ~ /^[tT]$/ { print $3 }' >"$work/symbols"
{
  [ ! -f "$list" ] || zcat "$list"
  sed -n 's/^c\{0,1\}fn=([0-9]*) //p' "$work/callgrind.out"
} | awk 'NR == FNR { own[$0] = 1; next } own[$0] && !seen[$0]++' "$work/symbols" - |
  gzip -9n >"$work/functions.txt.gz"
mv "$work/functions.txt.gz" "$list"
echo "order-functions: $(zcat "$list" | wc -l) functions listed"
