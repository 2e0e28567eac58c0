//! The access log: one line per answered request, in the shape the
//! `tracing` subscriber gives the other lines (text or JSON, target
//! `energyload::access`, the request span's `id`), but without going
//! through it. Each line is formatted once on the request's thread into a
//! reusable thread-local buffer and handed to one writer thread over a
//! bounded channel; the writer writes everything that has arrived as one
//! batch per destination (stdout, the daily file) every
//! [`FLUSH_INTERVAL`] and at shutdown ([`Writer`]'s drop). When the
//! channel is full (the writer cannot keep up) a line is dropped and
//! counted in [`DROPPED`] (`energyload_access_log_dropped_total`): a
//! request never waits for its log line. `log.access_sample` keeps only
//! that share of the 2xx lines; every other status is always logged.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines dropped because the writer's queue was full.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines queued for the writer at most (about 10 MB of lines); beyond
/// that, lines are dropped.
const QUEUE_LINES: usize = 65_536;

/// How long the writer sleeps between batches; lines reach stdout and the
/// file within about this long (well under the one second promised).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// A batch is written out once it reaches this many bytes, even while more
/// lines are waiting.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The installed access log, if `serve` turned it on.
static LOGGER: OnceLock<Logger> = OnceLock::new();

/// The request side of the access log.
struct Logger {
    lines: SyncSender<Vec<u8>>,
    json: bool,
    /// A 2xx line is kept when a random `u32` is below this (`1 << 32`: all).
    sample_below: u64,
}

/// One answered request, as the access log records it.
pub struct Line<'a> {
    /// The request id (the `request` span's `id`).
    pub request_id: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request target; its `key` query parameter is redacted when written.
    pub uri: &'a hyper::Uri,
    /// The route pattern, or `(unmatched)`.
    pub route: &'a str,
    /// The answer's status code.
    pub status: u16,
    /// From request head to answer.
    pub elapsed: Duration,
    /// The client address.
    pub client: IpAddr,
}

/// Where the writer thread writes each batch.
pub type Destination = Box<dyn Write + Send>;

/// The writer thread; dropping it writes what is queued and joins it.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Turns the access log on for this process: lines are written to every
/// destination. `sample` (0.0–1.0) is the share of 2xx lines kept. `None`
/// when it was already installed (once per process).
pub fn install(json: bool, sample: f64, destinations: Vec<Destination>) -> Option<Writer> {
    let (lines, queue) = std::sync::mpsc::sync_channel(QUEUE_LINES);
    let sample_below = (sample.clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
    LOGGER.set(Logger { lines, json, sample_below }).ok()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_batches(&queue, destinations, &stopping))
        .ok()?;
    Some(Writer { thread: Some(thread), stop })
}

/// Whether the access log is on (a caller may skip gathering a line).
pub fn enabled() -> bool {
    LOGGER.get().is_some()
}

/// Logs one answered request (unless sampled out), never waiting.
pub fn record(line: &Line<'_>) {
    let Some(logger) = LOGGER.get() else { return };
    if (200..300).contains(&line.status)
        && logger.sample_below <= u64::from(u32::MAX)
        && u64::from(random_u32()) >= logger.sample_below
    {
        return;
    }
    BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        buffer.clear();
        format_line(&mut buffer, line, logger.json, SystemTime::now());
        match logger.lines.try_send(buffer.as_bytes().to_vec()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

thread_local! {
    /// The line being formatted; its capacity is reused.
    static BUFFER: RefCell<String> = RefCell::new(String::with_capacity(512));
    /// The last timestamp's second and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    /// xorshift state for sampling (0: not seeded yet).
    static RANDOM: Cell<u64> = const { Cell::new(0) };
}

/// The writer thread: every [`FLUSH_INTERVAL`] (or when woken to stop),
/// writes what has arrived as one batch to each destination.
fn write_batches(queue: &Receiver<Vec<u8>>, mut destinations: Vec<Destination>, stop: &AtomicBool) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        // Read before draining: what was queued before the stop is written.
        let stopping = stop.load(Ordering::Acquire);
        while let Ok(line) = queue.try_recv() {
            batch.extend_from_slice(&line);
            if batch.len() >= MAX_BATCH_BYTES {
                write_out(&mut batch, &mut destinations);
            }
        }
        write_out(&mut batch, &mut destinations);
        if stopping {
            return;
        }
        std::thread::park_timeout(FLUSH_INTERVAL);
    }
}

/// One write (and flush) of `batch` per destination; empties `batch`.
fn write_out(batch: &mut Vec<u8>, destinations: &mut [Destination]) {
    if batch.is_empty() {
        return;
    }
    for d in destinations.iter_mut() {
        // A full disk or closed stdout loses these lines; there is nowhere
        // to report it but the log itself.
        let _ = d.write_all(batch).and_then(|()| d.flush());
    }
    batch.clear();
}

/// Appends the line, newline included, as the `tracing` text or JSON
/// formatter writes an `info!` event of target `energyload::access` in
/// the `request` span.
fn format_line(out: &mut String, line: &Line<'_>, json: bool, now: SystemTime) {
    let latency = Latency(line.elapsed);
    if json {
        out.push_str("{\"timestamp\":\"");
        timestamp(out, now);
        out.push_str("\",\"level\":\"INFO\",\"fields\":{\"method\":");
        json_string(out, line.method);
        out.push_str(",\"path\":\"");
        path(out, line.uri, json_escaped);
        out.push_str("\",\"route\":");
        json_string(out, line.route);
        let _ = write!(
            out,
            ",\"status\":{},\"latency_ms\":{latency},\"client\":\"{}\"}}",
            line.status, line.client
        );
        out.push_str(",\"target\":\"energyload::access\",\"span\":{\"id\":");
        json_string(out, line.request_id);
        out.push_str(",\"name\":\"request\"}}\n");
    } else {
        timestamp(out, now);
        out.push_str("  INFO request{id=");
        out.push_str(line.request_id);
        out.push_str("}: energyload::access: method=");
        out.push_str(line.method);
        out.push_str(" path=");
        path(out, line.uri, |out, s| out.push_str(s));
        let _ = writeln!(
            out,
            " route={:?} status={} latency_ms={latency} client={}",
            line.route, line.status, line.client
        );
    }
}

/// The path and query, with the value of the `key` query parameter (an API
/// key) replaced by `<redacted>`; `push` escapes for the format.
fn path(out: &mut String, uri: &hyper::Uri, push: fn(&mut String, &str)) {
    push(out, uri.path());
    let Some(query) = uri.query() else { return };
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("key") => {
                push(out, k);
                out.push_str("=<redacted>");
            }
            _ => push(out, pair),
        }
    }
}

/// `s` as a JSON string, quotes included.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    json_escaped(out, s);
    out.push('"');
}

/// `s` escaped for a JSON string as `serde_json` escapes it.
fn json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a log line's time (UTC).
const UP_TO_THE_SECOND: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds), as `tracing-subscriber`
/// writes it; the text up to the second is reused within the second.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let at = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            second.1.clear();
            second.1.push_str(&at.format(UP_TO_THE_SECOND).unwrap_or_default());
            second.0 = secs;
        }
        out.push_str(&second.1);
    });
    let _ = write!(out, ".{:06}Z", since.subsec_micros());
}

/// Milliseconds with at most three decimals, as an `f64` rounded to the
/// microsecond prints (`0.123`, `2.5`, `3.0`).
struct Latency(Duration);

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = (self.0.as_secs_f64() * 1e6).round() as u64;
        let (ms, frac) = (micros / 1000, micros % 1000);
        if frac == 0 {
            return write!(f, "{ms}.0");
        }
        let digits = format!("{frac:03}");
        write!(f, "{ms}.{}", digits.trim_end_matches('0'))
    }
}

/// A random `u32` from a per-thread xorshift generator (for sampling only).
fn random_u32() -> u32 {
    RANDOM.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
            x = (nanos ^ (state as *const Cell<u64> as u64)) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 32) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(uri: &'a hyper::Uri, elapsed: Duration) -> Line<'a> {
        Line {
            request_id: "rid-1",
            method: "GET",
            uri,
            route: "/user",
            status: 200,
            elapsed,
            client: "127.0.0.1".parse().unwrap(),
        }
    }

    fn at() -> SystemTime {
        // 2026-12-03T07:26:09.123456Z
        UNIX_EPOCH + Duration::from_micros(1_796_282_769_123_456)
    }

    #[test]
    fn text_lines_look_like_the_tracing_formatter() {
        let uri: hyper::Uri = "/user?key=abc123&x=1".parse().unwrap();
        let mut out = String::new();
        format_line(&mut out, &line(&uri, Duration::from_micros(1500)), false, at());
        assert_eq!(
            out,
            "2026-12-03T07:26:09.123456Z  INFO request{id=rid-1}: energyload::access: method=GET \
             path=/user?key=<redacted>&x=1 route=\"/user\" status=200 latency_ms=1.5 client=127.0.0.1\n"
        );
    }

    #[test]
    fn json_lines_look_like_the_tracing_formatter() {
        let uri: hyper::Uri = "/user?KEY=abc123".parse().unwrap();
        let mut out = String::new();
        format_line(&mut out, &line(&uri, Duration::from_micros(123)), true, at());
        assert_eq!(
            out,
            "{\"timestamp\":\"2026-12-03T07:26:09.123456Z\",\"level\":\"INFO\",\"fields\":{\"method\":\"GET\",\
             \"path\":\"/user?KEY=<redacted>\",\"route\":\"/user\",\"status\":200,\"latency_ms\":0.123,\
             \"client\":\"127.0.0.1\"},\"target\":\"energyload::access\",\"span\":{\"id\":\"rid-1\",\"name\":\"request\"}}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["fields"]["latency_ms"], 0.123);
    }

    #[test]
    fn paths_are_escaped_in_json() {
        let uri: hyper::Uri = "/a\"b\\c?key=k&key=z&q".parse().unwrap();
        let mut out = String::new();
        path(&mut out, &uri, json_escaped);
        assert_eq!(out, "/a\\\"b\\\\c?key=<redacted>&key=<redacted>&q");
        let mut bare = String::new();
        path(&mut bare, &"/health".parse().unwrap(), json_escaped);
        assert_eq!(bare, "/health");
    }

    #[test]
    fn latency_prints_as_the_rounded_f64_did() {
        for micros in [0u64, 1, 10, 100, 999, 1000, 1001, 1500, 12_340, 123_456_789] {
            let d = Duration::from_micros(micros);
            let f = (d.as_secs_f64() * 1e6).round() / 1e3;
            assert_eq!(Latency(d).to_string(), format!("{f:?}"), "{micros} µs");
            assert_eq!(Latency(d).to_string(), serde_json::to_string(&f).unwrap(), "{micros} µs");
        }
    }

    /// Records each `write` call.
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn queued_lines_are_written_at_stop_as_one_batch_per_destination() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        for line in ["a\n", "b\n", "c\n"] {
            tx.try_send(line.as_bytes().to_vec()).unwrap();
        }
        let (stdout, file) = (Sink::default(), Sink::default());
        let stop = AtomicBool::new(true);
        write_batches(&rx, vec![Box::new(stdout.clone()), Box::new(file.clone())], &stop);
        for sink in [stdout, file] {
            assert_eq!(*sink.0.lock().unwrap(), vec![b"a\nb\nc\n".to_vec()]);
        }
    }

    #[test]
    fn timestamps_match_the_calendar() {
        let mut out = String::new();
        timestamp(&mut out, UNIX_EPOCH);
        timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        timestamp(&mut out, at());
        assert_eq!(out, "1970-01-01T00:00:00.000000Z2000-02-29T00:00:00.000000Z2026-12-03T07:26:09.123456Z");
    }
}
