//! The single pass over a message's bytes that collects what validation needs.
//!
//! Nothing is materialised into a `serde_json::Value`: fields the checks look
//! at are kept as borrowed [`RawValue`]s (inspected later), unknown fields are
//! skipped with `IgnoredAny`, and the datapoint array is checked item by item
//! while it streams past, so a 96-datapoint message allocates nothing per
//! datapoint.
//!
//! serde_json refuses numbers it cannot represent (`1e400`) whenever a
//! visitor asks for "any" value, but not when it only skips or captures raw
//! text. The fast path asks for "any" value where an object or array is
//! expected (`gatewayData`, `datapointValues`, each datapoint); if it fails,
//! [`scan`] falls back to a slower pass that captures those as raw text
//! first, so such a number yields the contract's code for that position
//! rather than `InvalidJson`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What one pass found: the top-level fields validation starts from.
pub(super) struct Scanned<'a> {
    /// `messageType`, unchecked.
    pub message_type: Option<&'a RawValue>,
    /// `header`, unchecked.
    pub header: Option<&'a RawValue>,
    /// `gatewayData`, with its datapoints already checked.
    pub gateway_data: Option<GatewayData>,
}

/// `gatewayData` as found.
pub(super) enum GatewayData {
    /// Not an object.
    WrongType,
    /// An object; `None` when it has no (or a `null`) `datapointValues`.
    Object(Option<Datapoints>),
}

/// `gatewayData.datapointValues` as found.
pub(super) enum Datapoints {
    /// Not an array.
    WrongType,
    /// An array: its length and the first item that failed a check.
    Array(DatapointCheck),
}

/// The outcome of checking every item of `datapointValues`.
#[derive(Default)]
pub(super) struct DatapointCheck {
    /// Number of items.
    pub count: usize,
    /// Index and reason of the first invalid item.
    pub first_error: Option<(usize, &'static str)>,
}

impl DatapointCheck {
    fn push(&mut self, item: Result<(), &'static str>) {
        if let (Err(reason), None) = (item, self.first_error) {
            self.first_error = Some((self.count, reason));
        }
        self.count += 1;
    }
}

/// Scans a message. `None` means the bytes are not a JSON object (or not
/// JSON at all, or a field validation reads appears twice).
pub(super) fn scan(raw: &[u8]) -> Option<Scanned<'_>> {
    if first_byte(raw) != Some(b'{') {
        return None;
    }
    if let Ok(fast) = serde_json::from_slice::<FastTop<'_>>(raw) {
        return Some(Scanned {
            message_type: fast.message_type,
            header: fast.header,
            gateway_data: fast.gateway_data,
        });
    }
    let slow: SlowTop<'_> = serde_json::from_slice(raw).ok()?;
    let gateway_data = slow.gateway_data.map(|gd| {
        if !starts_with(gd, b'{') {
            return GatewayData::WrongType;
        }
        match serde_json::from_str::<SlowGatewayData<'_>>(gd.get()) {
            Ok(fields) => GatewayData::Object(fields.datapoint_values.map(slow_datapoints)),
            Err(_) => GatewayData::WrongType,
        }
    });
    Some(Scanned { message_type: slow.message_type, header: slow.header, gateway_data })
}

/// The first byte that is not JSON whitespace.
pub(super) fn first_byte(raw: &[u8]) -> Option<u8> {
    raw.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Whether a raw JSON value starts with `byte` (raw values carry no
/// leading whitespace).
pub(super) fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().as_bytes().first() == Some(&byte)
}

/// The text of a raw JSON value if it is a string, unescaped.
pub(super) fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    if text.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(&text[1..text.len() - 1]))
    }
}

/// Whether a string is empty or only whitespace: such a value counts as
/// absent everywhere in message validation.
pub(super) fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

fn slow_datapoints(raw: &RawValue) -> Datapoints {
    if !starts_with(raw, b'[') {
        return Datapoints::WrongType;
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return Datapoints::WrongType;
    };
    let mut check = DatapointCheck::default();
    for item in items {
        check.push(if starts_with(item, b'{') {
            serde_json::from_str::<ItemFields<'_>>(item.get())
                .map_err(|_| "has a repeated field")
                .and_then(|fields| fields.check())
        } else {
            Err("is not an object")
        });
    }
    Datapoints::Array(check)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastTop<'a> {
    #[serde(borrow)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow)]
    header: Option<&'a RawValue>,
    gateway_data: Option<GatewayData>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlowTop<'a> {
    #[serde(borrow)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow)]
    header: Option<&'a RawValue>,
    #[serde(borrow)]
    gateway_data: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastGatewayData {
    datapoint_values: Option<Datapoints>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlowGatewayData<'a> {
    #[serde(borrow)]
    datapoint_values: Option<&'a RawValue>,
}

/// The fields of one datapoint; everything else in it is skipped.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemFields<'a> {
    #[serde(borrow)]
    datapoint_key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    ts_iso8601: Option<&'a RawValue>,
}

impl ItemFields<'_> {
    /// The datapoint rules: a non-blank string `datapointKey`, a non-null
    /// `value` of any type, and an RFC 3339 string `tsIso8601`.
    fn check(&self) -> Result<(), &'static str> {
        match self.datapoint_key.and_then(raw_str) {
            Some(key) if !is_blank(&key) => {}
            _ => return Err("has no string datapointKey"),
        }
        if self.value.is_none() {
            return Err("has no value");
        }
        match self.ts_iso8601.and_then(raw_str) {
            Some(ts) if OffsetDateTime::parse(&ts, &Rfc3339).is_ok() => Ok(()),
            _ => Err("has no RFC 3339 tsIso8601"),
        }
    }
}

/// A value whose JSON shape decides what it becomes; every other shape is
/// consumed and reported as the wrong type.
trait Shape<'de>: Sized {
    fn wrong_type() -> Self;

    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::wrong_type())
    }

    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::wrong_type())
    }
}

struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Shape<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::wrong_type())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_seq(seq)
    }
}

fn deserialize_shape<'de, D: Deserializer<'de>, T: Shape<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(ShapeVisitor(PhantomData))
}

impl<'de> Shape<'de> for GatewayData {
    fn wrong_type() -> Self {
        Self::WrongType
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let fields = FastGatewayData::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Self::Object(fields.datapoint_values))
    }
}

impl<'de> Deserialize<'de> for GatewayData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_shape(d)
    }
}

impl<'de> Shape<'de> for Datapoints {
    fn wrong_type() -> Self {
        Self::WrongType
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut check = DatapointCheck::default();
        while let Some(ItemCheck(item)) = seq.next_element()? {
            check.push(item);
        }
        Ok(Self::Array(check))
    }
}

impl<'de> Deserialize<'de> for Datapoints {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_shape(d)
    }
}

/// One datapoint, checked as it is read.
struct ItemCheck(Result<(), &'static str>);

impl<'de> Shape<'de> for ItemCheck {
    fn wrong_type() -> Self {
        Self(Err("is not an object"))
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let fields = ItemFields::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Self(fields.check()))
    }
}

impl<'de> Deserialize<'de> for ItemCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_shape(d)
    }
}
