//! Invalid producer traffic: messages refused at ingest (the contract's
//! validation codes, or a whole body that is not JSON), counted per minute
//! by code and API key for the last hour, in memory only — no database
//! write on the ingest path. Read by the attention endpoint. A restart
//! forgets the tally (the producers' answers told them already).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::domain::message::ValidationCode;

/// Minutes kept: one hour.
const MINUTES: i64 = 60;

/// One minute's counts by (code, API key id).
struct Minute {
    start: i64,
    counts: HashMap<(&'static str, Option<String>), (u64, i64)>,
}

/// The tally (one per process, in `AppState`).
#[derive(Default)]
pub struct InvalidTraffic {
    minutes: Mutex<VecDeque<Minute>>,
}

/// Invalid messages of one code from one API key in the last hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTally {
    /// The validation code answered.
    pub code: &'static str,
    /// The API key the producer used (`None`: none, e.g. an admin's session).
    pub api_key_id: Option<String>,
    /// How many.
    pub count: u64,
    /// The latest (Unix ms).
    pub last_at: i64,
}

impl InvalidTraffic {
    /// Counts invalid messages refused at `now` (Unix ms), one per code given.
    pub fn record<'a>(&self, now: i64, api_key_id: Option<&str>, codes: impl IntoIterator<Item = &'a str>) {
        let mut codes = codes.into_iter().peekable();
        if codes.peek().is_none() {
            return;
        }
        let start = now.div_euclid(60_000) * 60_000;
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        while minutes.front().is_some_and(|m| m.start <= start - MINUTES * 60_000) {
            minutes.pop_front();
        }
        if minutes.back().is_none_or(|m| m.start != start) {
            minutes.push_back(Minute { start, counts: HashMap::new() });
        }
        let minute = minutes.back_mut().expect("pushed above");
        for code in codes {
            let slot = minute.counts.entry((intern(code), api_key_id.map(str::to_owned))).or_insert((0, now));
            slot.0 += 1;
            slot.1 = slot.1.max(now);
        }
    }

    /// The last hour's counts before `now`, largest first.
    pub fn last_hour(&self, now: i64) -> Vec<InvalidTally> {
        let since = now - MINUTES * 60_000;
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let mut sums: HashMap<(&'static str, Option<String>), (u64, i64)> = HashMap::new();
        for m in minutes.iter().filter(|m| m.start + 60_000 > since) {
            for ((code, key), (n, last)) in &m.counts {
                let slot = sums.entry((code, key.clone())).or_insert((0, *last));
                slot.0 += n;
                slot.1 = slot.1.max(*last);
            }
        }
        let mut out: Vec<InvalidTally> = sums
            .into_iter()
            .map(|((code, api_key_id), (count, last_at))| InvalidTally { code, api_key_id, count, last_at })
            .collect();
        out.sort_by(|a, b| {
            b.count.cmp(&a.count).then(a.code.cmp(b.code)).then(a.api_key_id.cmp(&b.api_key_id))
        });
        out
    }
}

/// The codes a refusal can carry (the contract's validation codes and
/// `BadRequest` for too many items), as `'static` names: the map stays
/// bounded, a code outside the list counts as `Other`.
fn intern(code: &str) -> &'static str {
    ValidationCode::ALL.into_iter().map(ValidationCode::as_str).find(|k| *k == code).unwrap_or(match code {
        "BadRequest" => "BadRequest",
        _ => "Other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn counts_by_code_and_key_largest_first() {
        let t = InvalidTraffic::default();
        t.record(10 * MIN, Some("k1"), ["NoMeterIDInJson", "NoMeterIDInJson", "InvalidJson"]);
        t.record(11 * MIN, Some("k2"), ["NoMeterIDInJson"]);
        let tally = t.last_hour(12 * MIN);
        assert_eq!(tally.len(), 3);
        assert_eq!(
            (tally[0].code, tally[0].api_key_id.as_deref(), tally[0].count),
            ("NoMeterIDInJson", Some("k1"), 2)
        );
        assert_eq!(tally[0].last_at, 10 * MIN);
    }

    #[test]
    fn an_hour_later_it_is_forgotten() {
        let t = InvalidTraffic::default();
        t.record(10 * MIN, None, ["NoMessageId"]);
        assert_eq!(t.last_hour(10 * MIN + 59 * MIN).len(), 1, "59 minutes later it still counts");
        assert!(t.last_hour(10 * MIN + 61 * MIN).is_empty());
        t.record(80 * MIN, None, ["NoMessageId"]);
        assert_eq!(t.minutes.lock().unwrap().len(), 1, "old minutes are dropped when a new one starts");
    }

    #[test]
    fn unknown_codes_cannot_grow_the_map() {
        let t = InvalidTraffic::default();
        let codes: Vec<String> = (0..100).map(|i| format!("Made{i}")).collect();
        t.record(MIN, None, codes.iter().map(String::as_str));
        let tally = t.last_hour(MIN);
        assert_eq!(tally.len(), 1);
        assert_eq!((tally[0].code, tally[0].count), ("Other", 100));
    }

    #[test]
    fn nothing_recorded_for_no_codes() {
        let t = InvalidTraffic::default();
        t.record(MIN, None, []);
        assert!(t.minutes.lock().unwrap().is_empty());
    }
}
