//! What the simulator remembers: issued tokens, received consumption posts
//! (bounded, oldest dropped first), error reports sent, and counters.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// One `POST /consumption` as received, whatever it was answered.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// Position in arrival order, from 1.
    pub seq: u64,
    /// Arrival time, RFC 3339 UTC with milliseconds.
    pub received_at: String,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
    /// `header.messageId` of the body, if present.
    pub message_id: Option<String>,
    /// The status answered.
    pub status: u16,
    /// True when a message with the same idempotency key (or, without a
    /// key, the same messageId) had already been accepted.
    pub duplicate: bool,
    /// True when an error report was scheduled for it.
    pub report_scheduled: bool,
    /// The body bytes as received.
    pub body: Bytes,
}

impl ReceivedMessage {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

impl Serialize for ReceivedMessage {
    /// The fields above, with `body` as JSON when it parses, else as text.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let body = self.json().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&self.body).into()));
        let mut st = s.serialize_struct("ReceivedMessage", 8)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("received_at", &self.received_at)?;
        st.serialize_field("idempotency_key", &self.idempotency_key)?;
        st.serialize_field("message_id", &self.message_id)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("duplicate", &self.duplicate)?;
        st.serialize_field("report_scheduled", &self.report_scheduled)?;
        st.serialize_field("body", &body)?;
        st.end()
    }
}

/// One error report the simulator posted to the appliance (or gave up on).
#[derive(Clone, Debug, Serialize)]
pub struct ReportRecord {
    /// The report's `_id`.
    pub esight_id: String,
    /// `header.messageId` of the report (the rewritten messageId received).
    pub message_id: String,
    /// `posted` or `failed`.
    pub outcome: &'static str,
    /// The appliance's last HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it ended, RFC 3339 UTC with milliseconds.
    pub at: String,
}

/// The counters (`GET /_sim/stats`), all since start or the last reset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimStats {
    /// Requests by endpoint: `token`, `sites`, `meters`, `consumption`,
    /// `control`, `unknown`.
    pub requests: BTreeMap<&'static str, u64>,
    /// Consumption outcomes.
    pub consumption: ConsumptionStats,
    /// Token outcomes.
    pub tokens: TokenStats,
    /// Error reports: `scheduled`, `posted`, `failed`.
    pub reports: BTreeMap<&'static str, u64>,
    /// Connections dropped by a `refuse` outage.
    pub connections_dropped: u64,
    /// TCP connections accepted (kept-alive connections count once).
    pub connections_accepted: u64,
    /// Consumption posts answered `429` because the capacity queue was full
    /// (also in `consumption.by_status`; not recorded as received).
    pub capacity_rejected: u64,
    /// Most consumption posts in service at once.
    pub max_in_service: u64,
    /// Most consumption posts handled at once, waiting or in service.
    pub max_concurrent_posts: u64,
}

/// Consumption outcomes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumptionStats {
    /// Posts answered 2xx.
    pub accepted: u64,
    /// Accepted posts that repeated an already accepted key.
    pub duplicates: u64,
    /// Every answer by status code, faults and `401` included.
    pub by_status: BTreeMap<u16, u64>,
}

/// Token outcomes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TokenStats {
    /// Tokens issued.
    pub issued: u64,
    /// `GET /token` refused for bad Basic credentials.
    pub refused: u64,
    /// Bearer tokens refused (unknown or expired) on `/sites` or `/meters`.
    pub bearer_rejected: u64,
    /// Tokens currently valid.
    pub active: u64,
}

/// All of the above behind one lock.
pub(crate) struct Records {
    max_received: usize,
    tokens: HashMap<String, Instant>,
    received: VecDeque<ReceivedMessage>,
    next_seq: u64,
    accepted_keys: HashSet<String>,
    accepted_key_order: VecDeque<String>,
    reports: VecDeque<ReportRecord>,
    stats: SimStats,
}

/// How many accepted keys are remembered for duplicate detection, at least.
const MIN_KEYS_REMEMBERED: usize = 100_000;
/// How many report records are kept.
const MAX_REPORTS_KEPT: usize = 10_000;

impl Records {
    pub(crate) fn new(max_received: usize) -> Self {
        Self {
            max_received,
            tokens: HashMap::new(),
            received: VecDeque::new(),
            next_seq: 1,
            accepted_keys: HashSet::new(),
            accepted_key_order: VecDeque::new(),
            reports: VecDeque::new(),
            stats: SimStats::default(),
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        *self = Self::new(self.max_received);
    }

    pub(crate) fn count_request(&mut self, endpoint: &'static str) {
        *self.stats.requests.entry(endpoint).or_default() += 1;
    }

    /// Remembers a new token valid until `expires`; prunes expired ones.
    pub(crate) fn issue_token(&mut self, token: String, expires: Instant) {
        let now = Instant::now();
        self.tokens.retain(|_, until| *until > now);
        self.tokens.insert(token, expires);
        self.stats.tokens.issued += 1;
    }

    pub(crate) fn count_token_refused(&mut self) {
        self.stats.tokens.refused += 1;
    }

    /// True when `token` was issued and has not expired; counts refusals.
    pub(crate) fn check_token(&mut self, token: &str) -> bool {
        let valid = self.tokens.get(token).is_some_and(|until| *until > Instant::now());
        if !valid {
            self.stats.tokens.bearer_rejected += 1;
        }
        valid
    }

    pub(crate) fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Counts an answer to `POST /consumption` that was not recorded as a
    /// message (`401`, `400`, `413`).
    pub(crate) fn count_consumption_status(&mut self, status: u16) {
        *self.stats.consumption.by_status.entry(status).or_default() += 1;
    }

    /// Records a consumption post (`seq`, `duplicate` and
    /// `report_scheduled` are filled in here). A report is scheduled when one
    /// was drawn and the message is accepted, first seen and has a
    /// messageId. Returns the `seq` given and whether a report is scheduled.
    pub(crate) fn record_consumption(
        &mut self,
        mut message: ReceivedMessage,
        report_drawn: bool,
    ) -> (u64, bool) {
        self.count_consumption_status(message.status);
        let accepted = (200..300).contains(&message.status);
        let key = message.idempotency_key.clone().or_else(|| message.message_id.clone());
        if accepted {
            self.stats.consumption.accepted += 1;
            if let Some(key) = key {
                message.duplicate = !self.accepted_keys.insert(key.clone());
                if message.duplicate {
                    self.stats.consumption.duplicates += 1;
                } else {
                    self.accepted_key_order.push_back(key);
                    if self.accepted_key_order.len() > self.max_received.max(MIN_KEYS_REMEMBERED)
                        && let Some(old) = self.accepted_key_order.pop_front()
                    {
                        self.accepted_keys.remove(&old);
                    }
                }
            }
        }
        message.report_scheduled =
            report_drawn && accepted && !message.duplicate && message.message_id.is_some();
        if message.report_scheduled {
            *self.stats.reports.entry("scheduled").or_default() += 1;
        }
        let scheduled = message.report_scheduled;
        let seq = self.next_seq;
        message.seq = seq;
        self.next_seq += 1;
        self.received.push_back(message);
        while self.received.len() > self.max_received {
            self.received.pop_front();
        }
        (seq, scheduled)
    }

    /// Kept messages with `seq > since`, oldest first, at most `limit`.
    pub(crate) fn received_since(&self, since: u64, limit: usize) -> Vec<ReceivedMessage> {
        self.received.iter().filter(|m| m.seq > since).take(limit).cloned().collect()
    }

    pub(crate) fn record_report(&mut self, report: ReportRecord) {
        *self.stats.reports.entry(report.outcome).or_default() += 1;
        self.reports.push_back(report);
        while self.reports.len() > MAX_REPORTS_KEPT {
            self.reports.pop_front();
        }
    }

    pub(crate) fn reports(&self) -> Vec<ReportRecord> {
        self.reports.iter().cloned().collect()
    }

    pub(crate) fn count_connection_accepted(&mut self) {
        self.stats.connections_accepted += 1;
    }

    /// Counts a `429` for a full capacity queue (not recorded as received).
    pub(crate) fn count_capacity_rejected(&mut self) {
        self.stats.capacity_rejected += 1;
        self.count_consumption_status(429);
    }

    pub(crate) fn count_connections_dropped(&mut self, n: u64) {
        self.stats.connections_dropped += n;
    }

    pub(crate) fn stats(&self) -> SimStats {
        let now = Instant::now();
        let mut stats = self.stats.clone();
        stats.tokens.active = self.tokens.values().filter(|until| **until > now).count() as u64;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, status: u16) -> ReceivedMessage {
        ReceivedMessage {
            seq: 0,
            received_at: String::new(),
            idempotency_key: Some(key.into()),
            message_id: None,
            status,
            duplicate: false,
            report_scheduled: false,
            body: Bytes::from_static(b"{\"a\":1}"),
        }
    }

    #[test]
    fn duplicates_are_counted_only_among_accepted_posts() {
        let mut r = Records::new(2);
        r.record_consumption(message("k1", 503), false);
        r.record_consumption(message("k1", 202), false);
        r.record_consumption(message("k1", 202), false);
        let s = r.stats();
        assert_eq!((s.consumption.accepted, s.consumption.duplicates), (2, 1));
        assert_eq!(s.consumption.by_status[&503], 1);
        let kept = r.received_since(0, 10);
        assert_eq!(kept.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(kept[1].duplicate && !kept[0].duplicate);
        assert_eq!(r.received_since(2, 10).len(), 1);
    }

    #[test]
    fn reports_are_scheduled_only_for_first_seen_accepted_messages() {
        let mut r = Records::new(10);
        let with_id =
            |key: &str, status| ReceivedMessage { message_id: Some("m_1".into()), ..message(key, status) };
        assert!(!r.record_consumption(with_id("a", 503), true).1);
        assert!(r.record_consumption(with_id("a", 202), true).1);
        assert!(!r.record_consumption(with_id("a", 202), true).1);
        assert!(!r.record_consumption(message("b", 202), true).1);
        assert_eq!(r.stats().reports["scheduled"], 1);
    }

    #[test]
    fn bodies_serialise_as_json_or_text() {
        let mut m = message("k", 202);
        assert_eq!(serde_json::to_value(&m).unwrap()["body"]["a"], 1);
        m.body = Bytes::from_static(b"not json");
        assert_eq!(serde_json::to_value(&m).unwrap()["body"], "not json");
    }
}
