//! Query-string and list-cursor parsing (`api::params`) on arbitrary text.
//!
//! Properties beyond "no panic":
//! - `limit` is 1–500 whenever accepted;
//! - cursors round-trip: the `next_cursor` a full page hands out (for an id
//!   taken from the input) is read back by `cursor` as that id, and a page
//!   that is not full hands out none;
//! - percent-decoding inverts percent-encoding, for query values and path
//!   segments alike, and a decoded path segment encodes back to itself;
//! - an accepted time bound formats (as the API writes times) and parses back
//!   to the same instant within RFC 3339's years 0000–9999.
#![no_main]

use energyload::api::params::{Query, decode_path_segment, page};
use energyload::clock::{format_millis, parse_rfc3339_millis};
use libfuzzer_sys::fuzz_target;

/// Every byte as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Unix ms of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
const RFC3339_RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let query = Query::parse(Some(raw));
    if let Ok(limit) = query.limit() {
        assert!((1..=500).contains(&limit));
    }
    let _ = query.cursor();
    for name in ["since", "until", "from", "to"] {
        if let Ok(Some(ms)) = query.time(name)
            && RFC3339_RANGE.contains(&ms)
        {
            assert_eq!(parse_rfc3339_millis(&format_millis(ms)), Some(ms), "{name}");
        }
    }

    // Cursor round trip, with an id from the input. Row ids (SQLite's
    // INTEGER PRIMARY KEY, filled by AUTOINCREMENT) are never negative, so
    // the sign bit is cleared: a negative id is no page's last id.
    let mut id_bytes = [0u8; 8];
    for (slot, b) in id_bytes.iter_mut().zip(data) {
        *slot = *b;
    }
    let id = i64::from_le_bytes(id_bytes) & i64::MAX;
    let limit = usize::from(data.first().copied().unwrap_or(1)) % 500 + 1;
    let full = page(vec![serde_json::Value::Null; limit], limit, Some(id));
    let next = full["next_cursor"].as_str().expect("a full page has a next cursor");
    let echoed = Query::parse(Some(&format!("limit={limit}&cursor={next}")));
    assert_eq!(echoed.cursor().ok(), Some(Some(id)));
    assert_eq!(echoed.limit().ok(), Some(limit));
    let partial = page(vec![serde_json::Value::Null; limit - 1], limit, Some(id));
    assert!(partial["next_cursor"].is_null());

    // Percent-decoding inverts percent-encoding.
    if !raw.is_empty() {
        let q = Query::parse(Some(&format!("k={}", percent_encode(raw))));
        assert_eq!(q.get("k"), Some(raw));
    }
    assert_eq!(decode_path_segment(&percent_encode(raw)).as_deref(), Some(raw));
    if let Some(decoded) = decode_path_segment(raw) {
        assert_eq!(decode_path_segment(&percent_encode(&decoded)), Some(decoded));
    }
});
