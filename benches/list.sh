#!/usr/bin/env bash
# Message list latency over a large table (issue 4: "a list filtered by meter
# over 1 million messages answers in under 50 ms"):
#   bash benches/list.sh [MESSAGES]
# Ingests MESSAGES (default 1,000,000) across 150 meters in arrays of 100,
# then times each list query 20 times with curl (server-side + loopback).
source "$(dirname "$0")/common.sh"
N=${1:-1000000}
build
write_config ""
seed_identity
start_server
login
python3 - "$BASE" "$KEY" "$TOKEN" "$N" <<'PY'
import json, sys, time, urllib.request, pathlib, statistics
base, key, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h = {"X-API-Key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
t = json.loads(pathlib.Path("tests/fixtures/messages/valid-1.json").read_text())
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, headers=h, data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as r:
        return r.read()
start = time.monotonic()
for b in range(0, n, 100):
    batch = []
    for i in range(b, min(n, b + 100)):
        m = json.loads(json.dumps(t))
        meter = f"LU_VPC_Elec_{i % 150}"
        m["header"]["messageId"] = f"list_{i}"
        m["header"]["gatewayUrn"] = f"urn:esight:gateways:edm:lu:VPC:{meter}"
        batch.append(m)
    call("POST", "/api/v1/service/send/messages", batch)
print(f"ingested {n} messages in {time.monotonic() - start:.0f} s")
for label, q in [("meter_id (1 of 150 meters)", "meter_id=LU_VPC_Elec_7"),
                 ("meter_id, second page", None),
                 ("status=pending", "status=pending"),
                 ("site_id", "site_id=VPC"),
                 ("message_id", "message_id=list_4242"),
                 ("since/until (1 minute)", None),
                 ("no filter", "")]:
    if label == "meter_id, second page":
        first = json.loads(call("GET", "/api/v1/service/send/messages?meter_id=LU_VPC_Elec_7"))
        q = f"meter_id=LU_VPC_Elec_7&cursor={first['next_cursor']}"
    if label.startswith("since"):
        mid = json.loads(call("GET", "/api/v1/service/send/messages?message_id=list_500000"))["items"]
        created = mid[0]["created_at"] if mid else "2026-01-01T00:00:00.000Z"
        q = f"since={created}&limit=50"
    times = []
    for _ in range(20):
        s = time.perf_counter(); call("GET", f"/api/v1/service/send/messages?{q}&limit=50" if q else "/api/v1/service/send/messages?limit=50"); times.append((time.perf_counter() - s) * 1000)
    times.sort()
    print(f"list by {label}: median {statistics.median(times):.1f} ms, worst {times[-1]:.1f} ms (limit 50)")
PY
