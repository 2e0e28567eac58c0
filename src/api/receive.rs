//! Receiving eSight's error reports: `POST …/receive/errorjson` (compat),
//! the report list and detail, and the quarantine of reports that could not
//! be parsed (kept, size-capped, as the original kept them in its error
//! bucket).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::RequestContext;
use super::params::{Query, page};
use super::send::report_view;
use crate::clock::{format_millis, now_millis};
use crate::domain::error_report::{ErrorReport, ReportCode};
use crate::http::ApiError;
use crate::http::request::{is_json, read_body};
use crate::http::response::{self, Response};
use crate::storage::reports::{self, NewQuarantine, NewReport, ReportFilter};

/// Bytes of a quarantined body kept at most.
const QUARANTINE_CAP: usize = 64 * 1024;

/// `POST /api/v1/service/receive/errorjson`.
pub async fn post_report(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type());
    }
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let raw = read_body(&parts.headers, body, limit).await?;
    let now = now_millis();
    let report = match ErrorReport::parse(&raw) {
        Ok(r) => r,
        Err(e) if e.code == ReportCode::EmptyJson => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "EmptyJson", e.message));
        }
        Err(e) => {
            let q = NewQuarantine {
                received_at: now,
                request_id: Some(ctx.request_id.clone()),
                code: e.code.as_str().to_string(),
                reason: e.message.clone(),
                size: raw.len() as i64,
                body: raw[..raw.len().min(QUARANTINE_CAP)].to_vec(),
            };
            ctx.state.storage.run(move |c| reports::quarantine(c, &q)).await?;
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "InvalidJsonReceived", e.message));
        }
    };
    let new = NewReport::from_report(&report, raw.to_vec(), now);
    let stored = ctx.state.storage.run(move |c| reports::store_report(c, &new)).await?;
    let body = json!({
        "id": stored.id.to_string(), "eSightId": stored.esight_id, "messageId": stored.message_ref,
        "correlated": stored.message.is_some(), "message_id": stored.message.map(|m| m.to_string()),
    });
    Ok(response::json(if stored.first_time { StatusCode::CREATED } else { StatusCode::OK }, &body))
}

/// `GET /api/v1/service/receive/errors`.
pub async fn list(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let message = q.id("message_id", "message_id must be a message id")?;
    let f = ReportFilter {
        message,
        esight_id: q.string("esight_id"),
        since: q.time("since")?,
        until: q.time("until")?,
        before_id: q.cursor()?,
    };
    let limit = q.limit()?;
    let rows = ctx.state.storage.run(move |c| reports::list_reports(c, &f, limit)).await?;
    let last = rows.last().map(|r| r.id);
    Ok(response::json(StatusCode::OK, &page(rows.iter().map(report_view).collect(), limit, last)))
}

/// `GET /api/v1/service/receive/errors/{id}`.
pub async fn detail(ctx: RequestContext) -> Result<Response, ApiError> {
    let id: i64 =
        ctx.param("id").and_then(|s| s.parse().ok()).ok_or_else(|| ApiError::not_found("no such report"))?;
    let row = ctx.state.storage.run(move |c| reports::report_by_id(c, id)).await?;
    let row = row.ok_or_else(|| ApiError::not_found("no such report"))?;
    Ok(response::json(StatusCode::OK, &report_view(&row)))
}

/// `GET /api/v1/service/receive/quarantine`.
pub async fn quarantine(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let (limit, cursor) = (q.limit()?, q.cursor()?);
    let rows = ctx.state.storage.run(move |c| reports::list_quarantine(c, cursor, limit)).await?;
    let last = rows.last().map(|r| r.id);
    let items = rows
        .iter()
        .map(|r| {
            json!({"id": r.id.to_string(), "received_at": format_millis(r.received_at), "code": r.code,
                   "reason": r.reason, "size": r.size, "request_id": r.request_id,
                   "body": String::from_utf8_lossy(&r.body)})
        })
        .collect();
    Ok(response::json(StatusCode::OK, &page(items, limit, last)))
}
