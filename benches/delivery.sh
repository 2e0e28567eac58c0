#!/usr/bin/env bash
# Delivery throughput to the eSight simulator at 0 ms and at 100 ms of eSight
# latency, default delivery configuration (issue 12):
#   bash benches/delivery.sh [MESSAGES]          # default 100000
# For each latency: N messages are ingested (arrays of 100) while delivery is
# paused, then delivery resumes and the time until none is pending or
# delivering gives messages/s. Reported beside it: the server's peak RSS
# (VmHWM), the adaptive concurrency limit reached, and the TCP connections the
# simulator accepted over the case (keep-alive reuse). Then the accepted →
# delivered latency at light load (0 ms, 200 messages 20 ms apart).
# The simulator, the appliance and the client share the machine's cores.
source "$(dirname "$0")/common.sh"
N=${1:-100000}
SIM_PORT=$((PORT + 1))
build

run_case() {
  local latency=$1 count=$2
  rm -rf "$WORK/data"
  "$BIN" esight-sim --listen "127.0.0.1:$SIM_PORT" --latency-ms "$latency" --keep-received 1000 > "$WORK/sim.log" 2>&1 &
  local sim=$!
  esight_config ""
  seed_identity
  start_server
  login
  python3 benches/delivery_driver.py "$BASE" "$KEY" "$TOKEN" "$count" "$latency" "$SERVER_PID" "http://127.0.0.1:$SIM_PORT"
  kill "$SERVER_PID" "$sim"; wait "$SERVER_PID" "$sim" 2>/dev/null || true
}

echo "delivery bench: $N messages per case, $(nproc) cores, $(date -u +%FT%TZ)"
run_case 0 "$N"
run_case 100 "$N"
run_case 0 0
