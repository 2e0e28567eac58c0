#!/usr/bin/env bash
# Durable ingest throughput and latency (issue 4), key + token on every request:
#   bash benches/ingest.sh [DURATION]
# 32 connections, 2 wrk threads, synchronous=FULL. The eSight endpoints are not
# configured, so the delivery workers stay idle and the figure is ingest alone.
# The load generator and the server share the machine's cores. For the
# 4-datapoint run, where wrk's per-request Lua was ~10 % of the CPU, each wrk
# thread builds its requests (unique messageIds) before the clock starts
# (PREBUILT, see benches/lua/ingest.lua), enough for the duration at well
# above the measured rate. Not for the larger bodies: gigabytes of prebuilt
# requests slowed the server (memory pressure) more than the Lua did.
source "$(dirname "$0")/common.sh"
DURATION=${1:-10s}
build
write_config ""
seed_identity
start_server
login
export KEY TOKEN
message_templates valid-1 valid-2
SECONDS_RUN=${DURATION%s}
[[ $SECONDS_RUN =~ ^[0-9]+$ ]] || { echo "DURATION must be in seconds, like 10s"; exit 1; }
prebuilt() { echo $(( $1 * SECONDS_RUN / 2 )); }  # requests/s → per wrk thread
PREBUILT=$(prebuilt 50000) BODY_FILE="$WORK/valid-1.json" wrk_summary "4-datapoint message" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
BODY_FILE="$WORK/valid-2.json" wrk_summary "96-datapoint message" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
BATCH=100 BODY_FILE="$WORK/valid-1.json" wrk_summary "arrays of 100 (req/s; ×100 = messages/s)" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
echo "stored: $(curl -s "$BASE/metrics" | grep '^energyload_messages{status="pending"}')"
