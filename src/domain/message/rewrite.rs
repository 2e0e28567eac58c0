//! The body forwarded to eSight: the message as received with only the value
//! of `header.messageId` replaced.
//!
//! The replacement splices bytes: every byte outside that one JSON string is
//! copied unchanged, so unknown fields, key order, whitespace and number
//! spellings (`10.0`, `1e400`, `-0`) reach eSight exactly as the producer
//! wrote them, without serde_json's crate-wide `preserve_order` or
//! `arbitrary_precision` features.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::scan::starts_with;
use super::{ValidationCode, ValidationError};

/// The messageId eSight receives for the stored message `id`:
/// `<messageId>_<id>`. eSight echoes it in error reports, whose
/// correlation takes the part after the last `_`.
pub fn delivery_message_id(message_id: &str, id: &str) -> String {
    format!("{message_id}_{id}")
}

/// Returns `raw` with the value of `header.messageId` replaced by the JSON
/// string `new_message_id` (escaped as needed). If the top level or `header`
/// repeats a key, every top-level `header` object and every `messageId` in
/// it is rewritten, so eSight sees the new id whichever copy it reads.
///
/// Fails with `InvalidJson` when `raw` is not a JSON object or has no
/// `header` object, and with `NoMessageId` when that header has no
/// `messageId`. Bytes accepted by [`super::Message::parse`] never fail.
pub fn rewrite_message_id(raw: &[u8], new_message_id: &str) -> Result<Vec<u8>, ValidationError> {
    let spans = message_id_spans(raw)?;
    let replacement = serde_json::to_string(new_message_id)
        .map_err(|_| ValidationError::new(ValidationCode::NoMessageId, "unencodable messageId"))?;
    let mut out = Vec::with_capacity(raw.len() + spans.len() * replacement.len());
    let mut copied = 0;
    for (start, end) in spans {
        out.extend_from_slice(&raw[copied..start]);
        out.extend_from_slice(replacement.as_bytes());
        copied = end;
    }
    out.extend_from_slice(&raw[copied..]);
    Ok(out)
}

/// Byte ranges of every `header.messageId` value in `raw`, in order.
fn message_id_spans(raw: &[u8]) -> Result<Vec<(usize, usize)>, ValidationError> {
    let not_object =
        || ValidationError::new(ValidationCode::InvalidJson, "not a JSON object with a header object");
    if super::scan::first_byte(raw) != Some(b'{') {
        return Err(not_object());
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let headers = de.deserialize_map(Values { key: "header" }).map_err(|_| not_object())?;
    de.end().map_err(|_| not_object())?;
    let mut spans = Vec::new();
    let mut saw_header = false;
    for header in headers.into_iter().filter(|h| starts_with(h, b'{')) {
        saw_header = true;
        let mut de = serde_json::Deserializer::from_str(header.get());
        let ids = de.deserialize_map(Values { key: "messageId" }).map_err(|_| not_object())?;
        spans.extend(ids.into_iter().map(|id| span_of(raw, id)));
    }
    if !saw_header {
        return Err(not_object());
    }
    if spans.is_empty() {
        return Err(ValidationError::new(ValidationCode::NoMessageId, "header has no messageId"));
    }
    Ok(spans)
}

/// Where `value` (borrowed from `raw`) sits inside `raw`.
fn span_of(raw: &[u8], value: &RawValue) -> (usize, usize) {
    let start = value.get().as_ptr() as usize - raw.as_ptr() as usize;
    (start, start + value.get().len())
}

/// Collects the raw values of every entry named `key` in one object,
/// skipping the others.
struct Values {
    key: &'static str,
}

impl<'de> Visitor<'de> for Values {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == self.key {
                found.push(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An object key, unescaped, borrowed when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(raw: &str, id: &str) -> String {
        String::from_utf8(rewrite_message_id(raw.as_bytes(), id).unwrap()).unwrap()
    }

    #[test]
    fn replaces_only_the_message_id_value() {
        let raw = r#"{"messageType":"consumption","header":{"messageId":"m1","gatewayUrn":"a:b"},"gatewayData":{"datapointValues":[{"value":10.0}]}}"#;
        let expected = raw.replace(r#""m1""#, r#""m1_42""#);
        assert_eq!(rewrite(raw, "m1_42"), expected);
    }

    #[test]
    fn keeps_unknown_fields_order_whitespace_and_number_spellings() {
        let raw = "{\n \"zeta\": 1e400,\n \"header\" : {\"x\": -0, \"messageId\" :\t\"old\", \"y\": [10.0, 1E+2, \"caf\u{e9}\"]},\n \"alpha\": {\"n\": {\"m\": [null, true, 0.10]}}, \"messageType\": \"c\"\n}\n";
        let out = rewrite(raw, "new");
        assert_eq!(out, raw.replace("\"old\"", "\"new\""));
        assert!(out.contains("1e400") && out.contains("-0") && out.contains("10.0") && out.contains("0.10"));
        assert!(out.find("zeta") < out.find("header") && out.find("header") < out.find("alpha"));
    }

    #[test]
    fn escaped_old_values_and_keys_are_handled() {
        let raw = r#"{"h":"messageId","\u0068eader":{"note":"\"messageId\": \"x\"","message\u0049d":"a\"b\\c\u00e9"}}"#;
        let expected =
            r#"{"h":"messageId","\u0068eader":{"note":"\"messageId\": \"x\"","message\u0049d":"z"}}"#;
        assert_eq!(rewrite(raw, "z"), expected);
    }

    #[test]
    fn new_id_is_escaped_as_json() {
        let out = rewrite(r#"{"header":{"messageId":"a"}}"#, "q\"uote\\ \u{7} é_1");
        assert_eq!(out, r#"{"header":{"messageId":"q\"uote\\ \u0007 é_1"}}"#);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["header"]["messageId"], "q\"uote\\ \u{7} é_1");
    }

    #[test]
    fn nested_message_ids_elsewhere_are_untouched() {
        let raw = r#"{"gatewayData":{"messageId":"keep"},"header":{"meta":{"messageId":"keep"},"messageId":"old"}}"#;
        let expected = r#"{"gatewayData":{"messageId":"keep"},"header":{"meta":{"messageId":"keep"},"messageId":"new"}}"#;
        assert_eq!(rewrite(raw, "new"), expected);
    }

    #[test]
    fn repeated_keys_are_all_rewritten() {
        let raw = r#"{"header":{"messageId":"a","messageId":"b"}}"#;
        assert_eq!(rewrite(raw, "n"), r#"{"header":{"messageId":"n","messageId":"n"}}"#);
    }

    #[test]
    fn non_string_message_id_is_replaced_too() {
        assert_eq!(
            rewrite(r#"{"header":{"messageId":[1,{"a":2}]}}"#, "n"),
            r#"{"header":{"messageId":"n"}}"#
        );
    }

    #[test]
    fn refuses_what_has_no_header_message_id() {
        for (raw, code) in [
            ("", ValidationCode::InvalidJson),
            ("[]", ValidationCode::InvalidJson),
            ("{", ValidationCode::InvalidJson),
            (r#"{"header":{}} x"#, ValidationCode::InvalidJson),
            (r#"{"header":"s"}"#, ValidationCode::InvalidJson),
            (r#"{"messageId":"a"}"#, ValidationCode::InvalidJson),
            (r#"{"header":{"id":"a"}}"#, ValidationCode::NoMessageId),
        ] {
            assert_eq!(rewrite_message_id(raw.as_bytes(), "n").unwrap_err().code, code, "{raw}");
        }
    }

    #[test]
    fn delivery_id_appends_the_stored_id() {
        assert_eq!(delivery_message_id("electricity_lu_1", "0190abcd"), "electricity_lu_1_0190abcd");
    }
}
