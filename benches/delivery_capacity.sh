#!/usr/bin/env bash
# Issue 12's delivery cases with eSight at 100 ms (the simulator), default
# delivery configuration:
#   bash benches/delivery_capacity.sh [capacity|burst|outage ...]   # default: all three
# - capacity: simulator capacity 64 (queue 128): messages/s against the ideal
#   640/s, 429 share; settling after a cut to 16 and a raise back to 64.
# - burst: 100,000 messages arriving within 60 s (BURST, BURST_SECONDS):
#   time until all are delivered; ingest p50/p99 during it vs paused.
# - outage: eSight refuses connections for OUTAGE_SECONDS (default 300)
#   while ~100 messages/s arrive: time from its return to the first and the
#   last delivery.
# The simulator, the appliance and the client share the machine's cores.
source "$(dirname "$0")/common.sh"
SIM_PORT=$((PORT + 1))
build

run_case() {
  local case=$1; shift
  local sim_args=$1; shift
  rm -rf "$WORK/data"
  # shellcheck disable=SC2086
  "$BIN" esight-sim --listen "127.0.0.1:$SIM_PORT" --latency-ms 100 --keep-received 1000 $sim_args > "$WORK/sim.log" 2>&1 &
  local sim=$!
  esight_config
  seed_identity
  start_server
  login
  python3 benches/delivery_capacity.py "$BASE" "$KEY" "$TOKEN" "http://127.0.0.1:$SIM_PORT" "$case" "$@"
  kill "$SERVER_PID" "$sim"; wait "$SERVER_PID" "$sim" 2>/dev/null || true
}

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(capacity burst outage)
echo "delivery capacity bench: $(nproc) cores, $(date -u +%FT%TZ)"
for c in "${cases[@]}"; do
  case $c in
    capacity) run_case capacity "--capacity 64" "${CAPACITY_MESSAGES:-15000}" ;;
    burst) run_case burst "" "${BURST:-100000}" "${BURST_SECONDS:-60}" ;;
    outage) run_case outage "" "${OUTAGE_SECONDS:-300}" "${OUTAGE_RATE:-100}" ;;
    *) echo "unknown case $c"; exit 2 ;;
  esac
done
