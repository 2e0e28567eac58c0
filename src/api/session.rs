//! Sessions: `POST /login` (compat), `POST /logout`, `GET /user`, the JWKS,
//! and the admin page's cookie session (`/admin/session`). Password checks
//! run in the bounded argon2 pool; an unknown user costs the same as a known
//! one; failures count toward the lockout windows and are audited.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE, USER_AGENT};
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::RequestContext;
use crate::audit::{Actor, EventType, sanitize};
use crate::auth::PasswordError;
use crate::auth::directory::CachedUser;
use crate::auth::guard::{csrf_token, session_cookie_name};
use crate::auth::lockout::LockedBy;
use crate::auth::tokens::TokenChannel;
use crate::clock::{format_millis, now_millis};
use crate::domain::user::{NewPassword, Role, UserStatus};
use crate::http::ApiError;
use crate::http::request::{accepts_json, read_json};
use crate::http::response::{self, Response};
use crate::storage::identity::{self, SessionRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

/// A token issued after a successful password check.
struct Issued {
    token: String,
    jti: String,
    expires_in: u64,
    user: std::sync::Arc<CachedUser>,
}

/// The JSON view of a cached user.
pub fn user_json(u: &CachedUser) -> serde_json::Value {
    json!({
        "id": u.id, "username": u.username, "roles": u.roles, "status": u.status,
        "created_at": format_millis(u.created_at), "updated_at": format_millis(u.updated_at),
    })
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "InvalidCredentials", "invalid username or password")
}

/// Checks a username and password and issues a token, with lockout, timing
/// equalisation, audit and re-hashing of weak hashes.
async fn password_login(
    ctx: &RequestContext,
    creds: Credentials,
    user_agent: Option<String>,
    channel: TokenChannel,
) -> Result<Issued, ApiError> {
    let state = &ctx.state;
    if let Err(locked) = state.lockout.check(&creds.username, ctx.client_ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "too many failed logins; try again later",
        )
        .with_header(hyper::header::RETRY_AFTER, HeaderValue::from(locked.retry_after.as_secs().max(1))));
    }
    let user = state.directory.user_by_name(&creds.username);
    let check =
        state.passwords.verify(creds.password.clone(), user.as_ref().map(|u| u.password_hash.clone())).await;
    let check = match check {
        Ok(c) => c,
        Err(PasswordError::Overloaded { retry_after_secs }) => {
            return Err(ApiError::unavailable(
                "too many logins at once; try again shortly",
                retry_after_secs,
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "password check failed");
            crate::auth::PasswordCheck { matches: false, needs_rehash: false }
        }
    };
    let actor = Actor {
        user_id: user.as_ref().map(|u| u.id.clone()),
        username: Some(creds.username.clone()),
        api_key_id: ctx.caller.api_key_id.clone(),
    };
    let active = user.as_ref().filter(|u| u.status == UserStatus::Active && check.matches);
    let Some(user) = active.cloned() else {
        state.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reached = state.lockout.record_failure(&creds.username, ctx.client_ip);
        let event = crate::audit::Event::new(EventType::LoginFailure, actor.clone(), ctx.facts());
        ctx.audit(event).await?;
        for by in reached {
            let by = if by == LockedBy::Username { "username" } else { "ip" };
            let event =
                crate::audit::Event::new(EventType::AccountLocked, actor.clone(), ctx.facts()).with("by", by);
            ctx.audit(event).await?;
        }
        return Err(invalid_credentials());
    };
    state.lockout.clear(&creds.username);
    if check.needs_rehash {
        rehash(ctx, &user, creds.password).await;
    }
    let tokens = state.guard.tokens();
    let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
    let mut claims = tokens.claims_for(user.id.clone(), user.roles.clone(), now_secs);
    claims.channel = channel;
    let token = tokens.issue(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a token");
        ApiError::internal()
    })?;
    let session = SessionRecord {
        jti: claims.jti.clone(),
        user_id: user.id.clone(),
        issued_at: claims.iat as i64 * 1000,
        expires_at: claims.exp as i64 * 1000,
        ip: Some(ctx.client_ip.to_string()),
        user_agent: user_agent.map(|ua| sanitize(&ua)),
        revoked_at: None,
        revoked_by: None,
    };
    state.storage.run(move |c| identity::insert_session(c, &session)).await?;
    let event = crate::audit::Event::new(EventType::LoginSuccess, actor, ctx.facts());
    ctx.audit(event).await?;
    Ok(Issued { token, jti: claims.jti, expires_in: claims.exp.saturating_sub(now_secs), user })
}

/// Stores a stronger hash of a password that just verified (best effort).
async fn rehash(ctx: &RequestContext, user: &CachedUser, password: String) {
    let Ok(password) = NewPassword::parse(password, 1) else { return };
    let Ok(hash) = ctx.state.passwords.hash(password).await else { return };
    let id = user.id.clone();
    let changes = crate::users::UserChanges { password_hash: Some(hash), ..Default::default() };
    let result =
        ctx.state.storage.run(move |c| crate::users::update(c, &id, changes).map_err(to_storage)).await;
    match result {
        Ok(_) => tracing::info!(user_id = %user.id, "re-hashed a password with the current settings"),
        Err(e) => tracing::warn!(error = %e, "re-hashing a password failed"),
    }
}

fn to_storage(e: crate::users::UserError) -> crate::storage::StorageError {
    match e {
        crate::users::UserError::Storage(s) => s,
        other => crate::storage::StorageError::Io {
            context: other.to_string(),
            source: std::io::ErrorKind::Other.into(),
        },
    }
}

fn user_agent(req: &Request<Incoming>) -> Option<String> {
    req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `POST /login`: the token as text (compat) or JSON with `Accept: application/json`.
pub async fn login(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let json_answer = accepts_json(req.headers());
    let ua = user_agent(&req);
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let creds: Credentials = read_json(&parts.headers, body, limit).await?;
    let issued = password_login(&ctx, creds, ua, TokenChannel::Bearer).await?;
    Ok(if json_answer {
        response::json(
            StatusCode::OK,
            &json!({"access_token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in}),
        )
    } else {
        response::text(StatusCode::OK, issued.token)
    })
}

/// Revokes the caller's token durably and at once.
async fn revoke_own(ctx: &RequestContext) -> Result<(), ApiError> {
    let principal = ctx.caller.user.clone().ok_or_else(ApiError::internal)?;
    let (jti, by) = (principal.jti.clone(), principal.user_id.clone());
    let event = ctx.event(EventType::Logout);
    ctx.audited(move |c| Ok((identity::revoke_session(c, &jti, Some(&by), now_millis())?, Some(event))))
        .await?;
    ctx.state.directory.revoke(&principal.jti, principal.expires_at as i64 * 1000);
    Ok(())
}

/// `POST /logout`.
pub async fn logout(ctx: RequestContext) -> Result<Response, ApiError> {
    revoke_own(&ctx).await?;
    Ok(response::json(StatusCode::OK, &json!({"revoked": true})))
}

/// `GET /user`: the caller's own record, from memory.
pub fn current_user(ctx: &RequestContext) -> Result<Response, ApiError> {
    let principal = ctx.caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let user =
        ctx.state.directory.user(&principal.user_id).ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(response::json(StatusCode::OK, &user_json(&user)))
}

/// `GET /.well-known/jwks.json`.
pub fn jwks(ctx: &RequestContext) -> Response {
    response::json(StatusCode::OK, &ctx.state.guard.tokens().keys().jwks())
}

/// The session cookie; `Secure` and named `__Host-el_session` when
/// `server.secure_cookies` says so for this request (TLS on this listener,
/// or a trusted proxy reporting HTTPS), else `el_session` (a `Secure` cookie
/// over plain HTTP would never come back).
fn session_cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let name = session_cookie_name(secure);
    let flag = if secure { "; Secure" } else { "" };
    let value = format!("{name}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{flag}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("el_session=; Max-Age=0"))
}

/// `POST /admin/session`: signs in to the admin page (cookie session).
pub async fn admin_sign_in(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let ua = user_agent(&req);
    let limit = ctx.state.config.server.max_body_bytes;
    let (parts, body) = req.into_parts();
    let creds: Credentials = read_json(&parts.headers, body, limit).await?;
    let issued = password_login(&ctx, creds, ua, TokenChannel::AdminPage).await?;
    if !(issued.user.roles.contains(Role::Admin) || issued.user.roles.contains(Role::Backoffice)) {
        let jti = issued.jti.clone();
        ctx.state.storage.run(move |c| identity::revoke_session(c, &jti, None, now_millis())).await?;
        ctx.state.directory.revoke(&issued.jti, now_millis() + issued.expires_in as i64 * 1000);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the admin page is for admin and backoffice users",
        ));
    }
    let body = json!({"user": user_json(&issued.user), "csrf_token": csrf_token(&issued.jti), "expires_in": issued.expires_in});
    let mut r = response::json(StatusCode::OK, &body);
    r.headers_mut().insert(SET_COOKIE, session_cookie(&issued.token, issued.expires_in, ctx.secure_cookies));
    Ok(r)
}

/// `GET /admin/session`: who is signed in, and the CSRF token.
pub fn admin_session(ctx: &RequestContext) -> Result<Response, ApiError> {
    let principal = ctx.caller.user.as_ref().ok_or_else(ApiError::internal)?;
    let user =
        ctx.state.directory.user(&principal.user_id).ok_or_else(|| ApiError::not_found("no such user"))?;
    let expires_in = principal.expires_at.saturating_sub(u64::try_from(now_millis() / 1000).unwrap_or(0));
    let body =
        json!({"user": user_json(&user), "csrf_token": csrf_token(&principal.jti), "expires_in": expires_in});
    Ok(response::json(StatusCode::OK, &body))
}

/// `DELETE /admin/session`: signs out (revokes the token, clears the cookie).
pub async fn admin_sign_out(ctx: RequestContext) -> Result<Response, ApiError> {
    revoke_own(&ctx).await?;
    let mut r = response::json(StatusCode::OK, &json!({"revoked": true}));
    r.headers_mut().insert(SET_COOKIE, session_cookie("", 0, ctx.secure_cookies));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secure_cookie_carries_the_host_prefix_and_a_plain_one_does_not() {
        let plain = session_cookie("abc", 60, false);
        let tls = session_cookie("abc", 60, true);
        assert_eq!(plain.to_str().unwrap(), "el_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
        assert_eq!(
            tls.to_str().unwrap(),
            "__Host-el_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60; Secure"
        );
    }
}
