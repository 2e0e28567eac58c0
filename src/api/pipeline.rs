//! The per-request pipeline of the appliance, above the transport: request
//! id, routing (404/405 before any authentication), body-size precheck, the
//! guard, the per-request timeout, the handler, audit of refusals, the
//! headers every answer carries, metrics and the access log.
//! `http::server` calls it through [`Handler`], implemented here for
//! [`AppState`], so the transport knows neither the route table nor the state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use hyper::{Request, StatusCode};
use tracing::Instrument;

use super::RequestContext;
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::request::{Caller, X_REQUEST_ID, client_ip, cookies_secure, declared_length, request_id};
use crate::http::router::RouteMatch;
use crate::http::server::Handler;
use crate::http::tls::TlsSlot;
use crate::http::{ApiError, Response};

impl Handler for AppState {
    async fn handle(self: Arc<Self>, peer: SocketAddr, req: Request<Incoming>) -> Response {
        handle(self, peer, req).await
    }

    fn server_config(&self) -> &ServerConfig {
        &self.config.server
    }

    fn tls(&self) -> Option<&TlsSlot> {
        self.tls.as_ref()
    }
}

/// One request, start to finish. Never fails: every error becomes an answer.
async fn handle(state: Arc<AppState>, peer: SocketAddr, req: Request<Incoming>) -> Response {
    let started = Instant::now();
    let request_id = request_id(req.headers());
    let client_ip = client_ip(peer.ip(), req.headers(), &state.config.server.trusted_proxies);
    let method = req.method().clone();
    // Kept for the access log (a cheap clone: shared bytes).
    let uri_for_log = crate::access_log::enabled().then(|| req.uri().clone());
    let span = tracing::info_span!("request", id = %request_id);

    let (route_label, result) = match state.router.find(req.method(), req.uri().path()) {
        RouteMatch::Found { route, .. }
            if declared_length(req.headers()).is_some_and(|n| n > state.config.server.max_body_bytes) =>
        {
            (route.path, Err(ApiError::too_large(state.config.server.max_body_bytes)))
        }
        RouteMatch::Found { route, params } => {
            let msisdn = req
                .headers()
                .get(state.config.audit.msisdn_header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let secure_cookies = cookies_secure(
                state.config.server.secure_cookies,
                state.tls.is_some(),
                peer.ip(),
                req.headers(),
                &state.config.server.trusted_proxies,
            );
            let mut ctx = RequestContext {
                state: state.clone(),
                request_id: request_id.clone(),
                peer,
                client_ip,
                route: route.path,
                params,
                path: req.uri().path().to_string(),
                msisdn,
                caller: Caller::default(),
                secure_cookies,
            };
            let timeout = state.config.server.request_timeout.get();
            let state_for_request = state.clone();
            let fut = async move {
                let state = state_for_request;
                let guarded = crate::auth::guard::GuardedRequest {
                    headers: req.headers(),
                    query: req.uri().query(),
                    changes_state: route.changes_state,
                    secure: secure_cookies,
                };
                let mut checked = state.guard.check(&state.directory, route.access, &guarded);
                if matches!(&checked, Err(d) if d.reason == "invalid_api_key")
                    && fresh_directory(&state).await
                {
                    checked = state.guard.check(&state.directory, route.access, &guarded);
                }
                match checked {
                    Ok(caller) => {
                        ctx.caller = caller;
                        let answer = crate::api::dispatch(route.endpoint, ctx, req).await;
                        confirmed_on_replica(&state, route.endpoint, route.changes_state, answer).await
                    }
                    // The sign-in page's own probe ("am I signed in?") with
                    // nothing to present is not an access attempt: 401, no
                    // audit event. Any credential sent, or any other route,
                    // is audited as before.
                    Err(denial)
                        if route.endpoint == crate::api::Endpoint::AdminSession
                            && guarded.presents_no_credential() =>
                    {
                        Err(denial.into_error())
                    }
                    Err(denial) => Err(deny(&mut ctx, denial).await),
                }
            }
            .instrument(span);
            let result = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::unavailable("the request took too long and was abandoned", 1)),
            };
            (route.path, result)
        }
        RouteMatch::MethodNotAllowed { path, allow } => (path, Err(ApiError::method_not_allowed(allow))),
        RouteMatch::NotFound => ("(unmatched)", Err(ApiError::not_found("no such path"))),
    };
    let mut response = result.unwrap_or_else(|e| e.into_response(&request_id));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    // Answers carry tokens, new API keys, backups and personal data: no
    // cache (browser or proxy) keeps them, unless a handler chose otherwise
    // (the admin page's static files revalidate with `no-cache`).
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let status = response.status();
    let elapsed = started.elapsed();
    state.metrics.record_http(route_label, status.as_str(), elapsed);
    if let Some(uri) = &uri_for_log {
        crate::access_log::record(&crate::access_log::Line {
            request_id: &request_id,
            method: method.as_str(),
            uri,
            route: route_label,
            status: status.as_u16(),
            elapsed,
            client: client_ip,
        });
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(request_id = %request_id, "answered 500");
    }
    response
}

/// With `replication.acknowledge = "replicated"`, a successful answer to a
/// request that changed state (users, keys, sessions, audit events, …) is
/// sent only once the replica holds the change; otherwise `503` with
/// `Retry-After`. Ingest waits inside the writer instead (per group, so
/// it is not waited for twice here).
async fn confirmed_on_replica(
    state: &AppState,
    endpoint: crate::api::Endpoint,
    changes_state: bool,
    answer: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    use crate::api::Endpoint;
    let Some(barrier) = state.replication.acknowledging() else { return answer };
    let waited_in_writer = matches!(endpoint, Endpoint::PostMessages | Endpoint::SendJsons);
    match answer {
        Ok(response) if changes_state && !waited_in_writer && response.status().is_success() => {
            barrier.replicated().await?;
            Ok(response)
        }
        other => other,
    }
}

/// Audits a refusal (`access_denied`) and turns it into its answer. Rate-limit
/// refusals are counted in metrics instead, so a flood cannot flood the log.
/// Other refusals are counted by reason and go through the coalescer
/// (`audit::denials`): the first of its client IP, reason and identity in a
/// window is written before the answer, repeats become one summary event.
async fn deny(ctx: &mut RequestContext, denial: crate::auth::guard::Denial) -> ApiError {
    use crate::audit::denials::Admission;
    ctx.caller = (*denial.caller).clone();
    let metrics = &ctx.state.metrics;
    if denial.is_rate_limit() {
        metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return denial.into_error();
    }
    metrics.access_denied.inc(&vec![("reason", denial.reason.to_string())]);
    let event = ctx
        .event(crate::audit::EventType::AccessDenied)
        .with("reason", denial.reason)
        .with("status", denial.status.as_u16());
    let now = (std::time::Instant::now(), crate::clock::now_millis());
    let events = match ctx.state.denials.admit(denial.reason, event, now.0, now.1) {
        Admission::Record(events) => events,
        Admission::Counted => return denial.into_error(),
        Admission::Overflow => {
            metrics.access_denied_overflow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return denial.into_error();
        }
    };
    for event in &events {
        if let Err(e) = ctx.audit(event.clone()).await {
            if let Some(first) = events.last() {
                ctx.state.denials.forget(denial.reason, first);
            }
            return e;
        }
    }
    denial.into_error()
}

/// After a refused API key: re-reads the identity directory if the
/// database changed (at most once per 100 ms for all such requests and
/// unknown-name logins together, see
/// [`crate::auth::directory::Directory::claim_on_demand_check`]), so a key
/// just made by `energyload apikey create` works at its first use instead of
/// after housekeeping's next reload. True when the directory was re-read
/// (then the key is checked again); a flood of made-up keys costs at most a
/// hundred small reads a second.
async fn fresh_directory(state: &Arc<AppState>) -> bool {
    if !state.directory.claim_on_demand_check() {
        return false;
    }
    let s = Arc::clone(state);
    // Checked again even when this refresh found nothing new: housekeeping
    // may have loaded the key between the refusal and this read.
    match state.storage.run(move |c| s.directory.refresh_on_demand(c)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-read the identity directory for an API key");
            false
        }
    }
}
