//! The data-growth fill tool (issue 14): builds a database holding N
//! realistic stored messages fast, and measures what the server cannot show
//! from outside (the claim query).
//!
//! Messages go through the same functions as the HTTP ingest path — the
//! domain's batch parse of a JSON body, then `ingest::to_new_message` and
//! `storage::messages::store_batch` — and are then settled through the
//! delivery path (`storage::delivery::claim_due` and `record`), so the rows
//! are what the server itself would have written, whatever the storage
//! layout. Only the clock is the fill's: `created_at` is spread over the 30
//! days before the fill, and each chunk is claimed and settled right after.
//!
//! ```text
//! cargo run --release --example data_growth_fill -- fill N      # target/data-growth/N (cached)
//! cargo run --release --example data_growth_fill -- info DIR    # one JSON line
//! cargo run --release --example data_growth_fill -- claim DIR [ROUNDS]
//! ```
//!
//! The shape: 10,000 meters on 500 sites, one 4-datapoint message per meter
//! and reading slot (~700 bytes of JSON, like `tests/fixtures/messages`),
//! N messages evenly over 30 days; every message delivered with one attempt
//! except ~1 % failed (one attempt, a failure code) and the newest 0.05 %
//! still pending.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use energyload::config::{StorageConfig, Synchronous};
use energyload::domain::message::parse_batch;
use energyload::ingest::to_new_message;
use energyload::storage::delivery::{self, AttemptRecord, Settlement};
use energyload::storage::ids::IdGenerator;
use energyload::storage::messages::{self, Dimensions, NewMessage};
use energyload::storage::{DB_FILE, Storage, StorageError};

const METERS: u64 = 10_000;
const SITES: u64 = 500;
const DAY_MS: i64 = 86_400_000;
const SPAN_MS: i64 = 30 * DAY_MS;
/// One message in this many, the newest, stays `pending` (at least one).
const PENDING_ONE_IN: u64 = 2_000;
/// Messages per chunk: one transaction stores and claims them, one records
/// their attempts. Large, because each commit rewrites every index page the
/// chunk touched (10,000 meters scatter over the meter and messageId
/// indexes): chunks of 25,000 wrote ~15 KB per message at 3 million stored.
const CHUNK: u64 = 200_000;
/// Messages sharing one `created_at` (one `store_batch` call).
const GROUP: u64 = 50;
/// Failure codes of the ~1 % failed messages.
const FAILURE_CODES: [&str; 3] = ["NoMeterId", "RetriesExhausted", "HttpStatus400"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["fill", n] => n.parse().map_err(|_| "N must be a number".to_string()).and_then(fill),
        ["info", dir] => info(Path::new(dir)),
        ["claim", dir] => claim(Path::new(dir), 200),
        ["claim", dir, rounds] => rounds
            .parse()
            .map_err(|_| "ROUNDS must be a number".to_string())
            .and_then(|r| claim(Path::new(dir), r)),
        _ => Err("usage: data_growth_fill fill N | info DIR | claim DIR [ROUNDS]".to_string()),
    };
    if let Err(e) = result {
        eprintln!("data_growth_fill: {e}");
        std::process::exit(1);
    }
}

fn fill_dir(n: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("data-growth").join(n.to_string())
}

fn open(dir: &Path) -> Result<Storage, String> {
    let cfg = StorageConfig { data_dir: dir.to_path_buf(), min_free_bytes: 0, ..StorageConfig::default() };
    let storage = Storage::open(&cfg).map_err(err)?;
    storage.migrate().map_err(err)?;
    Ok(storage)
}

fn err(e: StorageError) -> String {
    e.to_string()
}

/// Fills `target/data-growth/N` unless a finished fill is there (its
/// `fill.json` written last); prints the fill's `fill.json`.
fn fill(n: u64) -> Result<(), String> {
    let root = fill_dir(n);
    let marker = root.join("fill.json");
    if marker.exists() {
        println!("{}", std::fs::read_to_string(&marker).map_err(|e| e.to_string())?.trim());
        return Ok(());
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| e.to_string())?;
    }
    let data = root.join("data");
    let storage = open(&data)?;
    let mut conn = storage.open_connection_with(Synchronous::Normal).map_err(err)?;
    // A fill-only setting: a large page cache keeps the indexes' inner pages
    // in memory while 30 days of meters are inserted.
    conn.pragma_update(None, "cache_size", -2_000_000).map_err(|e| e.to_string())?;
    // No sync and a checkpoint every ~1 GiB of WAL: a page rewritten by
    // several chunks is copied into the database once. A crash loses the
    // fill, which has no `fill.json` then and is made again.
    conn.pragma_update(None, "synchronous", "OFF").map_err(|e| e.to_string())?;
    conn.pragma_update(None, "wal_autocheckpoint", 262_144).map_err(|e| e.to_string())?;
    let end = energyload::clock::now_millis();
    let start_ms = end - SPAN_MS;
    let pending_from = n - (n / PENDING_ONE_IN).max(1).min(n);
    let same_content = |a: &[u8], b: &[u8]| a == b;
    let mut ids = IdGenerator::after(messages::max_id(&conn).map_err(err)?);
    let mut dims = Dimensions::new();
    let started = Instant::now();
    let mut done = 0u64;
    while done < n {
        let chunk_end = (done + CHUNK).min(n);
        let mut last_at = start_ms;
        let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let mut i = done;
        while i < chunk_end {
            let group_end = (i + GROUP).min(chunk_end);
            let at = start_ms + (i as i128 * SPAN_MS as i128 / n as i128) as i64;
            let items: Vec<NewMessage> =
                (i..group_end).map(|k| new_message(k, at)).collect::<Result<_, _>>()?;
            messages::store_batch(&tx, &mut ids, &mut dims, at, &items, same_content).map_err(err)?;
            last_at = at;
            i = group_end;
        }
        let claimed = claim_chunk(&tx, last_at, chunk_end.min(pending_from).saturating_sub(done))?;
        tx.commit().map_err(|e| e.to_string())?;
        settle(&mut conn, last_at, &claimed)?;
        done = chunk_end;
        if done % 1_000_000 < CHUNK || done == n {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{done} messages, {secs:.0} s, {:.0} msg/s", done as f64 / secs);
        }
    }
    drop(conn);
    let secs = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "messages": n,
        "created_from_ms": start_ms,
        "created_until_ms": end,
        "fill_seconds": secs.round(),
        "messages_per_second": (n as f64 / secs).round(),
        "db_bytes": storage.db_size_bytes(),
        "bytes_per_message": storage.db_size_bytes() / n.max(1),
    });
    std::fs::write(&marker, format!("{summary}\n")).map_err(|e| e.to_string())?;
    println!("{summary}");
    Ok(())
}

/// The `k`-th message of the fill, parsed and converted exactly as the HTTP
/// ingest path does.
fn new_message(k: u64, at: i64) -> Result<NewMessage, String> {
    let meter = k % METERS;
    let site = meter % SITES;
    let (market, feed) = if meter % 10 == 9 { ("de", "gas") } else { ("lu", "electricity") };
    let slot = k / METERS;
    let ts = time::OffsetDateTime::from_unix_timestamp(at / 1000).map_err(|e| e.to_string())?;
    let day = format!("{:04}-{:02}-{:02}", ts.year(), u8::from(ts.month()), ts.day());
    let base = (slot % 1000) as f64 * 0.25;
    let body = format!(
        r#"{{
 "messageType": "consumption",
 "header": {{
  "messageId": "{feed}_{market}_M{meter:05}_{slot:07}",
  "gatewayTypeUrn": "urn:esight:assets:edm:{market}:{feed}",
  "gatewayUrn": "urn:esight:gateways:edm:{market}:SITE{site:03}:M{meter:05}"
 }},
 "gatewayData": {{
  "datapointValues": [
   {{
    "datapointKey": "activeEnergyImport",
    "value": {v0},
    "tsIso8601": "{day}T{h:02}:{m:02}:00Z"
   }},
   {{
    "datapointKey": "activeEnergyExport",
    "value": {v1},
    "tsIso8601": "{day}T{h:02}:{m:02}:00Z"
   }},
   {{
    "datapointKey": "reactiveEnergyImport",
    "value": {v2},
    "tsIso8601": "{day}T{h:02}:{m:02}:00Z"
   }},
   {{
    "datapointKey": "reactiveEnergyExport",
    "value": {v3},
    "tsIso8601": "{day}T{h:02}:{m:02}:00Z"
   }}
  ]
 }}
}}"#,
        h = ts.hour(),
        m = ts.minute() / 15 * 15,
        v0 = base + 10.0,
        v1 = base * 0.1,
        v2 = base * 0.3 + 1.5,
        v3 = base * 0.05,
    );
    let mut items = parse_batch(Bytes::from(body)).map_err(|e| e.to_string())?;
    match items.pop() {
        Some((_, Ok(m))) => Ok(to_new_message(m)),
        Some((_, Err(e))) => Err(format!("generated message {k} is invalid: {}", e.message)),
        None => Err("the batch parse returned nothing".into()),
    }
}

/// Claims the `most` oldest messages due by `due_by`: the chunk just
/// stored, less the pending tail.
fn claim_chunk(
    conn: &rusqlite::Connection,
    due_by: i64,
    most: u64,
) -> Result<Vec<delivery::ClaimedMessage>, String> {
    if most == 0 {
        return Ok(Vec::new());
    }
    delivery::claim_due(conn, due_by, due_by + 60_000, most as usize).map_err(err)
}

/// Records one attempt for each claimed message: ~1 % failed, the rest
/// delivered.
fn settle(
    conn: &mut rusqlite::Connection,
    due_by: i64,
    claimed: &[delivery::ClaimedMessage],
) -> Result<(), String> {
    if claimed.is_empty() {
        return Ok(());
    }
    let records: Vec<AttemptRecord> = claimed
        .iter()
        .map(|m| {
            let roll = (m.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1023
            let settlement = if roll < 10 {
                Settlement::Failed { error_code: FAILURE_CODES[roll as usize % FAILURE_CODES.len()].into() }
            } else {
                Settlement::Delivered
            };
            let failed = matches!(settlement, Settlement::Failed { .. });
            AttemptRecord {
                message: m.id,
                at: due_by,
                settlement,
                http_status: Some(if failed { 400 } else { 200 }),
                error: failed.then(|| "eSight answered 400".to_string()),
                duration_ms: 35,
            }
        })
        .collect();
    delivery::record(conn, due_by + 1_000, &records).map_err(err)
}

/// One JSON line: messages by status, bytes on disk and per message.
fn info(dir: &Path) -> Result<(), String> {
    let data = if dir.join(DB_FILE).exists() { dir.to_path_buf() } else { dir.join("data") };
    let storage = open(&data)?;
    let conn = storage.open_connection().map_err(err)?;
    let counts = messages::counts_by_status(&conn).map_err(err)?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let by_status: serde_json::Map<String, serde_json::Value> =
        counts.iter().map(|(s, n)| (s.as_str().to_string(), serde_json::json!(n))).collect();
    let bytes = storage.db_size_bytes();
    let line = serde_json::json!({
        "messages": total,
        "by_status": by_status,
        "db_bytes": bytes,
        "bytes_per_message": if total > 0 { bytes / total as u64 } else { 0 },
    });
    println!("{line}");
    Ok(())
}

/// Times the delivery claim (64 due messages, the dispatcher's usual
/// round) `rounds` times, each in a transaction rolled back, so the fill is
/// unchanged. Prints p50/p99/max in ms as one JSON line.
fn claim(dir: &Path, rounds: usize) -> Result<(), String> {
    let data = if dir.join(DB_FILE).exists() { dir.to_path_buf() } else { dir.join("data") };
    let storage = open(&data)?;
    let conn = storage.open_connection().map_err(err)?;
    let now = energyload::clock::now_millis();
    let mut times = Vec::with_capacity(rounds);
    let mut claimed = 0;
    for _ in 0..rounds.max(1) {
        let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
        let t = Instant::now();
        claimed = delivery::claim_due(&tx, now, now + 60_000, 64).map_err(err)?.len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        tx.rollback().map_err(|e| e.to_string())?;
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let line = serde_json::json!({
        "claimed_per_round": claimed,
        "rounds": times.len(),
        "p50_ms": (pct(0.5) * 1000.0).round() / 1000.0,
        "p99_ms": (pct(0.99) * 1000.0).round() / 1000.0,
        "max_ms": (times[times.len() - 1] * 1000.0).round() / 1000.0,
    });
    println!("{line}");
    Ok(())
}
