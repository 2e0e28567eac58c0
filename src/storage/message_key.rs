//! Where a stored message's `header.messageId` lives (schema 9, issue 14):
//! only in its body. The row holds `message_key`, a 48-bit hash of the
//! messageId, under a non-unique index; whoever looks a messageId up finds
//! the rows with its key and compares the real messageId read from each
//! body, so two messageIds with the same key stay two messages.
//!
//! - [`message_key`]: the first 48 bits of the messageId's SHA-256, as a
//!   signed integer (−2⁴⁷ ≤ key < 2⁴⁷), which SQLite stores in 6 bytes (an
//!   unsigned 48-bit value would take 8). Stable: it is stored, so never
//!   change it without a migration recomputing every key.
//! - [`message_id_in`]: `header.messageId` of a body (the JSON as received),
//!   by a borrowed serde parse of that one field.
//! - [`register_functions`]: the SQL function `message_id(body_format, body)`
//!   on a connection, so the lists select and filter on the messageId inside
//!   SQL and their `LIMIT` stays exact; every connection of [`super::Storage`]
//!   and the migration runner have it.

use std::borrow::Cow;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use super::stored_body;

/// The stored key of a messageId: SHA-256's first 6 bytes, big-endian,
/// sign-extended from 48 bits.
pub fn message_key(message_id: &str) -> i64 {
    let d = Sha256::digest(message_id.as_bytes());
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], 0, 0]) >> 16
}

/// `header.messageId` of a message body as received; `None` when the body
/// has none (or is not such a JSON object). Reads only that field: every
/// other value is skipped without being built.
pub fn message_id_in(json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        header: Option<Header<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Header<'a> {
        #[serde(borrow, rename = "messageId")]
        message_id: Option<Cow<'a, str>>,
    }
    let body: Body<'_> = serde_json::from_slice(json).ok()?;
    body.header?.message_id.map(Cow::into_owned)
}

/// `header.messageId` of a stored body (`body_format`, `body`); `None` when
/// the body does not decode or carries none.
pub fn stored_message_id(format: i64, body: &[u8]) -> Option<String> {
    if format == stored_body::BodyFormat::Raw.code() {
        return message_id_in(body);
    }
    message_id_in(&stored_body::unpack(format, body).ok()?)
}

/// Registers `message_id(body_format, body)` on `conn`: the body's
/// `header.messageId`, or NULL when it has none or does not decode (a
/// filter then simply does not match it; a list reading it reports the
/// row as corrupt).
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("message_id", 2, flags, |ctx| {
        let format = match ctx.get_raw(0) {
            ValueRef::Integer(f) => f,
            _ => return Ok(None),
        };
        Ok(match ctx.get_raw(1) {
            ValueRef::Blob(body) => stored_message_id(format, body),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/messages/valid-1.json");

    #[test]
    fn keys_are_stable_48_bit_values_stored_in_six_bytes() {
        // Pinned (computed independently: the first 6 bytes of each SHA-256,
        // read as a signed 48-bit number): keys are stored, a change would
        // orphan every stored row.
        assert_eq!(message_key(""), -31_126_630_262_532); // e3b0c44298fc
        assert_eq!(message_key("m42"), -94_901_264_461_621); // a9b013d7d0cb
        assert_eq!(message_key("electricity_lu_20210131T0000"), 2_828_466_648_736); // 02928dbff6a0
        for id in ["m42", "", "electricity_lu_20210131T0000", "ä€😀", "a much longer messageId than usual"]
        {
            let k = message_key(id);
            assert!((-(1 << 47)..(1 << 47)).contains(&k), "{id}: {k}");
        }
        assert_ne!(message_key("m42"), message_key("m43"));
    }

    #[test]
    fn the_message_id_is_read_from_the_body_unescaped() {
        assert_eq!(message_id_in(SAMPLE.as_bytes()).as_deref(), Some("electricity_lu_20210131T0000"));
        let escaped = br#"{"messageType":"x","header":{"gatewayUrn":"u","messageId":"a\"b\u00e4\/c"},"gatewayData":{}}"#;
        assert_eq!(message_id_in(escaped).as_deref(), Some("a\"bä/c"));
        for none in [&b"{}"[..], b"not json", b"{\"header\":{}}", b"{\"header\":{\"messageId\":7}}", b"[]"] {
            assert_eq!(message_id_in(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn the_sql_function_reads_packed_and_raw_bodies() {
        let c = Connection::open_in_memory().unwrap();
        register_functions(&c).unwrap();
        let packed = stored_body::StoredBody::pack(SAMPLE.as_bytes());
        let read = |format: i64, body: &[u8]| -> Option<String> {
            c.query_row("SELECT message_id(?1, ?2)", rusqlite::params![format, body], |r| r.get(0)).unwrap()
        };
        assert_eq!(
            read(packed.format.code(), &packed.bytes).as_deref(),
            Some("electricity_lu_20210131T0000")
        );
        assert_eq!(read(0, SAMPLE.as_bytes()).as_deref(), Some("electricity_lu_20210131T0000"));
        assert_eq!(read(1, b"damaged"), None);
        assert_eq!(read(0, b"{}"), None);
    }
}
