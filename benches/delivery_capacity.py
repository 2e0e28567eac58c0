"""Issue 12's delivery cases against a running appliance and simulator:

  capacity N      pause, ingest N messages, resume; messages/s against the
                  simulator's capacity × (1000 / latency), the 429 share;
                  then cut the capacity 64 → 16 with a backlog and time until
                  the limit follows (≤ 32), and raise it again (≥ 64).
  burst N SECS    N messages arriving evenly over SECS seconds (arrays of
                  100) while delivery runs: ingest latency p50/p99 per request,
                  against the same ingest with delivery paused (same run);
                  time from the first post until all are delivered.
  outage SECS RATE  eSight refuses connections for SECS s while RATE
                  messages/s arrive (and on for 30 s after); time from
                  eSight's return to the first and to the last delivery.
"""
import json, sys, time, pathlib
from bench_http import make_call

base, key, token, sim, case = sys.argv[1:6]
args = [int(a) for a in sys.argv[6:]]
headers = {"X-API-Key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
template = json.loads(pathlib.Path("tests/fixtures/messages/valid-1.json").read_text())
seq = [0]

call = make_call(base, headers)

def batch(n):
    out = []
    for _ in range(n):
        seq[0] += 1
        m = json.loads(json.dumps(template))
        m["header"]["messageId"] = f"cap_{time.time_ns()}_{seq[0]}"
        out.append(m)
    return out

def stats():
    return call("GET", "/api/v1/service/send/stats")

def sim_stats():
    return call("GET", "/_sim/stats", url=sim)

def open_count(s):
    return s["by_status"]["pending"] + s["by_status"]["delivering"]

def wait_drained(poll=0.1):
    while True:
        s = stats()
        if open_count(s) == 0:
            return s
        time.sleep(poll)

def ingest(n, secs):
    """Posts n messages in arrays of 100 spread evenly over secs; returns per-request ms."""
    lat, t0 = [], time.monotonic()
    requests = (n + 99) // 100
    for i in range(requests):
        due = t0 + secs * i / requests
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        size = min(100, n - i * 100)
        t = time.monotonic()
        call("POST", "/api/v1/service/send/messages", batch(size))
        lat.append((time.monotonic() - t) * 1000)
    return lat

def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]

if case == "capacity":
    n, = args
    cap = call("GET", "/_sim/capacity", url=sim)
    call("POST", "/api/v1/management/delivery/pause", {})
    ingest(n, 0)
    before = sim_stats()
    t0 = time.monotonic()
    call("POST", "/api/v1/management/delivery/resume", {})
    wait_drained()
    elapsed = time.monotonic() - t0
    after = sim_stats()
    posts = after["requests"]["consumption"] - before["requests"].get("consumption", 0)
    rejected = after["capacity_rejected"] - before["capacity_rejected"]
    ideal = cap["capacity"] * 10
    print(f"capacity {cap['capacity']} at 100 ms: {n / elapsed:,.0f} messages/s = {100 * n / elapsed / ideal:.0f} % "
          f"of the ideal {ideal:,}/s ({n} in {elapsed:.1f} s); 429s {rejected} of {posts} posts "
          f"({100 * rejected / max(posts, 1):.2f} %); max in service {after['max_in_service']}", flush=True)
    # Settling after a capacity change, with a backlog.
    call("POST", "/api/v1/management/delivery/pause", {})
    ingest(n, 0)
    call("POST", "/api/v1/management/delivery/resume", {})
    while stats()["delivery"]["concurrency_limit"] < 64:
        time.sleep(0.05)
    r0 = sim_stats()["capacity_rejected"]
    call("PUT", "/_sim/capacity", {"capacity": 16}, url=sim)
    t0 = time.monotonic()
    while stats()["delivery"]["concurrency_limit"] > 32:
        time.sleep(0.05)
    down = time.monotonic() - t0
    time.sleep(3)
    settled = stats()["delivery"]["concurrency_limit"]
    call("PUT", "/_sim/capacity", {"capacity": 64}, url=sim)
    t0 = time.monotonic()
    while stats()["delivery"]["concurrency_limit"] < 64:
        time.sleep(0.05)
    up = time.monotonic() - t0
    r1 = sim_stats()["capacity_rejected"]
    wait_drained()
    print(f"capacity cut 64 → 16: limit ≤ 32 after {down:.2f} s (settled at {settled} 3 s later); "
          f"raised 16 → 64: limit ≥ 64 after {up:.2f} s; 429s during both: {r1 - r0}", flush=True)

elif case == "burst":
    n, secs = args
    call("POST", "/api/v1/management/delivery/pause", {})
    quiet = ingest(n // 10, secs / 10)
    call("POST", "/api/v1/management/delivery/resume", {})
    wait_drained()
    t0 = time.monotonic()
    lat = ingest(n, secs)
    ingested = time.monotonic() - t0
    s = wait_drained()
    total = time.monotonic() - t0
    print(f"burst of {n:,} messages over {secs} s at 100 ms eSight latency: all delivered {total:.1f} s after "
          f"the first post ({ingested:.1f} s of arrivals); ingest p50 {pct(lat, .5):.1f} ms p99 {pct(lat, .99):.1f} ms "
          f"per array of 100 while delivering, vs p50 {pct(quiet, .5):.1f} ms p99 {pct(quiet, .99):.1f} ms with "
          f"delivery paused (same rate, {n // 10:,} messages); peak limit seen at the end "
          f"{s['delivery']['concurrency_limit']}", flush=True)

elif case == "outage":
    secs, rate = args
    # Warm (token, catalog), then eSight refuses connections for secs.
    call("POST", "/api/v1/service/send/messages", batch(1))
    wait_drained()
    call("POST", "/_sim/faults", {"outage": {"mode": "refuse", "starts_in_ms": 0, "duration_ms": secs * 1000}}, url=sim)
    t0 = time.monotonic()
    back = t0 + secs
    delivered_at_back = None
    first_after = drained_after = None
    backlog = 0
    sent = 0
    end_arrivals = back + 30
    while time.monotonic() < end_arrivals:
        now = time.monotonic()
        due = int((now - t0) * rate) - sent
        if due > 0:
            call("POST", "/api/v1/service/send/messages", batch(due))
            sent += due
        if now >= back:
            s = stats()
            if delivered_at_back is None:
                delivered_at_back = s["by_status"]["delivered"]
                backlog = open_count(s)
            else:
                if first_after is None and s["by_status"]["delivered"] > delivered_at_back:
                    first_after = now - back
                if drained_after is None and s["by_status"]["delivered"] >= delivered_at_back + backlog:
                    drained_after = now - back
        time.sleep(0.1)
    # The backlog left at the return must drain: wait for it all.
    while True:
        s = stats()
        if first_after is None and s["by_status"]["delivered"] > (delivered_at_back or 0):
            first_after = time.monotonic() - back
        if open_count(s) == 0:
            break
        time.sleep(0.1)
    last = time.monotonic() - back
    drained = f"{drained_after:.1f} s" if drained_after is not None else "n/a"
    print(f"outage of {secs} s at {rate} messages/s ({sent:,} messages): first delivery {first_after:.1f} s after "
          f"eSight's return; the backlog of {backlog:,} waiting at the return delivered {drained} after it; "
          f"the last message (arrivals went on for 30 s) {last:.1f} s after; "
          f"delivered {s['by_status']['delivered']}, failed {s['by_status']['failed']}", flush=True)
