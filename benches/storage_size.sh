#!/usr/bin/env bash
# Bytes per stored message (issue 14, BENCHMARKS.md "Data growth: bytes per
# message"):
#   bash benches/storage_size.sh [MESSAGES]
# Fills a fresh database through the storage library (the ingest writer's
# store_batch, the dispatcher's claim and record) with MESSAGES (default
# 1,000,000) varied 4-datapoint messages — 10,000 meters in sites of 25,
# quarter-hour values, messageIds of three styles, half pretty-printed —
# each delivered once; prints bytes per message for every table and index
# (SQLite's dbstat) and the file, the library's time per message, and the
# list, claim and count query times on the result.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
cargo build --release --quiet --example storage_size
exec target/x86_64-unknown-linux-gnu/release/examples/storage_size "$N"
