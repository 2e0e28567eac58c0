//! Operations for admins beyond users and keys: pause/resume delivery
//! (persisted), bulk retry, the effective configuration (secrets redacted)
//! and the database backup download.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use serde_json::json;

use super::RequestContext;
use super::params::Query;
use crate::audit::EventType;
use crate::clock::now_millis;
use crate::http::ApiError;
use crate::http::request::{parse_json, read_body};
use crate::http::response::{self, Response};
use crate::storage::{delivery, messages};

/// `POST /api/v1/management/delivery/pause` and `…/resume`.
pub async fn set_paused(ctx: RequestContext, paused: bool) -> Result<Response, ApiError> {
    let kind = if paused { EventType::DeliveryPaused } else { EventType::DeliveryResumed };
    let event = ctx.event(kind);
    let by = ctx.caller.user.as_ref().map(|p| p.username.clone());
    ctx.audited(move |c| Ok((delivery::set_paused(c, paused, by.as_deref(), now_millis())?, Some(event))))
        .await?;
    ctx.state.delivery.set_paused(paused);
    Ok(response::json(StatusCode::OK, &json!({"paused": paused})))
}

/// `GET /api/v1/management/delivery`.
pub fn delivery_state(ctx: &RequestContext) -> Response {
    let s = ctx.state.delivery.status();
    response::json(StatusCode::OK, &json!({"paused": s.state == "paused", "delivery": s}))
}

/// `POST /api/v1/management/messages/retry`: every failed/rejected message
/// matching the filters in the JSON body (same names as the list's query).
pub async fn bulk_retry(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let raw = read_body(&parts.headers, body, limit).await?;
    if !raw.is_empty() && !crate::http::request::is_json(&parts.headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let fields: serde_json::Map<String, serde_json::Value> =
        if raw.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_json(&raw)? };
    let filter = super::send::filter(&Query::from_json_fields(&fields, &super::send::FILTER_NAMES)?)?;
    if filter
        .status
        .is_some_and(|s| !matches!(s, messages::MessageStatus::Failed | messages::MessageStatus::Rejected))
    {
        return Err(ApiError::bad_request("status must be failed or rejected (or left out)"));
    }
    let event = ctx
        .event(EventType::MessageRetried)
        .with("bulk", true)
        .with("filter", serde_json::Value::Object(fields));
    let n = ctx
        .audited(move |c| {
            let n = messages::retry_matching(c, &filter, now_millis())?;
            Ok((n, Some(event.with("count", n))))
        })
        .await?;
    ctx.state.open_messages.fetch_add(n as i64, Ordering::AcqRel);
    ctx.state.delivery.wake();
    Ok(response::json(StatusCode::OK, &json!({"retried": n})))
}

/// `GET /api/v1/management/config`: the effective configuration.
pub fn config(ctx: &RequestContext) -> Response {
    response::json(StatusCode::OK, &ctx.state.config)
}

/// `GET /api/v1/management/backup`: a consistent snapshot, streamed.
pub async fn backup(ctx: RequestContext) -> Result<Response, ApiError> {
    let dir = ctx.state.storage.data_dir().join(crate::storage::DOWNLOADS_DIR);
    let path = dir.join(format!("download-{}.db", uuid::Uuid::now_v7()));
    let target = path.clone();
    ctx.state
        .storage
        .run(move |c| {
            crate::storage::create_private_dir(&dir)?;
            crate::storage::snapshot_to_file(c, &target).map(|_| ())
        })
        .await?;
    if let Err(e) = ctx.audit(ctx.event(EventType::BackupDownloaded)).await {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let file = std::fs::File::open(&path).map_err(|e| {
        tracing::error!(error = %e, "cannot open the snapshot");
        ApiError::internal()
    })?;
    // The open handle keeps the data readable after the name is removed.
    let _ = std::fs::remove_file(&path);
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    tokio::spawn(async move {
        let mut file = file;
        loop {
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut buf = vec![0u8; 256 * 1024];
                let n = file.read(&mut buf);
                (file, buf, n)
            })
            .await;
            let Ok((f, mut buf, Ok(n))) = read else { break };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.send_data(Bytes::from(buf)).await.is_err() {
                break;
            }
            file = f;
        }
    });
    let mut r = hyper::Response::new(body.boxed());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.sqlite3"));
    r.headers_mut().insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"energyload-backup.db\""),
    );
    Ok(r)
}
