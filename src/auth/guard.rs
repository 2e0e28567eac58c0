//! The request guard: one place that decides, from the route's declared
//! access, whether a request may reach its handler. It reads only memory
//! (the directory, the verified-token cache, rate limiters) — never the
//! database — except to audit a denial before answering it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, COOKIE, HeaderValue, WWW_AUTHENTICATE};

use super::api_keys::KeyHash;
use super::directory::Directory;
use super::tokens::{AccessTokens, Claims, TokenChannel};
use crate::domain::user::{Role, UserStatus};
use crate::http::ApiError;
use crate::http::request::Caller;

/// Name of the admin page's session cookie (it holds a token) over plain HTTP.
pub const SESSION_COOKIE: &str = "el_session";
/// Name of the session cookie when it is `Secure`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-el_session";
/// Verified tokens cached at most; the cache is cleared when full.
const MAX_CACHED_TOKENS: usize = 50_000;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing (health, metrics, JWKS, the admin page).
    Open,
    /// An API key only (`/login`).
    Key,
    /// An API key and a token (or an admin-page session) of a user holding
    /// one of these roles.
    Roles(&'static [Role]),
}

/// The authenticated user behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Current roles (from the directory, not the token).
    pub roles: crate::domain::user::Roles,
    /// The token's id.
    pub jti: String,
    /// The token's expiry (Unix seconds).
    pub expires_at: u64,
    /// True when it came from the admin page's cookie.
    pub via_session_cookie: bool,
}

/// Why the guard refused, before it is audited and answered.
#[derive(Debug, Clone)]
pub struct Denial {
    /// The answer.
    pub status: StatusCode,
    /// Contract code.
    pub code: &'static str,
    /// Human message.
    pub message: &'static str,
    /// Audit detail: the internal reason.
    pub reason: &'static str,
    /// `Retry-After` for rate limits.
    pub retry_after: Option<u64>,
    /// What was learned about the caller before the refusal.
    pub caller: Box<Caller>,
}

impl Denial {
    fn unauthorized(reason: &'static str, message: &'static str, caller: Caller) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "Unauthorized",
            message,
            reason,
            retry_after: None,
            caller: Box::new(caller),
        }
    }

    /// True for `429` rate-limit refusals (counted, not audited one by one).
    pub fn is_rate_limit(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
    }

    /// The error answer.
    pub fn into_error(self) -> ApiError {
        let mut e = ApiError::new(self.status, self.code, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            e = e.with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"energyload\""));
        }
        if let Some(secs) = self.retry_after {
            e = e.with_header(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        e
    }
}

/// The guard's state: the token verifier and its cache.
pub struct Guard {
    tokens: RwLock<Arc<AccessTokens>>,
    verified: RwLock<HashMap<String, Arc<Claims>>>,
    api_key_required: bool,
}

impl Guard {
    /// A guard over `tokens`.
    pub fn new(tokens: AccessTokens, api_key_required: bool) -> Self {
        Self {
            tokens: RwLock::new(Arc::new(tokens)),
            verified: RwLock::new(HashMap::new()),
            api_key_required,
        }
    }

    /// The token issuer/verifier.
    pub fn tokens(&self) -> Arc<AccessTokens> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads the signing keys when the key directory holds another set of
    /// keys than the one in use (after `energyload keys rotate`). Returns
    /// true when it reloaded.
    pub fn reload_keys_if_changed(&self, data_dir: &Path) -> Result<bool, String> {
        let dir = data_dir.join(super::signing_keys::KEYS_DIR_NAME);
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".pem").map(str::to_string))
            .collect();
        let current = self.tokens();
        let in_use: BTreeSet<String> = current.keys().kids().map(str::to_string).collect();
        if on_disk == in_use {
            return Ok(false);
        }
        let settings = current.settings().clone();
        let keys = super::signing_keys::SigningKeys::load_or_create(data_dir, settings.ttl)
            .map_err(|e| e.to_string())?;
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(AccessTokens::new(keys, settings));
        self.verified.write().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(true)
    }

    /// Verifies a token, from the cache when it was verified before and has
    /// not expired. Signature, algorithm, `iss`, `aud` and `exp` are checked
    /// once per token; revocation and user status on every request.
    fn verify(&self, token: &str, now_secs: u64) -> Option<Arc<Claims>> {
        if let Some(c) = self.verified.read().unwrap_or_else(|e| e.into_inner()).get(token)
            && c.exp + super::signing_keys::LEEWAY_SECS > now_secs
        {
            return Some(c.clone());
        }
        let claims = Arc::new(self.tokens().verify(token).ok()?);
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, c| c.exp + super::signing_keys::LEEWAY_SECS > now_secs);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), Arc::clone(&claims));
        Some(claims)
    }

    /// Decides whether `request` may pass `access`.
    ///
    /// The order of the checks is the contract's: the API key (`401`, or
    /// `429` when its quota is used up), the token (`401`), the CSRF token of
    /// a cookie session on a state-changing route (`403`), the role (`403`).
    /// The key is waived only when the token that is verified came from the
    /// admin page's session cookie and was issued for it
    /// ([`TokenChannel::AdminPage`]); a bearer token always needs the key,
    /// whatever cookies come with it.
    pub fn check(
        &self,
        directory: &Directory,
        access: Access,
        request: &GuardedRequest<'_>,
    ) -> Result<Caller, Denial> {
        if access == Access::Open {
            return Ok(Caller::default());
        }
        let headers = request.headers;
        let now_ms = crate::clock::now_millis();
        let mut caller = Caller::default();
        let presented_token = match access {
            Access::Roles(_) => presented_token(headers, request.secure),
            _ => None,
        };
        let from_cookie = matches!(presented_token, Some((_, TokenChannel::AdminPage)));
        let key_needed = self.api_key_required && !from_cookie;
        let presented = api_key(headers, request.query);
        if key_needed || presented.is_some() {
            let Some(presented) = presented else {
                return Err(Denial::unauthorized("missing_api_key", "an API key is required", caller));
            };
            let key = KeyHash::of_presented(presented).ok().and_then(|h| directory.key(&h));
            let Some(key) = key.filter(|k| k.expires_at.is_none_or(|e| e > now_ms)) else {
                return Err(Denial::unauthorized(
                    "invalid_api_key",
                    "the API key is invalid or revoked",
                    caller,
                ));
            };
            caller.api_key_id = Some(key.id.clone());
            if let Some(wait) = key.limiter.as_ref().and_then(|l| l.try_take().err()) {
                return Err(Denial {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "TooManyRequests",
                    message: "this API key's rate limit is exceeded",
                    reason: "rate_limited",
                    retry_after: Some(wait.as_secs().max(1)),
                    caller: Box::new(caller),
                });
            }
            directory.note_key_use(&key.id, now_ms);
        }
        let Access::Roles(allowed) = access else { return Ok(caller) };
        let Some((token, channel)) = presented_token else {
            return Err(Denial::unauthorized("missing_token", "a bearer token is required", caller));
        };
        let now_secs = u64::try_from(now_ms / 1000).unwrap_or(0);
        let invalid = "the token is invalid, expired or revoked";
        let Some(claims) = self.verify(token, now_secs) else {
            return Err(Denial::unauthorized("invalid_token", invalid, caller));
        };
        if claims.channel != channel {
            return Err(Denial::unauthorized("token_channel", invalid, caller));
        }
        if directory.is_revoked(&claims.jti) {
            return Err(Denial::unauthorized("revoked_token", invalid, caller));
        }
        let Some(user) = directory.user(&claims.sub).filter(|u| u.status == UserStatus::Active) else {
            return Err(Denial::unauthorized("inactive_user", invalid, caller));
        };
        caller.user = Some(principal(&user, &claims, from_cookie));
        if from_cookie && request.changes_state && !csrf_ok(headers, &claims.jti) {
            return Err(Denial {
                status: StatusCode::FORBIDDEN,
                code: "Forbidden",
                message: "missing or wrong X-CSRF-Token",
                reason: "csrf",
                retry_after: None,
                caller: Box::new(caller),
            });
        }
        if !allowed.iter().any(|r| user.roles.contains(*r)) {
            return Err(Denial {
                status: StatusCode::FORBIDDEN,
                code: "Forbidden",
                message: "your role does not allow this",
                reason: "role",
                retry_after: None,
                caller: Box::new(caller),
            });
        }
        Ok(caller)
    }
}

/// What the guard looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct GuardedRequest<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The query string (for the compat `key=` parameter).
    pub query: Option<&'a str>,
    /// True when the route changes state (every method but GET, and the
    /// few GET routes that import or change data): a cookie session needs
    /// its CSRF token there.
    pub changes_state: bool,
    /// True when the browser reached us over HTTPS (see
    /// [`crate::config::SecureCookies`]): only then is the `__Host-` cookie
    /// the session cookie.
    pub secure: bool,
}

impl GuardedRequest<'_> {
    /// True when the request carries no credential of any kind: no API key
    /// (header or query), no `Authorization` header, no session cookie under
    /// either name. Such a request to the admin page's session probe is the
    /// sign-in page asking whether it is signed in, not an access attempt.
    pub fn presents_no_credential(&self) -> bool {
        api_key(self.headers, self.query).is_none()
            && !self.headers.contains_key(AUTHORIZATION)
            && !self.headers.contains_key("x-api-key")
            && session_token(self.headers, true).is_none()
            && session_token(self.headers, false).is_none()
    }
}

/// The token a request presents for a role check, and the channel it came
/// by: the bearer token when there is one (cookies are then ignored), else
/// the admin page's session cookie.
fn presented_token(headers: &HeaderMap, secure: bool) -> Option<(&str, TokenChannel)> {
    if let Some(bearer) = bearer_token(headers) {
        return Some((bearer, TokenChannel::Bearer));
    }
    session_token(headers, secure).map(|t| (t, TokenChannel::AdminPage))
}

fn principal(user: &super::directory::CachedUser, claims: &Claims, via_cookie: bool) -> Principal {
    Principal {
        user_id: user.id.clone(),
        username: user.username.clone(),
        roles: user.roles.clone(),
        jti: claims.jti.clone(),
        expires_at: claims.exp,
        via_session_cookie: via_cookie,
    }
}

/// The CSRF token for a session: derived from the token id, which only the
/// holder of the HttpOnly cookie (and the page it was issued to) knows.
pub fn csrf_token(jti: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("energyload-csrf:{jti}").as_bytes()))
}

fn csrf_ok(headers: &HeaderMap, jti: &str) -> bool {
    let expected = csrf_token(jti);
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| subtle::ConstantTimeEq::ct_eq(v.as_bytes(), expected.as_bytes()).into())
}

fn api_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query?.split('&').find_map(|pair| pair.strip_prefix("key=")).filter(|k| !k.is_empty()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The name of the session cookie: with the `__Host-` prefix when it is
/// `Secure` (the browser then refuses it from plain HTTP, from a sub-domain
/// and with a `Domain` or a narrower `Path`), the plain name otherwise.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_SESSION_COOKIE } else { SESSION_COOKIE }
}

/// The session token from the admin page's cookie, if present: only the
/// cookie of the name in force for this request's scheme counts.
pub fn session_token(headers: &HeaderMap, secure: bool) -> Option<&str> {
    let name = session_cookie_name(secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
}
