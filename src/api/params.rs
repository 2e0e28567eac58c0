//! Query-string parsing shared by the list endpoints: percent-decoding,
//! `limit` (default 50, max 500), opaque `cursor`, and RFC 3339 time bounds.
//!
//! A typed parameter (`limit`, `cursor`, `since`, `until`, an enum) that is
//! present is parsed even when empty: `?until=` is a 400 like `?until=x`, as
//! `assets/openapi.json` types it. Free-text filters (`meter_id=` …) that
//! are empty mean "no filter".

use crate::http::ApiError;

/// Decoded query parameters, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%20y`.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Self(pairs)
    }

    /// The filters of a JSON object body (the bulk retry's), as if sent as a
    /// query: only the keys in `names` are read, each must be a string
    /// (else 400); other keys are ignored. No percent-decoding: values are
    /// taken as sent.
    pub fn from_json_fields(
        fields: &serde_json::Map<String, serde_json::Value>,
        names: &[&str],
    ) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for (k, v) in fields.iter().filter(|(k, _)| names.contains(&k.as_str())) {
            let v = v.as_str().ok_or_else(|| ApiError::bad_request(format!("{k} must be a string")))?;
            pairs.push((k.clone(), v.to_string()));
        }
        Ok(Self(pairs))
    }

    /// The first value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.present(name).filter(|v| !v.is_empty())
    }

    /// The first value of `name` if present, also when empty (`?a=`, `?a`).
    pub fn present(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name` as an owned string.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// `limit`: 1–500, default 50.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.present("limit") {
            None => Ok(50),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| ApiError::bad_request("limit must be a whole number from 1 to 500")),
        }
    }

    /// `cursor`: an id from a previous page's `next_cursor` (see [`Query::id`]).
    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        self.id("cursor", "cursor is not one this server issued")
    }

    /// A row id parameter: 1 to 19 ASCII digits, as the document's pattern
    /// says (`^[0-9]{1,19}$`); else 400 with `message`. One beyond `i64::MAX`
    /// lies past every id and reads as `i64::MAX`.
    pub fn id(&self, name: &str, message: &'static str) -> Result<Option<i64>, ApiError> {
        self.present(name)
            .map(|c| {
                if c.is_empty() || c.len() > 19 || !c.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ApiError::bad_request(message));
                }
                Ok(c.parse::<i64>().unwrap_or(i64::MAX))
            })
            .transpose()
    }

    /// A parameter with a fixed set of values: `None` when absent, else one
    /// of `allowed` (an empty or other value is a 400).
    pub fn one_of(&self, name: &str, allowed: &[&'static str]) -> Result<Option<&'static str>, ApiError> {
        self.present(name)
            .map(|v| {
                allowed.iter().copied().find(|a| *a == v).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be one of: {}", allowed.join(", ")))
                })
            })
            .transpose()
    }

    /// An RFC 3339 timestamp parameter as Unix ms.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.present(name)
            .map(|v| {
                crate::clock::parse_rfc3339_millis(v)
                    .ok_or_else(|| ApiError::bad_request(format!("{name} must be an RFC 3339 timestamp")))
            })
            .transpose()
    }
}

/// Percent-decodes a path segment (`%2F` → `/`; `+` stays `+`); `None` when
/// the result is not UTF-8.
pub fn decode_path_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `{"items": [...], "next_cursor": "<id>"|null}`: a full page has a next
/// cursor (the last item's id).
pub fn page(items: Vec<serde_json::Value>, limit: usize, last_id: Option<i64>) -> serde_json::Value {
    let next = if items.len() == limit { last_id.map(|id| id.to_string()) } else { None };
    serde_json::json!({"items": items, "next_cursor": next})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_path_segment("a%2Fb+c%00").as_deref(), Some("a/b+c\0"));
        assert_eq!(decode_path_segment("%2E%2e%5C%4").as_deref(), Some("..\\%4"));
        assert_eq!(decode_path_segment("%ff"), None);
    }

    #[test]
    fn decodes_and_validates() {
        let q = Query::parse(Some("a=x%20y+z&limit=10&since=2026-01-01T00:00:00Z&bad=%zz&t=%4"));
        assert_eq!(q.get("a"), Some("x y z"));
        assert_eq!(q.limit().unwrap(), 10);
        assert!(q.time("since").unwrap().is_some());
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("t"), Some("%4"));
        assert_eq!(Query::parse(Some("u=%a\u{e9}")).get("u"), Some("%a\u{e9}"));
        assert!(Query::parse(Some("limit=501")).limit().is_err());
        assert!(Query::parse(Some("cursor=x")).cursor().is_err());
    }

    #[test]
    fn typed_parameters_present_but_empty_are_refused() {
        let q = Query::parse(Some("until=&since&limit=&cursor=&format=&meter_id="));
        assert!(q.time("until").is_err());
        assert!(q.time("since").is_err());
        assert!(q.limit().is_err());
        assert!(q.cursor().is_err());
        assert!(q.one_of("format", &["csv"]).is_err());
        assert_eq!(q.get("meter_id"), None, "an empty free-text filter is no filter");
        assert_eq!(Query::parse(None).time("until").unwrap(), None);
    }

    #[test]
    fn cursors_are_one_to_nineteen_digits() {
        let cursor = |c: &str| Query::parse(Some(&format!("cursor={c}"))).cursor();
        assert_eq!(cursor("007").unwrap(), Some(7));
        assert_eq!(cursor("9999999999999999999").unwrap(), Some(i64::MAX));
        for bad in ["-1", "+1", "1e3", " 1", "12345678901234567890", "\u{0661}"] {
            assert!(cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_filters_are_taken_as_sent_and_must_be_strings() {
        let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
        let q = Query::from_json_fields(
            &fields(serde_json::json!({"until": "2026-01-01T00:00:00+01:00", "x": 1})),
            &["until"],
        )
        .unwrap();
        assert_eq!(q.get("until"), Some("2026-01-01T00:00:00+01:00"));
        assert!(q.time("until").unwrap().is_some());
        for bad in [
            serde_json::json!({"until": 5}),
            serde_json::json!({"until": null}),
            serde_json::json!({"until": []}),
        ] {
            assert!(Query::from_json_fields(&fields(bad), &["until"]).is_err());
        }
    }
}
