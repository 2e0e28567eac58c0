#!/usr/bin/env bash
# Delivery throughput to the eSight simulator (issue 4):
#   bash benches/delivery.sh [MESSAGES]
# For 0 ms and 50 ms of added eSight latency and 1, 4, 16 workers: N messages
# are ingested while delivery is paused, then delivery resumes and the time
# until none is pending gives messages/s. Then end-to-end latency accepted →
# delivered at light load (4 workers, 0 ms): 200 messages posted one by one.
# The simulator, the appliance and the client share the machine's cores.
source "$(dirname "$0")/common.sh"
N=${1:-20000}
SIM_PORT=$((PORT + 1))
build

run_case() {
  local workers=$1 latency=$2 count=$3
  rm -rf "$WORK/data"
  "$BIN" esight-sim --listen "127.0.0.1:$SIM_PORT" --latency-ms "$latency" --keep-received 1000 > "$WORK/sim.log" 2>&1 &
  local sim=$!
  write_config "
[esight]
token_url = \"http://127.0.0.1:$SIM_PORT/token\"
sites_url = \"http://127.0.0.1:$SIM_PORT/sites\"
meters_url = \"http://127.0.0.1:$SIM_PORT/meters\"
consumption_url = \"http://127.0.0.1:$SIM_PORT/consumption\"
username = \"esight-sim\"
password = \"esight-sim-token-pass\"
post_username = \"esight-sim-post\"
post_password = \"esight-sim-post-pass\"
"
  sed -i "s/^\[delivery\]/[delivery]\nworkers = $workers/" "$WORK/config.toml"
  seed_identity
  start_server
  login
  python3 benches/delivery_driver.py "$BASE" "$KEY" "$TOKEN" "$count" "$workers" "$latency"
  kill "$SERVER_PID" "$sim"; wait "$SERVER_PID" "$sim" 2>/dev/null || true
}

for latency in 0 50; do
  for workers in 1 4 16; do
    count=$N
    # At 50 ms a worker does at most 20 messages/s: keep each case ~15 s.
    [ "$latency" -gt 0 ] && count=$((workers * 20 * 15))
    run_case "$workers" "$latency" "$count"
  done
done
run_case 4 0 0
