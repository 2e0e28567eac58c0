//! A message body as stored: `body_format` says how `body` holds the JSON
//! received. Packing runs on the request's thread (never on the single ingest
//! writer), unpacking wherever a body is read (claim, detail, duplicate check).
//!
//! | format | body |
//! |---|---|
//! | 0 | the JSON as received (rows migrated from schema 6 until they are packed, and any body zstd cannot shrink) |
//! | 1 | a zstd frame of the JSON, compressed with the dictionary `assets/zstd/messages-v1.dict` (no checksum, no dictionary id: the format number names the dictionary) |
//!
//! A new dictionary is a new file and a new format number; a released
//! dictionary is never changed, since stored rows need it to be read.

use std::cell::RefCell;
use std::sync::OnceLock;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::StorageError;

/// The dictionary of format 1, trained by `assets/zstd/train.py`.
const DICTIONARY_V1: &[u8] = include_bytes!("../../assets/zstd/messages-v1.dict");
/// zstd level for format 1. Measured with `examples/storage_size.rs` (20,000
/// varied 4-datapoint messages, loaded machine): level 3 → 124 bytes per
/// body, 6 → 105, 9 → 106; 6 cost a few µs more per message than 3 on the
/// request's thread (within the run-to-run noise of ~10 µs).
const LEVEL: i32 = 6;
/// The largest body unpacked: the request body limit is lower, so a frame
/// claiming more is corrupt.
const MAX_UNPACKED: usize = 64 << 20;

/// How a stored body is encoded (the `body_format` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The JSON as received.
    Raw = 0,
    /// zstd with dictionary v1.
    ZstdV1 = 1,
}

impl BodyFormat {
    /// The stored number.
    pub fn code(self) -> i64 {
        self as i64
    }
}

/// A packed body ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    /// How `bytes` encode the JSON.
    pub format: BodyFormat,
    /// The stored bytes.
    pub bytes: Vec<u8>,
}

impl StoredBody {
    /// Packs `raw` (the JSON as received) in the current format; a body that
    /// does not shrink is kept raw.
    pub fn pack(raw: &[u8]) -> Self {
        let packed = COMPRESSOR.with(|c| c.borrow_mut().compress(raw));
        match packed {
            Some(bytes) if bytes.len() < raw.len() => Self { format: BodyFormat::ZstdV1, bytes },
            _ => Self { format: BodyFormat::Raw, bytes: raw.to_vec() },
        }
    }

    /// The JSON as received.
    pub fn unpack(&self) -> Result<Vec<u8>, StorageError> {
        unpack(self.format.code(), &self.bytes)
    }
}

/// The JSON as received from a stored `body_format` and `body`; a body that
/// does not decode is [`StorageError::Corrupt`].
pub fn unpack(format: i64, bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
    match format {
        0 => Ok(bytes.to_vec()),
        1 => DECOMPRESSOR.with(|d| d.borrow_mut().decompress(bytes)),
        other => Err(StorageError::Corrupt(format!("unknown body format {other}"))),
    }
}

fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static DICT: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL))
}

fn decoder_dictionary() -> &'static DecoderDictionary<'static> {
    static DICT: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| DecoderDictionary::copy(DICTIONARY_V1))
}

/// One compression context per thread, the prepared dictionary shared.
struct Compressor(Option<zstd::bulk::Compressor<'static>>);

impl Compressor {
    fn compress(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        if self.0.is_none() {
            let mut c = zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary()).ok()?;
            c.include_checksum(false).ok()?;
            c.include_dictid(false).ok()?;
            c.include_contentsize(true).ok()?;
            self.0 = Some(c);
        }
        self.0.as_mut()?.compress(raw).ok()
    }
}

struct Decompressor(Option<zstd::bulk::Decompressor<'static>>);

impl Decompressor {
    fn decompress(&mut self, bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
        let corrupt = |e: std::io::Error| StorageError::Corrupt(format!("stored body does not decode: {e}"));
        if self.0.is_none() {
            self.0 = Some(
                zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dictionary()).map_err(corrupt)?,
            );
        }
        let d = self.0.as_mut().expect("set above");
        let size = zstd::zstd_safe::get_frame_content_size(bytes)
            .ok()
            .flatten()
            .ok_or_else(|| StorageError::Corrupt("stored body is not a zstd frame with its size".into()))?;
        let size = usize::try_from(size).ok().filter(|s| *s <= MAX_UNPACKED);
        let size =
            size.ok_or_else(|| StorageError::Corrupt("stored body claims an impossible size".into()))?;
        d.decompress(bytes, size).map_err(corrupt)
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Compressor> = const { RefCell::new(Compressor(None)) };
    static DECOMPRESSOR: RefCell<Decompressor> = const { RefCell::new(Decompressor(None)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/messages/valid-1.json");

    #[test]
    fn a_message_packs_small_and_unpacks_to_the_same_bytes() {
        let packed = StoredBody::pack(SAMPLE.as_bytes());
        assert_eq!(packed.format, BodyFormat::ZstdV1);
        assert!(packed.bytes.len() < SAMPLE.len() / 4, "{} bytes", packed.bytes.len());
        assert_eq!(packed.unpack().unwrap(), SAMPLE.as_bytes());
        assert_eq!(unpack(1, &packed.bytes).unwrap(), SAMPLE.as_bytes());
    }

    #[test]
    fn a_body_that_does_not_shrink_stays_raw() {
        let packed = StoredBody::pack(b"{}");
        assert_eq!(packed, StoredBody { format: BodyFormat::Raw, bytes: b"{}".to_vec() });
        assert_eq!(packed.unpack().unwrap(), b"{}");
    }

    #[test]
    fn corrupt_bodies_are_errors_not_panics() {
        let packed = StoredBody::pack(SAMPLE.as_bytes());
        let mut flipped = packed.bytes.clone();
        let last = flipped.len() - 1;
        flipped[last / 2] ^= 0xff;
        flipped[last] ^= 0xff;
        let mut truncated = packed.bytes.clone();
        truncated.truncate(packed.bytes.len() / 2);
        for (format, bytes) in
            [(1, flipped), (1, truncated), (1, b"not zstd".to_vec()), (1, Vec::new()), (7, packed.bytes)]
        {
            match unpack(format, &bytes) {
                Err(StorageError::Corrupt(_)) => {}
                Ok(out) => assert_ne!(out, SAMPLE.as_bytes(), "format {format} decoded a damaged body"),
                Err(other) => panic!("{other}"),
            }
        }
    }

    #[test]
    fn a_frame_claiming_a_huge_size_is_refused_before_allocating() {
        let mut frame = StoredBody::pack(SAMPLE.as_bytes()).bytes;
        // Frame header: magic (4), descriptor (1), then the content size.
        let descriptor = frame[4];
        assert_eq!(descriptor >> 6, 1, "2-byte content size field expected for a 718-byte body");
        frame[4] = (descriptor & 0x3f) | (3 << 6); // 8-byte content size
        let huge = u64::MAX.to_le_bytes();
        frame.splice(5..7, huge);
        assert!(matches!(unpack(1, &frame), Err(StorageError::Corrupt(_))));
    }
}
