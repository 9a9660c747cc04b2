#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60) with
# libFuzzer (`cargo +nightly fuzz`), and prints the executions per target.
# A crash stops the script with the target's reproducer in
# fuzz/artifacts/TARGET/. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cargo +nightly fuzz build -O
total=0
for target in $(cargo +nightly fuzz list); do
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
  total=$((total + runs))
  echo "$target: $runs executions in ${seconds} s, no crash"
  rm -f "$log"
done
echo "all targets: $total executions, no crash"
