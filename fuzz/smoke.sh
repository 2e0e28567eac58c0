#!/usr/bin/env bash
# CI smoke for the fuzz targets: builds every target (ASan, debug
# assertions), then runs each for FUZZ_SMOKE_SECONDS (default 20) seconds
# from the seed corpus and the kept regression inputs (replayed first: one
# that crashes again fails at once). Any crash, leak, timeout or failed
# property fails the run. See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SMOKE_SECONDS:-20}"
started=$(date +%s)
cargo +nightly fuzz build -O -a
targets=$(cargo +nightly fuzz list)
failed=0
for target in $targets; do
  ./run-target.sh "$target" "$seconds" || failed=1
done
echo "fuzz smoke: $(echo "$targets" | wc -w) targets, ${seconds}s each, $(( $(date +%s) - started ))s in all"
if [ "$failed" -ne 0 ]; then
  echo "fuzz smoke: FAILED; crashing inputs were copied to fuzz/regressions/<target>/" >&2
  exit 1
fi
