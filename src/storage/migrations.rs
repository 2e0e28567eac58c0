//! Forward-only schema migrations embedded in the binary. The number of
//! applied migrations is the database's `PRAGMA user_version`; each migration
//! runs in its own transaction together with the version bump.

use rusqlite::Connection;

use super::StorageError;

/// The migrations, in order. Never edit a released one: add a new file.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_meta.sql"),
    include_str!("migrations/0002_identity.sql"),
    include_str!("migrations/0003_messages.sql"),
    include_str!("migrations/0004_audit_keyed.sql"),
    include_str!("migrations/0005_user_locks.sql"),
];

/// The schema version this binary writes.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Where a database stands relative to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The database's version.
    pub current: u32,
    /// This binary's version.
    pub latest: u32,
}

impl SchemaStatus {
    /// True when migrations remain to be applied.
    pub fn pending(&self) -> bool {
        self.current < self.latest
    }
}

/// Reads the database's schema version.
pub fn status(conn: &Connection) -> Result<SchemaStatus, StorageError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(SchemaStatus { current, latest: LATEST_VERSION })
}

/// Applies every pending migration.
pub fn apply(conn: &mut Connection) -> Result<SchemaStatus, StorageError> {
    apply_up_to(conn, LATEST_VERSION)
}

/// Applies the pending migrations up to schema version `target` only, so a
/// database can be built as an older binary left it (the upgrade fixtures
/// in `tests/fixtures/schema/`). Refuses a database newer than this binary.
pub fn apply_up_to(conn: &mut Connection, target: u32) -> Result<SchemaStatus, StorageError> {
    let before = status(conn)?;
    if before.current > before.latest {
        return Err(StorageError::TooNew { found: before.current, supported: before.latest });
    }
    let wanted = target.min(LATEST_VERSION) as usize;
    for (index, sql) in MIGRATIONS.iter().enumerate().take(wanted).skip(before.current as usize) {
        let version = index as u32 + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    status(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_to_latest_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(status(&c).unwrap().current, 0);
        let s = apply(&mut c).unwrap();
        assert_eq!(s.current, LATEST_VERSION);
        assert!(!s.pending());
        assert_eq!(apply(&mut c).unwrap(), s);
    }

    #[test]
    fn stops_at_the_requested_version_and_resumes_from_it() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(apply_up_to(&mut c, 1).unwrap().current, 1);
        let tables: i64 =
            c.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1, "only the meta table at version 1");
        assert_eq!(apply(&mut c).unwrap().current, LATEST_VERSION);
    }

    #[test]
    fn refuses_a_newer_database() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
        assert!(matches!(apply(&mut c), Err(StorageError::TooNew { .. })));
    }
}
