//! The content hash behind ingest idempotency.
//!
//! SHA-256 over the raw bytes with JSON whitespace outside strings left out.
//! Raw bytes alone would call the same message a `Conflict` when it arrives
//! once on its own and once inside a pretty-printed array (deeper
//! indentation), or re-serialised compactly by a retrying client. Dropping
//! insignificant whitespace fixes that and costs one byte scan; anything
//! beyond whitespace (key order, `10.0` vs `10`, `\u00e9` vs `é`) still counts
//! as different content, because eSight would receive different bytes.

use sha2::{Digest, Sha256};

/// SHA-256 of `raw` without the whitespace between JSON tokens.
///
/// Defined for any bytes; on valid JSON two documents hash alike exactly when
/// they differ only in whitespace outside strings.
pub fn content_hash(raw: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 4096];
    let mut len = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in raw {
        buf[len] = byte;
        len += usize::from(in_string || !is_space(byte));
        if escaped {
            escaped = false;
        } else if in_string {
            escaped = byte == b'\\';
            in_string = byte != b'"';
        } else {
            in_string = byte == b'"';
        }
        if len == buf.len() {
            hasher.update(buf);
            len = 0;
        }
    }
    hasher.update(&buf[..len]);
    hasher.finalize().into()
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_between_tokens_does_not_count() {
        let pretty = b"{\n  \"a\" : [1, 2],\r\n\t\"b\": {\"c\": null}\n}\n";
        let compact = b"{\"a\":[1,2],\"b\":{\"c\":null}}";
        assert_eq!(content_hash(pretty), content_hash(compact));
    }

    #[test]
    fn whitespace_inside_strings_counts() {
        assert_ne!(content_hash(br#"{"a":"x y"}"#), content_hash(br#"{"a":"xy"}"#));
        assert_ne!(content_hash(br#"{"a":"x\" y"}"#), content_hash(br#"{"a":"x\"y"}"#));
        assert_ne!(content_hash(br#"{"a":"x\\"  }"#), content_hash(br#"{"a":"x\\ "}"#));
    }

    #[test]
    fn other_differences_count() {
        assert_ne!(content_hash(br#"{"a":10.0}"#), content_hash(br#"{"a":10}"#));
        assert_ne!(content_hash(br#"{"a":1,"b":2}"#), content_hash(br#"{"b":2,"a":1}"#));
    }

    #[test]
    fn is_sha256_of_the_compact_form() {
        let expected: [u8; 32] = Sha256::digest(b"[1,2]").into();
        assert_eq!(content_hash(b" [ 1 , 2 ] "), expected);
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(content_hash(b""), empty);
        assert_eq!(content_hash(b"\"\\"), <[u8; 32]>::from(Sha256::digest(b"\"\\")));
    }
}
