//! An eSight error report (`POST /api/v1/service/receive/errorjson`):
//! eSight telling us, after a delivery, which datapoints it refused.
//!
//! Required (else `InvalidJsonReceived`): a JSON object with a non-blank
//! string `_id`, an object `header` with a non-blank string `messageId`, and
//! an array `errors` whose items are objects (the array may be empty; a key
//! repeated among these is refused as ambiguous). An empty or
//! whitespace-only body, `null` or `{}` is `EmptyJson` instead.
//!
//! Everything else is read leniently, because a report is eSight's word
//! and refusing it loses information we cannot ask for again: optional text
//! fields (`header.received_tsIso8601`, and `errorCode`, `errorMessage`,
//! `datapointKey`, `tsIso8601` in each error) are `None` when missing or
//! `null`, the string when a string, and the raw JSON text otherwise (`102`
//! → `"102"`); timestamps are not checked; `value` is kept as raw JSON text.
//! Unknown fields are ignored here (the caller stores the raw body).

#[cfg(test)]
mod tests;

use serde_json::value::RawValue;

/// The two codes a report can be refused with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportCode {
    /// Empty body, `null` or `{}`.
    EmptyJson,
    /// Anything else that is not a well-formed report.
    InvalidJsonReceived,
}

impl ReportCode {
    /// The code as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyJson => "EmptyJson",
            Self::InvalidJsonReceived => "InvalidJsonReceived",
        }
    }
}

/// Why a report was refused; the message never echoes the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ReportError {
    /// The contract code.
    pub code: ReportCode,
    /// Human-readable explanation, safe to send back.
    pub message: String,
}

/// A parsed error report. Fields are private: build one with
/// [`ErrorReport::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReport {
    esight_id: String,
    message_id: String,
    received_ts: Option<String>,
    errors: Vec<ReportedError>,
}

/// One entry of a report's `errors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedError {
    error_code: Option<String>,
    error_message: Option<String>,
    datapoint_key: Option<String>,
    value: Option<String>,
    ts: Option<String>,
}

impl ErrorReport {
    /// Parses a report body.
    pub fn parse(raw: &[u8]) -> Result<Self, ReportError> {
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" || is_empty_object(trimmed) {
            return Err(refuse(ReportCode::EmptyJson, "the report is empty"));
        }
        let invalid = |message: &str| refuse(ReportCode::InvalidJsonReceived, message);
        let shape = "the report must be a JSON object with _id, header and errors";
        if trimmed[0] != b'{' {
            return Err(invalid(shape));
        }
        let top: TopFields<'_> = serde_json::from_slice(raw).map_err(|_| invalid(shape))?;
        let esight_id =
            top.id.and_then(non_blank).ok_or_else(|| invalid("_id must be a non-empty string"))?;
        let header = top
            .header
            .filter(|h| h.get().starts_with('{'))
            .and_then(|h| serde_json::from_str::<HeaderFields<'_>>(h.get()).ok())
            .ok_or_else(|| invalid("header must be an object"))?;
        let message_id = header
            .message_id
            .and_then(non_blank)
            .ok_or_else(|| invalid("header.messageId must be a non-empty string"))?;
        let items = top
            .errors
            .filter(|e| e.get().starts_with('['))
            .and_then(|e| serde_json::from_str::<Vec<&RawValue>>(e.get()).ok())
            .ok_or_else(|| invalid("errors must be an array"))?;
        let errors = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                ReportedError::from_raw(item)
                    .ok_or_else(|| invalid(&format!("errors[{index}] must be an object")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { esight_id, message_id, received_ts: lenient_text(header.received_ts), errors })
    }

    /// eSight's `_id` for the report: the idempotency key.
    pub fn esight_id(&self) -> &str {
        &self.esight_id
    }

    /// `header.messageId` as eSight echoed it (`<messageId>_<id>`).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// `header.received_tsIso8601`, unchecked.
    pub fn received_ts(&self) -> Option<&str> {
        self.received_ts.as_deref()
    }

    /// The reported errors, in order.
    pub fn errors(&self) -> &[ReportedError] {
        &self.errors
    }

    /// The part of `header.messageId` after its last `_`: the stored message
    /// id this report is about, if it names one. `None` when there is no `_`
    /// or nothing after the last one. Not checked further: the caller looks
    /// it up.
    pub fn correlated_id(&self) -> Option<&str> {
        self.message_id.rsplit_once('_').map(|(_, id)| id).filter(|id| !id.is_empty())
    }
}

impl ReportedError {
    fn from_raw(raw: &RawValue) -> Option<Self> {
        if !raw.get().starts_with('{') {
            return None;
        }
        let item: ItemFields<'_> = serde_json::from_str(raw.get()).ok()?;
        Some(Self {
            error_code: lenient_text(item.error_code),
            error_message: lenient_text(item.error_message),
            datapoint_key: lenient_text(item.datapoint_key),
            value: item.value.map(|v| v.get().to_owned()),
            ts: lenient_text(item.ts_iso8601),
        })
    }

    /// `errorCode` (e.g. `E102`).
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }

    /// `errorMessage`.
    pub fn error_message(&self) -> Option<&str> {
        self.error_message.as_deref()
    }

    /// `datapointKey`.
    pub fn datapoint_key(&self) -> Option<&str> {
        self.datapoint_key.as_deref()
    }

    /// `value` as its raw JSON text (`12.5`, `"12.5"`, `null`); `None` when
    /// absent.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// `tsIso8601`, unchecked.
    pub fn ts(&self) -> Option<&str> {
        self.ts.as_deref()
    }
}

#[derive(serde::Deserialize)]
struct TopFields<'a> {
    #[serde(rename = "_id", borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    header: Option<&'a RawValue>,
    #[serde(borrow)]
    errors: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct HeaderFields<'a> {
    #[serde(rename = "messageId", borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(rename = "received_tsIso8601", borrow)]
    received_ts: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemFields<'a> {
    #[serde(borrow)]
    error_code: Option<&'a RawValue>,
    #[serde(borrow)]
    error_message: Option<&'a RawValue>,
    #[serde(borrow)]
    datapoint_key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    ts_iso8601: Option<&'a RawValue>,
}

fn refuse(code: ReportCode, message: &str) -> ReportError {
    ReportError { code, message: message.to_owned() }
}

/// `{` and `}` with only whitespace between.
fn is_empty_object(trimmed: &[u8]) -> bool {
    trimmed.len() >= 2
        && trimmed[0] == b'{'
        && trimmed[trimmed.len() - 1] == b'}'
        && trimmed[1..trimmed.len() - 1].trim_ascii().is_empty()
}

/// A string value, unescaped.
fn string(raw: &RawValue) -> Option<String> {
    raw.get().starts_with('"').then(|| serde_json::from_str(raw.get()).ok()).flatten()
}

fn non_blank(raw: &RawValue) -> Option<String> {
    string(raw).filter(|s| !s.trim().is_empty())
}

/// See the module comment: string → itself, other JSON → its text, `null`
/// (which `Option` fields read as absent) or absent → `None`.
fn lenient_text(raw: Option<&RawValue>) -> Option<String> {
    raw.map(|raw| string(raw).unwrap_or_else(|| raw.get().to_owned()))
}
