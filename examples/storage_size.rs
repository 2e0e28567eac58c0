//! Bytes per stored message (issue 14, BENCHMARKS.md "Data growth"): fills a
//! fresh database through the storage library with N varied 4-datapoint
//! messages (10,000 meters, 15-minute readings, three messageId styles),
//! delivers each once (claim + record, as the dispatcher does), then prints
//! bytes per message for every table and index (SQLite's `dbstat`) and the
//! file, and times the list, claim and count queries on the result.
//!
//! `cargo run --release --example storage_size -- N [DIR]` (run by
//! `benches/storage_size.sh`); DIR keeps the database (default: a temporary
//! directory, removed).

use std::time::Instant;

use energyload::config::{StorageConfig, Synchronous};
use energyload::domain::message::Message;
use energyload::ingest::to_new_message;
use energyload::storage::Storage;
use energyload::storage::delivery::{self, AttemptRecord, Settlement};
use energyload::storage::ids::IdGenerator;
use energyload::storage::messages::{self, Dimensions, MessageFilter, MessageStatus, StoreOutcome};
use rusqlite::Connection;

const GROUP: usize = 1_000;
const MINUTE: i64 = 60_000;

/// A tiny deterministic generator (splitmix64): the same N gives the same rows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Message `i`: meter `i % 10,000` (sites of 25 meters), its reading `i / 10,000`.
fn message(i: u64, rng: &mut Rng) -> Vec<u8> {
    let meter = i % 10_000;
    let reading = i / 10_000;
    let site = meter / 25;
    let start = 1_767_225_600 + reading as i64 * 3_600; // hourly messages of 4 quarter-hour values
    let mut value = (meter * 37 % 100_000) as f64 + reading as f64 * 4.2;
    // Written by hand in the contract's key order (serde_json's map would sort
    // the keys): the order producers send, which the dictionary knows.
    let pretty = i.is_multiple_of(2);
    let (nl, ind) = if pretty { ("\n", " ") } else { ("", "") };
    let sep = if pretty { ": " } else { ":" };
    let points: Vec<String> = (0..4)
        .map(|k| {
            value += (rng.below(5_000) as f64) / 1_000.0;
            let ts = time::OffsetDateTime::from_unix_timestamp(start + k * 900).unwrap();
            let ts = ts.format(&time::format_description::well_known::Rfc3339).unwrap();
            let value = (value * 1000.0).round() / 1000.0;
            format!(
                "{ind}{ind}{ind}{{{nl}{ind}{ind}{ind}{ind}\"datapointKey\"{sep}\"activeEnergyImport\",{nl}\
                 {ind}{ind}{ind}{ind}\"value\"{sep}{value:?},{nl}{ind}{ind}{ind}{ind}\"tsIso8601\"{sep}\"{ts}\"{nl}{ind}{ind}{ind}}}"
            )
        })
        .collect();
    let meter_id = format!("LU_S{site}_Elec_{meter}");
    let message_id = match i % 3 {
        0 => format!("{meter_id}_{start}"),
        1 => format!("msg_{i}_{}", rng.below(1_000)),
        _ => uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string(),
    };
    let points = points.join(&format!(",{nl}"));
    format!(
        "{{{nl}{ind}\"messageType\"{sep}\"consumption\",{nl}{ind}\"header\"{sep}{{{nl}\
         {ind}{ind}\"messageId\"{sep}\"{message_id}\",{nl}\
         {ind}{ind}\"gatewayTypeUrn\"{sep}\"urn:esight:assets:edm:lu:electricity\",{nl}\
         {ind}{ind}\"gatewayUrn\"{sep}\"urn:esight:gateways:edm:lu:S{site}:{meter_id}\"{nl}{ind}}},{nl}\
         {ind}\"gatewayData\"{sep}{{{nl}{ind}{ind}\"datapointValues\"{sep}[{nl}{points}{nl}{ind}{ind}]{nl}{ind}}}{nl}}}"
    )
    .into_bytes()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(200_000, |a| a.parse().expect("N: a number of messages"));
    let keep = args.next();
    let tmp = tempfile_dir();
    let dir = keep.map_or(tmp.clone(), std::path::PathBuf::from);
    let cfg = StorageConfig { data_dir: dir.clone(), synchronous: Synchronous::Normal, ..Default::default() };
    let storage = Storage::open(&cfg).unwrap();
    storage.migrate().unwrap();
    let mut conn = storage.open_connection().unwrap();
    let mut ids = IdGenerator::after(messages::max_id(&conn).unwrap());
    let mut dims = Dimensions::new();
    let mut rng = Rng(14);
    let mut now = 1_767_225_600_000i64;
    let mut raw_bytes = 0u64;
    let (mut pack_s, mut store_s, mut deliver_s) = (0.0, 0.0, 0.0);
    let mut done = 0u64;
    while done < n {
        let count = GROUP.min((n - done) as usize);
        let t = Instant::now();
        let items: Vec<_> = (done..done + count as u64)
            .map(|i| {
                let body = message(i, &mut rng);
                raw_bytes += body.len() as u64;
                to_new_message(Message::parse(&body).unwrap())
            })
            .collect();
        pack_s += t.elapsed().as_secs_f64();
        now += MINUTE;
        let t = Instant::now();
        let tx = conn.transaction().unwrap();
        let out = messages::store_batch(&tx, &mut ids, &mut dims, now, &items, |a, b| a == b).unwrap();
        tx.commit().unwrap();
        store_s += t.elapsed().as_secs_f64();
        assert!(out.iter().all(|o| matches!(o, StoreOutcome::Inserted(_))));
        let t = Instant::now();
        let claimed = delivery::claim_due(&conn, now + 1_000, now + 61_000, count).unwrap();
        let batch: Vec<_> = claimed
            .iter()
            .map(|m| AttemptRecord {
                message: m.id,
                at: now + 1_000,
                settlement: Settlement::Delivered,
                http_status: Some(200),
                error: None,
                duration_ms: 20 + (m.id % 200),
            })
            .collect();
        delivery::record(&mut conn, now + 1_200, &batch).unwrap();
        deliver_s += t.elapsed().as_secs_f64();
        done += count as u64;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    println!("{n} delivered 4-datapoint messages, raw JSON {:.0} B/message", raw_bytes as f64 / n as f64);
    println!(
        "library time per message: parse+pack {:.1} µs, store {:.1} µs, claim+record {:.1} µs",
        pack_s * 1e6 / n as f64,
        store_s * 1e6 / n as f64,
        deliver_s * 1e6 / n as f64
    );
    report_sizes(&conn, n, &storage);
    time_queries(&conn);
    drop(conn);
    drop(storage);
    if dir == tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("energyload-storage-size-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report_sizes(conn: &Connection, n: u64, storage: &Storage) {
    let mut stmt = conn
        .prepare("SELECT name, sum(pgsize), sum(unused) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC")
        .unwrap();
    let rows: Vec<(String, i64, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    println!("{:<32} {:>10} {:>14}", "table / index", "B/message", "of which free");
    let mut total = 0;
    for (name, size, unused) in &rows {
        total += size;
        if *size as f64 / n as f64 >= 0.05 {
            println!("{name:<32} {:>10.1} {:>14.1}", *size as f64 / n as f64, *unused as f64 / n as f64);
        }
    }
    let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0)).unwrap();
    println!("{:<32} {:>10.1}", "free pages", (free * page) as f64 / n as f64);
    println!("{:<32} {:>10.1}", "all pages (dbstat)", total as f64 / n as f64);
    println!("{:<32} {:>10.1}", "database file", storage.db_size_bytes() as f64 / n as f64);
}

/// Median of `runs` timings of `f`, in ms.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn time_queries(conn: &Connection) {
    let list = |f: MessageFilter| move || drop(messages::list(conn, &f, None, 50).unwrap());
    let by = |f: MessageFilter| median_ms(21, list(f));
    println!(
        "query medians (ms, 21 runs): list all {:.3}, by meter {:.3}, by site {:.3}, delivered {:.3}, failed {:.3}, by messageId {:.3}",
        by(MessageFilter::default()),
        by(MessageFilter { meter_id: Some("LU_S7_Elec_177".into()), ..Default::default() }),
        by(MessageFilter { site_id: Some("S7".into()), ..Default::default() }),
        by(MessageFilter { status: Some(MessageStatus::Delivered), ..Default::default() }),
        by(MessageFilter { status: Some(MessageStatus::Failed), ..Default::default() }),
        by(MessageFilter { message_id: Some("msg_1".into()), ..Default::default() }),
    );
    let claim = median_ms(21, || drop(delivery::claim_due(conn, 0, 1, 100).unwrap()));
    let counts = median_ms(5, || drop(messages::counts_by_status(conn).unwrap()));
    println!("claim (nothing due) {claim:.3} ms, counts by status {counts:.1} ms");
}
