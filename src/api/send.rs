//! Sending data to eSight: ingest (`POST …/send/messages`), the message list,
//! detail and retry, statistics, and the compat inbox import
//! (`sendJsons`, `sendJson/{file_name}`).

use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use super::RequestContext;
use super::params::{Query, page};
use super::slow_reads::FAILURE_GROUPS_MAX;
use crate::audit::EventType;
use crate::clock::{format_millis, now_millis};
use crate::domain::attention::{FailureFacts, failure_reason};
use crate::esight::failure_cause::describe;
use crate::http::ApiError;
use crate::http::request::{accepts_json, is_json, read_body};
use crate::http::response::{self, Response};
use crate::ingest::{IngestFailure, accept};
use crate::storage::ingest::IngestError;
use crate::storage::messages::{self, FailureGroup, MessageFilter, MessageRow, MessageStatus, RetryResult};
use crate::storage::reports;

/// Why a retry of a rejected message would fail again.
const REJECTED_RETRY_NOTE: &str = "eSight reported errors in this data and a retry sends the same data; retry only once eSight's cause is fixed";

/// Whether retrying a message in `status` that failed with `code` can
/// succeed (`None` for statuses that cannot be retried): the `retry` and
/// `retry_note` fields.
fn retry_advice(status: MessageStatus, code: Option<&str>) -> (Value, Value) {
    match status {
        MessageStatus::Failed => {
            let advice = describe(code.unwrap_or("UntrackedError")).retry;
            (json!(advice.as_str()), json!(advice.note()))
        }
        MessageStatus::Rejected => (json!("after_fix"), json!(REJECTED_RETRY_NOTE)),
        _ => (Value::Null, Value::Null),
    }
}

/// The facts of a failure group the attention rules and the views use.
pub fn failure_facts(g: FailureGroup) -> FailureFacts {
    FailureFacts {
        code: g.error_code.unwrap_or_else(|| "UntrackedError".into()),
        count: g.count,
        newest_id: g.newest_id,
        newest_at: g.newest_at,
        newest_error: g.newest_error,
        meters: g.meters,
        meter_id: g.newest_meter_id,
    }
}

/// The JSON view of a failure group of `status` messages.
fn failure_group_view(status: MessageStatus, g: FailureGroup) -> Value {
    let sites = g.sites;
    let f = failure_facts(g);
    let (reason, fix) = match status {
        MessageStatus::Rejected => (
            f.newest_error
                .clone()
                .map_or_else(|| "eSight reported errors".to_string(), |e| format!("eSight reported: {e}")),
            "read the eSight error reports; have the producer correct the data, or retry once eSight's cause is fixed",
        ),
        _ => (failure_reason(&f), describe(&f.code).fix),
    };
    let (retry, retry_note) = retry_advice(status, Some(&f.code));
    json!({
        "status": status, "error_code": f.code, "reason": reason, "count": f.count,
        "newest": format_millis(f.newest_at), "newest_id": f.newest_id.to_string(), "last_error": f.newest_error,
        "meters": f.meters, "sites": sites, "retry": retry, "retry_note": retry_note, "fix": fix,
    })
}

/// The JSON view of a listed message.
pub fn item(m: &MessageRow) -> Value {
    let (retry, retry_note) = retry_advice(m.status, m.error_code.as_deref());
    json!({
        "id": m.id.to_string(), "messageId": m.message_id, "status": m.status,
        "meter_id": m.meter_id, "site_id": m.site_id, "local_market": m.local_market,
        "data_feed_type": m.data_feed_type, "datapoints": m.datapoints, "attempts": m.attempts,
        "created_at": format_millis(m.created_at), "updated_at": format_millis(m.updated_at),
        "delivered_at": m.delivered_at.map(format_millis), "next_attempt_at": m.next_attempt_at.map(format_millis),
        "error_code": m.error_code, "retry": retry, "retry_note": retry_note,
    })
}

fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Unwritable => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            "storage is full or not writable",
        ),
        IngestError::Failed => ApiError::internal(),
        IngestError::Stopped => ApiError::unavailable("the server is shutting down", 5),
        IngestError::Unreplicated(u) => u.into(),
    }
}

/// Refuses ingest when the disk floor, the database cap or the pending cap is reached.
fn check_capacity(ctx: &RequestContext) -> Result<(), ApiError> {
    let state = &ctx.state;
    if state.disk_low.load(Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            "free disk space is below storage.min_free_bytes; nothing was stored",
        ));
    }
    if state.db_full.load(Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            "the database has reached storage.max_db_bytes; nothing was stored",
        ));
    }
    let open = u64::try_from(state.open_messages.load(Ordering::Acquire)).unwrap_or(0);
    if open >= state.config.delivery.max_pending {
        return Err(ApiError::unavailable("too many messages wait for delivery; try again later", 30));
    }
    Ok(())
}

/// `POST /api/v1/service/send/messages`.
pub async fn post_messages(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type());
    }
    check_capacity(&ctx)?;
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, limit).await?;
    let invalid = &ctx.state.invalid_traffic;
    let key = ctx.caller.api_key_id.as_deref();
    let report = accept(&ctx.state.ingest, body).await.map_err(|e| match e {
        IngestFailure::Batch(b) => {
            invalid.record(now_millis(), key, [b.code()]);
            ApiError::new(StatusCode::BAD_REQUEST, b.code(), b.to_string())
        }
        IngestFailure::Store(s) => ingest_error(s),
    })?;
    invalid.record(now_millis(), key, report.rejected.iter().map(|r| r.code.as_str()));
    let inserted = report.accepted.iter().filter(|a| !a.duplicate).count();
    ctx.state.open_messages.fetch_add(inserted as i64, Ordering::AcqRel);
    let status =
        if report.accepted.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::ACCEPTED };
    Ok(response::json(status, &report))
}

/// The names [`filter`] reads: the message list's query parameters and the
/// bulk retry's body fields.
pub const FILTER_NAMES: [&str; 9] = [
    "status",
    "message_id",
    "meter_id",
    "site_id",
    "local_market",
    "data_feed_type",
    "since",
    "until",
    "error_code",
];

/// Reads the message filters from a query.
pub fn filter(q: &Query) -> Result<MessageFilter, ApiError> {
    let status = q
        .present("status")
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}")))
        })
        .transpose()?;
    Ok(MessageFilter {
        status,
        message_id: q.string("message_id"),
        meter_id: q.string("meter_id"),
        site_id: q.string("site_id"),
        local_market: q.string("local_market"),
        data_feed_type: q.string("data_feed_type"),
        since: q.time("since")?,
        until: q.time("until")?,
        error_code: q.string("error_code"),
    })
}

/// `GET /api/v1/service/send/messages`.
pub async fn list(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let (f, limit, cursor) = (filter(&q)?, q.limit()?, q.cursor()?);
    let rows = ctx.state.storage.run(move |c| messages::list(c, &f, cursor, limit)).await?;
    let last = rows.last().map(|r| r.id);
    Ok(response::json(StatusCode::OK, &page(rows.iter().map(item).collect(), limit, last)))
}

fn message_id_param(ctx: &RequestContext) -> Result<i64, ApiError> {
    ctx.param("id").and_then(|s| s.parse().ok()).ok_or_else(|| ApiError::not_found("no such message"))
}

/// The JSON view of a stored eSight error report.
pub fn report_view(r: &reports::ReportRow) -> Value {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    json!({
        "id": r.id.to_string(), "eSightId": r.esight_id, "messageId": r.message_ref,
        "message_id": r.message.map(|m| m.to_string()), "received_at": format_millis(r.received_at),
        "errors": body.get("errors").cloned().unwrap_or(Value::Array(vec![])),
    })
}

/// `GET /api/v1/service/send/messages/{id}`.
pub async fn detail(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = message_id_param(&ctx)?;
    let found = ctx
        .state
        .storage
        .run(move |c| {
            let Some((row, body)) = messages::get(c, id)? else { return Ok(None) };
            Ok(Some((row, body, messages::attempts(c, id)?, reports::reports_for_message(c, id)?)))
        })
        .await?;
    let (row, body, attempts, reports) = found.ok_or_else(|| ApiError::not_found("no such message"))?;
    let mut v = item(&row);
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["message"] = message;
    v["attempt_log"] = attempts
        .iter()
        .map(|a| {
            json!({"at": format_millis(a.at), "outcome": a.outcome, "http_status": a.http_status,
                   "error": a.error, "duration_ms": a.duration_ms})
        })
        .collect();
    v["esight_errors"] = reports.iter().map(report_view).collect();
    Ok(response::json(StatusCode::OK, &v))
}

/// `POST /api/v1/service/send/messages/{id}/retry`.
pub async fn retry(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = message_id_param(&ctx)?;
    let event = ctx.event(EventType::MessageRetried).with("message_id", id.to_string());
    let result = ctx
        .audited(move |c| {
            let r = messages::retry(c, id, now_millis())?;
            Ok((r, (r == RetryResult::Requeued).then_some(event)))
        })
        .await?;
    match result {
        RetryResult::Requeued => {
            ctx.state.open_messages.fetch_add(1, Ordering::AcqRel);
            ctx.state.delivery.wake();
            Ok(response::json(StatusCode::ACCEPTED, &json!({"id": id.to_string(), "status": "pending"})))
        }
        RetryResult::NotFound => Err(ApiError::not_found("no such message")),
        RetryResult::WrongState(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("only failed or rejected messages can be retried; this one is {}", s.as_str()),
        )),
    }
}

/// `GET /api/v1/service/send/stats`.
pub async fn stats(ctx: RequestContext) -> Result<Response, ApiError> {
    let now = now_millis();
    let hour_ago = now - 3_600_000;
    let state = &ctx.state;
    let counts = state.slow_reads.counts.get(|| state.storage.run(|c| messages::counts_by_status(c))).await?;
    let mut groups = failure_groups(state, MessageStatus::Failed).await?;
    groups.truncate(10);
    let (d, failures) = state
        .storage
        .run(move |c| {
            let failed = MessageFilter { status: Some(MessageStatus::Failed), ..Default::default() };
            Ok((messages::delivery_stats(c, hour_ago)?, messages::list(c, &failed, None, 10)?))
        })
        .await?;
    let by_status: serde_json::Map<String, Value> =
        counts.iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect();
    let first_minute = hour_ago / 60_000 * 60_000 + 60_000;
    let per_minute: Vec<Value> = (0..60)
        .map(|i| {
            let minute = first_minute + i * 60_000;
            let (del, retry, failed) = d
                .per_minute
                .iter()
                .find(|(m, ..)| *m == minute)
                .map_or((0, 0, 0), |(_, a, b, c)| (*a, *b, *c));
            json!({"minute": format_millis(minute), "delivered": del, "retry": retry, "failed": failed})
        })
        .collect();
    let worker = ctx.state.delivery.status();
    let reachable = match worker.state {
        "not_configured" => Value::Null,
        "esight_unreachable" => json!(false),
        _ => json!(true),
    };
    let body = json!({
        "by_status": by_status,
        "delivered_last_hour": d.delivered,
        "delivered_last_hour_later_rejected": d.delivered_later_rejected,
        "oldest_pending_age_seconds": d.oldest_pending_created.map(|t| (now - t).max(0) / 1000),
        "esight": {"reachable": reachable},
        "delivery": worker,
        "deliveries_per_minute": per_minute,
        "latest_failures": failures.iter().map(item).collect::<Vec<_>>(),
        "failure_groups": groups.into_iter().map(|g| failure_group_view(MessageStatus::Failed, g)).collect::<Vec<_>>(),
    });
    Ok(response::json(StatusCode::OK, &body))
}

/// The `status` failure groups (failed or rejected), at most
/// [`FAILURE_GROUPS_MAX`], through the shared slow reads.
pub(super) async fn failure_groups(
    state: &crate::app::AppState,
    status: MessageStatus,
) -> Result<Vec<FailureGroup>, ApiError> {
    let read = || state.storage.run(move |c| messages::failure_groups(c, status, FAILURE_GROUPS_MAX));
    Ok(state.slow_reads.groups(status).get(read).await?)
}

/// `GET /api/v1/service/send/failures`: failed (or, with `status=rejected`,
/// rejected) messages grouped by cause, largest group first.
pub async fn failures(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let status = match q.present("status") {
        None | Some("failed") => MessageStatus::Failed,
        Some("rejected") => MessageStatus::Rejected,
        Some(other) => {
            return Err(ApiError::bad_request(format!("status must be failed or rejected, not {other:?}")));
        }
    };
    let groups = failure_groups(&ctx.state, status).await?;
    let items: Vec<Value> = groups.into_iter().map(|g| failure_group_view(status, g)).collect();
    Ok(response::json(StatusCode::OK, &json!({"items": items})))
}

/// `POST …/send/sendJsons` and `GET …/send/sendJson/{file_name}` (compat).
pub async fn import_inbox(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let json_answer = accepts_json(req.headers());
    let prefix = match ctx.param("file_name") {
        Some(raw) => {
            // Routing matches the raw path: decode so that `%2F`, `%5C`,
            // `%2E%2E` and `%00` are checked as the characters they stand for.
            let name = super::params::decode_path_segment(raw)
                .ok_or_else(|| ApiError::bad_request("invalid file name: it is not UTF-8"))?;
            Some(
                crate::inbox::FileNamePrefix::parse(&name)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            )
        }
        None => None,
    };
    check_capacity(&ctx)?;
    let dir = ctx.state.config.inbox_dir();
    let limit = ctx.state.config.server.max_body_bytes;
    let report =
        crate::inbox::import(&dir, prefix.as_ref(), limit, &ctx.state.ingest).await.map_err(|e| match e {
            crate::inbox::InboxError::InvalidPrefix(why) => ApiError::bad_request(why),
            crate::inbox::InboxError::Ingest(i) => ingest_error(i),
            other => {
                tracing::error!(error = %other, "inbox import failed");
                ApiError::internal()
            }
        })?;
    let inserted = report.accepted.iter().filter(|a| !a.duplicate).count();
    ctx.state.open_messages.fetch_add(inserted as i64, Ordering::AcqRel);
    if json_answer {
        let status = if report.processed == 0 { StatusCode::OK } else { StatusCode::CREATED };
        return Ok(response::json(status, &report));
    }
    Ok(if report.processed == 0 {
        response::text(StatusCode::OK, "Empty bucket! Nothing to send to e-sight")
    } else {
        response::text(
            StatusCode::CREATED,
            format!("Success: {} file(s) have been processed", report.processed),
        )
    })
}
