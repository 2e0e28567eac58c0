//! Open operational endpoints: liveness, readiness, version, metrics and the
//! OpenAPI document. No key, no token.
//!
//! Being open, `/readyz` and `/metrics` must not let a flood reach the
//! database: what they read from it (the write probe and schema version; the
//! message counts and database size) is kept in [`OpsSnapshot`] and read
//! again at most once a second, by the first request after it expired
//! (others wait for that read and share it). A failed database check is not
//! reused by later requests, only shared by those that waited for it, so
//! recovery shows at once; a passing one is reused for up to a second, so a
//! failure shows within a second. The cheap checks (free disk, database cap,
//! delivery workers) are read from memory on every request.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};

use super::RequestContext;
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::response::{self, Response};
use crate::metrics::Gauge;
use crate::storage::Storage;
use crate::storage::messages::MessageStatus;

/// How long a read of the database is reused.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// A value and when its read started.
struct Timed<T> {
    started: Instant,
    value: T,
}

/// The database checks of readiness.
#[derive(Clone)]
struct DatabaseChecks {
    database: Value,
    migrations: Value,
}

impl DatabaseChecks {
    fn ok(&self) -> bool {
        self.database["status"] == "ok" && self.migrations["status"] == "ok"
    }
}

/// The stored-state gauges of `/metrics`.
#[derive(Clone)]
struct StoredState {
    counts: Vec<(MessageStatus, i64)>,
    db_size_bytes: u64,
}

/// The last database reads of `/readyz` and `/metrics` (one per process, in
/// `AppState`); see the module documentation.
#[derive(Default)]
pub struct OpsSnapshot {
    database: tokio::sync::Mutex<Option<Timed<DatabaseChecks>>>,
    stored: tokio::sync::Mutex<Option<Timed<StoredState>>>,
}

/// The OpenAPI 3 document of the contract, embedded at build time.
pub const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");

/// `GET /health`: the original service's smile.
pub fn health() -> Response {
    response::text(StatusCode::OK, ":-)")
}

/// `GET /healthz`: the process serves.
pub fn healthz() -> Response {
    response::json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /version`.
pub fn version() -> Response {
    response::json(StatusCode::OK, &crate::build_info::as_json())
}

/// `GET /openapi.json`.
pub fn openapi() -> Response {
    response::with_body(StatusCode::OK, "application/json", OPENAPI_JSON)
}

/// `GET /metrics`: Prometheus text format. The stored-state gauges are at
/// most a second old.
pub async fn metrics(ctx: &RequestContext) -> Result<Response, ApiError> {
    let state = &ctx.state;
    let stored = stored_state(state).await?;
    let delivery = state.delivery.status();
    let gauges = [
        Gauge {
            name: "energyload_db_size_bytes",
            help: "Bytes on disk of the database and its WAL.",
            series: vec![(vec![], stored.db_size_bytes as f64)],
        },
        Gauge {
            name: "energyload_messages",
            help: "Stored messages by status.",
            series: stored
                .counts
                .iter()
                .map(|(s, n)| (vec![("status", s.as_str().to_string())], *n as f64))
                .collect(),
        },
        Gauge {
            name: "energyload_delivery_concurrency",
            help: "Consumption posts allowed at once now (adaptive, at most delivery.max_in_flight).",
            series: vec![(vec![], delivery.concurrency_limit as f64)],
        },
        Gauge {
            name: "energyload_delivery_in_flight",
            help: "Consumption posts outstanding at eSight now.",
            series: vec![(vec![], delivery.in_flight as f64)],
        },
        Gauge {
            name: "energyload_esight_latency_seconds",
            help: "eSight's answer time to consumption posts: recent moving average and lowest recent (base).",
            series: [("recent", delivery.esight_latency_ms), ("base", delivery.esight_base_latency_ms)]
                .into_iter()
                .filter_map(|(kind, ms)| Some((vec![("kind", kind.to_string())], ms? / 1000.0)))
                .collect(),
        },
    ];
    let replication = replication_gauges(state);
    let gauges: Vec<Gauge> = gauges.into_iter().chain(replication).collect();
    let text = state.metrics.render(&gauges);
    Ok(response::with_body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text))
}

/// Litestream replication's gauges (none when replication is off).
fn replication_gauges(state: &AppState) -> Vec<Gauge> {
    let Some(r) = state.replication.report() else { return Vec::new() };
    let s = &r.status;
    let mut txids = Vec::new();
    for (kind, txid) in [("local", s.local_txid), ("replicated", s.replicated_txid)] {
        if let Some(txid) = txid {
            txids.push((vec![("kind", kind.to_string())], txid as f64));
        }
    }
    let info =
        vec![("acknowledge", r.acknowledge.to_string()), ("replica", r.replica.clone().unwrap_or_default())];
    vec![
        Gauge {
            name: "energyload_replication_info",
            help: "Litestream replication: acknowledge mode and the replica (without credentials).",
            series: vec![(info, 1.0)],
        },
        Gauge {
            name: "energyload_replication_up",
            help: "1 while the replica confirms syncs, 0 while they fail (or before the first).",
            series: vec![(vec![], if s.confirming { 1.0 } else { 0.0 })],
        },
        Gauge {
            name: "energyload_replication_lag_seconds",
            help: "Since when the replica may miss a local commit (0: it holds every commit).",
            series: vec![(vec![], s.seconds_behind)],
        },
        Gauge {
            name: "energyload_replication_last_confirmed_timestamp_seconds",
            help: "Unix time of the replica's last confirmation.",
            series: s.last_confirmed_unix_ms.map(|ms| (vec![], ms as f64 / 1000.0)).into_iter().collect(),
        },
        Gauge {
            name: "energyload_replication_txid",
            help: "Litestream's transaction id, local and on the replica, at the last confirmation.",
            series: txids,
        },
        Gauge {
            name: "energyload_replication_failed_syncs",
            help: "Syncs the replica did not confirm since start.",
            series: vec![(vec![], s.failures as f64)],
        },
    ]
}

/// The message counts and database size, read again when the last read is
/// over [`SNAPSHOT_MAX_AGE`] old (a failed read is not kept).
async fn stored_state(state: &AppState) -> Result<StoredState, ApiError> {
    let mut slot = state.ops_snapshot.stored.lock().await;
    if let Some(last) = slot.as_ref().filter(|t| t.started.elapsed() < SNAPSHOT_MAX_AGE) {
        return Ok(last.value.clone());
    }
    let started = Instant::now();
    state.metrics.stored_state_reads.fetch_add(1, Ordering::Relaxed);
    let counts = state
        .slow_reads
        .counts
        .get(|| state.storage.run(|c| crate::storage::messages::counts_by_status(c)))
        .await?;
    let value = StoredState { counts, db_size_bytes: state.storage.db_size_bytes() };
    *slot = Some(Timed { started, value: value.clone() });
    Ok(value)
}

/// `GET /readyz`: `200` when the database takes writes, migrations are
/// current, free disk is above the floor and the database under its cap;
/// otherwise `503` naming why.
pub async fn readyz(ctx: &RequestContext) -> Result<Response, ApiError> {
    let (ok, body) = readiness(&ctx.state).await;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(response::json(status, &body))
}

/// The readiness checks behind `/readyz` (also what `serve` waits for before
/// telling systemd it is ready): whether all pass, and the answer's body.
pub async fn readiness(state: &AppState) -> (bool, Value) {
    let DatabaseChecks { database, migrations } = database_checks(state).await;
    let storage = storage_check(state);
    let workers = state.delivery.status();
    let delivery = if state.delivery.healthy() {
        let mut ok = json!({"status": "ok", "state": workers.state, "workers": workers.workers});
        // Ready all the same (ingest works), but an operator reading the
        // check must learn that nothing is delivered, and what to set.
        if workers.state == "not_configured" {
            ok["detail"] = json!(
                "eSight is not configured: messages are accepted and kept but not delivered; set [esight] \
                 token_url, sites_url, meters_url, consumption_url, username, password, post_username \
                 and post_password (each secret also as <key>_file), then restart"
            );
        }
        ok
    } else {
        json!({"status": "fail", "state": workers.state, "workers": workers.workers,
               "workers_alive": workers.workers_alive, "reason": "a delivery thread has died"})
    };
    let mut checks =
        json!({"database": database, "storage": storage, "delivery": delivery, "migrations": migrations});
    if let Some(replication) = replication_check(state) {
        checks["replication"] = replication;
    }
    let ok = checks.as_object().is_some_and(|m| m.values().all(|c| c["status"] == "ok"));
    (ok, json!({"status": if ok { "ok" } else { "fail" }, "checks": checks}))
}

/// Litestream replication's check (only when `replication.mode` is on):
/// `fail` with `acknowledge = "replicated"` while the replica does not
/// confirm (ingest answers `503` then); with `local` it stays `ok` but says
/// the replica is behind (ingest goes on, unprotected).
fn replication_check(state: &AppState) -> Option<Value> {
    let report = state.replication.report()?;
    let ok = state.replication.ready(&report);
    let mut check = json!({"status": if ok { "ok" } else { "fail" }});
    if let (Some(object), Ok(Value::Object(fields))) = (check.as_object_mut(), serde_json::to_value(&report))
    {
        object.extend(fields);
    }
    if !report.status.confirming {
        check["reason"] = json!(match report.status.last_error {
            Some(_) => "the replica does not confirm: is litestream running and its replica reachable?",
            None => "waiting for the replica's first confirmation",
        });
    }
    Some(check)
}

/// The database checks: the last ones if they passed less than
/// [`SNAPSHOT_MAX_AGE`] ago or started after this request arrived (it waited
/// for them), else run now.
async fn database_checks(state: &AppState) -> DatabaseChecks {
    let arrived = Instant::now();
    let mut slot = state.ops_snapshot.database.lock().await;
    if let Some(last) = slot.as_ref() {
        let fresh = last.started.elapsed() < SNAPSHOT_MAX_AGE && last.value.ok();
        if fresh || last.started >= arrived {
            return last.value.clone();
        }
    }
    let started = Instant::now();
    state.metrics.readiness_probes.fetch_add(1, Ordering::Relaxed);
    let value = probe_database(state).await;
    *slot = Some(Timed { started, value: value.clone() });
    value
}

/// Runs the write probe and reads the schema version.
async fn probe_database(state: &AppState) -> DatabaseChecks {
    let (database, migrations) = state
        .storage
        .run(|conn| {
            let database = match Storage::probe_write(conn) {
                Ok(()) => json!({"status": "ok"}),
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: database not writable");
                    json!({"status": "fail", "reason": "the database does not accept writes"})
                }
            };
            let migrations = match crate::storage::migration_status(conn) {
                Ok(s) if !s.pending() && s.current == s.latest => {
                    json!({"status": "ok", "version": s.current})
                }
                Ok(s) => json!({"status": "fail", "version": s.current, "expected": s.latest,
                                "reason": "schema migrations are pending"}),
                Err(_) => json!({"status": "fail", "reason": "the schema version cannot be read"}),
            };
            Ok((database, migrations))
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "readiness: database unavailable");
            let fail = json!({"status": "fail", "reason": "the database is unavailable"});
            (fail.clone(), fail)
        });
    DatabaseChecks { database, migrations }
}

/// Free disk against `storage.min_free_bytes` and the database's size
/// against `storage.max_db_bytes` (0: no cap).
fn storage_check(state: &AppState) -> Value {
    let floor = state.config.storage.min_free_bytes;
    let cap = state.config.storage.max_db_bytes;
    let db_bytes = state.db_used_bytes.load(Ordering::Acquire);
    let mut check = json!({"min_free_bytes": floor, "db_bytes": db_bytes, "max_db_bytes": cap});
    let mut reasons = Vec::new();
    match state.storage.free_disk_bytes() {
        Ok(free) => {
            check["free_bytes"] = json!(free);
            if free < floor {
                reasons.push("free disk is below storage.min_free_bytes");
            }
        }
        Err(_) => reasons.push("free disk space cannot be read"),
    }
    if state.db_full.load(Ordering::Acquire) {
        reasons.push("the database has reached storage.max_db_bytes");
    }
    check["status"] = json!(if reasons.is_empty() { "ok" } else { "fail" });
    if !reasons.is_empty() {
        check["reason"] = json!(reasons.join("; "));
    }
    check
}
