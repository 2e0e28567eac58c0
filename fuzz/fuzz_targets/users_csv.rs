//! The users CSV import (`users::import_csv`, the original service's users
//! export) on arbitrary text, against a real, migrated SQLite database; each
//! run is rolled back so every input starts from an empty users table.
//!
//! Properties beyond "no panic":
//! - an import that succeeds reports at most one outcome per line after the
//!   header;
//! - every user it reports as created is in the database under that name,
//!   with an argon2 PHC hash and at least one role.
#![no_main]

use std::sync::{Mutex, OnceLock};

use energyload::config::StorageConfig;
use energyload::storage::Storage;
use energyload::storage::identity::user_by_name;
use energyload::users::{ImportOutcome, import_csv};
use libfuzzer_sys::fuzz_target;
use rusqlite::Connection;

/// One migrated database per fuzzing process, in the temp directory.
fn connection() -> &'static Mutex<Connection> {
    static CONN: OnceLock<Mutex<Connection>> = OnceLock::new();
    CONN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("energyload-fuzz-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = StorageConfig { data_dir: dir, ..StorageConfig::default() };
        let storage = Storage::open(&cfg).expect("open the fuzz database");
        storage.migrate().expect("migrate the fuzz database");
        Mutex::new(storage.open_connection().expect("a connection"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut conn = connection().lock().unwrap_or_else(|e| e.into_inner());
    let tx = conn.transaction().expect("begin");
    if let Ok(outcomes) = import_csv(&tx, text) {
        assert!(outcomes.len() <= text.split(['\n', '\r']).count());
        for outcome in &outcomes {
            if let ImportOutcome::Created(name) = outcome {
                let user = user_by_name(&tx, name).expect("query").expect("a created user is stored");
                assert!(user.password_hash.starts_with("$argon2"));
                assert!(!user.roles.is_empty());
            }
        }
    }
    tx.rollback().expect("rollback");
});
