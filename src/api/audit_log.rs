//! The audit log (admin): filtered list, CSV export, chain verification.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::params::{Query, page};
use crate::clock::format_millis;
use crate::http::response::{self, Response};
use crate::http::{ApiError, RequestContext};
use crate::storage::audit::{self as store, AuditFilter, AuditRow};

/// Rows in one CSV export at most.
const CSV_MAX_ROWS: usize = 1_000_000;

fn view(r: &AuditRow) -> Value {
    json!({
        "id": r.id.to_string(), "ts": format_millis(r.ts), "type": r.event_type, "ip": r.ip, "msisdn": r.msisdn,
        "user_id": r.user_id, "username": r.username, "api_key_id": r.api_key_id,
        "request_id": r.request_id, "path": r.path,
        "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// `GET /api/v1/management/audit` (`format=csv` for a download).
pub async fn list(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let filter = AuditFilter {
        event_type: q.string("type"),
        user_id: q.string("user_id"),
        ip: q.string("ip"),
        since: q.time("since")?,
        until: q.time("until")?,
        before_id: q.cursor()?,
    };
    if q.one_of("format", &["csv"])?.is_some() {
        let rows = ctx.state.storage.run(move |c| store::list(c, &filter, CSV_MAX_ROWS)).await?;
        let mut out =
            String::from("id,ts,type,ip,msisdn,user_id,username,api_key_id,request_id,path,detail\n");
        for r in &rows {
            let fields = [
                r.id.to_string(),
                format_millis(r.ts),
                r.event_type.clone(),
                r.ip.clone().unwrap_or_default(),
                r.msisdn.clone().unwrap_or_default(),
                r.user_id.clone().unwrap_or_default(),
                r.username.clone().unwrap_or_default(),
                r.api_key_id.clone().unwrap_or_default(),
                r.request_id.clone().unwrap_or_default(),
                r.path.clone().unwrap_or_default(),
                r.detail.clone(),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        let mut r = response::with_body(StatusCode::OK, "text/csv; charset=utf-8", out);
        r.headers_mut().insert(
            hyper::header::CONTENT_DISPOSITION,
            hyper::header::HeaderValue::from_static("attachment; filename=\"energyload-audit.csv\""),
        );
        return Ok(r);
    }
    let limit = q.limit()?;
    let rows = ctx.state.storage.run(move |c| store::list(c, &filter, limit)).await?;
    let last = rows.last().map(|r| r.id);
    Ok(response::json(StatusCode::OK, &page(rows.iter().map(view).collect(), limit, last)))
}

/// `GET /api/v1/management/audit/verify`.
pub async fn verify(ctx: RequestContext) -> Result<Response, ApiError> {
    let report = ctx.state.storage.run(|c| store::verify(c)).await?;
    let body = match report.first_broken {
        None => json!({"ok": true, "checked": report.checked}),
        Some(id) => json!({"ok": false, "checked": report.checked, "first_broken": {"id": id.to_string()}}),
    };
    Ok(response::json(StatusCode::OK, &body))
}
