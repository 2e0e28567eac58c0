//! The simulator's accept loop. Besides serving connections it plays
//! `refuse` outages: the listener is closed (new connections are refused by
//! the kernel) and every open connection is dropped; when the window ends
//! the same address is bound again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::OutageMode;
use super::{Shared, routes};

/// How long a stopping simulator lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pause between attempts to bind the port again after a `refuse` outage.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// Serves until `stop` turns true or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    let mut faults_changed = shared.faults.subscribe();
    // Bumping this drops every open connection.
    let (drop_all, _) = watch::channel(0u64);
    let open = Arc::new(());
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let far_future = || Instant::now() + Duration::from_secs(86_400);
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        faults_changed.borrow_and_update();
        let phase = shared.faults.outage_phase();
        let wake_at = phase.until.map_or_else(far_future, Instant::from_std);
        if phase.mode == Some(OutageMode::Refuse) {
            if listener.take().is_some() {
                let dropped = Arc::strong_count(&open) - 1;
                drop_all.send_modify(|generation| *generation += 1);
                shared.records().count_connections_dropped(dropped as u64);
                tracing::info!(dropped, "eSight simulator: refuse outage started");
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                _ = faults_changed.changed() => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
            continue;
        }
        let Some(bound) = &listener else {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!("eSight simulator: outage over, accepting again");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "eSight simulator: cannot bind again yet");
                    tokio::time::sleep(REBIND_PAUSE).await;
                }
            }
            continue;
        };
        let (stream, peer) = tokio::select! {
            accepted = bound.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "eSight simulator: accept failed");
                    tokio::time::sleep(REBIND_PAUSE).await;
                    continue;
                }
            },
            () = tokio::time::sleep_until(wake_at) => continue,
            _ = faults_changed.changed() => continue,
            _ = stop.changed() => break,
        };
        shared.records().count_connection_accepted();
        let _ = stream.set_nodelay(true);
        let shared_for_conn = shared.clone();
        let service = service_fn(move |req| {
            let shared = shared_for_conn.clone();
            async move { Ok::<_, Infallible>(routes::handle(shared, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let mut dropped = drop_all.subscribe();
        let mut stopping = stop.clone();
        let open_marker = open.clone();
        tokio::spawn(async move {
            let _open = open_marker;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "eSight simulator: connection ended with an error");
                    }
                }
                _ = dropped.changed() => {}
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while Arc::strong_count(&open) > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tracing::info!("eSight simulator stopped");
}
