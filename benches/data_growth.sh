#!/usr/bin/env bash
# How the cost grows with the stored data (issue 14):
#   bash benches/data_growth.sh [N...]        (default: 0 10000000)
# For each N: a database of N realistic stored messages (built once by the
# fill tool, benches/data_growth_fill.rs, cached in target/data-growth/N),
# copied to a scratch directory; the real server on the copy; then
#   - ingest req/s and p99: 4-datapoint messages and arrays of 100 (wrk);
#   - the delivery claim query p50/p99 (in-process, each claim rolled back);
#   - list p50/p99 with the admin page's filters (one and two), and the
#     dashboard's reads (/send/stats, /send/failures, /metrics);
#   - ingest p99 while retention prunes about one day of messages (server
#     restarted with retention.delivered_days = 29) against the same run
#     without pruning;
#   - bytes on disk per stored message.
# DURATION (default 8s) per wrk run. Ratios against N = 0 are the figures
# to read; the machine is shared, so absolute rates are noisy.
#
# Only the pruning comparison: PRUNE_ONLY=1 bash benches/data_growth.sh N
# (N > 0). PRUNE_DAYS (default 29) is the retention the second run starts
# with: the fill spreads N messages over 30 days, so 30 - PRUNE_DAYS days of
# them (plus the hours since the fill) go. BINS="label=path ..." compares
# several binaries in the same run (each on a fresh copy of the fill, in
# order, ROUNDS times, default 1), e.g. main's binary against this branch's.
# SERVE_LOGS=DIR keeps each pruning run's server log there; PRUNE_WAIT
# (default 900) is how many seconds to wait for the pass's end after ingest.
source "$(dirname "$0")/common.sh"
DURATION=${DURATION:-8s}
export REQUESTS=${REQUESTS:-60}  # per list query
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(0 10000000)
build
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --example data_growth_fill
FILL=target/x86_64-unknown-linux-gnu/release/examples/data_growth_fill
message_templates valid-1
# The retention pass logs its end (debug when it deleted nothing); no access log.
LOG_LEVEL="warn,energyload::storage::ingest=debug"

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
PRUNE_DAYS=${PRUNE_DAYS:-29}
PRUNE_WAIT=${PRUNE_WAIT:-900}

retention_config() {
  write_config "
[retention]
delivered_days = $1
failed_days = $1"
  sed -i "s#^data_dir = .*#data_dir = \"$WORK/data\"#" "$WORK/config.toml"
}

ingest_runs() {  # LABEL: 4-datapoint and arrays of 100
  PREBUILT=$(( 20000 * ${DURATION%s} / 2 )) BODY_FILE="$WORK/valid-1.json" \
    wrk_cpu "N=$N $1 ingest 4-datapoint" "" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
}

# prune_phase LABEL: ingest on the stored copy in $WORK/data without pruning
# (retention 10 years), then again after a restart with retention
# PRUNE_DAYS while the first pass prunes; prints both and their p99 ratio.
prune_phase() {
  local label=$1 base_p99
  retention_config 3650
  start_server
  login
  export KEY TOKEN
  ingest_runs "$label no pruning:"
  base_p99=$P99
  stop_server
  retention_config "$PRUNE_DAYS"
  start_server
  login
  export KEY TOKEN
  ingest_runs "$label while pruning:"
  # The pass logs its progress every 2 s (debug): how far it got under load.
  python3 - "$WORK/serve.log" <<'PY2'
import re, sys
last = [l for l in open(sys.argv[1]) if "retention progress" in l]
if last:
    m, s = re.search(r"messages=(\d+)", last[-1]), re.search(r"seconds=([\d.]+)", last[-1])
    print(f"  pruned while ingest ran: {int(m.group(1)):,} messages in {float(s.group(1)):.1f} s"
          f" ({int(m.group(1)) / float(s.group(1)):,.0f}/s)")
PY2
  sleep 1
  grep "message retention pass" "$WORK/serve.log" | tail -1 || echo "  (the retention pass had not ended yet)"
  echo "  $label ingest p99 while pruning / without: $(python3 -c "print(f'{$P99 / $base_p99:.2f}')")"
  for _ in $(seq 1 "$PRUNE_WAIT"); do grep -q "message retention pass" "$WORK/serve.log" && break; sleep 1; done
  grep "message retention pass" "$WORK/serve.log" | tail -1 || echo "  (stopped before the pass ended: PRUNE_WAIT)"
  python3 - "$WORK/serve.log" <<'PY2'
import re, sys
for line in open(sys.argv[1]):
    if "message retention pass" in line:
        m, s = re.search(r"messages=(\d+)", line), re.search(r"seconds=([\d.]+)", line)
        if m and s and float(s.group(1)) > 0:
            print(f"  pruning rate: {int(m.group(1)) / float(s.group(1)):,.0f} messages/s")
PY2
  stop_server
  if [ -n "${SERVE_LOGS:-}" ]; then mkdir -p "$SERVE_LOGS" && cp "$WORK/serve.log" "$SERVE_LOGS/$label.log"; fi
}

if [ -n "${PRUNE_ONLY:-}" ]; then
  for N in "${SIZES[@]}"; do
    [ "$N" -gt 0 ] || { echo "PRUNE_ONLY needs N > 0"; exit 1; }
    "$FILL" fill "$N"
    for round in $(seq 1 "${ROUNDS:-1}"); do
      for spec in ${BINS:-current=$BIN}; do
        BIN=${spec#*=}
        echo "== N = $N, retention $PRUNE_DAYS days, ${spec%%=*} ($BIN), round $round"
        rm -rf "$WORK/data"
        cp -r --sparse=always "target/data-growth/$N/data" "$WORK/data"
        retention_config 3650
        seed_identity
        prune_phase "${spec%%=*}"
        echo "after pruning: $("$FILL" info "$WORK/data")"
      done
    done
  done
  rm -rf "$WORK/data"
  exit 0
fi

for N in "${SIZES[@]}"; do
  echo "== N = $N"
  rm -rf "$WORK/data"
  if [ "$N" -gt 0 ]; then
    "$FILL" fill "$N"
    cp -r --sparse=always "target/data-growth/$N/data" "$WORK/data"
  fi
  retention_config 3650
  mkdir -p "$WORK/data"
  seed_identity
  echo "claim (64 due, rolled back): $("$FILL" claim "$WORK/data" 300)"
  start_server
  login
  export KEY TOKEN
  ingest_runs "no pruning:"
  BATCH=100 BODY_FILE="$WORK/valid-1.json" \
    wrk_cpu "N=$N ingest arrays of 100 (req/s; x100 = messages/s)" "" -t2 -c32 -d"$DURATION" -s benches/lua/ingest.lua "$BASE/api/v1/service/send/messages"
  python3 - "$BASE" "$KEY" "$TOKEN" <<'PY'
import http.client, json, sys, time, urllib.parse
base, key, token = sys.argv[1], sys.argv[2], sys.argv[3]
u = urllib.parse.urlparse(base)
REQUESTS = int(__import__("os").environ.get("REQUESTS", "60"))
conn = http.client.HTTPConnection(u.hostname, u.port)
h = {"X-API-Key": key, "Authorization": f"Bearer {token}"}
def get(path):
    conn.request("GET", path, headers=h)
    r = conn.getresponse(); body = r.read()
    if r.status != 200: raise SystemExit(f"{path}: {r.status} {body[:200]!r}")
    return body
M = "/api/v1/service/send/messages?limit=50"
queries = [
    ("list, no filter", M),
    ("list status=failed", M + "&status=failed"),
    ("list status=pending", M + "&status=pending"),
    ("list meter_id", M + "&meter_id=M00042"),
    ("list site_id", M + "&site_id=SITE042"),
    ("list local_market=de", M + "&local_market=de"),
    ("list error_code", M + "&error_code=NoMeterId"),
    ("list status=failed + meter_id", M + "&status=failed&meter_id=M00042"),
    ("list status=delivered + site_id", M + "&status=delivered&site_id=SITE042"),
    ("list status=failed + site_id", M + "&status=failed&site_id=SITE042"),
    ("list meter_id + site_id", M + "&meter_id=M00042&site_id=SITE042"),
    ("list data_feed_type=gas + status=failed", M + "&data_feed_type=gas&status=failed"),
    ("GET /send/stats", "/api/v1/service/send/stats"),
    ("GET /send/failures", "/api/v1/service/send/failures"),
    ("GET /management/attention", "/api/v1/management/attention"),
    ("GET /metrics", "/metrics"),
]
for label, path in queries:
    times = []
    for i in range(REQUESTS):
        s = time.perf_counter(); get(path); times.append((time.perf_counter() - s) * 1000)
    first = times[0]; times.sort()
    p = lambda q: times[min(len(times) - 1, int(len(times) * q))]
    print(f"  {label}: first {first:.1f} ms, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms ({REQUESTS} requests)")
PY
  stop_server
  echo "stored: $("$FILL" info "$WORK/data")"
  if [ "$N" -gt 0 ]; then
    # Retention: keep PRUNE_DAYS (29) days, so the oldest day (and the hours
    # since the fill) goes, while ingest runs.
    prune_phase "N=$N"
    echo "after pruning: $("$FILL" info "$WORK/data")"
  fi
  rm -rf "$WORK/data"
done
