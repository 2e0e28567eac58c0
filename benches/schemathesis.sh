#!/usr/bin/env bash
# The long API fuzzing run: tests/schemathesis/run.sh with at least 1,000
# test cases per operation (EXAMPLES), every phase, at nice 10. Prints
# schemathesis's summary per phase; the figure for BENCHMARKS.md is the
# "Test cases: N generated" line of each phase over its operation count.
#
#   benches/schemathesis.sh [EXAMPLES]        # default 1000
#   PHASES="1" WORKERS=2 benches/schemathesis.sh 1000
#
# Needs schemathesis 4.32 (`pip install schemathesis==4.32.0`, or set SCHEMATHESIS).
set -euo pipefail
cd "$(dirname "$0")/.."
export EXAMPLES=${1:-${EXAMPLES:-1000}}
export ROLE_EXAMPLES=${ROLE_EXAMPLES:-$EXAMPLES}
start=$(date +%s)
set +e
nice -n 10 tests/schemathesis/run.sh 2>&1 | tee "${LOG:-/tmp/energyload-schemathesis.log}" \
  | grep --line-buffered -E '^(==|!!)|Operations:|Test cases:| in [0-9.]+s =|ST[0-9]{3}'
status=${PIPESTATUS[0]}
set -e
echo "== wall time: $(( $(date +%s) - start )) s; full log: ${LOG:-/tmp/energyload-schemathesis.log}"
exit "$status"
