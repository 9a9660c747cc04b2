#!/usr/bin/env bash
# Runs fuzz targets in fuzz/ for SECONDS each (default 60) with libFuzzer,
# and prints the executions per target: `scripts/fuzz.sh [SECONDS]
# [TARGET…]` (all targets when none is named). `scripts/fuzz.sh smoke` runs
# a fixed, seeded 100,000 inputs per target instead: the same work on every
# machine, as CI wants. A crash stops the script,
# with the reproducer in fuzz/artifacts/TARGET/. Needs a nightly toolchain
# and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if [ "$seconds" = smoke ]; then
  budget=(-seed=1 -runs=100000)
else
  budget=(-max_total_time="$seconds")
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
# Build once, then run the binaries: sources edited meanwhile change nothing.
cargo +nightly fuzz build -O
bin=fuzz/target/x86_64-unknown-linux-gnu/release
total=0
for target in "${targets[@]}"; do
  log=$(mktemp)
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  if ! "$bin/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
      "${budget[@]}" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
  total=$((total + runs))
  echo "$target: $runs executions, no crash"
  rm -f "$log"
done
echo "all targets: $total executions, no crash"
