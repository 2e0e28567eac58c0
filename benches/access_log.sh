#!/usr/bin/env bash
# What the access log costs (issue 14):
#   bash benches/access_log.sh [DURATION] [ROUNDS]
# Starts the release binary twice on their own data directories — the
# default [log] (access log on, text, stdout to a file and the daily file)
# and the same with `access = false` — and nginx answering a static 200 on
# a loopback port (the reference), then runs `wrk -t2 -c32` against
# GET /health of each, one after the other in the same run (ROUNDS times,
# default 3, interleaved: the machine's other load moves between runs), and
# prints each run's req/s and the ratios of the medians. Needs nginx
# (apt-get install nginx) and wrk.
source "$(dirname "$0")/common.sh"
DURATION=${1:-6s}
ROUNDS=${2:-3}
need nginx nginx
build

ON_PORT=$PORT
OFF_PORT=$((PORT + 1))
NGINX_PORT=$((PORT + 2))

# serve NAME PORT EXTRA_LOG_TOML: starts `serve` with the default [log]
# plus EXTRA, its stdout in $WORK/NAME.out.
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
[log]
$3
TOML
  "$BIN" serve --config "$WORK/$name/config.toml" > "$WORK/$name.out" 2>&1 &
  PIDS+=($!)
  eval "${name^^}_PID=$!"
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0; sleep 0.05; done
  echo "server $name did not start"; cat "$WORK/$name.out"; exit 1
}

serve on "$ON_PORT" ""
serve off "$OFF_PORT" "access = false"

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx/stderr" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/health" && break; sleep 0.05; done

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# rps LABEL URL [PID]: one wrk run, its summary line; the req/s in $RPS and,
# with PID, the server's CPU microseconds per request in $CPU (robust to
# other load on the machine, unlike req/s).
rps() {
  local before=0
  [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
  wrk_summary "$1" -t2 -c32 -d"$DURATION" "$2"
  RPS=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$WORK/wrk.out")
  if [ -n "${3:-}" ]; then
    local ticks=$(( $(cpu_ticks "$3") - before ))
    local requests=$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in.*/\1/p' "$WORK/wrk.out")
    CPU=$(python3 -c "print(f'{$ticks / $(getconf CLK_TCK) * 1e6 / $requests:.2f}')")
    echo "  server CPU: $CPU µs per request"
  fi
}

echo "wrk -t2 -c32 -d$DURATION, GET /health, $(nproc) cores, $ROUNDS rounds"
ON=(); OFF=(); NGINX=(); ON_CPU=(); OFF_CPU=()
for round in $(seq 1 "$ROUNDS"); do
  rps "energyload, access log on (default)" "http://127.0.0.1:$ON_PORT/health" "$ON_PID"; ON+=("$RPS"); ON_CPU+=("$CPU")
  rps "energyload, access = false" "http://127.0.0.1:$OFF_PORT/health" "$OFF_PID"; OFF+=("$RPS"); OFF_CPU+=("$CPU")
  rps "nginx, static 200" "http://127.0.0.1:$NGINX_PORT/health"; NGINX+=("$RPS")
done
python3 - "${ON[*]}" "${OFF[*]}" "${NGINX[*]}" "${ON_CPU[*]}" "${OFF_CPU[*]}" <<'PY'
import statistics, sys
on, off, nginx, on_cpu, off_cpu = (statistics.median(map(float, a.split())) for a in sys.argv[1:])
print(f"medians: on {on:,.0f}, off {off:,.0f}, nginx {nginx:,.0f} req/s")
print(f"access log on / off: {on / off:.1%} (costs {1 - on / off:.1%})")
print(f"on / nginx: {on / nginx:.1%}; off / nginx: {off / nginx:.1%}")
print(f"server CPU per request (medians): on {on_cpu:.2f} µs, off {off_cpu:.2f} µs; "
      f"the access log costs {on_cpu - off_cpu:.2f} µs ({on_cpu / off_cpu - 1:.1%})")
PY
LINES=$(grep -c 'energyload::access' "$WORK/on.out" || true)
DROPPED=$(curl -sf "http://127.0.0.1:$ON_PORT/metrics" | sed -n 's/^energyload_access_log_dropped_total //p')
echo "access lines on the 'on' server's stdout: $LINES, dropped: $DROPPED"
