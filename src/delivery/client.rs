//! The eSight client: one `ureq::Agent` (keep-alive, timeouts), the access
//! token cache, and the token and catalog (sites + meters) calls. Blocking:
//! used only from the delivery dispatcher thread, never from an async
//! executor. The consumption posts go through hyper's client on the
//! `delivery-io` thread (`poster.rs`), which takes the URL and the current
//! Basic credential from here. The credentials can be swapped while delivery
//! runs (SIGHUP reload).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use crate::config::{EsightConfig, Secret};
use crate::metrics::Metrics;

/// Renew the token this long before eSight says it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(30);
/// The longest an eSight token is kept, whatever `expires_in` says: a day.
/// eSight's tokens live minutes to hours; a larger value is a fault (or a
/// hostile answer) and must neither overflow `Instant` nor pin a token forever.
const TOKEN_MAX_LIFE: Duration = Duration::from_secs(24 * 60 * 60);

/// The configured eSight endpoints and credentials (all present).
#[derive(Clone)]
pub struct Endpoints {
    token_url: String,
    sites_url: String,
    meters_url: String,
    consumption_url: String,
    credentials: Credentials,
}

impl Endpoints {
    /// `None` while any URL or credential is missing from `[esight]`.
    pub fn from_config(c: &EsightConfig) -> Option<Self> {
        Some(Self {
            token_url: c.token_url.clone()?,
            sites_url: c.sites_url.clone()?,
            meters_url: c.meters_url.clone()?,
            consumption_url: c.consumption_url.clone()?,
            credentials: Credentials::from_config(c)?,
        })
    }
}

/// The two HTTP Basic credentials, as ready-made `Authorization` values.
/// Replaced as a whole when a reload brings new secrets; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    token_auth: String,
    post_auth: String,
}

impl Credentials {
    /// `None` while any of the four credentials is missing from `[esight]`.
    pub fn from_config(c: &EsightConfig) -> Option<Self> {
        let basic = |u: &Option<Secret>, p: &Option<Secret>| {
            let raw = format!("{}:{}", u.as_ref()?.expose(), p.as_ref()?.expose());
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
        };
        Some(Self {
            token_auth: basic(&c.username, &c.password)?,
            post_auth: basic(&c.post_username, &c.post_password)?,
        })
    }
}

/// Which credentials a swap changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CredentialChange {
    /// `esight.username` / `esight.password` (the token fetch).
    pub token: bool,
    /// `esight.post_username` / `esight.post_password` (the consumption POST).
    pub post: bool,
}

/// Why a call to eSight did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: connection refused, reset, DNS, timeout.
    #[error("eSight unreachable: {0}")]
    Transport(String),
    /// eSight answered with a non-2xx status.
    #[error("eSight answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// eSight answered 2xx with a body we cannot use.
    #[error("unusable answer from eSight: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct SiteEntry {
    #[serde(rename = "SiteCode")]
    site_code: String,
}

#[derive(Deserialize)]
struct MeterEntry {
    #[serde(rename = "MeterCode")]
    meter_code: String,
}

struct Token {
    value: String,
    renew_at: Option<Instant>,
}

/// When to fetch a new token, for one that eSight says lives `expires_in`
/// seconds from `now`: a little before it expires (`TOKEN_RENEW_MARGIN`, at
/// most half its life), its life capped at `TOKEN_MAX_LIFE`. Never panics,
/// whatever the number.
fn renew_at(now: Instant, expires_in: u64) -> Instant {
    let life = Duration::from_secs(expires_in).min(TOKEN_MAX_LIFE);
    let keep = life.saturating_sub(TOKEN_RENEW_MARGIN.min(life / 2));
    now.checked_add(keep).unwrap_or(now)
}

/// Site and meter codes known to eSight.
#[derive(Debug, Clone, Default)]
pub struct CatalogCodes {
    /// `SiteCode`s.
    pub sites: HashSet<String>,
    /// `MeterCode`s.
    pub meters: HashSet<String>,
}

/// The client, shared by the dispatcher and the posting thread.
pub struct EsightClient {
    agent: ureq::Agent,
    endpoints: Endpoints,
    /// Starts as `endpoints.credentials`; a reload swaps it. Each call reads
    /// it once, so a call never mixes old and new.
    credentials: RwLock<Arc<Credentials>>,
    token: Mutex<Option<Token>>,
    metrics: Arc<Metrics>,
}

impl EsightClient {
    /// A client with `timeout` per call (one thread calls: a small pool).
    pub fn new(endpoints: Endpoints, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections(4)
            .max_idle_connections_per_host(4)
            .user_agent(concat!("energyload/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let credentials = RwLock::new(Arc::new(endpoints.credentials.clone()));
        Self { agent, endpoints, credentials, token: Mutex::new(None), metrics }
    }

    fn credentials(&self) -> Arc<Credentials> {
        self.credentials.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Uses `new` from the next call on. A changed token credential also
    /// drops the cached access token, so the next call fetches one with the
    /// new credential (after any fetch in progress has finished).
    pub fn set_credentials(&self, new: Credentials) -> CredentialChange {
        let change = {
            let mut slot = self.credentials.write().unwrap_or_else(|e| e.into_inner());
            let change = CredentialChange {
                token: slot.token_auth != new.token_auth,
                post: slot.post_auth != new.post_auth,
            };
            *slot = Arc::new(new);
            change
        };
        if change.token {
            self.forget_token();
        }
        change
    }

    fn timed<T>(&self, endpoint: &'static str, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.metrics.esight_duration.observe(&vec![("endpoint", endpoint.to_string())], started.elapsed());
        out
    }

    /// A valid access token, fetched when there is none or it is about to expire.
    fn bearer(&self) -> Result<String, CallError> {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = slot.as_ref()
            && t.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(t.value.clone());
        }
        let credentials = self.credentials();
        let answer: TokenAnswer = self.timed("token", || {
            let resp = self
                .agent
                .get(&self.endpoints.token_url)
                .header("Authorization", &credentials.token_auth)
                .call();
            read_json(resp)
        })?;
        let renew_at = answer.expires_in.map(|secs| renew_at(Instant::now(), secs));
        *slot = Some(Token { value: answer.access_token.clone(), renew_at });
        Ok(answer.access_token)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// GET with the bearer token; on `401` fetches a new token and tries once more.
    fn get_with_token<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &'static str,
        url: &str,
    ) -> Result<T, CallError> {
        for first in [true, false] {
            let token = self.bearer()?;
            let result = self.timed(endpoint, || {
                read_json(self.agent.get(url).header("Authorization", &format!("Bearer {token}")).call())
            });
            match result {
                Err(CallError::Status { status: 401, .. }) if first => self.forget_token(),
                other => return other,
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Fetches the site and meter catalogs.
    pub fn fetch_catalog(&self) -> Result<CatalogCodes, CallError> {
        let sites: Vec<SiteEntry> = self.get_with_token("sites", &self.endpoints.sites_url)?;
        let meters: Vec<MeterEntry> = self.get_with_token("meters", &self.endpoints.meters_url)?;
        Ok(CatalogCodes {
            sites: sites.into_iter().map(|s| s.site_code).collect(),
            meters: meters.into_iter().map(|m| m.meter_code).collect(),
        })
    }

    /// `esight.consumption_url`.
    pub fn consumption_url(&self) -> &str {
        &self.endpoints.consumption_url
    }

    /// The `Authorization` value of a consumption post (read at each call,
    /// so a reload applies to the next post).
    pub fn post_authorization(&self) -> String {
        self.credentials().post_auth.clone()
    }
}

fn transport(e: ureq::Error) -> CallError {
    CallError::Transport(e.to_string())
}

/// The error for a non-2xx answer, with its `Retry-After` in seconds.
pub(super) fn status_error<B>(resp: &ureq::http::Response<B>, status: u16) -> CallError {
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    CallError::Status { status, retry_after }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T, CallError> {
    let mut resp = resp.map_err(transport)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let _ = resp.body_mut().with_config().limit(1024 * 1024).read_to_vec();
        return Err(status_error(&resp, status));
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| CallError::Transport(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| CallError::Invalid(e.to_string()))
}

#[cfg(test)]
mod token_life_tests {
    use super::*;

    #[test]
    fn huge_expires_in_is_capped_at_a_day_without_panicking() {
        let now = Instant::now();
        for huge in [u64::MAX, u64::MAX - 1, u64::MAX / 2, 1 << 63, 10_u64.pow(18)] {
            let at = renew_at(now, huge);
            assert!(at > now, "{huge}");
            assert!(at.duration_since(now) <= TOKEN_MAX_LIFE, "{huge}");
        }
        assert_eq!(renew_at(now, 3600), now + Duration::from_secs(3570));
        assert_eq!(renew_at(now, 0), now);
        assert_eq!(renew_at(now, 20), now + Duration::from_secs(10));
    }
}
