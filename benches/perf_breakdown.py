"""Reads `perf script` output (with call graphs) of the server and prints,
per part of the request pipeline, the share of all samples whose stack
passes through it, and that share of CPU_US (µs per request) when given:
    perf script -i perf.data | python3 benches/perf_breakdown.py [CPU_US]
Parts overlap (the pipeline contains the others); inlined code without
debug info counts toward its caller."""
import collections
import re
import sys

PARTS = [
    ("pipeline::handle (all of the pipeline)", r"pipeline.*Handler.*handle"),
    ("request id (header, UUIDv7, string)", r"request::request_id"),
    ("tracing span: create (fmt layer formats the id)", r"tracing::span::Span::new"),
    ("tracing span: enter/exit/close", r"Layered.*::(enter|exit|try_close)"),
    ("metrics record_http", r"Metrics::record_http|metrics::write_labels"),
    ("access log: format + hand over", r"access_log::(record|format_line)"),
    ("router", r"Router<E>::find"),
    ("guard (API key + token)", r"guard::Guard::check"),
    ("request timeout (timer)", r"tokio::time::timeout|Timeout<"),
    ("handler body (dispatch)", r"energyload::api::dispatch"),
    ("header names parsed from &str", r"HdrName::from_(static|bytes)"),
    ("hyper: parse request head", r"Http1Transaction>::parse"),
    ("hyper: encode response head", r"Http1Transaction>::encode"),
    ("kernel: TCP send (writev)", r"^(__writev|tcp_sendmsg)"),
    ("kernel: TCP receive (recv)", r"^(__recv|tcp_recvmsg)"),
    ("kernel: epoll/scheduling", r"^(epoll_wait|schedule)$"),
]
COMPILED = [(name, re.compile(p)) for name, p in PARTS]
threads = collections.Counter()
hits = collections.Counter()


def account(head, frames):
    if head is None:
        return
    threads[head.split()[0]] += 1
    for name, pattern in COMPILED:
        if any(pattern.search(f) for f in frames):
            hits[name] += 1


head, frames = None, []
for line in sys.stdin:
    if not line.strip():
        account(head, frames)
        head, frames = None, []
    elif not line[0].isspace():
        head, frames = line, []
    else:
        parts = line.strip().split(" ", 1)
        frame = parts[1] if len(parts) > 1 else parts[0]
        frames.append(re.sub(r"\+0x[0-9a-f]+| \([^()]*\)$", "", frame))
account(head, frames)
total = sum(threads.values()) or 1
cpu = float(sys.argv[1]) if len(sys.argv) > 1 else None
print(f"{total} samples; by thread: " + ", ".join(f"{t} {n / total:.1%}" for t, n in threads.most_common(4)))
for name, _ in PARTS:
    share = hits[name] / total
    print(f"  {name:<50}{share:7.1%}" + (f"{share * cpu:8.2f} µs" if cpu else ""))
