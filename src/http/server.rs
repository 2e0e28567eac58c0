//! The accept loop: connection cap, hyper HTTP/1.1 with header-size and
//! header-read-timeout limits, and graceful shutdown. With
//! `server.tls_cert`/`tls_key` set, each connection's TLS handshake runs in
//! its own task (bounded by `server.header_read_timeout`) before the same
//! HTTP/1.1 service; plain connections take the path they always did.
//!
//! The transport knows no route and no handler: each request goes to the
//! [`Handler`] handed in from above (the appliance's is `api::pipeline`,
//! with the route table and the application state).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Response;
use super::tls::TlsSlot;
use crate::config::ServerConfig;

/// What the server calls for each request: the application above the
/// transport.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`. Never fails: every error becomes an
    /// answer.
    fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response> + Send;
    /// The listener's limits (`[server]`).
    fn server_config(&self) -> &ServerConfig;
    /// The certificate slot when the listener serves TLS.
    fn tls(&self) -> Option<&TlsSlot>;
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// waits up to `server.shutdown_timeout` for in-flight requests.
pub async fn serve<H: Handler>(listener: TcpListener, state: Arc<H>, shutdown: impl Future<Output = ()>) {
    let server_cfg = state.server_config();
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
        if state.tls().is_some() {
            tokio::spawn(serve_tls(stream, peer, state, builder.clone(), graceful.watcher(), slot));
            continue;
        }
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(state.handle(peer, req).await) }
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
    let grace = state.server_config().shutdown_timeout.get();
    tracing::info!(grace = ?grace, "stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// One TLS connection: the handshake with the certificate in force now
/// (bounded by `server.header_read_timeout`, off the accept loop), then the
/// same HTTP/1.1 service as plain connections.
async fn serve_tls<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<H>,
    builder: http1::Builder,
    watcher: Watcher,
    slot: OwnedSemaphorePermit,
) {
    let Some(tls) = state.tls() else { return };
    let handshake_timeout = state.server_config().header_read_timeout.get();
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
        async move { Ok::<_, Infallible>(state.handle(peer, req).await) }
    });
    if let Err(e) = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
    drop(slot);
}
