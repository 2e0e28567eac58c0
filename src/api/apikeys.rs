//! API keys (admin): create (the key is shown once), list (never the key),
//! revoke (refused from the next request on).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::RequestContext;
use crate::audit::EventType;
use crate::auth::NewApiKey;
use crate::auth::rate_limit::KeyRate;
use crate::clock::{format_millis, now_millis, parse_rfc3339_millis};
use crate::domain::api_key_name::ApiKeyName;
use crate::http::ApiError;
use crate::http::request::read_json;
use crate::http::response::{self, Response};
use crate::storage::StorageError;
use crate::storage::identity::{self, ApiKeyRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    rate_per_sec: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

/// The JSON view of a key record.
pub fn view(k: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id, "name": k.name, "prefix": k.prefix,
        "created_at": format_millis(k.created_at),
        "expires_at": k.expires_at.map(format_millis),
        "revoked_at": k.revoked_at.map(format_millis),
        "last_used_at": k.last_used_at.map(format_millis),
        "rate_limit": k.rate_per_sec.map(|r| json!({"per_sec": r, "burst": k.burst})),
    })
}

/// Creates a key record for a freshly generated key.
pub fn new_record(
    key: &NewApiKey,
    name: String,
    created_by: Option<String>,
    expires_at: Option<i64>,
) -> ApiKeyRecord {
    ApiKeyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name,
        prefix: key.prefix().to_string(),
        key_hash: key.hash().as_bytes().to_vec(),
        created_by,
        created_at: now_millis(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
        rate_per_sec: None,
        burst: None,
    }
}

/// A change whose audit event cannot be written is rolled back: `503`.
fn audit_failed(e: crate::storage::StorageError) -> ApiError {
    tracing::error!(error = %e, "cannot write the audit log");
    ApiError::unavailable("the audit log cannot be written", 5)
}

/// Two active keys may not share a name: `409 Conflict` with the existing
/// key's id in `error.id`; any other storage error as usual.
fn name_taken(e: StorageError) -> ApiError {
    match e {
        StorageError::ApiKeyNameTaken { name, existing_id } => ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("an active API key named {name:?} exists; revoke it first or choose another name"),
        )
        .with_field("id", existing_id),
        e => e.into(),
    }
}

/// `POST /api/v1/management/apikeys`.
pub async fn create(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let b: NewKeyBody = read_json(&parts.headers, body, limit).await?;
    let name = ApiKeyName::parse(&b.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let expires_at = b
        .expires_at
        .as_deref()
        .map(|t| parse_rfc3339_millis(t).ok_or_else(|| ApiError::bad_request("expires_at must be RFC 3339")))
        .transpose()?;
    if expires_at.is_some_and(|e| e <= now_millis()) {
        return Err(ApiError::bad_request("expires_at must be in the future"));
    }
    // A key's own limit is above 0 (0 means "unlimited" only for the
    // configured default); omit rate_per_sec for no own limit.
    if b.rate_per_sec == Some(0.0) {
        return Err(ApiError::bad_request("rate_per_sec must be above 0; omit it for no own limit"));
    }
    let rate = KeyRate::parse(b.rate_per_sec, b.burst).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = NewApiKey::generate().map_err(|e| {
        tracing::error!(error = %e, "cannot generate a key");
        ApiError::internal()
    })?;
    let mut record =
        new_record(&key, name.into_string(), ctx.caller.user.as_ref().map(|p| p.user_id.clone()), expires_at);
    record.rate_per_sec = rate.map(|r| r.per_sec());
    record.burst = rate.map(|r| i64::from(r.burst()));
    let stored = record.clone();
    let event = ctx
        .event(EventType::ApikeyCreated)
        .with("target_api_key_id", record.id.clone())
        .with("name", record.name.clone());
    let state = ctx.state.clone();
    ctx.state
        .storage
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            identity::insert_api_key(&tx, &stored)?;
            if let Err(e) = crate::audit::record_in(&tx, event) {
                return Ok(Err(e));
            }
            tx.commit()?;
            state.directory.reload(c).map(Ok)
        })
        .await
        .map_err(name_taken)?
        .map_err(audit_failed)?;
    let body = json!({"id": record.id, "name": record.name, "prefix": record.prefix, "key": key.expose()});
    Ok(response::json(StatusCode::CREATED, &body))
}

/// `GET /api/v1/management/apikeys`.
pub async fn list(ctx: RequestContext) -> Result<Response, ApiError> {
    let keys = ctx.state.storage.run(|c| identity::all_api_keys(c)).await?;
    let items: Vec<_> = keys.iter().map(view).collect();
    Ok(response::json(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
}

/// `DELETE /api/v1/management/apikeys/{id}`.
pub async fn revoke(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    let target = id.clone();
    let state = ctx.state.clone();
    let event = ctx.event(EventType::ApikeyRevoked).with("target_api_key_id", id.clone());
    let found = ctx
        .state
        .storage
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if !identity::revoke_api_key(&tx, &target, now_millis())? {
                return Ok(Ok(false));
            }
            if let Err(e) = crate::audit::record_in(&tx, event) {
                return Ok(Err(e));
            }
            tx.commit()?;
            state.directory.reload(c)?;
            Ok(Ok(true))
        })
        .await?
        .map_err(audit_failed)?;
    if !found {
        return Err(ApiError::not_found("no such API key"));
    }
    Ok(response::json(StatusCode::OK, &json!({"id": id, "revoked": true})))
}
