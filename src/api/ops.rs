//! Open operational endpoints: liveness, readiness, version, metrics and the
//! OpenAPI document. No key, no token.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::RequestContext;
use crate::app::AppState;
use crate::http::ApiError;
use crate::http::response::{self, Response};
use crate::metrics::Gauge;
use crate::storage::Storage;

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

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(ctx: &RequestContext) -> Result<Response, ApiError> {
    let state = &ctx.state;
    let counts = state.storage.run(|c| crate::storage::messages::counts_by_status(c)).await?;
    let gauges = [
        Gauge {
            name: "energyload_db_size_bytes",
            help: "Bytes on disk of the database and its WAL.",
            series: vec![(vec![], state.storage.db_size_bytes() as f64)],
        },
        Gauge {
            name: "energyload_messages",
            help: "Stored messages by status.",
            series: counts
                .iter()
                .map(|(s, n)| (vec![("status", s.as_str().to_string())], *n as f64))
                .collect(),
        },
    ];
    let text = state.metrics.render(&gauges);
    Ok(response::with_body(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text))
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
    let storage = storage_check(state);
    let workers = state.delivery.status();
    let delivery = if state.delivery.healthy() {
        json!({"status": "ok", "state": workers.state, "workers": workers.workers})
    } else {
        json!({"status": "fail", "state": workers.state, "workers": workers.workers,
               "workers_alive": workers.workers_alive, "reason": "a delivery worker has died"})
    };
    let checks =
        json!({"database": database, "storage": storage, "delivery": delivery, "migrations": migrations});
    let ok = checks.as_object().is_some_and(|m| m.values().all(|c| c["status"] == "ok"));
    (ok, json!({"status": if ok { "ok" } else { "fail" }, "checks": checks}))
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
