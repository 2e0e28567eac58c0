#!/usr/bin/env bash
# API fuzzing: schemathesis against the served /openapi.json of a real
# `energyload serve` (temp data dir, loopback port, eSight simulator behind
# it), authenticated, every operation the document has, `--checks all`.
# Exits non-zero on any failure: a server error, a status code or body the
# document does not describe, a request valid by the document refused or an
# invalid one accepted.
#
#   EXAMPLES=25 tests/schemathesis/run.sh        # examples per operation (phases 1 and 2)
#
# Environment:
#   EXAMPLES       test cases per operation in phases 1 and 2 (default 25)
#   ROLE_EXAMPLES  test cases per operation in phase 3 (default: EXAMPLES / 5, at least 3)
#   SCHEMATHESIS   the schemathesis command (default: `schemathesis`; pip install schemathesis==4.32.0)
#   BIN            the binary (default: the release build, built first unless NO_BUILD=1)
#   SEED           schemathesis seed (default: random; printed by schemathesis)
#   WORKERS        schemathesis workers (default 1)
#   ST_ARGS        more arguments for every `schemathesis run`
#   PHASES         which of the phases below to run (default "1 2 3"; CI's smoke runs "1 2")
#   ROLES          phase 3's roles (default "backoffice esight user")
#
# Phases. The run needs one session (API key + token) the fuzzed operations must
# not destroy; hooks.py is used ONLY for that:
#   1. every operation of the document as an admin. A path parameter naming the
#      run's own user, API key or token is redirected to a decoy admin's (so
#      deactivate/edit/revoke/end-session still hit a real resource); a logout or
#      sign-out the fuzzer sends revokes the token and the next 401 makes the
#      auth hook log in again. No operation is excluded.
#   2. the operations that can destroy the session through a path parameter
#      (every non-GET operation with one, found in the document): each runs alone
#      with its own fresh admin + key, with every second case aimed at that
#      identity's own user id, key id and token jti.
#   3. every operation again as each other role (backoffice, esight, user), fewer
#      cases: 403s and role-specific answers must be documented too.
# hooks.py also drops exactly two kinds of failure that depend on the clock or on
# stored state, which JSON Schema cannot state: a past `expires_at` for a new API
# key (400) and a messageId accepted before with other content (422 `Conflict`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

EXAMPLES=${EXAMPLES:-25}
ROLE_EXAMPLES=${ROLE_EXAMPLES:-$(( EXAMPLES / 5 > 3 ? EXAMPLES / 5 : 3 ))}
SCHEMATHESIS=${SCHEMATHESIS:-schemathesis}
BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/energyload}
WORKERS=${WORKERS:-1}
PHASES=${PHASES:-1 2 3}
HERE=$PWD/tests/schemathesis

command -v "$SCHEMATHESIS" >/dev/null || { echo "needs schemathesis: pip install schemathesis==4.32.0"; exit 2; }
command -v curl >/dev/null || { echo "needs curl"; exit 2; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin energyload

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SIM_PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" esight-sim --listen "127.0.0.1:$SIM_PORT" > "$WORK/sim.log" 2>&1 &
PIDS+=($!)

# Lockout limits are raised: the run logs in again after every logout the
# fuzzer sends, and thousands of generated bad logins come from 127.0.0.1
# (lockout itself is tested in tests/api/login.rs).
cat > "$WORK/config.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[storage]
data_dir = "$WORK/data"
min_free_bytes = 1048576
[auth]
lockout_failures = 1000000
lockout_ip_failures = 1000000
[esight]
token_url = "http://127.0.0.1:$SIM_PORT/token"
sites_url = "http://127.0.0.1:$SIM_PORT/sites"
meters_url = "http://127.0.0.1:$SIM_PORT/meters"
consumption_url = "http://127.0.0.1:$SIM_PORT/consumption"
username = "esight-sim"
password = "esight-sim-token-pass"
post_username = "esight-sim-post"
post_password = "esight-sim-post-pass"
[log]
files = false
level = "warn"
TOML
# The CLI takes --config after the sub-command.
cli() { "$BIN" "$@" --config "$WORK/config.toml"; }

# identity NAME ROLE: adds a user with a random password and an API key,
# prints {"username","password","key","user_id","key_id"} as JSON.
identity() {
  local name=$1 role=$2 pw out key
  pw=$(python3 -c 'import secrets; print("Fz-" + secrets.token_urlsafe(18))')
  printf '%s\n' "$pw" > "$WORK/pw"
  out=$(cli user add "$name" --role "$role" --password-file "$WORK/pw")
  key=$(cli apikey create "$name" | tail -n 1)
  python3 - "$name" "$pw" "$key" "$out" "$(cli apikey list)" <<'PY'
import json, re, sys
name, pw, key, out, keys = sys.argv[1:6]
user_id = re.search(r"\(id ([^)]+)\)", out).group(1)
prefix = "_".join(key.split("_")[:2])
key_id = next(l.split()[0] for l in keys.splitlines() if prefix in l.split())
print(json.dumps({"username": name, "password": pw, "key": key, "user_id": user_id, "key_id": key_id}))
PY
}

# state FILE MODE IDENTITY_JSON: the hooks' state file; the decoy comes from $DECOY.
state() {
  python3 - "$1" "$2" "$3" "$DECOY" "$BASE" <<'PY'
import json, sys
path, mode, me, decoy, base = sys.argv[1:6]
json.dump({"mode": mode, "identity": json.loads(me), "decoy": json.loads(decoy), "base": base},
          open(path, "w"))
PY
}

"$BIN" serve --config "$WORK/config.toml" > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf -o /dev/null "$BASE/readyz" && break; sleep 0.05; done
curl -sf -o /dev/null "$BASE/readyz" || { echo "server did not start"; cat "$WORK/serve.log"; exit 1; }

# The decoy: an admin whose user, key and token stand in for the run's own in phase 1.
DECOY=$(identity fuzz-decoy admin)
DECOY=$(python3 - "$DECOY" "$BASE" <<'PY'
import base64, json, sys, time, urllib.request
d, base = json.loads(sys.argv[1]), sys.argv[2]
for _ in range(20):
    req = urllib.request.Request(base + "/login", method="POST",
        data=json.dumps({"username": d["username"], "password": d["password"]}).encode(),
        headers={"X-API-Key": d["key"], "Content-Type": "application/json"})
    try:
        token = urllib.request.urlopen(req).read().decode().strip().strip('"'); break
    except Exception:
        time.sleep(0.3)
p = token.split(".")[1]; p += "=" * (-len(p) % 4)
d["jti"] = json.loads(base64.urlsafe_b64decode(p))["jti"]
print(json.dumps(d))
PY
)

failed=0
# st LABEL STATE_FILE EXAMPLES [filters…]: one schemathesis run.
st() {
  local label=$1 statefile=$2 n=$3; shift 3
  echo "== schemathesis: $label ($n examples per operation)"
  # shellcheck disable=SC2086
  if ! EL_FUZZ_STATE=$statefile PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
    "$SCHEMATHESIS" --config-file "$HERE/schemathesis.toml" run "$BASE/openapi.json" --url "$BASE" --checks all --max-examples "$n" \
      --workers "$WORKERS" --generation-database none --no-color --request-timeout 60 \
      ${SEED:+--seed "$SEED"} ${ST_ARGS:-} "$@"; then
    echo "!! schemathesis: $label FAILED"
    failed=1
  fi
}

phase() { [[ " $PHASES " == *" $1 "* ]]; }

# Phase 1: everything, as an admin, the run's own identity protected.
if phase 1; then
  state "$WORK/p1.json" protect "$(identity fuzz-admin admin)"
  st "phase 1: every operation as admin" "$WORK/p1.json" "$EXAMPLES"
fi

# Phase 2: each operation that can destroy the session by a path parameter, with
# its own fresh identity, aimed at that identity.
mapfile -t TARGETS < <(curl -sf "$BASE/openapi.json" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for path, ops in doc["paths"].items():
    for method, op in ops.items():
        if method in ("get", "head", "options", "parameters") or "{" not in path:
            continue
        print(method.upper(), path)
')
i=0
phase 2 || TARGETS=()
for t in "${TARGETS[@]}"; do
  i=$((i + 1))
  method=${t%% *}; path=${t#* }
  state "$WORK/p2-$i.json" target "$(identity "fuzz-p2-$i" admin)"
  st "phase 2: $method $path with its own fresh credentials" "$WORK/p2-$i.json" "$EXAMPLES" \
    --include-name "$method $path"
done

# Phase 3: every operation as each other role.
read -r -a ROLES <<<"${ROLES:-backoffice esight user}"
phase 3 || ROLES=()
for role in "${ROLES[@]}"; do
  state "$WORK/p3-$role.json" protect "$(identity "fuzz-$role" "$role")"
  st "phase 3: every operation as $role" "$WORK/p3-$role.json" "$ROLE_EXAMPLES"
done

if grep -q "panicked" "$WORK/serve.log"; then
  echo "!! the server panicked:"; grep -A3 panicked "$WORK/serve.log"; failed=1
fi
[ "$failed" = 0 ] && echo "== schemathesis: all phases passed" || echo "== schemathesis: FAILURES (see above)"
exit "$failed"
