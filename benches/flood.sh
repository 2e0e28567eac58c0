#!/usr/bin/env bash
# Unauthenticated floods cost nothing lasting (issue 11):
#   bash benches/flood.sh [DURATION]   (default 5s: the flood outlasts it)
# 1. ingest p99 alone: 4-datapoint posts, key + token, 1 wrk thread, 16
#    connections, DURATION;
# 2. the same while a second wrk (1 thread, 16 connections) floods TOTAL
#    (default 100,000) requests without credentials, rotating over
#    /api/v1/service/send/stats, /readyz and /metrics;
# then the audit rows the flood wrote (access_denied: first events at once,
# summaries when the window closes or at a clean stop) and the database reads
# /readyz and /metrics made. Both wrks and the server share the machine's
# cores, so the flood also takes CPU from ingest: that share is the cost of
# answering, not of the database.
source "$(dirname "$0")/common.sh"
DURATION=${1:-5s}
TOTAL=${TOTAL:-100000}
# wrk always runs for its duration; the flood stops sending at TOTAL answers.
FLOOD_DURATION=${FLOOD_DURATION:-30s}
build
write_config ""
seed_identity
start_server
login
export KEY TOKEN
message_templates valid-1
SECONDS_RUN=${DURATION%s}
[[ $SECONDS_RUN =~ ^[0-9]+$ ]] || { echo "DURATION must be in seconds, like 10s"; exit 1; }
denied_rows() {
  python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM audit_events WHERE type='access_denied'\").fetchone()[0])" "$WORK/data/energyload.db"
}
counter() { curl -s "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
ingest() {
  PREBUILT=$(( 20000 * SECONDS_RUN )) BODY_FILE="$WORK/valid-1.json" wrk_summary "$1" -t1 -c16 -d"$DURATION" \
    -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
}

ingest "ingest alone (4-datapoint)"
rows_before=$(denied_rows); probes_before=$(counter energyload_readiness_probes_total)
reads_before=$(counter energyload_stored_state_reads_total)
TOTAL=$TOTAL THREADS=1 wrk -t1 -c16 -d"$FLOOD_DURATION" -s benches/lua/flood.lua "$BASE/" > "$WORK/flood.out" 2>&1 &
FLOOD=$!
PIDS+=($FLOOD)
ingest "ingest during the flood"
wait "$FLOOD"
python3 - "$WORK/flood.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = re.search(r"(\d+) requests in ([\d.]+)(\w+)", t)
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
print(f"flood: {n.group(1)} requests in {n.group(2)}{n.group(3)} ({float(rps):,.0f} req/s)")
PY
rows_during=$(( $(denied_rows) - rows_before ))
echo "database reads by the flood: readiness probes $(( $(counter energyload_readiness_probes_total) - probes_before )), metrics reads $(( $(counter energyload_stored_state_reads_total) - reads_before ))"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
echo "access_denied rows written by the flood: $rows_during while it ran, $(( $(denied_rows) - rows_before )) after a clean stop"
