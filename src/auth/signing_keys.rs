//! `SigningKeys`: the Ed25519 keys that sign access tokens, kept as files in
//! `<data_dir>/signing-keys/`, and their public half as a JWKS document.
//!
//! Each key is one PKCS#8 PEM file `<kid>.pem` (mode 0600, directory 0700),
//! readable by standard tools. The `kid` is a UUID v7, so it carries the
//! key's creation time and sorts by it: the newest key is the current one,
//! which signs; older keys only verify. A key stops signing when its
//! successor is created, so tokens signed by it are all expired by
//! `successor created + max token TTL + leeway`; until then it stays
//! published and verifiable, after that its file is deleted (pruned).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{Value, json};
use uuid::Uuid;

/// Name of the key directory inside the data directory.
pub const KEYS_DIR_NAME: &str = "signing-keys";

/// Clock skew tolerated on `exp` when verifying tokens, in seconds; old keys
/// are kept this much longer than the token TTL.
pub const LEEWAY_SECS: u64 = 60;

/// Why the key store could not be read or written. Messages name files,
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A file or directory of the key store could not be read or written.
    #[error("signing key store: cannot access {path}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `.pem` file in the key directory is not a valid Ed25519 key named
    /// by a UUID v7 kid.
    #[error("signing key store: {0} is not an Ed25519 PKCS#8 key named <uuid-v7>.pem")]
    InvalidKeyFile(PathBuf),
    /// The system's random number generator failed.
    #[error("signing key store: no randomness available")]
    Randomness,
    /// A freshly generated key could not be encoded as PKCS#8.
    #[error("signing key store: cannot encode a new key")]
    Encoding,
}

/// One key pair, ready to sign and verify.
struct KeyPair {
    kid: String,
    created_ms: u64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key, base64url without padding (the JWK's `x`).
    public_x: String,
}

/// The current signing key and the previous keys still valid for
/// verification. Built by [`SigningKeys::load_or_create`] or
/// [`SigningKeys::rotate`]; re-load to see a rotation made by another process.
pub struct SigningKeys {
    /// Oldest first; the last one is the current key. Never empty.
    keys: Vec<KeyPair>,
}

impl SigningKeys {
    /// Loads the keys under `<data_dir>/signing-keys/`, creating the directory
    /// and a first key when there is none, and deleting keys retired more
    /// than `max_token_ttl` + leeway ago.
    pub fn load_or_create(data_dir: &Path, max_token_ttl: Duration) -> Result<Self, KeyStoreError> {
        Self::load_at(data_dir, max_token_ttl, false, now_ms())
    }

    /// Adds a new current key (the previous one keeps verifying until its
    /// tokens have expired), prunes retired keys, and returns the new set.
    pub fn rotate(data_dir: &Path, max_token_ttl: Duration) -> Result<Self, KeyStoreError> {
        Self::load_at(data_dir, max_token_ttl, true, now_ms())
    }

    fn load_at(
        data_dir: &Path,
        max_token_ttl: Duration,
        add_key: bool,
        now_ms: u64,
    ) -> Result<Self, KeyStoreError> {
        let dir = data_dir.join(KEYS_DIR_NAME);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| KeyStoreError::Io { path: dir.clone(), source })?;
        let mut keys = read_keys(&dir)?;
        if add_key || keys.is_empty() {
            keys.push(create_key(&dir, now_ms.max(keys.last().map_or(0, |k| k.created_ms + 1)))?);
        }
        let retain_ms = (max_token_ttl.as_secs() + LEEWAY_SECS) * 1000;
        let retired: Vec<bool> = (0..keys.len())
            .map(|i| keys.get(i + 1).is_some_and(|next| next.created_ms + retain_ms < now_ms))
            .collect();
        let mut kept = Vec::with_capacity(keys.len());
        for (key, is_retired) in keys.into_iter().zip(retired) {
            if is_retired {
                let path = key_path(&dir, &key.kid);
                fs::remove_file(&path).map_err(|source| KeyStoreError::Io { path, source })?;
            } else {
                kept.push(key);
            }
        }
        Ok(Self { keys: kept })
    }

    /// The key id of the current signing key.
    pub fn current_kid(&self) -> &str {
        &self.current().kid
    }

    /// The key ids of every key that verifies, oldest first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.kid.as_str())
    }

    /// The current key's id and private key, for signing.
    pub fn signing_key(&self) -> (&str, &EncodingKey) {
        let current = self.current();
        (&current.kid, &current.encoding)
    }

    /// The public key with this id, if it is current or still valid.
    pub fn verifying_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.iter().find(|key| key.kid == kid).map(|key| &key.decoding)
    }

    /// The JWKS document served at `/.well-known/jwks.json`: every key that
    /// verifies, newest first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .rev()
            .map(|key| {
                json!({
                    "kty": "OKP", "crv": "Ed25519", "x": key.public_x,
                    "kid": key.kid, "alg": "EdDSA", "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    fn current(&self) -> &KeyPair {
        // `keys` is never empty: loading creates a key when there is none,
        // and the last (current) key is never pruned.
        &self.keys[self.keys.len() - 1]
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::clock::now_millis()).unwrap_or(0)
}

fn key_path(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.pem"))
}

/// Reads every `<kid>.pem` file, oldest first. Other files are ignored.
fn read_keys(dir: &Path) -> Result<Vec<KeyPair>, KeyStoreError> {
    let io_error = |source| KeyStoreError::Io { path: dir.to_path_buf(), source };
    let mut keys = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.extension().is_none_or(|ext| ext != "pem") {
            continue;
        }
        let key = read_key(&path)?;
        keys.insert((key.created_ms, key.kid.clone()), key);
    }
    Ok(keys.into_values().collect())
}

fn read_key(path: &Path) -> Result<KeyPair, KeyStoreError> {
    let invalid = || KeyStoreError::InvalidKeyFile(path.to_path_buf());
    let kid = path.file_stem().and_then(|stem| stem.to_str()).ok_or_else(invalid)?;
    let created_ms = Uuid::parse_str(kid)
        .ok()
        .filter(|uuid| uuid.get_version_num() == 7)
        .and_then(|uuid| uuid.get_timestamp())
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs * 1000 + u64::from(nanos / 1_000_000)
        })
        .ok_or_else(invalid)?;
    let pem =
        fs::read_to_string(path).map_err(|source| KeyStoreError::Io { path: path.to_path_buf(), source })?;
    let signing_key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| invalid())?;
    key_pair(kid.to_owned(), created_ms, &signing_key).ok_or_else(invalid)
}

/// Generates a key created at `created_ms` and writes it atomically: to a
/// temporary file with mode 0600, synced, then renamed into place.
fn create_key(dir: &Path, created_ms: u64) -> Result<KeyPair, KeyStoreError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| KeyStoreError::Randomness)?;
    let signing_key = SigningKey::from_bytes(&seed);
    let mut uuid_random = [0u8; 10];
    getrandom::fill(&mut uuid_random).map_err(|_| KeyStoreError::Randomness)?;
    let kid = uuid::Builder::from_unix_timestamp_millis(created_ms, &uuid_random).into_uuid().to_string();
    let pem = signing_key.to_pkcs8_pem(LineEnding::LF).map_err(|_| KeyStoreError::Encoding)?;

    let path = key_path(dir, &kid);
    let temporary = dir.join(format!(".{kid}.pem.tmp"));
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyStoreError::Io { path, source }
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(pem.as_bytes()).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
    key_pair(kid, created_ms, &signing_key).ok_or(KeyStoreError::Encoding)
}

fn key_pair(kid: String, created_ms: u64, signing_key: &SigningKey) -> Option<KeyPair> {
    let der = signing_key.to_pkcs8_der().ok()?;
    let public_x = URL_SAFE_NO_PAD.encode(signing_key.verifying_key().to_bytes());
    Some(KeyPair {
        kid,
        created_ms,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding: DecodingKey::from_ed_components(&public_x).ok()?,
        public_x,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TTL: Duration = Duration::from_secs(3600);
    const HOUR_MS: u64 = 3_600_000;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn pem_files(data_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(data_dir.join(KEYS_DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_first_start_creates_one_private_key_file() {
        let data = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        let dir = data.path().join(KEYS_DIR_NAME);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(pem_files(data.path()), vec![format!("{}.pem", keys.current_kid())]);
        let file = key_path(&dir, keys.current_kid());
        assert_eq!(mode(&file), 0o600);
        assert!(fs::read_to_string(file).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(Uuid::parse_str(keys.current_kid()).unwrap().get_version_num(), 7);
    }

    #[test]
    fn a_restart_loads_the_same_key() {
        let data = tempfile::tempdir().unwrap();
        let first = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        let again = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        assert_eq!(first.current_kid(), again.current_kid());
        assert_eq!(first.jwks(), again.jwks());
        assert_eq!(pem_files(data.path()).len(), 1);
    }

    #[test]
    fn the_jwks_lists_public_keys_only_in_okp_form() {
        let data = tempfile::tempdir().unwrap();
        let keys = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        let jwks = keys.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], keys.current_kid());
        assert_eq!(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(key.as_object().unwrap().len(), 6, "no private member such as d");
    }

    #[test]
    fn rotation_adds_a_current_key_and_keeps_the_old_one_verifying() {
        let data = tempfile::tempdir().unwrap();
        let old = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        let rotated = SigningKeys::rotate(data.path(), TTL).unwrap();
        assert_ne!(rotated.current_kid(), old.current_kid());
        assert_eq!(rotated.signing_key().0, rotated.current_kid());
        assert!(rotated.verifying_key(old.current_kid()).is_some());
        assert_eq!(rotated.kids().collect::<Vec<_>>(), vec![old.current_kid(), rotated.current_kid()]);
        let jwks = rotated.jwks();
        assert_eq!(jwks["keys"][0]["kid"], rotated.current_kid(), "newest first");
        assert_eq!(jwks["keys"][1]["kid"], old.current_kid());
        let reloaded = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        assert_eq!(reloaded.current_kid(), rotated.current_kid());
    }

    #[test]
    fn keys_retired_longer_than_the_ttl_are_pruned() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(KEYS_DIR_NAME);
        let now = now_ms();
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let ancient = create_key(&dir, now - 10 * HOUR_MS).unwrap().kid;
        let superseded_long_ago = create_key(&dir, now - 5 * HOUR_MS).unwrap().kid;
        let superseded_recently = create_key(&dir, now - 2 * HOUR_MS).unwrap().kid;
        let current = create_key(&dir, now - HOUR_MS / 2).unwrap().kid;

        let keys = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        assert_eq!(keys.current_kid(), current);
        assert!(keys.verifying_key(&ancient).is_none());
        assert!(keys.verifying_key(&superseded_long_ago).is_none(), "successor 2 h ago > 1 h TTL");
        assert!(keys.verifying_key(&superseded_recently).is_some(), "successor 30 min ago");
        assert_eq!(
            pem_files(data.path()),
            vec![format!("{superseded_recently}.pem"), format!("{current}.pem")]
        );
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_lone_old_key_stays_current() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(KEYS_DIR_NAME);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let old = create_key(&dir, now_ms() - 1000 * HOUR_MS).unwrap().kid;
        let keys = SigningKeys::load_or_create(data.path(), TTL).unwrap();
        assert_eq!(keys.current_kid(), old);
    }

    #[test]
    fn foreign_pem_files_are_refused_and_other_files_ignored() {
        let data = tempfile::tempdir().unwrap();
        SigningKeys::load_or_create(data.path(), TTL).unwrap();
        let dir = data.path().join(KEYS_DIR_NAME);
        fs::write(dir.join("README.txt"), "not a key").unwrap();
        assert!(SigningKeys::load_or_create(data.path(), TTL).is_ok());
        fs::write(dir.join("not-a-uuid.pem"), "junk").unwrap();
        let err = SigningKeys::load_or_create(data.path(), TTL).err().unwrap();
        assert!(matches!(err, KeyStoreError::InvalidKeyFile(_)));
        assert!(!err.to_string().contains("junk"));
    }
}
