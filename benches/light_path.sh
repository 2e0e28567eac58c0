#!/usr/bin/env bash
# The light path against nginx at the machine's limit (issue 14):
#   bash benches/light_path.sh [DURATION] [ROUNDS]
# Starts the release binary twice on their own data directories — the
# default configuration (access log on, text, stdout to a file and the daily
# file; synchronous = full) and the same with `[log] access = false` — and
# nginx (Debian package) answering every GET with a static 200 and every POST
# with a static 202 whose body has the size of our ingest answer: the
# reference. Then, ROUNDS times (default 3, interleaved, because the
# machine's other load moves between runs), `wrk -t2 -c32 -dDURATION`
# (default 6s) against:
#   - GET /health, access log on, off, and nginx;
#   - GET /user with API key + bearer token (benches/lua/get_auth.lua), and nginx;
#   - durable ingest of one 4-datapoint message per request, a new messageId
#     each (benches/lua/ingest.lua, prebuilt as benches/ingest.sh does), and
#     nginx answering the same POSTs;
# and prints per run req/s, p99 and the server's CPU µs per request (from
# /proc: robust to other load, unlike req/s), then the medians and the
# ratios to nginx with the issue's targets. Needs nginx and wrk.
source "$(dirname "$0")/common.sh"
DURATION=${1:-6s}
ROUNDS=${2:-3}
need nginx nginx
SECONDS_RUN=${DURATION%s}
[[ $SECONDS_RUN =~ ^[0-9]+$ ]] || { echo "DURATION must be in seconds, like 6s"; exit 1; }
build

ON_PORT=$PORT
OFF_PORT=$((PORT + 1))
NGINX_PORT=$((PORT + 2))

# serve NAME PORT EXTRA_LOG_TOML: `serve` with the default [log] plus EXTRA
# (and room for every message of the run), its stdout in $WORK/NAME.out.
serve() {
  local name=$1 port=$2
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
max_connections = 4096
[storage]
data_dir = "$WORK/$name/data"
min_free_bytes = 1048576
[delivery]
max_pending = 100000000
[log]
$3
TOML
  [ "$name" = on ] && seed_identity "$WORK/on/config.toml"
  "$BIN" serve --config "$WORK/$name/config.toml" > "$WORK/$name.out" 2>&1 &
  PIDS+=($!)
  eval "${name^^}_PID=$!"
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0; sleep 0.05; done
  echo "server $name did not start"; cat "$WORK/$name.out"; exit 1
}

serve on "$ON_PORT" ""
serve off "$OFF_PORT" "access = false"
BASE="http://127.0.0.1:$ON_PORT"
login
export KEY TOKEN
message_templates valid-1
INGEST=/api/v1/service/send/messages
# The ingest answer nginx imitates: one real answer, its body as the static one.
ANSWER=$(sed "s/__ID__/light_path_probe/" "$WORK/valid-1.json" | curl -sf -X POST "$BASE$INGEST" \
  -H "X-API-Key: $KEY" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @-)
HEALTH=$(curl -sf "$BASE/health")
start_nginx "$NGINX_PORT" "$HEALTH" 202 "$ANSWER"
[ "$(curl -s -X POST -d x "http://127.0.0.1:$NGINX_PORT$INGEST")" = "$ANSWER" ] || { echo "nginx's POST answer differs"; exit 1; }
PREBUILT=$(( 50000 * SECONDS_RUN / 2 ))  # requests per wrk thread, as benches/ingest.sh
export PREBUILT BODY_FILE="$WORK/valid-1.json"

WRK=(-t2 -c32 -d"$DURATION")
declare -A R C P  # req/s, CPU µs, p99 ms: space-separated values per run name
run() {  # run NAME LABEL PID wrk-args…
  local name=$1 label=$2 pid=$3; shift 3
  wrk_cpu "$label" "$pid" "${WRK[@]}" "$@"
  R[$name]+="$RPS "; C[$name]+="${CPU:-0} "; P[$name]+="$P99 "
}
echo "wrk ${WRK[*]}, $(nproc) cores, $ROUNDS rounds, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for round in $(seq 1 "$ROUNDS"); do
  echo "— round $round"
  run health_on "GET /health, access log on (default)" "$ON_PID" "http://127.0.0.1:$ON_PORT/health"
  run health_off "GET /health, access = false" "$OFF_PID" "http://127.0.0.1:$OFF_PORT/health"
  run health_nginx "GET /health, nginx static 200" "" "http://127.0.0.1:$NGINX_PORT/health"
  run user_on "GET /user (key + token)" "$ON_PID" -s benches/lua/get_auth.lua "http://127.0.0.1:$ON_PORT/user"
  run user_nginx "GET /user, nginx static 200" "" -s benches/lua/get_auth.lua "http://127.0.0.1:$NGINX_PORT/user"
  run ingest_on "ingest, 4 datapoints, durable" "$ON_PID" -s benches/lua/ingest.lua "http://127.0.0.1:$ON_PORT$INGEST"
  run ingest_nginx "ingest, nginx static 202" "" -s benches/lua/ingest.lua "http://127.0.0.1:$NGINX_PORT$INGEST"
done
python3 - <<PY
import statistics as st
def med(s): return st.median(map(float, s.split()))
r = {k: med(v) for k, v in dict(health_on="${R[health_on]}", health_off="${R[health_off]}", health_nginx="${R[health_nginx]}",
     user_on="${R[user_on]}", user_nginx="${R[user_nginx]}", ingest_on="${R[ingest_on]}", ingest_nginx="${R[ingest_nginx]}").items()}
c = {k: med(v) for k, v in dict(health_on="${C[health_on]}", health_off="${C[health_off]}", user_on="${C[user_on]}", ingest_on="${C[ingest_on]}").items()}
p = {k: med(v) for k, v in dict(health_on="${P[health_on]}", health_off="${P[health_off]}", health_nginx="${P[health_nginx]}",
     user_on="${P[user_on]}", user_nginx="${P[user_nginx]}", ingest_on="${P[ingest_on]}", ingest_nginx="${P[ingest_nginx]}").items()}
print("\nmedians of $ROUNDS rounds:")
print(f"{'request':<34}{'req/s':>10}{'p99 ms':>9}{'CPU µs/req':>12}{'nginx req/s':>13}{'ratio':>8}{'target':>8}")
for key, label, target in [("health_on", "GET /health (access log on)", 0.70), ("user_on", "GET /user (key + token)", 0.50),
                           ("ingest_on", "ingest 4 datapoints, durable", 0.30)]:
    ref = key.split("_")[0] + "_nginx"
    ratio = r[key] / r[ref]
    print(f"{label:<34}{r[key]:>10,.0f}{p[key]:>9.2f}{c[key]:>12.2f}{r[ref]:>13,.0f}{ratio:>8.1%}{'≥' + format(target, '.0%'):>8}"
          + ("" if ratio >= target else "  (below)"))
off = r["health_on"] / r["health_off"]
print(f"{'GET /health (access = false)':<34}{r['health_off']:>10,.0f}{p['health_off']:>9.2f}{c['health_off']:>12.2f}")
print(f"access log on / off: {off:.1%} (costs {1 - off:.1%}, target ≤ 10%); CPU on {c['health_on']:.2f} µs, "
      f"off {c['health_off']:.2f} µs (the access log costs {c['health_on'] - c['health_off']:.2f} µs)")
PY
LINES=$(grep -c 'energyload::access' "$WORK/on.out" || true)
DROPPED=$(curl -sf "$BASE/metrics" | sed -n 's/^energyload_access_log_dropped_total //p')
echo "access lines on the 'on' server's stdout: $LINES, dropped: $DROPPED"
