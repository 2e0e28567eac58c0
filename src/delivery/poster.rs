//! The consumption posts, many outstanding at once on one thread.
//!
//! A thread `delivery-io` runs a single-threaded tokio runtime with hyper's
//! pooled client (keep-alive, `TCP_NODELAY`, https through rustls with the
//! same webpki roots as `ureq`). The dispatcher hands it [`Job`]s through an
//! unbounded channel — bounded in practice by the concurrency limit, since
//! the dispatcher only sends what the limit allows — and each job becomes a
//! task: POST, read at most 1 MiB of the answer (so the connection goes back
//! to the pool), report a [`Completion`]. An outstanding post costs a task
//! and its connection's buffers, not a thread: the number of connections
//! opened over a run follows the concurrency, not the message count.
//!
//! `esight.timeout` bounds each post as a whole (connect, send, answer). A
//! `401` is sent once more at once with the credentials read again (a reload
//! may just have replaced them), as the blocking client did.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;

use super::client::{CallError, EsightClient, status_error};
use crate::metrics::Metrics;

/// How long an idle pooled connection to eSight is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Largest answer body read from a consumption post.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One message to post.
#[derive(Debug)]
pub struct Job {
    /// Our message id (also the `Idempotency-Key`).
    pub id: i64,
    /// The body as eSight gets it.
    pub body: Bytes,
}

/// How a post ended.
#[derive(Debug)]
pub struct Completion {
    /// The message.
    pub id: i64,
    /// From handing the job over to the answer.
    pub rtt: Duration,
    /// `Ok(status)` for 2xx.
    pub result: Result<u16, CallError>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The posting thread and its job queue.
pub struct Poster {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// What each task needs.
struct Context {
    http: HttpsClient,
    esight: Arc<EsightClient>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    done: Box<dyn Fn(Completion) + Send + Sync>,
}

impl Poster {
    /// Starts the `delivery-io` thread; `done` is called (on that thread)
    /// with every completion. `on_exit` runs when the thread ends, even by
    /// panic.
    pub fn start(
        esight: Arc<EsightClient>,
        timeout: Duration,
        max_in_flight: usize,
        metrics: Arc<Metrics>,
        done: Box<dyn Fn(Completion) + Send + Sync>,
        on_exit: Box<dyn FnOnce() + Send>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new().name("delivery-io".into()).spawn(move || {
            struct Exit(Option<Box<dyn FnOnce() + Send>>);
            impl Drop for Exit {
                fn drop(&mut self) {
                    if let Some(f) = self.0.take() {
                        f();
                    }
                }
            }
            let _exit = Exit(Some(on_exit));
            runtime.block_on(async move {
                let ctx = Arc::new(Context {
                    http: https_client(timeout, max_in_flight),
                    esight,
                    timeout,
                    metrics,
                    done,
                });
                while let Some(job) = rx.recv().await {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let id = job.id;
                        let result = post(&ctx, job).await;
                        let rtt = started.elapsed();
                        ctx.metrics
                            .esight_duration
                            .observe(&vec![("endpoint", "consumption".to_string())], rtt);
                        (ctx.done)(Completion { id, rtt, result });
                    });
                }
            });
            // Dropping the runtime here cancels posts still outstanding; the
            // dispatcher puts their messages back.
        })?;
        Ok(Self { jobs: Some(tx), thread: Some(thread) })
    }

    /// Hands a job over; `false` when the thread is gone.
    pub fn send(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Closes the queue, cancels what is still outstanding and waits for
    /// the thread.
    pub fn stop(mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pooled client, with hyper's buffer settings left at their defaults
/// on purpose. What an outstanding post costs, measured (counting global
/// allocator, `/proc/PID/smaps`; 60,000 messages, simulator at 100 ms,
/// 1,024 posts outstanding on 1,024 connections — the pool opens no more
/// connections than there are posts outstanding):
/// - hyper's 8 KiB read buffer and 8 KiB write buffer per connection. Small
///   answers and request heads touch only the first 4 KiB page of each, so
///   `http1_read_buf_exact_size(2048)` saved nothing measurable in RSS (and
///   would refuse eSight answer heads over 2 KiB); not set.
/// - hyper's per-connection request channel: tokio mpsc blocks of 32 slots,
///   ~8.7 KiB (mimalloc's 10 KiB class); a second block from the
///   connection's 33rd request on, so RSS still rises ~10 MiB after the
///   limit has reached 1,024. A boxed body (8 bytes less per slot) did not
///   move it into the 8 KiB class.
/// - the connection task (1.7 KiB), ~8 KiB of small allocations; the post's
///   own task is 728 bytes.
///
/// RSS per outstanding post: ~35 KiB when the limit first reaches 1,024,
/// ~55 KiB once each connection has served 33 posts (with transparent huge
/// pages on, before `main` turned them off: ~49 and ~61 KiB, on a base
/// 24 MiB higher). `http1_writev` (vectored already: TCP supports it) and
/// mimalloc's purge options changed nothing measurable.
fn https_client(timeout: Duration, max_in_flight: usize) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(tokio_rustls::rustls::crypto::ring::default_provider())
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(max_in_flight)
        .build(tls)
}

/// POSTs one job within `esight.timeout`.
async fn post(ctx: &Context, job: Job) -> Result<u16, CallError> {
    match tokio::time::timeout(ctx.timeout, post_once_more_on_401(ctx, &job)).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Transport(format!("no answer within {} ms", ctx.timeout.as_millis()))),
    }
}

async fn post_once_more_on_401(ctx: &Context, job: &Job) -> Result<u16, CallError> {
    let first = post_once(ctx, job).await;
    if matches!(first, Err(CallError::Status { status: 401, .. })) {
        return post_once(ctx, job).await;
    }
    first
}

async fn post_once(ctx: &Context, job: &Job) -> Result<u16, CallError> {
    let request = Request::post(ctx.esight.consumption_url())
        .header(AUTHORIZATION, ctx.esight.post_authorization())
        .header("idempotency-key", job.id.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("energyload/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(job.body.clone()))
        .map_err(|e| CallError::Transport(format!("cannot build the request: {e}")))?;
    let response = ctx.http.request(request).await.map_err(|e| CallError::Transport(describe(&e)))?;
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    // Read the answer so the connection can be reused (a larger one is cut
    // and its connection dropped).
    let _ = Limited::new(body, MAX_ANSWER_BYTES).collect().await;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(status_error(&hyper::Response::from_parts(parts, ()), status))
    }
}

/// The error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
