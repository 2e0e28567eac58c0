"""Drives one delivery benchmark case against a running appliance.

count > 0: pause delivery, ingest `count` messages in arrays of 100, resume,
time until nothing is pending, print messages/s, the server's peak RSS, the
concurrency limit reached and the simulator's accepted connections.
count == 0: light load: post 200 single messages 20 ms apart, then report the
accepted → delivered latency (p50, p99) from the messages' timestamps.
"""
import json, sys, time, urllib.request, pathlib, datetime

base, key, token, count, latency, server_pid, sim = sys.argv[1:8]
count = int(count)
headers = {"X-API-Key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
template = json.loads(pathlib.Path("tests/fixtures/messages/valid-1.json").read_text())

def call(method, path, body=None, url=None):
    req = urllib.request.Request((url or base) + path, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")

def message(i):
    m = json.loads(json.dumps(template))
    m["header"]["messageId"] = f"bench_{time.time_ns()}_{i}"
    return m

def stats():
    return call("GET", "/api/v1/service/send/stats")

def peak_rss_mib():
    for line in pathlib.Path(f"/proc/{server_pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def sim_connections():
    try:
        return call("GET", "/_sim/stats", url=sim).get("connections_accepted", "n/a")
    except Exception:
        return "n/a"

def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

if count > 0:
    call("POST", "/api/v1/management/delivery/pause", {})
    for start in range(0, count, 100):
        call("POST", "/api/v1/service/send/messages", [message(i) for i in range(start, min(count, start + 100))])
    conns_before = sim_connections()
    t0 = time.monotonic()
    call("POST", "/api/v1/management/delivery/resume", {})
    peak_limit = 0
    while True:
        s = stats()
        peak_limit = max(peak_limit, s["delivery"].get("concurrency_limit", 0))
        if s["by_status"]["pending"] + s["by_status"]["delivering"] == 0:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    conns = sim_connections()
    if isinstance(conns, int) and isinstance(conns_before, int):
        conns = conns - conns_before
    by = s["by_status"]
    print(f"delivery at {latency} ms eSight latency: {count / elapsed:,.0f} messages/s "
          f"({count} in {elapsed:.1f} s; delivered {by['delivered']}, failed {by['failed']}); "
          f"peak RSS {peak_rss_mib():.0f} MiB; limit reached {peak_limit}; "
          f"connections opened during delivery {conns}", flush=True)
else:
    for i in range(200):
        call("POST", "/api/v1/service/send/messages", message(i))
        time.sleep(0.02)
    while True:
        by = stats()["by_status"]
        if by["pending"] + by["delivering"] == 0:
            break
        time.sleep(0.05)
    items = call("GET", "/api/v1/service/send/messages?limit=200")["items"]
    lat = sorted((ts(m["delivered_at"]) - ts(m["created_at"])) * 1000 for m in items if m["delivered_at"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"accepted → delivered at light load (0 ms): p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms "
          f"over {len(lat)} messages", flush=True)
