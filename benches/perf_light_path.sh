#!/usr/bin/env bash
# Where a light request's CPU goes (issue 14), with perf:
#   bash benches/perf_light_path.sh [/health|/user|ingest] [SECONDS]
# Builds the release binary with its symbols (CARGO_PROFILE_RELEASE_STRIP=none
# into /tmp/prof-target, so target/ stays as it is), starts it with the
# default log configuration (access log on; common.sh's caps) and an admin with an API key, runs
# `wrk -t2 -c32` against the path (with key + token for /user) and records
# SECONDS (default 4) of it with `perf record --call-graph dwarf` (`ingest`:
# durable 4-datapoint POSTs, a new messageId each, as benches/light_path.sh;
# the breakdown then also shows the top symbols). Prints the
# server's CPU µs per request (from /proc) and the share of samples, and so
# the µs per request, under each part of the pipeline
# (benches/perf_breakdown.py). Needs perf (apt-get install linux-perf) and wrk.
source "$(dirname "$0")/common.sh"
TARGET_PATH=${1:-/health}
SECONDS_REC=${2:-4}
need perf linux-perf
[ -n "${NO_BUILD:-}" ] || CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --quiet --bin energyload --target-dir /tmp/prof-target
BIN=/tmp/prof-target/x86_64-unknown-linux-gnu/release/energyload
LOG_LEVEL=info write_config ""
seed_identity
start_server
login
export KEY TOKEN
LUA=(); URL_PATH=$TARGET_PATH
[ "$TARGET_PATH" = /user ] && LUA=(-s benches/lua/get_auth.lua)
if [ "$TARGET_PATH" = ingest ]; then
  message_templates valid-1
  PREBUILT=$(( 50000 * (SECONDS_REC + 3) / 2 )); export PREBUILT BODY_FILE="$WORK/valid-1.json"
  LUA=(-s benches/lua/ingest.lua); URL_PATH=/api/v1/service/send/messages
fi
wrk -t2 -c32 -d"$((SECONDS_REC + 3))s" "${LUA[@]}" "$BASE$URL_PATH" > "$WORK/wrk.out" &
WRK=$!
sleep 1
before=$(cpu_ticks "$SERVER_PID"); started=$(date +%s.%N)
perf record -F 999 --call-graph dwarf,16384 -o "$WORK/perf.data" -p "$SERVER_PID" -- sleep "$SECONDS_REC" >/dev/null 2>&1
ticks=$(( $(cpu_ticks "$SERVER_PID") - before ))
wait $WRK
rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$WORK/wrk.out")
# CPU per request over the recorded window (perf's own overhead included).
CPU=$(python3 -c "print(f'{$ticks / $(getconf CLK_TCK) * 1e6 / ($rps * ($(date +%s.%N) - $started)):.2f}')")
echo "$TARGET_PATH: $rps req/s; server CPU ≈ $CPU µs per request while recorded"
perf script -i "$WORK/perf.data" 2>/dev/null | python3 benches/perf_breakdown.py "$CPU"
if [ "$TARGET_PATH" = ingest ]; then
  echo "top symbols (self):"
  perf report -i "$WORK/perf.data" --no-children -g none --sort comm,symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -40
fi
