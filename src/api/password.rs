//! Password changes over HTTP: `POST /user/password` (users change their own
//! password), and the parsing every new password of the API goes through
//! (length and strength rules, off the tokio workers). A changed password
//! ends the user's other sessions and lifts a username lock in the same
//! transaction as the change.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::RequestContext;
use crate::audit::{Event, EventType};
use crate::auth::PasswordError;
use crate::domain::user::{NewPassword, Username};
use crate::http::ApiError;
use crate::http::request::read_json;
use crate::http::response::Response;
use crate::users::{self as service, UserChanges};

/// Bodies of `POST /user/password` at most (two passwords of at most 128
/// characters fit many times over); larger ones are `413` unread.
const MAX_BODY_BYTES: u64 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Parses a new password of user `username` against the configured length
/// and strength rules; `400` with the reason when they refuse it. The
/// strength estimate runs on the blocking pool (it is a search over the
/// password, up to a few milliseconds).
pub(super) async fn parse_new_password(
    ctx: &RequestContext,
    raw: String,
    username: &str,
) -> Result<NewPassword, ApiError> {
    let rules = ctx.state.config.auth.password_rules();
    let username = username.to_string();
    tokio::task::spawn_blocking(move || NewPassword::parse_new(raw, &rules, &[&username]))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the password strength check failed");
            ApiError::internal()
        })?
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Hashes a parsed new password in the bounded pool (`503` when it is busy).
pub(super) async fn hash_new_password(
    ctx: &RequestContext,
    password: NewPassword,
) -> Result<String, ApiError> {
    ctx.state.passwords.hash(password).await.map_err(|e| match e {
        PasswordError::Overloaded { retry_after_secs } => {
            ApiError::unavailable("password hashing is busy", retry_after_secs)
        }
        other => {
            tracing::error!(error = %other, "hashing failed");
            ApiError::internal()
        }
    })
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "InvalidCredentials", "the current password is wrong")
}

/// `POST /user/password`: checks the current password (under the login
/// lockout: a wrong one counts as a failed login of the caller's username
/// and IP), sets the new one, ends every other session of the caller (the
/// token of this request stays valid), audits `password_changed`.
pub async fn change_own(ctx: RequestContext, req: Request<Incoming>) -> Result<Response, ApiError> {
    let principal = ctx.caller.user.clone().ok_or_else(ApiError::internal)?;
    let (parts, body) = req.into_parts();
    let b: PasswordChange = read_json(&parts.headers, body, MAX_BODY_BYTES).await?;
    let state = &ctx.state;
    let user = state.directory.user(&principal.user_id).ok_or_else(invalid_credentials)?;
    let new_password = parse_new_password(&ctx, b.new_password, &user.username).await?;
    // The failure slot is taken before the hash runs (as for logins), so
    // concurrent guesses cannot all be checked before one of them counts.
    let username = Username::parse(&user.username).ok();
    let slot =
        super::session::reserve_slot(&ctx, username.as_ref(), "too many failed password checks").await?;
    let check = state.passwords.verify(b.current_password, Some(user.password_hash.clone())).await;
    let (check, slot) =
        super::session::settle_check(&ctx, check, slot, "password checks are busy; try again shortly")?;
    let check = check.matches;
    if !check {
        state.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reached = state.lockout.fail(slot);
        ctx.audit(ctx.event(EventType::LoginFailure).with("via", "password_change")).await?;
        let known = username.as_ref().map(|n| (user.id.as_str(), n));
        super::session::audit_reached(&ctx, reached, ctx.event(EventType::AccountLocked), known).await?;
        return Err(invalid_credentials());
    }
    state.lockout.succeed(slot);
    let hash = hash_new_password(&ctx, new_password).await?;
    let event: Event = ctx.event(EventType::PasswordChanged).with("target_user_id", user.id.clone());
    let (id, keep) = (user.id.clone(), principal.jti.clone());
    let shared = ctx.state.clone();
    ctx.state
        .storage
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changes = UserChanges { password_hash: Some(hash), ..Default::default() };
            let changed = service::update(&tx, &id, changes).and_then(|_| {
                let ended = service::end_sessions_after_password_change(&tx, &id, Some(&keep), Some(&id))?;
                Ok((ended, service::lift_lock(&tx, &id)?))
            });
            let (ended, unlocked) = match changed {
                Ok(n) => n,
                Err(service::UserError::Storage(s)) => return Err(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot change a password");
                    return Ok(Err(ApiError::internal()));
                }
            };
            let event = event.with("sessions_ended", ended).with("unlocked", unlocked);
            if let Err(e) = crate::audit::record_in(&tx, event) {
                tracing::error!(error = %e, "cannot write the audit log");
                return Ok(Err(ApiError::unavailable("the audit log cannot be written", 5)));
            }
            tx.commit()?;
            shared.directory.reload(c)?;
            Ok(Ok(()))
        })
        .await??;
    state.lockout.clear(&user.username);
    let mut answer = hyper::Response::new(crate::http::response::full(bytes::Bytes::new()));
    *answer.status_mut() = StatusCode::NO_CONTENT;
    Ok(answer)
}
