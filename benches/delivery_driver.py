"""Drives one delivery benchmark case against a running appliance.

count > 0: pause delivery, ingest `count` messages in arrays of 100, resume,
time until nothing is pending, print messages/s.
count == 0: light load: post 200 single messages 20 ms apart, then report the
accepted → delivered latency (p50, p99) from the messages' timestamps.
"""
import json, sys, time, urllib.request, pathlib, statistics, datetime

base, key, token, count, workers, latency = sys.argv[1:7]
count = int(count)
headers = {"X-API-Key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
template = json.loads(pathlib.Path("tests/fixtures/messages/valid-1.json").read_text())

def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")

def message(i):
    m = json.loads(json.dumps(template))
    m["header"]["messageId"] = f"bench_{time.time_ns()}_{i}"
    return m

def stats():
    return call("GET", "/api/v1/service/send/stats")["by_status"]

def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

if count > 0:
    call("POST", "/api/v1/management/delivery/pause", {})
    for start in range(0, count, 100):
        call("POST", "/api/v1/service/send/messages", [message(i) for i in range(start, min(count, start + 100))])
    t0 = time.monotonic()
    call("POST", "/api/v1/management/delivery/resume", {})
    while True:
        s = stats()
        if s["pending"] + s["delivering"] == 0:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    print(f"delivery, {workers} workers, {latency} ms eSight latency: {count / elapsed:,.0f} messages/s "
          f"({count} messages in {elapsed:.1f} s; delivered {s['delivered']}, failed {s['failed']})")
else:
    for i in range(200):
        call("POST", "/api/v1/service/send/messages", message(i))
        time.sleep(0.02)
    while stats()["pending"] + stats()["delivering"] > 0:
        time.sleep(0.05)
    items = call("GET", "/api/v1/service/send/messages?limit=200")["items"]
    lat = sorted((ts(m["delivered_at"]) - ts(m["created_at"])) * 1000 for m in items if m["delivered_at"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"accepted → delivered at light load (4 workers, 0 ms): p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms "
          f"over {len(lat)} messages")
