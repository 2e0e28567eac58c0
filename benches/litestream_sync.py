#!/usr/bin/env python3
"""Litestream alone: how long one `POST /sync` with `wait` takes (issue 15).

    python3 benches/litestream_sync.py LITESTREAM [COMMITS] [ROWS]

No energyload: a SQLite database in WAL mode (synchronous=FULL,
wal_autocheckpoint=0, as ours), `litestream replicate` to a directory replica
on the same disk (sync-interval 1s), then COMMITS times (default 300): commit
ROWS rows (default 32, ~700 bytes each, like a commit group of 32
4-datapoint messages) and ask the control socket to sync and wait. Prints the
sync-and-wait latency's p50/p90/p99 and the ceiling it sets on replicated
ingest with 32 connections: each connection waits for at least one such sync
per request, so req/s <= 32 / latency (Little's law).
"""
import json, os, socket, sqlite3, subprocess, sys, tempfile, time

litestream = sys.argv[1]
commits = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 32
work = tempfile.mkdtemp(prefix="litestream-sync-")
db, sock = os.path.join(work, "db.sqlite"), os.path.join(work, "ls.sock")
with open(os.path.join(work, "ls.yml"), "w") as f:
    f.write(f"socket:\n  enabled: true\n  path: {sock}\ndbs:\n  - path: {db}\n    replica:\n"
            f"      type: file\n      path: {work}/replica\n      sync-interval: 1s\n")
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("CREATE TABLE t (body BLOB)")
proc = subprocess.Popen([litestream, "replicate", "-config", os.path.join(work, "ls.yml")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)

    def sync():
        body = json.dumps({"path": db, "wait": True, "timeout": 10}).encode()
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"POST /sync HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        s.close()
        assert b'"synced"' in answer or b'"no_change"' in answer, answer

    times = []
    for i in range(commits + 20):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(700),) for _ in range(rows)])
        conn.execute("COMMIT")
        t0 = time.perf_counter()
        sync()
        if i >= 20:  # the first syncs take the snapshot
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    print(f"litestream sync-and-wait, {rows} rows per commit, {commits} commits: "
          f"p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms")
    print(f"ceiling for replicated ingest at 32 connections (32 / p50): {32 / q(0.5) * 1000:,.0f} req/s")
finally:
    proc.terminate()
    proc.wait()
    subprocess.run(["rm", "-rf", work])
