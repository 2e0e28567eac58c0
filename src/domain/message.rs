//! A consumption message as producers send it and eSight receives it:
//! parsed once, with the contract's validation codes in the contract's order,
//! and kept as the exact bytes received.
//!
//! # Validation, in order (the first failing check gives the code)
//!
//! 1. `InvalidJson`: the bytes are not JSON, not an object, or lack a string
//!    `messageType` (any string, also empty), an object `header` or an object
//!    `gatewayData`. A `null` counts as missing. A field that these checks
//!    read, appearing twice in the same object (top level, `header` or
//!    `gatewayData`), is
//!    also `InvalidJson`: the message would be ambiguous.
//! 2. `NoGatewayTypeUrn`: `header.gatewayTypeUrn` missing, blank or not a
//!    string.
//! 3. `NoLocalMarket`: it does not start with `urn:esight:assets:edm:`
//!    (case-sensitive) or the segment after that prefix is blank.
//! 4. `NoDataFeedType`: no blank-free single segment after the local market
//!    (`…:edm:lu`, `…:edm:lu:` and `…:edm:lu:a:b` all fail).
//! 5. `NoGatewayUrn`: `header.gatewayUrn` missing, blank or not a string.
//! 6. `NoSiteIDInJson`: it has a single `:`-segment (the sample
//!    `LU_VPC_Elec_1`), or the second-to-last segment is blank.
//! 7. `NoMeterIDInJson`: the last segment is blank (`…:VPC:`). Only the last
//!    two segments are read; no prefix is required (`VPC:M1` is valid).
//! 8. `NoMessageId`: `header.messageId` missing, blank or not a string.
//! 9. `NoDatapointValues`: `gatewayData.datapointValues` missing, `null`, not
//!    an array, empty, or an item that is not an object, lacks a non-blank
//!    string `datapointKey`, lacks a non-null `value` (any other JSON type is
//!    fine), lacks a string `tsIso8601` that is RFC 3339, or repeats one of
//!    these three keys.
//!
//! "Blank" means empty or whitespace only; values are otherwise kept exactly
//! as sent (no trimming, no case folding). Unknown fields anywhere are
//! allowed and never looked at.

mod batch;
mod hash;
mod rewrite;
mod scan;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;

use std::fmt;

use bytes::Bytes;
use serde_json::value::RawValue;

pub use batch::{BatchError, BatchItem, MAX_BATCH_ITEMS, MAX_NESTING, check_readable, parse_batch};
pub use hash::content_hash;
pub use rewrite::{delivery_message_id, rewrite_message_id};
use scan::{Datapoints, GatewayData, is_blank, raw_str, starts_with};

/// The prefix every `header.gatewayTypeUrn` carries before
/// `<local_market>:<data_feed_type>`.
pub const GATEWAY_TYPE_URN_PREFIX: &str = "urn:esight:assets:edm:";

/// A validated message. Fields are private: the only way to get one is
/// [`Message::parse`] / [`Message::from_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    raw: Bytes,
    fields: Fields,
}

/// The contract's message validation codes, in checking order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValidationCode {
    /// Not a JSON object with `messageType`, `header` and `gatewayData`.
    InvalidJson,
    /// No `header.gatewayTypeUrn`.
    NoGatewayTypeUrn,
    /// No local market in `header.gatewayTypeUrn`.
    NoLocalMarket,
    /// No data feed type in `header.gatewayTypeUrn`.
    NoDataFeedType,
    /// No `header.gatewayUrn`.
    NoGatewayUrn,
    /// No site id in `header.gatewayUrn`.
    NoSiteIDInJson,
    /// No meter id in `header.gatewayUrn`.
    NoMeterIDInJson,
    /// No `header.messageId`.
    NoMessageId,
    /// No valid `gatewayData.datapointValues`.
    NoDatapointValues,
}

impl ValidationCode {
    /// Every code, in the order the checks run.
    pub const ALL: [Self; 9] = [
        Self::InvalidJson,
        Self::NoGatewayTypeUrn,
        Self::NoLocalMarket,
        Self::NoDataFeedType,
        Self::NoGatewayUrn,
        Self::NoSiteIDInJson,
        Self::NoMeterIDInJson,
        Self::NoMessageId,
        Self::NoDatapointValues,
    ];

    /// The code as the contract spells it, e.g. `"NoGatewayTypeUrn"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "InvalidJson",
            Self::NoGatewayTypeUrn => "NoGatewayTypeUrn",
            Self::NoLocalMarket => "NoLocalMarket",
            Self::NoDataFeedType => "NoDataFeedType",
            Self::NoGatewayUrn => "NoGatewayUrn",
            Self::NoSiteIDInJson => "NoSiteIDInJson",
            Self::NoMeterIDInJson => "NoMeterIDInJson",
            Self::NoMessageId => "NoMessageId",
            Self::NoDatapointValues => "NoDatapointValues",
        }
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was refused: the contract code and a human message that
/// never echoes the input (only field names, indexes and JSON positions).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ValidationError {
    /// The contract code.
    pub code: ValidationCode,
    /// Human-readable explanation, safe to send back.
    pub message: String,
}

impl ValidationError {
    /// An error with a code and a message.
    pub fn new(code: ValidationCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl Message {
    /// Validates `raw`; on success the bytes are copied and kept as received.
    pub fn parse(raw: &[u8]) -> Result<Self, ValidationError> {
        validate(raw).map(|fields| fields.with_raw(Bytes::copy_from_slice(raw)))
    }

    /// Validates `raw` without copying it (the message keeps a reference to
    /// the same buffer).
    pub fn from_bytes(raw: Bytes) -> Result<Self, ValidationError> {
        validate(&raw).map(|fields| fields.with_raw(raw.clone()))
    }

    /// The bytes exactly as received: what is stored and, with the messageId
    /// rewritten, forwarded.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Gives up the message for its bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// `header.messageId`, unescaped; never blank.
    pub fn message_id(&self) -> &str {
        &self.fields.message_id
    }

    /// `header.gatewayTypeUrn`, unescaped.
    pub fn gateway_type_urn(&self) -> &str {
        &self.fields.gateway_type_urn
    }

    /// `header.gatewayUrn`, unescaped.
    pub fn gateway_urn(&self) -> &str {
        &self.fields.gateway_urn
    }

    /// The local market (`lu` in `urn:esight:assets:edm:lu:electricity`), as
    /// sent; eSight's site code is `upper(local_market) + "_" + site_id`.
    pub fn local_market(&self) -> &str {
        &self.fields.local_market
    }

    /// The data feed type (`electricity` in `urn:esight:assets:edm:lu:electricity`).
    pub fn data_feed_type(&self) -> &str {
        &self.fields.data_feed_type
    }

    /// The second-to-last `:`-segment of `header.gatewayUrn`.
    pub fn site_id(&self) -> &str {
        &self.fields.site_id
    }

    /// The last `:`-segment of `header.gatewayUrn`.
    pub fn meter_id(&self) -> &str {
        &self.fields.meter_id
    }

    /// Number of items in `gatewayData.datapointValues` (at least 1).
    pub fn datapoint_count(&self) -> usize {
        self.fields.datapoint_count
    }

    /// [`content_hash`] of the raw bytes, for idempotency.
    pub fn content_hash(&self) -> [u8; 32] {
        content_hash(&self.raw)
    }
}

/// A message's extracted fields.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    message_id: String,
    gateway_type_urn: String,
    gateway_urn: String,
    local_market: String,
    data_feed_type: String,
    site_id: String,
    meter_id: String,
    datapoint_count: usize,
}

impl Fields {
    fn with_raw(self, raw: Bytes) -> Message {
        Message { raw, fields: self }
    }
}

/// The `header` fields validation reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderFields<'a> {
    #[serde(borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow)]
    gateway_type_urn: Option<&'a RawValue>,
    #[serde(borrow)]
    gateway_urn: Option<&'a RawValue>,
}

fn invalid(code: ValidationCode, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, message)
}

/// A present, non-blank string field.
fn text(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(raw_str).filter(|s| !is_blank(s)).map(|s| s.into_owned())
}

fn validate(raw: &[u8]) -> Result<Fields, ValidationError> {
    use ValidationCode::*;
    let not_object = "the message must be a JSON object with messageType, header and gatewayData";
    let scanned = scan::scan(raw).ok_or_else(|| invalid(InvalidJson, not_object))?;

    if !scanned.message_type.is_some_and(|t| starts_with(t, b'"')) {
        return Err(invalid(InvalidJson, "messageType must be a string"));
    }
    let header = scanned
        .header
        .filter(|h| starts_with(h, b'{'))
        .ok_or_else(|| invalid(InvalidJson, "header must be an object"))?;
    let header: HeaderFields<'_> =
        serde_json::from_str(header.get()).map_err(|_| invalid(InvalidJson, "header repeats a field"))?;
    let datapoints = match scanned.gateway_data {
        Some(GatewayData::Object(datapoints)) => datapoints,
        _ => return Err(invalid(InvalidJson, "gatewayData must be an object")),
    };

    let gateway_type_urn = text(header.gateway_type_urn)
        .ok_or_else(|| invalid(NoGatewayTypeUrn, "header.gatewayTypeUrn must be a non-empty string"))?;
    let (local_market, data_feed_type) = split_gateway_type_urn(&gateway_type_urn)?;
    let gateway_urn = text(header.gateway_urn)
        .ok_or_else(|| invalid(NoGatewayUrn, "header.gatewayUrn must be a non-empty string"))?;
    let (site_id, meter_id) = split_gateway_urn(&gateway_urn)?;
    let message_id = text(header.message_id)
        .ok_or_else(|| invalid(NoMessageId, "header.messageId must be a non-empty string"))?;
    let datapoint_count = check_datapoints(datapoints)?;

    Ok(Fields {
        local_market: local_market.to_owned(),
        data_feed_type: data_feed_type.to_owned(),
        site_id: site_id.to_owned(),
        meter_id: meter_id.to_owned(),
        message_id,
        gateway_type_urn,
        gateway_urn,
        datapoint_count,
    })
}

/// `urn:esight:assets:edm:<local_market>:<data_feed_type>` → both parts.
fn split_gateway_type_urn(urn: &str) -> Result<(&str, &str), ValidationError> {
    let form = "header.gatewayTypeUrn must look like \
                urn:esight:assets:edm:<local_market>:<data_feed_type>";
    let rest = urn
        .strip_prefix(GATEWAY_TYPE_URN_PREFIX)
        .ok_or_else(|| invalid(ValidationCode::NoLocalMarket, form))?;
    let (market, feed) = rest.split_once(':').unwrap_or((rest, ""));
    if is_blank(market) {
        return Err(invalid(ValidationCode::NoLocalMarket, form));
    }
    if is_blank(feed) || feed.contains(':') {
        return Err(invalid(ValidationCode::NoDataFeedType, form));
    }
    Ok((market, feed))
}

/// `…:<site_id>:<meter_id>` → both parts.
fn split_gateway_urn(urn: &str) -> Result<(&str, &str), ValidationError> {
    let mut segments = urn.rsplit(':');
    let meter = segments.next().unwrap_or("");
    match segments.next() {
        Some(site) if !is_blank(site) => {
            if is_blank(meter) {
                return Err(invalid(
                    ValidationCode::NoMeterIDInJson,
                    "the last segment of header.gatewayUrn (the meter id) is empty",
                ));
            }
            Ok((site, meter))
        }
        _ => Err(invalid(
            ValidationCode::NoSiteIDInJson,
            "header.gatewayUrn must end with <site_id>:<meter_id>",
        )),
    }
}

fn check_datapoints(datapoints: Option<Datapoints>) -> Result<usize, ValidationError> {
    let code = ValidationCode::NoDatapointValues;
    match datapoints {
        Some(Datapoints::Array(check)) => match check.first_error {
            _ if check.count == 0 => Err(invalid(code, "gatewayData.datapointValues must not be empty")),
            Some((index, reason)) => {
                Err(invalid(code, format!("gatewayData.datapointValues[{index}] {reason}")))
            }
            None => Ok(check.count),
        },
        _ => Err(invalid(code, "gatewayData.datapointValues must be a non-empty array")),
    }
}
