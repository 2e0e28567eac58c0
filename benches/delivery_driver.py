"""Drives one delivery benchmark case against a running appliance.

count > 0: pause delivery, ingest `count` messages in arrays of 100, resume,
time until nothing is pending, print messages/s, the server's peak RSS, the
concurrency limit reached and the simulator's accepted connections.
count == 0: light load: post 200 single messages 20 ms apart, then report the
accepted → delivered latency (p50, p99) from the messages' timestamps.
"""
import json, os, sys, time, pathlib, datetime
from bench_http import make_call

base, key, token, count, latency, server_pid, sim = sys.argv[1:8]
count = int(count)
headers = {"X-API-Key": key, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
template = json.loads(pathlib.Path("tests/fixtures/messages/valid-1.json").read_text())

call = make_call(base, headers)

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

def thread_cpu():
    """CPU seconds per thread name of the server (utime + stime)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in pathlib.Path(f"/proc/{server_pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        name = "tokio-runtime-worker" if name.startswith("tokio") else name
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
    return out

def sim_accepted():
    return call("GET", "/_sim/stats", url=sim)["consumption"]["accepted"]

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
    cpu_before = thread_cpu()
    t0 = time.monotonic()
    accepted_before = sim_accepted()
    call("POST", "/api/v1/management/delivery/resume", {})
    # Progress from the simulator's counter (cheap), so that polling does
    # not load the server under test; then the server's own word.
    while sim_accepted() - accepted_before < count:
        time.sleep(0.02)
    while True:
        s = stats()
        if s["by_status"]["pending"] + s["by_status"]["delivering"] == 0:
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    peak_limit = s["delivery"]["concurrency_limit"]
    cpu_after = thread_cpu()
    cpu = {k: v - cpu_before.get(k, 0) for k, v in cpu_after.items() if v - cpu_before.get(k, 0) > 0.05}
    conns = sim_connections()
    if isinstance(conns, int) and isinstance(conns_before, int):
        conns = conns - conns_before
    by = s["by_status"]
    print(f"delivery at {latency} ms eSight latency: {count / elapsed:,.0f} messages/s "
          f"({count} in {elapsed:.1f} s; delivered {by['delivered']}, failed {by['failed']}); "
          f"peak RSS {peak_rss_mib():.0f} MiB; limit at the end {peak_limit}; "
          f"connections opened during delivery {conns}; server CPU {sum(cpu.values()) * 1e6 / count:.0f} µs/message "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))})", flush=True)
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
