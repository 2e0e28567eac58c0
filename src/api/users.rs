//! User management (admin): create, edit, deactivate, list, get, the live
//! sessions of a user, ending one session, and lifting a lockout early.
//! Every change is audited before the answer and reloads the in-memory
//! directory, so it takes effect on the next request.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::RequestContext;
use super::params::{Query, page};
use crate::audit::EventType;
use crate::clock::{format_millis, now_millis};
use crate::domain::user::{Roles, UserStatus, Username};
use crate::http::ApiError;
use crate::http::request::read_json;
use crate::http::response::{self, Response};
use crate::storage::identity;
use crate::users::{self as service, UserChanges, UserError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    password: String,
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    password: Option<String>,
    roles: Option<Vec<String>>,
    status: Option<String>,
}

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::Invalid(v) => ApiError::bad_request(v.to_string()),
        UserError::Conflict { existing_id } => {
            ApiError::new(StatusCode::CONFLICT, "Conflict", "a user with this username exists")
                .with_field("id", existing_id)
        }
        UserError::NotFound => ApiError::not_found("no such user"),
        UserError::Storage(s) => s.into(),
        UserError::Hash(h) => {
            tracing::error!(error = %h, "hashing failed");
            ApiError::internal()
        }
    }
}

/// Parses a new password of `username` (length and strength rules) and hashes it.
async fn hash(ctx: &RequestContext, raw: String, username: &str) -> Result<String, ApiError> {
    let password = super::password::parse_new_password(ctx, raw, username).await?;
    super::password::hash_new_password(ctx, password).await
}

fn parse_roles(names: &[String]) -> Result<Roles, ApiError> {
    Roles::parse(names.iter().map(String::as_str)).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Runs a user change and appends its audit event in one transaction
/// (a change whose event cannot be written is rolled back and answered
/// `503`: never an unaudited change), reloads the directory, returns the record.
async fn change<T, F, E>(ctx: &RequestContext, f: F, event: E) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, UserError> + Send + 'static,
    E: FnOnce(&T) -> crate::audit::Event + Send + 'static,
{
    let state = ctx.state.clone();
    ctx.state
        .storage
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let record = match f(&tx) {
                Ok(record) => record,
                Err(e) => return Ok(Err(user_error(e))),
            };
            if let Err(e) = crate::audit::record_in(&tx, event(&record)) {
                tracing::error!(error = %e, "cannot write the audit log");
                return Ok(Err(ApiError::unavailable("the audit log cannot be written", 5)));
            }
            tx.commit()?;
            state.directory.reload(c)?;
            Ok(Ok(record))
        })
        .await?
}

/// `POST /api/v1/management/users/user`.
pub async fn create(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let b: NewUserBody = read_json(&parts.headers, body, limit).await?;
    let username = Username::parse(&b.username).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let roles = parse_roles(&b.roles)?;
    if ctx.state.directory.user_by_name(username.as_str()).is_some() {
        let existing =
            ctx.state.directory.user_by_name(username.as_str()).map(|u| u.id.clone()).unwrap_or_default();
        return Err(user_error(UserError::Conflict { existing_id: existing }));
    }
    let hash = hash(&ctx, b.password, username.as_str()).await?;
    let creator = ctx.caller.user.as_ref().map(|p| p.user_id.clone());
    let event = ctx.event(EventType::UserCreated);
    let record = change(
        &ctx,
        move |c| service::create(c, &username, hash, &roles, creator.as_deref()),
        move |r| event.with("target_user_id", r.id.clone()).with("roles", r.roles.clone()),
    )
    .await?;
    Ok(response::json(StatusCode::CREATED, &json!({"id": record.id})))
}

/// `PATCH /api/v1/management/users/user/edit/{id}`.
pub async fn edit(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let b: EditBody = read_json(&parts.headers, body, limit).await?;
    if b.password.is_none() && b.roles.is_none() && b.status.is_none() {
        return Err(ApiError::bad_request("give at least one of password, roles, status"));
    }
    let roles = b.roles.as_deref().map(parse_roles).transpose()?;
    let status = b
        .status
        .as_deref()
        .map(|s| UserStatus::parse(s).map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?;
    let target_user = ctx.state.directory.user(&id).ok_or_else(|| ApiError::not_found("no such user"))?;
    let changed: Vec<&str> =
        [("password", b.password.is_some()), ("roles", roles.is_some()), ("status", status.is_some())]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
    let password_hash = match b.password {
        Some(p) => Some(hash(&ctx, p, &target_user.username).await?),
        None => None,
    };
    // A password reset ends every session of the user and lifts a username
    // lock, in the same transaction: whoever held a token of the old
    // password loses it, and the user can sign in with the new one at once.
    let reset = password_hash.is_some();
    let by = ctx.caller.user.as_ref().map(|p| p.user_id.clone());
    let changes = UserChanges { password_hash, roles, status };
    let target = id.clone();
    let event =
        ctx.event(EventType::UserModified).with("target_user_id", id).with("changed", changed.join(","));
    let (record, _) = change(
        &ctx,
        move |c| {
            let mut record = service::update(c, &target, changes)?;
            if !reset {
                return Ok((record, false));
            }
            service::end_sessions_after_password_change(c, &target, None, by.as_deref())?;
            let unlocked = service::lift_lock(c, &target)?;
            record.locked_until = None;
            Ok((record, unlocked))
        },
        move |(_, unlocked)| if reset { event.with("unlocked", *unlocked) } else { event },
    )
    .await?;
    if reset {
        ctx.state.lockout.clear(&target_user.username);
    }
    Ok(response::json(StatusCode::OK, &service::view(&record)))
}

/// `DELETE /api/v1/management/users/user/deactivate/{id}`.
pub async fn deactivate(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    let target = id.clone();
    let changes = UserChanges { status: Some(UserStatus::Deactivated), ..Default::default() };
    let event = ctx.event(EventType::UserDeactivated).with("target_user_id", id);
    let record = change(&ctx, move |c| service::update(c, &target, changes), move |_| event).await?;
    Ok(response::json(StatusCode::OK, &service::view(&record)))
}

/// `GET /api/v1/management/users` (newest first; cursor = position).
pub async fn list(ctx: RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let (limit, from) = (q.limit()?, q.cursor()?.unwrap_or(0).max(0) as usize);
    let mut users = ctx.state.storage.run(|c| identity::all_users(c)).await?;
    users.reverse();
    let items: Vec<_> = users.iter().skip(from).take(limit).map(service::view).collect();
    Ok(response::json(StatusCode::OK, &page(items, limit, Some((from + limit) as i64))))
}

/// `GET /api/v1/management/users/user/{id}`.
pub async fn get(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    let user = ctx.state.storage.run(move |c| identity::user_by_id(c, &id)).await?;
    let user = user.ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(response::json(StatusCode::OK, &service::view(&user)))
}

/// `GET /api/v1/management/users/user/{id}/sessions`: live tokens.
pub async fn sessions(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    if ctx.state.directory.user(&id).is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    let rows = ctx.state.storage.run(move |c| identity::live_sessions(c, &id, now_millis())).await?;
    let items: Vec<_> = rows
        .iter()
        .map(|s| {
            json!({"jti": s.jti, "issued_at": format_millis(s.issued_at), "expires_at": format_millis(s.expires_at),
                   "ip": s.ip, "user_agent": s.user_agent})
        })
        .collect();
    Ok(response::json(StatusCode::OK, &json!({"items": items, "next_cursor": null})))
}

/// `DELETE /api/v1/management/sessions/{jti}`: ends one session.
pub async fn end_session(ctx: RequestContext) -> Result<Response, ApiError> {
    let jti = ctx.param("jti").unwrap_or_default().to_string();
    let by = ctx.caller.user.as_ref().map(|p| p.user_id.clone());
    let (target, event) = (jti.clone(), ctx.event(EventType::Logout));
    let found = ctx
        .audited(move |c| {
            let found = identity::revoke_session(c, &target, by.as_deref(), now_millis())?;
            let event = found
                .as_ref()
                .map(|s| event.with("target_user_id", s.user_id.clone()).with("session", target));
            Ok((found, event))
        })
        .await?;
    let session = found.ok_or_else(|| ApiError::not_found("no such session"))?;
    ctx.state.directory.revoke(&jti, session.expires_at);
    Ok(response::json(StatusCode::OK, &json!({"revoked": true})))
}

/// `POST /api/v1/management/users/user/{id}/unlock`: lifts a username lock
/// early (in memory, and its record with the unlock marker, in the
/// transaction of the `account_unlocked` event). A lock of the client's
/// network stays: an operator unlocks a user, not a network.
pub async fn unlock(ctx: RequestContext) -> Result<Response, ApiError> {
    let id = ctx.param("id").unwrap_or_default().to_string();
    let user = ctx.state.directory.user(&id).ok_or_else(|| ApiError::not_found("no such user"))?;
    let event = ctx.event(EventType::AccountUnlocked).with("target_user_id", id.clone());
    ctx.audited(move |c| {
        let was_locked = identity::lift_lock(c, &id, now_millis())?;
        Ok(((), Some(event.with("was_locked", was_locked))))
    })
    .await?;
    ctx.state.lockout.clear(&user.username);
    Ok(response::json(StatusCode::OK, &json!({"unlocked": true})))
}
