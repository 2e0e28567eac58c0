//! The accept loop and per-request pipeline: connection cap, hyper HTTP/1.1
//! with header-size and header-read-timeout limits, request ids, routing,
//! per-request timeout, metrics, access log, and graceful shutdown. With
//! `server.tls_cert`/`tls_key` set, each connection's TLS handshake runs in
//! its own task (bounded by `server.header_read_timeout`) before the same
//! HTTP/1.1 service; plain connections take the path they always did.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::request::{Caller, client_ip, declared_length, request_id};
use super::router::RouteMatch;
use super::{ApiError, RequestContext, Response};
use crate::app::AppState;

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// waits up to `server.shutdown_timeout` for in-flight requests.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let server_cfg = &state.config.server;
    let slots = Arc::new(Semaphore::new(server_cfg.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server_cfg.header_read_timeout.get())
        .max_buf_size(server_cfg.max_header_bytes)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        if state.tls.is_some() {
            tokio::spawn(serve_tls(stream, peer, state, builder.clone(), graceful.watcher(), slot));
            continue;
        }
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = state.config.server.shutdown_timeout.get();
    tracing::info!(grace = ?grace, "stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// One TLS connection: the handshake with the certificate in force now
/// (bounded by `server.header_read_timeout`, off the accept loop), then the
/// same HTTP/1.1 service as plain connections.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    builder: http1::Builder,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) {
    let Some(tls) = &state.tls else { return };
    let handshake_timeout = state.config.server.header_read_timeout.get();
    let acceptor = tls.acceptor();
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
    });
    if let Err(e) = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
    drop(slot);
}

/// One request, start to finish. Never fails: every error becomes an answer.
async fn handle(state: Arc<AppState>, peer: SocketAddr, req: Request<Incoming>) -> Response {
    let started = Instant::now();
    let request_id = request_id(req.headers());
    let client_ip = client_ip(peer.ip(), req.headers(), &state.config.server.trusted_proxies);
    let method = req.method().clone();
    let path_for_log = redact_query(req.uri());
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
            };
            let timeout = state.config.server.request_timeout.get();
            let state_for_request = state.clone();
            let fut = async move {
                let state = state_for_request;
                let safe = matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
                let checked =
                    state.guard.check(&state.directory, route.access, req.headers(), req.uri().query(), safe);
                match checked {
                    Ok(caller) => {
                        ctx.caller = caller;
                        crate::api::dispatch(route.endpoint, ctx, req).await
                    }
                    Err(denial) => Err(deny(&mut ctx, denial).await),
                }
            }
            .instrument(span.clone());
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
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status();
    let elapsed = started.elapsed();
    state.metrics.record_http(route_label, status.as_str(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            target: "energyload::access",
            method = %method,
            path = %path_for_log,
            route = route_label,
            status = status.as_u16(),
            latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            client = %client_ip,
        );
    });
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(request_id = %request_id, "answered 500");
    }
    response
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

/// The path and query for the access log, with the `key` query parameter
/// (an API key) replaced by `<redacted>`.
fn redact_query(uri: &hyper::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_string() };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("key") => format!("{k}=<redacted>"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_in_query_strings_are_redacted() {
        let uri: hyper::Uri = "/user?key=abc123&x=1".parse().unwrap();
        assert_eq!(redact_query(&uri), "/user?key=<redacted>&x=1");
        let uri: hyper::Uri = "/health".parse().unwrap();
        assert_eq!(redact_query(&uri), "/health");
    }
}
