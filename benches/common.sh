# Shared set-up for the benchmark scripts (sourced, not run).
# Starts the release binary on a temporary data directory with a user and an
# API key, and logs in. Needs: wrk, curl, python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BIN: the binary to measure (default: the release build, built first).
BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/energyload}
PORT=${PORT:-18181}
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "benchmark needs $1 (apt-get install $2)"; exit 1; }; }
need wrk wrk; need curl curl; need python3 python3

build() { [ -n "${NO_BUILD:-}" ] || cargo build --release --quiet; }

# write_config EXTRA_TOML: config with the listen port, data dir, big caps;
# log level $LOG_LEVEL (default warn: no access log; "info" is the default
# configuration's, with the access log).
write_config() {
  cat > "$WORK/config.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
max_connections = 4096
[storage]
data_dir = "$WORK/data"
min_free_bytes = 1048576
synchronous = "full"
[auth]
lockout_failures = 1000000
lockout_ip_failures = 1000000
[delivery]
max_pending = 100000000
${DELIVERY_EXTRA:-}
[log]
level = "${LOG_LEVEL:-warn}"
$1
TOML
}

# esight_config [EXTRA_TOML]: write_config with [esight] pointing at the
# simulator on $SIM_PORT (default credentials of `energyload esight-sim`).
esight_config() {
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
${1:-}"
}

# seed_identity [CONFIG]: an admin user with a known password and an API key
# ($KEY), in the database of CONFIG (default $WORK/config.toml).
seed_identity() {
  local config=${1:-$WORK/config.toml}
  echo "bench-password-12345" > "$WORK/pw"
  "$BIN" user add bench --role admin --password-file "$WORK/pw" --config "$config" >/dev/null
  KEY=$("$BIN" apikey create bench --config "$config" | tail -n 1)
}

start_server() {
  "$BIN" serve --config "$WORK/config.toml" > "$WORK/serve.log" 2>&1 &
  PIDS+=($!)
  SERVER_PID=$!
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$BASE/readyz" && return 0; sleep 0.05; done
  echo "server did not start"; cat "$WORK/serve.log"; exit 1
}

login() {
  TOKEN=$(curl -sf -X POST "$BASE/login" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
    -d "{\"username\":\"bench\",\"password\":\"$(cat "$WORK/pw")\"}")
}

# wrk_summary LABEL -- wrk args…: runs wrk --latency and prints one line.
wrk_summary() {
  local label=$1; shift
  wrk --latency "$@" > "$WORK/wrk.out" 2>&1 || { cat "$WORK/wrk.out"; exit 1; }
  python3 - "$label" "$WORK/wrk.out" <<'PY'
import re, sys
label, path = sys.argv[1], sys.argv[2]
t = open(path).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def pct(p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: (.*)", t)
print(f"{label}: {rps:,.0f} req/s, p50 {pct(50):.2f} ms, p99 {pct(99):.2f} ms"
      + (f", NON-2xx {errs.group(1)}" if errs else "") + (f", socket errors {sock.group(1)}" if sock else ""))
PY
}

# message_templates NAME...: writes $WORK/NAME.json from
# tests/fixtures/messages/NAME.json with messageId "__ID__" (the Lua scripts
# put a unique id there per request).
message_templates() {
  python3 - "$WORK" "$@" <<'PY'
import json, sys, pathlib
work = pathlib.Path(sys.argv[1])
for name in sys.argv[2:]:
    m = json.loads(pathlib.Path(f"tests/fixtures/messages/{name}.json").read_text())
    m["header"]["messageId"] = "__ID__"
    (work / f"{name}.json").write_text(json.dumps(m))
PY
}

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_cpu LABEL PID -- wrk args…: wrk_summary, plus the server's CPU
# microseconds per request when PID is not empty (robust to other load on
# the machine, unlike req/s). Sets $RPS, $P99 (ms) and $CPU (empty without PID).
wrk_cpu() {
  local label=$1 pid=$2 before=0; shift 2
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  wrk_summary "$label" "$@"
  RPS=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$WORK/wrk.out")
  P99=$(python3 -c "import re,sys; m=re.search(r'\s99%\s+([\d.]+)(us|ms|s)', open(sys.argv[1]).read()); v=float(m.group(1)); print(v/1000 if m.group(2)=='us' else v*1000 if m.group(2)=='s' else v)" "$WORK/wrk.out")
  CPU=
  if [ -n "$pid" ]; then
    local ticks=$(( $(cpu_ticks "$pid") - before ))
    local requests=$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in.*/\1/p' "$WORK/wrk.out")
    CPU=$(python3 -c "print(f'{$ticks / $(getconf CLK_TCK) * 1e6 / $requests:.2f}')")
    echo "  server CPU: $CPU µs per request"
  fi
}

# start_nginx PORT GET_BODY [POST_STATUS POST_BODY]: nginx (Debian package,
# `apt-get install nginx`) on 127.0.0.1:PORT answering every GET with a
# static 200 and GET_BODY, and every POST with POST_STATUS and POST_BODY
# (default 200 and GET_BODY), access log off: the reference.
start_nginx() {
  need nginx nginx
  local port=$1 get_body=$2 post_status=${3:-200} post_body=${4:-$2}
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
    listen 127.0.0.1:$port;
    default_type application/json;
    location / {
      if (\$request_method = POST) { return $post_status '$post_body'; }
      return 200 '$get_body';
    }
  }
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx/stderr" &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return 0; sleep 0.05; done
  echo "nginx did not start"; cat "$WORK/nginx/stderr" "$WORK/nginx/error.log"; exit 1
}
