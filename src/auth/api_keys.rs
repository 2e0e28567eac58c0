//! API keys: generation, the public display prefix, and the hash that is
//! the only thing stored.
//!
//! A key reads `el_<id>_<secret>`: `el_` marks it as an energyload key (easy
//! to spot in a leaked config or by secret scanners), `<id>` is 8 random hex
//! characters shown in listings and audit rows (`el_<id>`, the prefix), and
//! `<secret>` is 32 random bytes (256 bits) in unpadded base64url.
//!
//! Stored hash: plain SHA-256 of the whole key. Slow, salted hashes such as
//! argon2 exist to protect low-entropy secrets (passwords) from guessing; a
//! 256-bit random secret cannot be guessed from its SHA-256 however fast the
//! hash is, and no salt is needed since no two keys share a secret and
//! precomputed tables over a 2^256 space are impossible. A fast,
//! deterministic hash is also what the hot path needs: the server hashes the
//! presented key (about a microsecond) and looks it up in an in-memory map,
//! with no per-request database round trip and no argon2 cost per request.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const KEY_MARKER: &str = "el_";

const ID_CHARS: usize = 8;
const SECRET_BYTES: usize = 32;
/// Unpadded base64url length of [`SECRET_BYTES`].
const SECRET_CHARS: usize = 43;
const KEY_CHARS: usize = KEY_MARKER.len() + ID_CHARS + 1 + SECRET_CHARS;

/// Why a key could not be made or read. Messages never contain a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// A presented key does not have the `el_<id>_<secret>` shape.
    #[error("API key is malformed")]
    Malformed,
    /// A stored hash is not 64 hex characters or 32 bytes.
    #[error("stored API key hash is malformed")]
    MalformedHash,
    /// The system's random number generator failed.
    #[error("no randomness available to generate an API key")]
    Randomness,
}

/// A freshly generated key. The full key is shown to its creator once and
/// then dropped; only [`NewApiKey::prefix`] and [`NewApiKey::hash`] are
/// stored. `Debug` hides the key.
pub struct NewApiKey {
    key: String,
    hash: KeyHash,
}

impl NewApiKey {
    /// Generates a key from the operating system's random number generator.
    pub fn generate() -> Result<Self, ApiKeyError> {
        let mut random = [0u8; ID_CHARS / 2 + SECRET_BYTES];
        getrandom::fill(&mut random).map_err(|_| ApiKeyError::Randomness)?;
        let (id_bytes, secret) = random.split_at(ID_CHARS / 2);
        let id: String = id_bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let key = format!("{KEY_MARKER}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
        let hash = KeyHash::of(&key);
        Ok(Self { key, hash })
    }

    /// The full key, to show once to its creator. Never log or store it.
    pub fn expose(&self) -> &str {
        &self.key
    }

    /// The display prefix, `el_<id>`, safe to store, list and log.
    pub fn prefix(&self) -> &str {
        &self.key[..KEY_MARKER.len() + ID_CHARS]
    }

    /// The hash to store.
    pub fn hash(&self) -> KeyHash {
        self.hash
    }
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewApiKey({}_<redacted>)", self.prefix())
    }
}

/// The display prefix (`el_<id>`) of a presented key, if it is well formed;
/// safe to put in audit rows and logs.
pub fn prefix(presented: &str) -> Option<&str> {
    is_well_formed(presented).then(|| &presented[..KEY_MARKER.len() + ID_CHARS])
}

/// Whether a presented key has the `el_<8 hex>_<43 base64url>` shape.
/// Checking this first keeps junk out of lookups and audit detail.
pub fn is_well_formed(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(KEY_MARKER) else {
        return false;
    };
    let Some((id, secret)) = rest.split_at_checked(ID_CHARS) else {
        return false;
    };
    let Some(secret) = secret.strip_prefix('_') else {
        return false;
    };
    presented.len() == KEY_CHARS
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 of a key: what is stored, and what a presented key is looked
/// up by. Equality is constant-time. `Debug` shows only the first 4 bytes.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of any text (a presented key, well formed or not).
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    /// The hash of a presented key, refusing a malformed one.
    pub fn of_presented(presented: &str) -> Result<Self, ApiKeyError> {
        if is_well_formed(presented) { Ok(Self::of(presented)) } else { Err(ApiKeyError::Malformed) }
    }

    /// Reads a hash stored as 64 lowercase or uppercase hex characters.
    pub fn from_hex(hex: &str) -> Result<Self, ApiKeyError> {
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(ApiKeyError::MalformedHash);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| ApiKeyError::MalformedHash)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| ApiKeyError::MalformedHash)?;
        }
        Ok(Self(bytes))
    }

    /// Reads a hash stored as its 32 raw bytes (a BLOB column).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ApiKeyError> {
        <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| ApiKeyError::MalformedHash)
    }

    /// The hash as 64 lowercase hex characters, for storage.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` is the key this hash was made from, compared in
    /// constant time.
    pub fn matches(&self, presented: &str) -> bool {
        *self == Self::of(presented)
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = NewApiKey::generate().unwrap();
        let text = key.expose();
        assert_eq!(text.len(), 55);
        assert!(text.starts_with("el_"));
        assert!(is_well_formed(text), "{text}");
        assert_eq!(key.prefix(), &text[..11]);
        assert_eq!(prefix(text), Some(key.prefix()));
        assert_eq!(&text[11..12], "_");
    }

    #[test]
    fn the_secret_part_carries_256_random_bits() {
        let key = NewApiKey::generate().unwrap();
        let secret = URL_SAFE_NO_PAD.decode(&key.expose()[12..]).unwrap();
        assert_eq!(secret.len(), 32);
        let keys: HashSet<String> =
            (0..200).map(|_| NewApiKey::generate().unwrap().expose().to_owned()).collect();
        assert_eq!(keys.len(), 200);
        let secrets: HashSet<&str> = keys.iter().map(|k| &k[12..]).collect();
        assert_eq!(secrets.len(), 200);
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_key() {
        let key = NewApiKey::generate().unwrap();
        let expected: [u8; 32] = Sha256::digest(key.expose().as_bytes()).into();
        assert_eq!(key.hash().as_bytes(), &expected);
        assert!(key.hash().matches(key.expose()));
        assert_eq!(KeyHash::of_presented(key.expose()), Ok(key.hash()));
        let other = NewApiKey::generate().unwrap();
        assert!(!key.hash().matches(other.expose()));
        assert_ne!(key.hash(), other.hash());
        // Known vector: SHA-256("abc").
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = NewApiKey::generate().unwrap().hash();
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(KeyHash::from_hex(&hex), Ok(hash));
        assert_eq!(KeyHash::from_hex(&hex.to_uppercase()), Ok(hash));
        assert_eq!(KeyHash::from_bytes(hash.as_bytes()), Ok(hash));
        assert_eq!(KeyHash::from_bytes(&hash.as_bytes()[..31]), Err(ApiKeyError::MalformedHash));
        for bad in ["", "abc", &hex[..63], &format!("{}zz", &hex[..62]), &"é".repeat(32)] {
            assert_eq!(KeyHash::from_hex(bad), Err(ApiKeyError::MalformedHash), "{bad}");
        }
    }

    #[test]
    fn malformed_presented_keys_are_refused() {
        let good = NewApiKey::generate().unwrap().expose().to_owned();
        let bad = [
            String::new(),
            "el_".into(),
            good[..54].into(),
            format!("{good}A"),
            good.replacen("el_", "xx_", 1),
            format!("el_ABCDEF12{}", &good[11..]),
            format!("{}-{}", &good[..11], &good[12..]),
            format!("{}!", &good[..54]),
            format!("el_1234567é{}", &good[12..53]),
        ];
        for key in &bad {
            assert!(!is_well_formed(key), "{key}");
            assert_eq!(KeyHash::of_presented(key), Err(ApiKeyError::Malformed));
            assert_eq!(prefix(key), None);
        }
    }

    #[test]
    fn nothing_secret_shows_in_debug_or_errors() {
        let key = NewApiKey::generate().unwrap();
        let secret = &key.expose()[12..];
        let debug = format!("{key:?} {:?}", key.hash());
        assert!(!debug.contains(secret) && !debug.contains(&key.hash().to_hex()));
        assert!(debug.contains(key.prefix()));
        let err = KeyHash::of_presented(&key.expose()[..20]).unwrap_err();
        assert!(!err.to_string().contains(key.prefix()));
    }
}
