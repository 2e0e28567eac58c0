//! What a handler knows about a request beyond the hyper request itself:
//! the application state, request id, client IP, path parameters, the
//! authenticated caller, and the audit helpers that use them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::app::AppState;
use crate::http::ApiError;
use crate::http::request::Caller;

/// Per-request facts every handler may use.
pub struct RequestContext {
    /// Shared application state.
    pub state: Arc<AppState>,
    /// The request id echoed in `X-Request-Id` and error bodies.
    pub request_id: String,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client's address: the peer, or from `X-Forwarded-For` when the
    /// peer is a trusted proxy.
    pub client_ip: IpAddr,
    /// The matched route pattern, e.g. `/api/v1/service/send/messages/{id}`.
    pub route: &'static str,
    /// Path parameters by name.
    pub params: Vec<(String, String)>,
    /// The request path, without query.
    pub path: String,
    /// The caller's MSISDN (header named by `audit.msisdn_header`).
    pub msisdn: Option<String>,
    /// Who is calling, once the guard has authenticated the request.
    pub caller: Caller,
    /// True when the admin page's session cookie is `Secure` for this
    /// request (`server.secure_cookies`, see [`cookies_secure`]).
    pub secure_cookies: bool,
}

impl RequestContext {
    /// The actor for audit events: the authenticated caller.
    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor {
            user_id: self.caller.user.as_ref().map(|p| p.user_id.clone()),
            username: self.caller.user.as_ref().map(|p| p.username.clone()),
            api_key_id: self.caller.api_key_id.clone(),
        }
    }

    /// Request facts for audit events.
    pub fn facts(&self) -> crate::audit::RequestFacts {
        crate::audit::RequestFacts {
            ip: Some(self.client_ip.to_string()),
            msisdn: self.msisdn.clone(),
            request_id: Some(self.request_id.clone()),
            path: Some(self.path.clone()),
        }
    }

    /// Appends an audit event with this request's caller and facts; the
    /// request must fail (503) if this fails.
    pub async fn audit(&self, event: crate::audit::Event) -> Result<(), ApiError> {
        crate::audit::record(&self.state.storage, event).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            ApiError::unavailable("the audit log cannot be written", 5)
        })
    }

    /// Runs a change and appends the audit event it returns (if any) in one
    /// immediate transaction: both are committed, or neither (then `503`).
    pub async fn audited<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(
                &rusqlite::Connection,
            ) -> Result<(T, Option<crate::audit::Event>), crate::storage::StorageError>
            + Send
            + 'static,
    {
        let outcome = self
            .state
            .storage
            .run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let (out, event) = change(&tx)?;
                if let Some(event) = event
                    && let Err(e) = crate::audit::record_in(&tx, event)
                {
                    return Ok(Err(e));
                }
                tx.commit()?;
                Ok(Ok(out))
            })
            .await?;
        outcome.map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            ApiError::unavailable("the audit log cannot be written", 5)
        })
    }

    /// An audit event of `kind` by this caller.
    pub fn event(&self, kind: crate::audit::EventType) -> crate::audit::Event {
        crate::audit::Event::new(kind, self.actor(), self.facts())
    }
    /// A path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
