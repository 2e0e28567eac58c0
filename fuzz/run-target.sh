#!/usr/bin/env bash
# Runs one fuzz target (already built with `cargo +nightly fuzz build -O -a`)
# for SECONDS seconds and prints one summary line:
#   <target> runs=<executed inputs> cov=<edges> ft=<features> corpus=<inputs> crashes=<0|1>
# Used by fuzz/smoke.sh and benches/fuzz.sh.
#
#   fuzz/run-target.sh TARGET SECONDS [NICE]
#
# Inputs: fuzz/corpus-work/TARGET (new inputs land here, git-ignored), the
# seed corpus fuzz/corpus/TARGET and the kept regressions
# fuzz/regressions/TARGET (replayed first). A crashing input (crash, leak,
# timeout, out of memory, failed assertion) is copied into
# fuzz/regressions/TARGET/ to stay a regression input; the exit status is
# then 1. The full libFuzzer log stays in fuzz/artifacts/TARGET/last-run.log.
set -euo pipefail
cd "$(dirname "$0")"
target=$1 seconds=$2 niceness=${3:-0}
mkdir -p "corpus-work/$target" "regressions/$target" "artifacts/$target"
log="artifacts/$target/last-run.log"
before=$(ls "artifacts/$target" | grep -cE '^(crash|leak|timeout|oom)-' || true)
status=0
nice -n "$niceness" cargo +nightly fuzz run -O -a "$target" \
  "corpus-work/$target" "corpus/$target" "regressions/$target" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 >"$log" 2>&1 || status=$?

runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: [0-9]+' | tail -1 || true)
cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
corpus=$(grep -oE 'corp: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
crashes=0
for f in "artifacts/$target"/crash-* "artifacts/$target"/leak-* "artifacts/$target"/timeout-* "artifacts/$target"/oom-*; do
  [ -e "$f" ] || continue
  cp -n "$f" "regressions/$target/"
done
after=$(ls "artifacts/$target" | grep -cE '^(crash|leak|timeout|oom)-' || true)
if [ "$status" -ne 0 ]; then
  crashes=$(( after > before ? after - before : 1 ))
fi
echo "$target runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corpus:-?} crashes=$crashes"
if [ "$status" -ne 0 ]; then
  grep -E 'panicked|==[0-9]+==ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
  exit 1
fi
