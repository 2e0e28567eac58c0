//! Time as the contract writes it: RFC 3339 UTC with milliseconds
//! (`2026-11-23T10:15:00.000Z`). Storage keeps Unix milliseconds; this module
//! converts at the edges.

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_millis(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(RFC3339_MILLIS).unwrap_or_default()
}

/// Parses any RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_795_428_900_123), "2026-11-23T10:15:00.123Z");
    }

    #[test]
    fn parses_offsets_to_utc() {
        assert_eq!(
            parse_rfc3339_millis("2026-11-23T11:15:00.123+01:00"),
            Some(1_795_428_900_123)
        );
        assert_eq!(
            parse_rfc3339_millis("2021-01-31T00:15:00Z"),
            Some(1_612_052_100_000)
        );
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
    }
}
