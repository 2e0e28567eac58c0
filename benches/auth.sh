#!/usr/bin/env bash
# Authentication costs (issue 3):
#   bash benches/auth.sh [DURATION]
# - GET /health vs GET /user (API key + token) at 32 connections;
# - logins/s at the default argon2 settings and at the legacy ones
#   (m=102400, t=2, p=8; the imported users' hashes);
# - GET /user during a storm of 64 concurrent logins vs without;
# - peak RSS with 200 concurrent logins.
source "$(dirname "$0")/common.sh"
DURATION=${1:-10s}
build
write_config ""
seed_identity
"$BIN" user import tests/fixtures/legacy/backoffice_users.csv --config "$WORK/config.toml" >/dev/null
start_server
login
export KEY TOKEN
wrk_summary "GET /health" -t2 -c32 -d"$DURATION" "$BASE/health"
wrk_summary "GET /user (key + token)" -t2 -c32 -d"$DURATION" -s benches/lua/get_auth.lua "$BASE/user"
USERNAME=bench PASSWORD=$(cat "$WORK/pw") wrk_summary "logins, default argon2 (m=19456,t=2,p=1)" -t2 -c8 -d"$DURATION" -s benches/lua/login.lua "$BASE/login"
USERNAME=backoffice1 PASSWORD=Backoffice-pass-22 wrk_summary "logins, legacy argon2 (m=102400,t=2,p=8)" -t2 -c8 -d"$DURATION" -s benches/lua/login.lua "$BASE/login"
# GET /user while 64 connections keep logging in with the legacy hash,
# against a baseline with the same wrk settings.
wrk_summary "GET /user baseline for the storm (1 wrk thread)" -t1 -c32 -d5s -s benches/lua/get_auth.lua "$BASE/user"
USERNAME=backoffice1 PASSWORD=Backoffice-pass-22 wrk -t1 -c64 -d"$DURATION" -s benches/lua/login.lua "$BASE/login" > "$WORK/storm.out" 2>&1 &
STORM=$!
sleep 1
wrk_summary "GET /user during a 64-connection login storm" -t1 -c32 -d5s -s benches/lua/get_auth.lua "$BASE/user"
wait $STORM || true
# Peak memory with 200 concurrent legacy logins.
USERNAME=backoffice1 PASSWORD=Backoffice-pass-22 wrk -t2 -c200 -d5s -s benches/lua/login.lua "$BASE/login" > /dev/null 2>&1 &
STORM=$!
peak=0
while kill -0 $STORM 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVER_PID/status); [ "$rss" -gt "$peak" ] && peak=$rss; sleep 0.1
done
echo "peak RSS during 200 concurrent legacy logins: $((peak / 1024)) MiB (hashing pool: one 100 MiB buffer per core)"
