#!/usr/bin/env bash
# The long fuzz run: every target of fuzz/ for FUZZ_SECONDS (default 600)
# seconds, one after the other, at nice 19 (the machine is shared).
#
#   bash benches/fuzz.sh                 # 10 minutes per target
#   FUZZ_SECONDS=3600 bash benches/fuzz.sh [TARGET...]
#
# Prints per target: inputs executed, coverage (cov: edges, ft: features),
# corpus size and crashes. A crashing input is kept under
# fuzz/regressions/<target>/ (commit it with the fix: fuzz/smoke.sh, run by
# CI, replays every one of them). Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-600}
nice -n 19 cargo +nightly fuzz build -O -a
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
echo "fuzz: ${seconds}s per target on $(nproc) cores ($(uname -m)), $(date -u +%FT%TZ)"
failed=0
for target in "${targets[@]}"; do
  ./run-target.sh "$target" "$seconds" 19 || failed=1
done
exit $failed
