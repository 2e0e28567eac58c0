//! What needs an operator's attention, most serious first: the rules behind
//! `GET /api/v1/management/attention` and the dashboard's attention strip.
//! Pure: the handler gathers [`Facts`] from memory and storage, [`assess`]
//! turns them into the ordered list of [`Item`]s, each with its fix. No
//! HTTP, no SQL, no clock (the time is a fact).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::format_millis;
use crate::esight::failure_cause::{RetryAdvice, describe};

/// The `[esight]` keys delivery needs, in the README's order.
pub const ESIGHT_KEYS: [&str; 8] = [
    "token_url",
    "sites_url",
    "meters_url",
    "consumption_url",
    "username",
    "password",
    "post_username",
    "post_password",
];

/// Share of `storage.max_db_bytes` above which the database counts as near its cap.
pub const DB_NEAR_CAP_PERCENT: u64 = 80;

/// Free disk below this multiple of `storage.min_free_bytes` counts as near the floor.
pub const DISK_NEAR_FLOOR_FACTOR: u64 = 2;

/// eSight as delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsightFacts {
    /// `[esight]` is incomplete: these keys are missing.
    NotConfigured {
        /// Missing keys of [`ESIGHT_KEYS`].
        missing: Vec<&'static str>,
    },
    /// Delivery runs (or is paused) and eSight answers.
    Reachable,
    /// The circuit breaker is open: eSight does not answer.
    Unreachable {
        /// First failure of the current run (Unix ms).
        since: Option<i64>,
        /// The last failure's description.
        last_error: Option<String>,
        /// The last answer (Unix ms).
        last_success: Option<i64>,
    },
}

/// Delivery is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedFacts {
    /// Username that paused it.
    pub by: Option<String>,
    /// Since (Unix ms).
    pub since: Option<i64>,
}

/// Failed messages sharing a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureFacts {
    /// `error_code`.
    pub code: String,
    /// How many.
    pub count: i64,
    /// The newest one's id.
    pub newest_id: i64,
    /// When it failed (Unix ms).
    pub newest_at: i64,
    /// Its recorded error message.
    pub newest_error: Option<String>,
    /// Distinct meters in the group, and the newest one's.
    pub meters: i64,
    /// The newest one's meter id.
    pub meter_id: String,
}

/// Invalid messages (refused at ingest) of one code from one API key in the last hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFacts {
    /// Validation code.
    pub code: String,
    /// API key id, if one was used.
    pub api_key_id: Option<String>,
    /// Its name, if known.
    pub api_key_name: Option<String>,
    /// How many.
    pub count: u64,
    /// The latest (Unix ms).
    pub last_at: i64,
}

/// Everything the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Now (Unix ms).
    pub now: i64,
    /// eSight.
    pub esight: EsightFacts,
    /// Messages waiting for delivery (`pending` + `delivering`).
    pub waiting: i64,
    /// Acceptance time of the oldest pending message (Unix ms).
    pub oldest_pending_at: Option<i64>,
    /// Set while delivery is paused.
    pub paused: Option<PausedFacts>,
    /// Failed messages grouped by code, largest first.
    pub failures: Vec<FailureFacts>,
    /// Invalid traffic in the last hour, largest first.
    pub invalid: Vec<InvalidFacts>,
    /// Free disk (`None`: cannot be read).
    pub free_disk_bytes: Option<u64>,
    /// `storage.min_free_bytes`.
    pub min_free_bytes: u64,
    /// The database's used bytes.
    pub db_bytes: u64,
    /// `storage.max_db_bytes` (0: no cap).
    pub max_db_bytes: u64,
}

/// How serious an item is; the list is ordered by this first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is not delivered or not accepted.
    Critical,
    /// Something is stuck or about to be.
    Warning,
    /// Someone else's problem the operator should pass on.
    Info,
}

/// One thing to act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// How serious.
    pub severity: Severity,
    /// Which rule.
    pub code: &'static str,
    /// One line.
    pub title: String,
    /// What is known.
    pub detail: String,
    /// What to do.
    pub fix: String,
    /// The rule's own fields (`since`, `last_error`, `count`, `cause`, …).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The rules' order within a severity.
const ORDER: [&str; 7] = [
    "esight_not_configured",
    "esight_unreachable",
    "delivery_paused",
    "disk_near_cap",
    "database_near_cap",
    "failing_messages",
    "invalid_traffic",
];

/// Every item the facts call for, most serious first (then in rule order,
/// then as the facts listed them: largest groups first).
pub fn assess(f: &Facts) -> Vec<Item> {
    let mut items = Vec::new();
    items.extend(esight_not_configured(f));
    items.extend(esight_unreachable(f));
    items.extend(delivery_paused(f));
    items.extend(disk_near_cap(f));
    items.extend(database_near_cap(f));
    items.extend(f.failures.iter().map(failing_messages));
    items.extend(f.invalid.iter().map(invalid_traffic));
    let rank = |code: &str| ORDER.iter().position(|c| *c == code).unwrap_or(ORDER.len());
    items.sort_by_key(|i| (i.severity, rank(i.code)));
    items
}

fn item(
    severity: Severity,
    code: &'static str,
    title: String,
    detail: String,
    fix: String,
    fields: Value,
) -> Item {
    let fields = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Item { severity, code, title, detail, fix, fields }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| json!(format_millis(t)))
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `83914735616` → `78.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn waiting_words(f: &Facts) -> String {
    let age =
        f.oldest_pending_at.map(|t| format!(" (oldest accepted {})", format_millis(t))).unwrap_or_default();
    format!("{} waiting for delivery{age}", plural(f.waiting, "message is", "messages are"))
}

fn esight_not_configured(f: &Facts) -> Option<Item> {
    let EsightFacts::NotConfigured { missing } = &f.esight else { return None };
    let env: Vec<String> =
        missing.iter().map(|k| format!("ENERGYLOAD_ESIGHT_{}", k.to_uppercase())).collect();
    let severity = if f.waiting > 0 { Severity::Critical } else { Severity::Warning };
    Some(item(
        severity,
        "esight_not_configured",
        "eSight is not configured: messages are accepted and kept but not delivered".into(),
        format!("Missing [esight] keys: {}. {}.", missing.join(", "), waiting_words(f)),
        format!(
            "Set {} in the [esight] section of config.toml (or the environment variables {}; each secret \
             also as <key>_file), then restart energyload.",
            missing.join(", "),
            env.join(", ")
        ),
        json!({"missing_keys": missing, "env": env, "count": f.waiting}),
    ))
}

fn esight_unreachable(f: &Facts) -> Option<Item> {
    let EsightFacts::Unreachable { since, last_error, last_success } = &f.esight else { return None };
    let since_words = since.map(|t| format!("since {}", format_millis(t))).unwrap_or_else(|| "now".into());
    let success_words = last_success
        .map(|t| format!("last success {}", format_millis(t)))
        .unwrap_or_else(|| "no success since start".into());
    Some(item(
        Severity::Critical,
        "esight_unreachable",
        format!("eSight is unreachable {since_words}"),
        format!(
            "Last error: {}; {success_words}. {}; delivery probes eSight every few seconds and resumes by itself.",
            last_error.as_deref().unwrap_or("unknown"),
            waiting_words(f)
        ),
        "Check that eSight is up and reachable from this host at the [esight] URLs (DNS, firewall, TLS, \
         proxy). Nothing is lost: messages wait and are delivered once eSight answers."
            .into(),
        json!({"since": time(*since), "last_error": last_error, "last_success": time(*last_success),
               "count": f.waiting}),
    ))
}

fn delivery_paused(f: &Facts) -> Option<Item> {
    let p = f.paused.as_ref()?;
    let who = p.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
    let since = p.since.map(|t| format!(" since {}", format_millis(t))).unwrap_or_default();
    Some(item(
        Severity::Warning,
        "delivery_paused",
        format!("Delivery is paused{who}{since}"),
        format!("Messages are accepted but not delivered. {}.", waiting_words(f)),
        "Resume delivery (the dashboard's Resume delivery button, or POST /api/v1/management/delivery/resume) \
         once the reason for the pause is gone."
            .into(),
        json!({"by": p.by, "since": time(p.since), "count": f.waiting}),
    ))
}

fn disk_near_cap(f: &Facts) -> Option<Item> {
    let floor = f.min_free_bytes;
    let Some(free) = f.free_disk_bytes else {
        return Some(item(
            Severity::Critical,
            "disk_near_cap",
            "Free disk space cannot be read".into(),
            "energyload cannot tell whether the data directory's disk is full.".into(),
            "Check the data directory's file system (mounted, readable by energyload).".into(),
            json!({"free_bytes": null, "min_free_bytes": floor}),
        ));
    };
    let fields = json!({"free_bytes": free, "min_free_bytes": floor});
    let fix = "Free disk space on the data directory's file system (or move the data directory to a larger \
               one); lowering retention.delivered_days / retention.failed_days shortens how long finished messages \
               are kept."
        .to_string();
    if free < floor {
        return Some(item(
            Severity::Critical,
            "disk_near_cap",
            format!("Disk nearly full: {} free, below storage.min_free_bytes", human_bytes(free)),
            format!("Ingest answers 507 and stores nothing until more than {} are free.", human_bytes(floor)),
            fix,
            fields,
        ));
    }
    (free < floor.saturating_mul(DISK_NEAR_FLOOR_FACTOR)).then(|| {
        item(
            Severity::Warning,
            "disk_near_cap",
            format!("Disk getting full: {} free", human_bytes(free)),
            format!("Below {} free (storage.min_free_bytes) ingest stops with 507.", human_bytes(floor)),
            fix,
            fields,
        )
    })
}

fn database_near_cap(f: &Facts) -> Option<Item> {
    let (used, cap) = (f.db_bytes, f.max_db_bytes);
    if cap == 0 {
        return None;
    }
    let percent = used.saturating_mul(100) / cap;
    let fields = json!({"db_bytes": used, "max_db_bytes": cap, "percent": percent});
    let fix = "Raise storage.max_db_bytes (restart), or let retention remove finished messages sooner \
               (retention.delivered_days, retention.failed_days); delivering the pending backlog also frees space."
        .to_string();
    let sizes = format!("{} of {}", human_bytes(used), human_bytes(cap));
    if used >= cap {
        return Some(item(
            Severity::Critical,
            "database_near_cap",
            format!("The database is full: {sizes} (storage.max_db_bytes)"),
            "Ingest answers 507 and stores nothing until the database is below its cap.".into(),
            fix,
            fields,
        ));
    }
    (percent > DB_NEAR_CAP_PERCENT).then(|| {
        item(
            Severity::Warning,
            "database_near_cap",
            format!("The database is {percent} % of its cap: {sizes}"),
            "At storage.max_db_bytes ingest stops with 507.".into(),
            fix,
            fields,
        )
    })
}

/// The readable reason of a failure group: the newest message's own error
/// when the whole group shares its meter, else the code's reason.
pub fn failure_reason(g: &FailureFacts) -> String {
    match (g.code.as_str(), g.meters) {
        ("NoMeterId", 1) => format!("meter {} is not in eSight's catalog", g.meter_id),
        ("NoMeterId", n) => format!("{n} meters are not in eSight's catalog (newest: {})", g.meter_id),
        ("NoSiteId", _) => g.newest_error.clone().unwrap_or_else(|| describe(&g.code).reason.to_string()),
        _ => describe(&g.code).reason.to_string(),
    }
}

fn failing_messages(g: &FailureFacts) -> Item {
    let cause = describe(&g.code);
    let reason = failure_reason(g);
    let retry_words = match cause.retry {
        RetryAdvice::CanSucceed => "A retry can succeed.".to_string(),
        RetryAdvice::FailsAgainUnless(why) => format!("A retry fails again unless fixed: {why}."),
        RetryAdvice::FailsAgain(why) => format!("A retry fails again: {why}."),
    };
    item(
        Severity::Warning,
        "failing_messages",
        format!("{} × {reason}", g.count),
        format!(
            "{} failed with {}; newest {} (message {}). {retry_words}",
            plural(g.count, "message", "messages"),
            g.code,
            format_millis(g.newest_at),
            g.newest_id,
        ),
        cause.fix.to_string(),
        json!({"cause": g.code, "reason": reason, "count": g.count, "newest": format_millis(g.newest_at),
               "newest_id": g.newest_id.to_string(), "last_error": g.newest_error,
               "retry": cause.retry.as_str(), "retry_note": cause.retry.note()}),
    )
}

/// What a validation code means the producer left out.
pub fn invalid_reason(code: &str) -> &'static str {
    match code {
        "InvalidJson" => "the body is not a JSON message",
        "NoGatewayTypeUrn" => "header.gatewayTypeUrn is missing",
        "NoLocalMarket" => "the local market is missing",
        "NoDataFeedType" => "the data feed type is missing",
        "NoGatewayUrn" => "header.gatewayUrn is missing",
        "NoSiteIDInJson" => "the site id is missing from header.gatewayUrn",
        "NoMeterIDInJson" => "the meter id is missing from header.gatewayUrn",
        "NoMessageId" => "header.messageId is missing",
        "NoDatapointValues" => "gatewayData.datapointValues is missing or empty",
        "BadRequest" => "the request holds too many messages",
        _ => "the message does not follow the contract",
    }
}

fn invalid_traffic(t: &InvalidFacts) -> Item {
    let producer = match (&t.api_key_name, &t.api_key_id) {
        (Some(name), _) => format!("API key \"{name}\""),
        (None, Some(id)) => format!("API key {id}"),
        (None, None) => "callers without an API key".to_string(),
    };
    let reason = invalid_reason(&t.code);
    item(
        Severity::Info,
        "invalid_traffic",
        format!("{} × invalid in the last hour from {producer}: {reason}", t.count),
        format!(
            "{} refused at ingest with {} (last {}); the producer was told in its answer, nothing was stored.",
            plural(i64::try_from(t.count).unwrap_or(i64::MAX), "message was", "messages were"),
            t.code,
            format_millis(t.last_at)
        ),
        format!("Tell the producer using {producer} to fix its messages: {reason}."),
        json!({"cause": t.code, "reason": reason, "count": t.count, "api_key_id": t.api_key_id,
               "api_key_name": t.api_key_name, "last_at": format_millis(t.last_at)}),
    )
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
