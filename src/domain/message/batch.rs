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
}

impl BatchError {
    /// The contract code to answer with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } => ValidationCode::InvalidJson.as_str(),
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
/// - A body that is not JSON at all is [`BatchError::InvalidJson`].
pub fn parse_batch(body: Bytes) -> Result<Vec<BatchItem>, BatchError> {
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
