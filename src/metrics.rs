//! Process metrics in the Prometheus text exposition format (0.0.4).
//!
//! Counters and histograms are lock-free atomics on the hot path; a family's
//! map of label sets takes a write lock only the first time a label set is
//! seen. Gauges that describe stored state (database size, message counts)
//! are read when `/metrics` is scraped, at most once a second (scrapes in
//! between reuse the last read), not maintained per request.
//!
//! Not `prometheus-client`: its families record faster (0.16 against 0.28 µs
//! per request for a counter plus a histogram, BENCHMARKS.md "Light path"),
//! but it renders only OpenMetrics (`# TYPE x counter` for `x_total`, `.`
//! appended to every help text, `le="1.0"`, `# EOF`) and its families cannot
//! be read otherwise, so `/metrics` would change its names and label values.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with fixed buckets.
///
/// Each observation lands in exactly one slot (the last slot holds those
/// above every bound); the cumulative `_bucket` lines, the `+Inf` bucket and
/// `_count` are all derived from one read of the slots, so a scrape racing
/// with observations still renders monotone buckets with `+Inf == _count`.
#[derive(Default)]
pub struct Histogram {
    slots: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.slots[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, slot) in LATENCY_BUCKETS.iter().zip(&self.slots) {
            cumulative += slot.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = cumulative + self.slots[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{braces} {}", sample_value(sum));
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A sample value as the text format spells it (`+Inf`, `-Inf`, `NaN`).
fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}

/// The `# HELP` and `# TYPE` lines of a family (help text escaped as the
/// format requires: backslash and line feed).
fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values of one series, e.g. `[("route", "/health"), ("status", "200")]`.
pub type Labels = Vec<(&'static str, String)>;

fn format_labels(labels: &Labels) -> String {
    let mut s = String::new();
    write_labels(&mut s, labels.iter().map(|(k, v)| (*k, v.as_str())));
    s
}

/// Appends `k="v",…` with the exposition format's escapes in label values.
fn write_labels<'a>(out: &mut String, labels: impl IntoIterator<Item = (&'static str, &'a str)>) {
    for (i, (k, v)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

thread_local! {
    /// Scratch space for the series key of the label set being recorded, so
    /// recording into an existing series allocates nothing.
    static SERIES_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A family of series of one metric, keyed by label values.
pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    series: RwLock<BTreeMap<String, T>>,
}

impl<T: Default> Family<T> {
    /// An empty family.
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, series: RwLock::new(BTreeMap::new()) }
    }

    /// Runs `f` on the series for `labels`, creating it on first use. `f`
    /// runs while the series key buffer is borrowed, so it must not record
    /// metrics itself (hence private: only `inc` and `observe` call it).
    fn with(&self, labels: &Labels, f: impl FnOnce(&T)) {
        self.with_pairs(labels.iter().map(|(k, v)| (*k, v.as_str())), f);
    }

    /// Like [`Family::with`], for borrowed label values.
    fn with_pairs<'a>(&self, labels: impl IntoIterator<Item = (&'static str, &'a str)>, f: impl FnOnce(&T)) {
        SERIES_KEY.with_borrow_mut(|key| {
            key.clear();
            write_labels(key, labels);
            if let Some(series) = self.series.read().unwrap_or_else(|e| e.into_inner()).get(key.as_str()) {
                return f(series);
            }
            let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
            f(map.entry(key.clone()).or_default());
        });
    }
}

impl Family<AtomicU64> {
    /// Adds one to the counter for `labels`.
    pub fn inc(&self, labels: &Labels) {
        self.with(labels, |c| {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }

    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, "counter");
        for (labels, c) in self.series.read().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "{}{{{labels}}} {}", self.name, c.load(Ordering::Relaxed));
        }
    }
}

impl Family<Histogram> {
    /// Records one observation for `labels`.
    pub fn observe(&self, labels: &Labels, d: Duration) {
        self.with(labels, |h| h.observe(d));
    }

    fn render(&self, out: &mut String) {
        write_header(out, self.name, self.help, "histogram");
        for (labels, h) in self.series.read().unwrap_or_else(|e| e.into_inner()).iter() {
            h.render(out, self.name, labels);
        }
    }
}

/// A gauge computed at scrape time.
pub struct Gauge {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Series: labels and value.
    pub series: Vec<(Labels, f64)>,
}

/// The process's metrics.
pub struct Metrics {
    /// `energyload_http_requests_total{route,status}`.
    pub http_requests: Family<AtomicU64>,
    /// `energyload_http_request_duration_seconds{route}`.
    pub http_duration: Family<Histogram>,
    /// `energyload_delivery_attempts_total{outcome}`.
    pub delivery_attempts: Family<AtomicU64>,
    /// `energyload_esight_request_duration_seconds{endpoint}`.
    pub esight_duration: Family<Histogram>,
    /// `energyload_login_failures_total`.
    pub login_failures: AtomicU64,
    /// `energyload_rate_limited_total`: requests refused by an API key's rate limit.
    pub rate_limited: AtomicU64,
    /// `energyload_access_denied_total{reason}`: every refusal (other than a
    /// rate limit), whether its audit event was written or coalesced.
    pub access_denied: Family<AtomicU64>,
    /// `energyload_access_denied_overflow_total`: refusals counted only in the
    /// coalescer's overflow tally (its key map was full).
    pub access_denied_overflow: AtomicU64,
    /// `energyload_readiness_probes_total`: database checks run for `/readyz`
    /// (answers in between reuse the last one).
    pub readiness_probes: AtomicU64,
    /// `energyload_stored_state_reads_total`: reads of the message counts and
    /// database size for `/metrics` (scrapes in between reuse the last one).
    pub stored_state_reads: AtomicU64,
}

/// The outcomes of a delivery attempt, exported at zero from the start so
/// that `rate()` and absence alerts work before the first attempt.
pub const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            http_requests: Family::new(
                "energyload_http_requests_total",
                "HTTP requests answered, by route pattern and status code.",
            ),
            http_duration: Family::new(
                "energyload_http_request_duration_seconds",
                "Time from request head to response head, by route pattern.",
            ),
            delivery_attempts: Family::new(
                "energyload_delivery_attempts_total",
                "Delivery attempts to eSight, by outcome (delivered, retry, failed).",
            ),
            esight_duration: Family::new(
                "energyload_esight_request_duration_seconds",
                "Duration of calls to eSight, by endpoint (token, sites, meters, consumption).",
            ),
            login_failures: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            access_denied: Family::new(
                "energyload_access_denied_total",
                "Requests refused for credentials, role or CSRF, by reason (audited coalesced).",
            ),
            access_denied_overflow: AtomicU64::new(0),
            readiness_probes: AtomicU64::new(0),
            stored_state_reads: AtomicU64::new(0),
        };
        for outcome in DELIVERY_OUTCOMES {
            metrics.delivery_attempts.with(&vec![("outcome", outcome.to_string())], |_| {});
        }
        metrics
    }
}

impl Metrics {
    /// Records one answered HTTP request.
    /// `status` is the code as text (`"202"`).
    pub fn record_http(&self, route: &'static str, status: &str, elapsed: Duration) {
        self.http_requests.with_pairs([("route", route), ("status", status)], |c| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        self.http_duration.with_pairs([("route", route)], |h| h.observe(elapsed));
    }

    /// The exposition text, with `gauges` computed by the caller appended.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::with_capacity(4096);
        self.http_requests.render(&mut out);
        self.http_duration.render(&mut out);
        self.delivery_attempts.render(&mut out);
        self.esight_duration.render(&mut out);
        self.access_denied.render(&mut out);
        for (name, help, counter) in [
            ("energyload_login_failures_total", "Failed login attempts.", &self.login_failures),
            (
                "energyload_rate_limited_total",
                "Requests refused by an API key rate limit.",
                &self.rate_limited,
            ),
            (
                "energyload_access_denied_overflow_total",
                "Refusals audited only in the overflow summary (too many distinct clients at once).",
                &self.access_denied_overflow,
            ),
            (
                "energyload_readiness_probes_total",
                "Database checks run for /readyz (at most about one a second).",
                &self.readiness_probes,
            ),
            (
                "energyload_stored_state_reads_total",
                "Reads of message counts and database size for /metrics (at most about one a second).",
                &self.stored_state_reads,
            ),
            (
                "energyload_access_log_dropped_total",
                "Access-log lines dropped because the log writer could not keep up (process-wide).",
                &crate::access_log::DROPPED,
            ),
        ] {
            write_header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        for g in gauges {
            write_header(&mut out, g.name, g.help, "gauge");
            for (labels, value) in &g.series {
                let labels = format_labels(labels);
                let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
                let _ = writeln!(out, "{}{braces} {}", g.name, sample_value(*value));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.record_http("/health", "200", Duration::from_micros(300));
        m.record_http("/health", "200", Duration::from_millis(20));
        m.record_http("/health", "404", Duration::from_secs(60));
        let g = Gauge { name: "energyload_db_size_bytes", help: "x", series: vec![(vec![], 4096.0)] };
        let text = m.render(&[g]);
        assert!(text.contains("energyload_http_requests_total{route=\"/health\",status=\"200\"} 2\n"));
        assert!(text.contains("energyload_http_requests_total{route=\"/health\",status=\"404\"} 1\n"));
        assert!(text.contains(
            "energyload_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.0005\"} 1\n"
        ));
        assert!(
            text.contains(
                "energyload_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.025\"} 2\n"
            )
        );
        assert!(
            text.contains(
                "energyload_http_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"} 3\n"
            )
        );
        assert!(text.contains("energyload_http_request_duration_seconds_count{route=\"/health\"} 3\n"));
        assert!(text.contains("# TYPE energyload_db_size_bytes gauge\nenergyload_db_size_bytes 4096\n"));
    }

    #[test]
    fn observations_above_every_bound_count_only_in_inf_and_count() {
        let m = Metrics::default();
        m.record_http("/x", "200", Duration::from_secs(60));
        let text = m.render(&[]);
        assert!(text.contains("energyload_http_request_duration_seconds_bucket{route=\"/x\",le=\"10\"} 0\n"));
        assert!(
            text.contains("energyload_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 1\n")
        );
        assert!(text.contains("energyload_http_request_duration_seconds_sum{route=\"/x\"} 60\n"));
        assert!(text.contains("energyload_http_request_duration_seconds_count{route=\"/x\"} 1\n"));
    }

    #[test]
    fn delivery_outcomes_start_at_zero() {
        let text = Metrics::default().render(&[]);
        for outcome in DELIVERY_OUTCOMES {
            let line = format!("energyload_delivery_attempts_total{{outcome=\"{outcome}\"}} 0\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn special_values_and_help_text_are_spelled_as_the_format_requires() {
        let g =
            Gauge { name: "g", help: "a \\ b\nc", series: vec![(vec![], f64::INFINITY), (vec![], f64::NAN)] };
        let text = Metrics::default().render(&[g]);
        assert!(text.contains("# HELP g a \\\\ b\\nc\n# TYPE g gauge\ng +Inf\ng NaN\n"), "{text}");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(sample_value(0.25), "0.25");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(format_labels(&vec![("a", "x\"y\\z\n".into())]), "a=\"x\\\"y\\\\z\\n\"");
    }
}
