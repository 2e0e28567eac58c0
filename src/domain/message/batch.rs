//! The ingest body: one message, or a JSON array of up to
//! [`MAX_BATCH_ITEMS`] messages validated independently.
//!
//! Each item keeps its own bytes (the exact span of the item in the body,
//! shared with the body buffer, not copied), so an item is stored exactly as
//! it appeared inside the array.

use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{Message, ValidationCode, ValidationError};

/// The most messages one request may carry.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// One message of a body: its position (`0` for a body that is a single
/// message) and its outcome.
pub type BatchItem = (usize, Result<Message, ValidationError>);

/// Why a whole body was refused before looking at any message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Nothing but whitespace: most often a client whose file or variable
    /// was empty (`curl -d @file` of a missing file sends nothing). Answered
    /// like [`BatchError::InvalidJson`], with a message that says so.
    #[error("the body is empty: send one message (a JSON object) or an array of messages")]
    Empty,
    /// The body is not JSON at all (empty, truncated, trailing garbage…).
    /// The HTTP layer answers `400` with code `InvalidJson`.
    #[error("the body is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the first syntax error.
        line: usize,
        /// 1-based column of the first syntax error.
        column: usize,
    },
    /// An array with more than [`MAX_BATCH_ITEMS`] items (counting stops at
    /// the first one too many). Suggested answer: `400 BadRequest`.
    #[error("a batch holds at most {max} messages", max = MAX_BATCH_ITEMS)]
    TooManyItems,
    /// Syntactically JSON as far as skipping goes, but not readable as JSON
    /// values: invalid UTF-8, or nesting deeper than serde_json reads.
    /// Answered like [`BatchError::InvalidJson`].
    #[error("the body is not valid JSON: {0}")]
    Unreadable(&'static str),
}

impl BatchError {
    /// The contract code to answer with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty | Self::InvalidJson { .. } | Self::Unreadable(_) => {
                ValidationCode::InvalidJson.as_str()
            }
            Self::TooManyItems => "BadRequest",
        }
    }
}

/// Splits and validates an ingest body.
///
/// - A body whose first non-whitespace byte is `[` is an array: every item
///   is validated on its own, in order, with its index; `[]` gives an empty
///   list (the caller answers as "nothing accepted").
/// - Any other body is one message at index 0, keeping the whole body
///   (surrounding whitespace included) as its bytes. A body that is valid
///   JSON but not a message object (`42`, `"x"`, `null`) is that item
///   failing with `InvalidJson`.
/// - A body of nothing or whitespace only is [`BatchError::Empty`].
/// - A body that is not JSON at all is [`BatchError::InvalidJson`].
pub fn parse_batch(body: Bytes) -> Result<Vec<BatchItem>, BatchError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BatchError::Empty);
    }
    check_readable(&body)?;
    if super::scan::first_byte(&body) != Some(b'[') {
        return match Message::from_bytes(body.clone()) {
            Err(e) if e.code == ValidationCode::InvalidJson => {
                check_syntax(&body)?;
                Ok(vec![(0, Err(e))])
            }
            result => Ok(vec![(0, result)]),
        };
    }
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(&body);
    let items = de
        .deserialize_seq(Items { too_many: &too_many })
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| {
            if too_many.get() {
                BatchError::TooManyItems
            } else {
                BatchError::InvalidJson { line: e.line(), column: e.column() }
            }
        })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| (index, Message::from_bytes(body.slice_ref(item.get().as_bytes()))))
        .collect())
}

/// Deepest nesting serde_json reads back (its recursion limit refuses the
/// 128th level): what the detail view and eSight's side parse.
pub const MAX_NESTING: usize = 127;

/// Refuses bytes that the validating pass lets through because it only
/// skips unknown fields (skipping neither checks UTF-8 inside strings nor
/// limits nesting), but that could not be read back as JSON values: the
/// stored message would show as `null` and reach eSight unreadable.
pub fn check_readable(body: &[u8]) -> Result<(), BatchError> {
    if std::str::from_utf8(body).is_err() {
        return Err(BatchError::Unreadable("invalid UTF-8"));
    }
    // Cheap bound first: fewer openers than the limit cannot nest too deep.
    if body.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_NESTING {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(BatchError::Unreadable("nested deeper than 127 levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn check_syntax(body: &[u8]) -> Result<(), BatchError> {
    serde_json::from_slice::<IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| BatchError::InvalidJson { line: e.line(), column: e.column() })
}

/// Collects the raw items of the top-level array, failing (and setting the
/// flag) at the first item past the limit.
struct Items<'f> {
    too_many: &'f Cell<bool>,
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH_ITEMS));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == MAX_BATCH_ITEMS {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many items"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod readable_tests {
    use super::*;

    #[test]
    fn bodies_serde_json_cannot_read_back_are_refused() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let value = |s: &str| serde_json::from_str::<serde_json::Value>(s).is_ok();
        assert!(value(&nest(MAX_NESTING)) && !value(&nest(MAX_NESTING + 1)), "the limit is serde_json's");
        assert!(check_readable(nest(MAX_NESTING).as_bytes()).is_ok());
        assert!(check_readable(nest(MAX_NESTING + 1).as_bytes()).is_err());
        let in_strings = format!("[\"{}\\\"{}\"]", "[".repeat(300), "{".repeat(300));
        assert!(check_readable(in_strings.as_bytes()).is_ok(), "brackets inside strings do not nest");
        assert!(check_readable(b"{\"a\": \"\xff\"}").is_err());
        let deep = format!(r#"{{"messageType":"c","x":{}}}"#, nest(200));
        assert_eq!(parse_batch(Bytes::from(deep)).unwrap_err().code(), "InvalidJson");
    }
}
