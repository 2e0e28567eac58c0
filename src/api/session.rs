//! Sessions: `POST /login` (compat), `POST /logout`, `GET /user`, the JWKS,
//! and the admin page's cookie session (`/admin/session`). Password checks
//! run in the bounded argon2 pool after a lockout slot is reserved; an
//! unknown user costs the same as a known one; every failure (also a role
//! the admin page refuses) is one `401`, counts toward the lockout windows
//! and is audited. Sign-in bodies are capped at [`MAX_SIGN_IN_BODY_BYTES`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE, USER_AGENT};
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::RequestContext;
use crate::audit::{Actor, EventType, sanitize};
use crate::auth::directory::CachedUser;
use crate::auth::guard::{csrf_token, session_cookie_name};
use crate::auth::lockout::{Locked, LockedBy, Reservation};
use crate::auth::tokens::TokenChannel;
use crate::auth::{PasswordCheck, PasswordError};
use crate::clock::now_millis;
use crate::domain::user::{NewPassword, Role, Roles, UserStatus, Username};
use crate::http::ApiError;
use crate::http::request::{accepts_json, read_json};
use crate::http::response::{self, Response};
use crate::storage::identity::{self, SessionRecord};

/// The most bytes a sign-in body (`POST /login`, `POST /admin/session`) may
/// have: a username of at most 64 characters and a password of at most
/// [`NewPassword::MAX_CHARS`] (4 bytes each at worst) fit with room to spare
/// for JSON escapes. Larger bodies get `413` before anything is parsed.
pub const MAX_SIGN_IN_BODY_BYTES: u64 = 4 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

/// Who may sign in through an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignInFor {
    /// `POST /login`: every role.
    Api,
    /// `POST /admin/session`: admin and backoffice only.
    AdminPage,
}

impl SignInFor {
    /// Where the token issued by this sign-in may be presented.
    fn channel(self) -> TokenChannel {
        match self {
            SignInFor::Api => TokenChannel::Bearer,
            SignInFor::AdminPage => TokenChannel::AdminPage,
        }
    }

    fn admits(self, roles: &Roles) -> bool {
        match self {
            SignInFor::Api => true,
            SignInFor::AdminPage => roles.contains(Role::Admin) || roles.contains(Role::Backoffice),
        }
    }
}

/// A token issued after a successful password check.
struct Issued {
    token: String,
    jti: String,
    expires_in: u64,
    user: std::sync::Arc<CachedUser>,
}

/// The JSON view of a cached user, serialised straight from the cache
/// (`GET /user` is on the light path: no `serde_json::Value` tree in
/// between, measured in BENCHMARKS.md). Fields in the order the `json!`
/// map it replaces wrote them (alphabetical), so the bytes stay the same.
#[derive(serde::Serialize)]
pub struct UserJson<'a> {
    created_at: &'a str,
    id: &'a str,
    roles: &'a Roles,
    status: &'a UserStatus,
    updated_at: &'a str,
    username: &'a str,
}

/// The JSON view of a cached user.
pub fn user_json(u: &CachedUser) -> UserJson<'_> {
    UserJson {
        created_at: &u.created_at_text,
        id: &u.id,
        roles: &u.roles,
        status: &u.status,
        updated_at: &u.updated_at_text,
        username: &u.username,
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "InvalidCredentials", "invalid username or password")
}

/// `429` with `Retry-After` for a locked username or network.
fn locked_out(locked: Locked, what: &'static str) -> ApiError {
    let secs = locked.retry_after.as_secs().max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        format!("{what}; try again in {}", wait_in_words(secs)),
    )
    .with_header(hyper::header::RETRY_AFTER, HeaderValue::from(secs))
}

/// A wait for people, rounded up: "45 seconds", "1 minute", "15 minutes"
/// (the exact seconds are in `Retry-After`).
fn wait_in_words(secs: u64) -> String {
    match secs {
        0..=1 => "1 second".to_string(),
        2..=59 => format!("{secs} seconds"),
        60 => "1 minute".to_string(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

#[cfg(test)]
mod wait_tests {
    use super::wait_in_words;

    #[test]
    fn waits_read_as_seconds_then_whole_minutes_rounded_up() {
        let cases = [
            (0, "1 second"),
            (1, "1 second"),
            (45, "45 seconds"),
            (60, "1 minute"),
            (61, "2 minutes"),
            (897, "15 minutes"),
        ];
        for (secs, words) in cases {
            assert_eq!(wait_in_words(secs), words, "{secs}");
        }
    }
}

/// Takes a lockout slot for a password check of `name` from this client
/// ([`crate::auth::lockout::Lockout::reserve`]), or refuses with `429`
/// saying `what`. Only when the username is locked, and only for a known
/// user within the lockout's read budget, the user's unlock marker is read:
/// an unlock after the lock began (CLI `user unlock` or `user passwd` in
/// another process) makes the lockout forget the window and the slot is
/// taken again (the per-IP window still applies). See `auth/lockout.rs`.
pub(super) async fn reserve_slot(
    ctx: &RequestContext,
    name: Option<&Username>,
    what: &'static str,
) -> Result<Reservation, ApiError> {
    let lockout = &ctx.state.lockout;
    let locked = match lockout.reserve(name, ctx.client_ip) {
        Ok(reservation) => return Ok(reservation),
        Err(locked) => locked,
    };
    if locked.by == LockedBy::Username
        && let Some(name) = name
        && let Some(user) = ctx.state.directory.user_by_name(name.as_str())
        && lockout.may_read_unlock_marker(name)
    {
        let (state, id, locked_name) = (Arc::clone(&ctx.state), user.id.clone(), name.clone());
        let lifted = ctx
            .state
            .storage
            .run(move |c| {
                let Some(at) = identity::lock_lifted_at(c, &id)? else { return Ok(false) };
                if !state.lockout.lift_if_unlocked_after_lock(&locked_name, at) {
                    return Ok(false);
                }
                // The unlock may have come with a new password (`user
                // passwd`): check against it, not the one cached until
                // housekeeping's next reload.
                state.directory.refresh_on_demand(c)?;
                Ok(true)
            })
            .await;
        match lifted {
            Ok(true) => {
                tracing::info!(user_id = %user.id, "a username lock was lifted by an unlock");
                return lockout.reserve(Some(name), ctx.client_ip).map_err(|l| locked_out(l, what));
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the unlock marker"),
        }
    }
    Err(locked_out(locked, what))
}

/// Audits each limit a failed password check reached (`account_locked`,
/// once per lock, `base` with `by`). A username lock of a known `user` is
/// recorded in `user_locks` in the same transaction, so `user list`, the
/// management API and other processes see it.
pub(super) async fn audit_reached(
    ctx: &RequestContext,
    reached: Vec<LockedBy>,
    base: crate::audit::Event,
    user: Option<(&str, &Username)>,
) -> Result<(), ApiError> {
    for by in reached {
        let event = base.clone().with("by", if by == LockedBy::Username { "username" } else { "ip" });
        let lock = match (by, user) {
            (LockedBy::Username, Some((id, name))) => {
                ctx.state.lockout.username_locked_for(name).map(|left| (id.to_string(), left))
            }
            _ => None,
        };
        ctx.audited(move |c| {
            if let Some((id, left)) = lock {
                let now = now_millis();
                let until = now.saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
                identity::record_lock(c, &id, now, until)?;
            }
            Ok(((), Some(event)))
        })
        .await?;
    }
    Ok(())
}

/// Settles a password check made under a reserved lockout slot: an
/// overloaded hashing pool gives the slot back and answers `503` with
/// `busy_message`; any other error counts as a wrong password.
pub(super) fn settle_check(
    ctx: &RequestContext,
    check: Result<PasswordCheck, PasswordError>,
    reservation: Reservation,
    busy_message: &'static str,
) -> Result<(PasswordCheck, Reservation), ApiError> {
    match check {
        Ok(c) => Ok((c, reservation)),
        Err(PasswordError::Overloaded { retry_after_secs }) => {
            ctx.state.lockout.release(reservation);
            Err(ApiError::unavailable(busy_message, retry_after_secs))
        }
        Err(e) => {
            tracing::warn!(error = %e, "password check failed");
            Ok((PasswordCheck { matches: false, needs_rehash: false }, reservation))
        }
    }
}

/// The account a login names. A name the directory does not know makes it
/// re-read the database's auth generation first (at most once per 100 ms
/// for all such logins together), so a user just added or imported by the
/// CLI logs in at once rather than after housekeeping's next reload.
async fn account(ctx: &RequestContext, name: &Username) -> Option<Arc<CachedUser>> {
    let directory_user = ctx.state.directory.user_by_name(name.as_str());
    if directory_user.is_some() || !ctx.state.directory.claim_on_demand_check() {
        return directory_user;
    }
    let state = Arc::clone(&ctx.state);
    if let Err(e) = ctx.state.storage.run(move |c| state.directory.refresh_on_demand(c)).await {
        tracing::warn!(error = %e, "cannot re-read the identity directory for a login");
    }
    ctx.state.directory.user_by_name(name.as_str())
}

/// Checks a username and password and issues a token, with lockout, timing
/// equalisation, audit and re-hashing of hashes with other parameters.
///
/// Order matters: the username is parsed first (an unparsable one can name
/// no account: it is answered like a wrong password, counts only against
/// the client's IP window and never reaches the username window or a hash);
/// then a failure slot is reserved per username and per IP (`429` when
/// either is used up) before the password is hashed, so concurrent attempts
/// cannot exceed the limits; then the password is checked.
///
/// Every failure — unknown user, wrong password, deactivated user, and a
/// right password of a role `for_whom` does not admit — gets the same `401`,
/// is audited `login_failure` and counts as a failure: were a role refusal
/// not counted, an attacker could tell a right password by the lockout not
/// advancing.
async fn password_login(
    ctx: &RequestContext,
    creds: Credentials,
    user_agent: Option<String>,
    for_whom: SignInFor,
) -> Result<Issued, ApiError> {
    let state = &ctx.state;
    let name = Username::parse(&creds.username).ok();
    let reservation = reserve_slot(ctx, name.as_ref(), "too many failed logins").await?;
    let user = match &name {
        Some(name) => account(ctx, name).await,
        None => None,
    };
    let check = if name.is_some() {
        state.passwords.verify(creds.password.clone(), user.as_ref().map(|u| u.password_hash.clone())).await
    } else {
        Ok(PasswordCheck { matches: false, needs_rehash: false })
    };
    let (check, reservation) =
        settle_check(ctx, check, reservation, "too many logins at once; try again shortly")?;
    let actor = Actor {
        user_id: user.as_ref().map(|u| u.id.clone()),
        username: Some(creds.username.clone()),
        api_key_id: ctx.caller.api_key_id.clone(),
    };
    let active = user.as_ref().filter(|u| u.status == UserStatus::Active && check.matches);
    let admitted = active.filter(|u| for_whom.admits(&u.roles));
    let Some(user) = admitted.cloned() else {
        state.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reached = state.lockout.fail(reservation);
        let mut event = crate::audit::Event::new(EventType::LoginFailure, actor.clone(), ctx.facts());
        if active.is_some() {
            event = event.with("reason", "role not allowed on the admin page");
        }
        ctx.audit(event).await?;
        let locked = crate::audit::Event::new(EventType::AccountLocked, actor, ctx.facts());
        let known = user.as_ref().zip(name.as_ref()).map(|(u, n)| (u.id.as_str(), n));
        audit_reached(ctx, reached, locked, known).await?;
        return Err(invalid_credentials());
    };
    state.lockout.succeed(reservation);
    if check.needs_rehash {
        rehash(ctx, &user, creds.password).await;
    }
    let tokens = state.guard.tokens();
    let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
    let mut claims = tokens.claims_for(user.id.clone(), user.roles.clone(), now_secs);
    claims.channel = for_whom.channel();
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

/// Stores a hash with the current parameters of a password that just
/// verified against a hash with other ones (best effort).
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
    let (parts, body) = req.into_parts();
    let creds: Credentials = read_json(&parts.headers, body, MAX_SIGN_IN_BODY_BYTES).await?;
    let issued = password_login(&ctx, creds, ua, SignInFor::Api).await?;
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

/// `POST /admin/session`: signs in to the admin page (cookie session). It
/// needs no API key, so it must not tell anything a wrong password does not:
/// a right password of a user the page does not admit (roles `user` or
/// `esight` only) is a `401 InvalidCredentials` like any other failure,
/// under the same lockout and per-IP windows as `POST /login`.
pub async fn admin_sign_in(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let ua = user_agent(&req);
    let (parts, body) = req.into_parts();
    let creds: Credentials = read_json(&parts.headers, body, MAX_SIGN_IN_BODY_BYTES).await?;
    let issued = password_login(&ctx, creds, ua, SignInFor::AdminPage).await?;
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
