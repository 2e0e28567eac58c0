//! `ChainKey`: the secret that keys the audit chain (HMAC-SHA256), kept
//! OUTSIDE the database in `<data_dir>/audit-chain.key` (mode 0600), like the
//! JWT signing keys. Whoever can write the database but not this file can no
//! longer rewrite events and recompute the chain.
//!
//! The file is created by the first event appended without one (on an
//! upgraded installation: the first event after the upgrade). It is text:
//!
//! ```text
//! # energyload audit chain key: back it up once, keep it with the data directory
//! created_ms=1796212800000
//! key=<64 hex digits>
//! ```
//!
//! `created_ms` is also a limit on the legacy part of a chain: an event
//! dated at or after the key's creation must carry an HMAC, whatever the
//! database says about the switch point (see `storage::audit`).
//!
//! A backup of the database alone keeps verifying with this file, which
//! stays in the data directory; a restore onto another machine needs the
//! file copied beside the database (see README, "Backups").

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use hmac::KeyInit;

use crate::storage::StorageError;

/// Name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "audit-chain.key";

/// The HMAC-SHA256 used for keyed chain links.
pub type ChainMac = hmac::Hmac<sha2::Sha256>;

/// The audit chain's key and when it was created.
#[derive(Clone)]
pub struct ChainKey {
    key: [u8; 32],
    created_ms: i64,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKey").field("key", &"<redacted>").field("created_ms", &self.created_ms).finish()
    }
}

impl ChainKey {
    /// A new random key created at `created_ms` (not written anywhere).
    pub fn generate(created_ms: i64) -> Result<Self, StorageError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| io_error("audit chain key: no randomness available", None))?;
        Ok(Self { key, created_ms })
    }

    /// When the key was created (Unix ms): events from then on must be keyed.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// A fresh HMAC-SHA256 instance under this key.
    pub fn mac(&self) -> ChainMac {
        <ChainMac as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// Reads the key file of `data_dir`; `None` when there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, StorageError> {
        let path = data_dir.join(KEY_FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => parse(&text).map(Some).ok_or_else(|| {
                io_error(&format!("audit chain key: {} is not a valid key file", path.display()), None)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&format!("audit chain key: cannot read {}", path.display()), Some(e))),
        }
    }

    /// Reads the key file of `data_dir`, creating it (0600) when missing.
    /// Two processes creating it at once agree on one key: the file appears
    /// atomically (hard link of a complete temporary file) or not at all.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, StorageError> {
        if let Some(key) = Self::load(data_dir)? {
            return Ok(key);
        }
        let key = Self::generate(crate::clock::now_millis())?;
        let path = data_dir.join(KEY_FILE_NAME);
        let tmp = data_dir.join(format!(".{KEY_FILE_NAME}.tmp-{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f =
                fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(key.to_file_text().as_bytes())?;
            f.sync_all()?;
            match fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        })();
        let _ = fs::remove_file(&tmp);
        written
            .map_err(|e| io_error(&format!("audit chain key: cannot create {}", path.display()), Some(e)))?;
        if let Ok(dir) = fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        tracing::info!(file = %path.display(), "created the audit chain key; back it up with the signing keys");
        Self::load(data_dir)?.ok_or_else(|| io_error("audit chain key: vanished after creation", None))
    }

    /// The key for appending to the database at `db_path`: loaded (or created)
    /// once per data directory per process, then kept in memory.
    pub fn for_database(db_path: &Path) -> Result<Arc<Self>, StorageError> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<ChainKey>>>> = OnceLock::new();
        let dir = data_dir_of(db_path)?;
        let cache = CACHE.get_or_init(Default::default);
        if let Some(key) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&dir) {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(Self::load_or_create(&dir)?);
        cache.lock().unwrap_or_else(|p| p.into_inner()).insert(dir, Arc::clone(&key));
        Ok(key)
    }

    fn to_file_text(&self) -> String {
        format!(
            "# energyload audit chain key: back it up once, keep it with the data directory\n\
             created_ms={}\nkey={}\n",
            self.created_ms,
            hex::encode(self.key)
        )
    }
}

/// The data directory of the database file `db_path`.
pub fn data_dir_of(db_path: &Path) -> Result<PathBuf, StorageError> {
    match db_path.parent() {
        Some(dir) if !db_path.as_os_str().is_empty() => {
            Ok(if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir.to_path_buf() })
        }
        _ => Err(io_error("audit chain key: the database has no file (in-memory)", None)),
    }
}

fn parse(text: &str) -> Option<ChainKey> {
    let (mut key, mut created_ms) = (None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.split_once('=')? {
            ("key", hex_key) => key = Some(<[u8; 32]>::try_from(hex::decode(hex_key).ok()?).ok()?),
            ("created_ms", ms) => created_ms = Some(ms.parse().ok()?),
            _ => return None,
        }
    }
    Some(ChainKey { key: key?, created_ms: created_ms? })
}

fn io_error(context: &str, source: Option<std::io::Error>) -> StorageError {
    StorageError::Io {
        context: context.to_string(),
        source: source.unwrap_or_else(|| std::io::Error::other("audit chain key")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_file_is_private_reloads_alike_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ChainKey::load(dir.path()).unwrap().is_none());
        let created = ChainKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ChainKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.key, created.key);
        assert_eq!(again.created_ms, created.created_ms);
        assert!(!format!("{created:?}").contains(&hex::encode(created.key)));
    }

    #[test]
    fn a_damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE_NAME), "key=abcd\ncreated_ms=1\n").unwrap();
        assert!(ChainKey::load(dir.path()).is_err());
        assert!(ChainKey::load_or_create(dir.path()).is_err());
    }
}
