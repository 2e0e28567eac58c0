#!/usr/bin/env bash
# Start-up time, idle memory and binary size of the release binary.
#
#   bash benches/startup.sh [RUNS]
#
# Start-up time: from exec of `energyload serve` (fresh data directory, so it
# includes creating and migrating the database) until GET /readyz answers 200,
# polled every millisecond; the median and worst of RUNS (default 20) runs.
# Idle RSS: VmRSS of the server after start-up and 100 requests.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release --quiet
bin=target/x86_64-unknown-linux-gnu/release/energyload
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=18181

times=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/data"
  start=$(date +%s%N)
  ENERGYLOAD_SERVER_LISTEN=127.0.0.1:$port ENERGYLOAD_STORAGE_DATA_DIR="$work/data" \
    ENERGYLOAD_STORAGE_MIN_FREE_BYTES=1048576 "$bin" serve --config /dev/null >/dev/null 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do sleep 0.001; done
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
  if [ "$i" -lt "$runs" ]; then kill -TERM $pid; wait $pid || true; fi
done
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health"; done
rss_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true

sorted=($(printf '%s\n' "${times[@]}" | sort -n))
median=${sorted[$(( runs / 2 ))]}
worst=${sorted[$(( runs - 1 ))]}
size=$(stat -c %s "$bin")
echo "start-up to /readyz 200: median ${median} µs, worst ${worst} µs over ${runs} runs"
echo "idle RSS after 100 requests: ${rss_kib} KiB"
echo "binary size: ${size} bytes ($(( size / 1024 / 1024 )) MiB), $(file -b "$bin" | grep -o 'static-pie linked\|statically linked')"
