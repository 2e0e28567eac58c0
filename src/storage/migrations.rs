//! Forward-only schema migrations embedded in the binary. The number of
//! applied migrations is the database's `PRAGMA user_version`; each migration
//! runs in its own transaction together with the version bump, with foreign
//! keys off (a migration may rebuild a table others refer to) and
//! `PRAGMA foreign_key_check` clean before its commit. Steps SQL cannot do
//! run after the SQL: packing the bodies a migration left raw
//! (`pack_raw_bodies`, in batches, resumable). Steps SQL needs Rust for run
//! inside it as SQL functions the runner registers on the connection
//! ([`register_functions`]: migration 9's `message_key_checked`, and the
//! storage's own `message_id`, so a database the runner migrated can be
//! queried as the pool's connections query it).

use rusqlite::{Connection, OptionalExtension, params};

use super::StorageError;
use super::message_key::{self, message_key, stored_message_id};
use super::stored_body::StoredBody;

/// The migrations, in order. Never edit a released one: add a new file.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_meta.sql"),
    include_str!("migrations/0002_identity.sql"),
    include_str!("migrations/0003_messages.sql"),
    include_str!("migrations/0004_audit_keyed.sql"),
    include_str!("migrations/0005_user_locks.sql"),
    include_str!("migrations/0006_api_key_names.sql"),
    include_str!("migrations/0007_compact_messages.sql"),
    include_str!("migrations/0008_failed_list_indexes.sql"),
    include_str!("migrations/0009_message_key.sql"),
];

/// Raw bodies packed per transaction after migration 7.
const PACK_BATCH: i64 = 2_000;

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
    register_functions(conn)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().take(wanted).skip(before.current as usize) {
        let version = index as u32 + 1;
        // A no-op inside a transaction, so around it.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let applied = apply_one(conn, sql, version);
        conn.pragma_update(None, "foreign_keys", "ON")?;
        applied?;
        tracing::info!(version, "applied schema migration");
    }
    pack_raw_bodies(conn)?;
    status(conn)
}

/// The SQL functions migrations call, and the storage's own (see the module
/// header).
fn register_functions(conn: &Connection) -> Result<(), StorageError> {
    use rusqlite::functions::FunctionFlags;
    message_key::register_functions(conn)?;
    // message_key_checked(id, message_id, body_format, body): the key of
    // `message_id`, or an error when the row's body does not carry it.
    conn.create_scalar_function("message_key_checked", 4, FunctionFlags::SQLITE_UTF8, |ctx| {
        let id: i64 = ctx.get(0)?;
        let message_id: String = ctx.get(1)?;
        let format: i64 = ctx.get(2)?;
        let body = ctx.get_raw(3).as_blob().map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
        if stored_message_id(format, body).as_deref() != Some(message_id.as_str()) {
            return Err(rusqlite::Error::UserFunctionError(
                format!(
                    "message {id}: its stored body does not carry its messageId {message_id:?}, \
                     which schema 9 keeps only in the body"
                )
                .into(),
            ));
        }
        Ok(message_key(&message_id))
    })?;
    Ok(())
}

fn apply_one(conn: &mut Connection, sql: &str, version: u32) -> Result<(), StorageError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(sql)?;
    // The rowid is NULL for a table without rowid.
    let violation: Option<(String, Option<i64>, String)> =
        tx.query_row("PRAGMA foreign_key_check", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
    if let Some((table, rowid, parent)) = violation {
        let row = rowid.map_or_else(String::new, |r| format!(" row {r}"));
        return Err(StorageError::Corrupt(format!(
            "migration {version} left a {table}{row} referring to a missing {parent} row"
        )));
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()?;
    Ok(())
}

/// Packs the bodies migration 7 copied raw (`body_format` 0), oldest first,
/// [`PACK_BATCH`] rows per transaction; `meta.pack_raw_bodies_after` holds
/// the last id done, so an interrupted run resumes, and goes once all are
/// packed. A body that does not shrink stays raw (format 0 is readable).
pub(super) fn pack_raw_bodies(conn: &mut Connection) -> Result<(), StorageError> {
    let read_mark = |c: &Connection| -> Result<Option<i64>, StorageError> {
        let mark: Option<String> = c
            .query_row("SELECT value FROM meta WHERE key = 'pack_raw_bodies_after'", [], |r| r.get(0))
            .optional()?;
        Ok(mark.and_then(|m| m.parse().ok()))
    };
    let Some(mut after) = read_mark(conn)? else { return Ok(()) };
    let mut packed = 0usize;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<(i64, Vec<u8>)> = tx
            .prepare("SELECT id, body FROM messages WHERE id > ?1 AND body_format = 0 ORDER BY id LIMIT ?2")?
            .query_map(params![after, PACK_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        {
            let mut update = tx.prepare("UPDATE messages SET body_format = ?2, body = ?3 WHERE id = ?1")?;
            for (id, raw) in &rows {
                let body = StoredBody::pack(raw);
                update.execute(params![id, body.format.code(), body.bytes])?;
            }
        }
        packed += rows.len();
        let done = (rows.len() as i64) < PACK_BATCH;
        if done {
            tx.execute("DELETE FROM meta WHERE key = 'pack_raw_bodies_after'", [])?;
        } else {
            after = rows.last().map_or(after, |r| r.0);
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'pack_raw_bodies_after'",
                [after.to_string()],
            )?;
        }
        tx.commit()?;
        if done {
            if packed > 0 {
                tracing::info!(packed, "packed stored message bodies");
            }
            return Ok(());
        }
    }
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
    fn duplicate_active_key_names_are_renamed_and_then_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        apply_up_to(&mut c, 4).unwrap();
        let key = |id: &str, name: &str, created: i64, revoked: Option<i64>| {
            c.execute(
                "INSERT INTO api_keys (id, name, prefix, key_hash, created_at, revoked_at)
                 VALUES (?1, ?2, 'p', randomblob(16), ?3, ?4)",
                rusqlite::params![id, name, created, revoked],
            )
            .unwrap();
        };
        key("a", "feed", 1, None);
        key("b", " Feed ", 2, None);
        key("c", "FEED", 2, None);
        key("d", "feed", 0, Some(5));
        key("e", "  ", 3, None);
        key("f", "other", 3, None);
        apply(&mut c).unwrap();
        let names: Vec<(String, String)> = c
            .prepare("SELECT id, name FROM api_keys ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected = [
            ("a", "feed"),
            ("b", "Feed (duplicate b)"),
            ("c", "FEED (duplicate c)"),
            ("d", "feed"),
            ("e", "unnamed e"),
            ("f", "other"),
        ];
        assert_eq!(names, expected.map(|(i, n)| (i.to_string(), n.to_string())));
        let again = c.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, created_at) VALUES ('g', 'Other', 'p', randomblob(16), 9)",
            [],
        );
        let refused = again.unwrap_err().to_string();
        assert!(refused.ends_with("UNIQUE constraint failed: api_keys.name"), "{refused}");
        let this = MIGRATIONS.iter().find(|m| m.contains("api_keys_active_name")).unwrap();
        c.execute_batch(this).expect("the migration runs again harmlessly");
    }

    fn v6_message(c: &Connection, id: i64, status: &str, body: &[u8]) {
        c.execute(
            "INSERT INTO messages (id, message_id, status, meter_id, site_id, local_market, data_feed_type,
                                   datapoints, attempts, cycle_started, body, created_at, updated_at)
             VALUES (?1, 'm' || ?1, ?2, 'M1', 'S1', 'lu', 'electricity', 4, 1, 5, ?3, 5, 6)",
            params![id, status, body],
        )
        .unwrap();
    }

    #[test]
    fn migration_7_converts_messages_and_packs_their_bodies() {
        let mut c = Connection::open_in_memory().unwrap();
        apply_up_to(&mut c, 6).unwrap();
        let body = include_bytes!("../../tests/fixtures/messages/valid-1.json");
        v6_message(&c, 1 << 16, "delivered", body);
        v6_message(&c, 2 << 16, "rejected", b"{}");
        c.execute(
            "INSERT INTO delivery_attempts (message, at, outcome, duration_ms) VALUES (?1, 7, 'retry', 1), (?1, 8, 'delivered', 1)",
            [1 << 16],
        )
        .unwrap();
        // Up to 8: these bodies do not all carry their messageId, which
        // migration 9 requires (tested below).
        apply_up_to(&mut c, 8).unwrap();
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = c
            .prepare("SELECT status, meter, body_format, body FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!((rows[0].0, rows[0].2), (2, 1));
        assert!(rows[0].3.len() < body.len() / 4);
        assert_eq!(super::super::stored_body::unpack(rows[0].2, &rows[0].3).unwrap(), body);
        assert_eq!((rows[1].0, rows[1].2, rows[1].3.as_slice()), (4, 0, &b"{}"[..]), "too small to pack");
        assert_eq!(rows[0].1, rows[1].1, "one meter row for both");
        let attempts: Vec<(i64, i64)> = c
            .prepare("SELECT attempt, outcome FROM delivery_attempts ORDER BY attempt")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(attempts, [(1, 1), (2, 0)]);
        let mark: i64 = c
            .query_row("SELECT count(*) FROM meta WHERE key = 'pack_raw_bodies_after'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mark, 0);
    }

    fn v8_message(c: &Connection, id: i64, message_id: &str, body: &StoredBody) {
        super::super::messages::insert_test_dimensions(c);
        c.execute(
            "INSERT INTO messages (id, message_id, status, meter, site, feed, datapoints, attempts, cycle_started,
                                   body_format, body, updated_at, next_attempt_at, error_code)
             VALUES (?1, ?2, 3, 1, 1, 1, 4, 2, 5, ?3, ?4, 6, NULL, 'E102')",
            params![id, message_id, body.format.code(), body.bytes],
        )
        .unwrap();
    }

    fn index_names(c: &Connection) -> Vec<String> {
        c.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn migration_9_keeps_the_message_id_only_in_the_body_and_keys_rows_by_its_hash() {
        let mut c = Connection::open_in_memory().unwrap();
        apply_up_to(&mut c, 8).unwrap();
        let before = index_names(&c);
        let sample = include_bytes!("../../tests/fixtures/messages/valid-1.json");
        let packed = StoredBody::pack(sample);
        assert_eq!(packed.format.code(), 1);
        let escaped = br#"{"header":{"messageId":"a\"b\u00e4"}}"#;
        let raw = StoredBody { format: super::super::stored_body::BodyFormat::Raw, bytes: escaped.to_vec() };
        v8_message(&c, 1 << 16, "electricity_lu_20210131T0000", &packed);
        v8_message(&c, 2 << 16, "a\"bä", &raw);
        c.execute(
            "INSERT INTO delivery_attempts (message, attempt, at, outcome, duration_ms) VALUES (?1, 1, 7, 2, 1)",
            [2 << 16],
        )
        .unwrap();
        apply(&mut c).unwrap();

        /// id, message_key, message_id(…), status, attempts, error_code, body
        type Row = (i64, i64, String, i64, i64, Option<String>, Vec<u8>);
        let rows: Vec<Row> = c
            .prepare(
                "SELECT id, message_key, message_id(body_format, body), status, attempts, error_code, body
                 FROM messages ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected_ids = ["electricity_lu_20210131T0000", "a\"bä"];
        assert_eq!(rows.len(), 2);
        for (row, (id, message_id)) in
            rows.iter().zip([(1 << 16, expected_ids[0]), (2 << 16, expected_ids[1])])
        {
            assert_eq!((row.0, row.1, row.2.as_str()), (id, message_key(message_id), message_id));
            assert_eq!((row.3, row.4, row.5.as_deref()), (3, 2, Some("E102")), "the rest of the row is kept");
        }
        assert_eq!(rows[0].6, packed.bytes, "bodies are copied as they are");
        assert_eq!(rows[1].6, escaped);
        let attempts: i64 = c.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get(0)).unwrap();
        assert_eq!(attempts, 1, "attempts keep their message");

        let columns: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('messages')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(columns.contains(&"message_key".to_owned()) && !columns.contains(&"message_id".to_owned()));
        let after = index_names(&c);
        let mut expected: Vec<String> = before
            .into_iter()
            .filter(|n| n != "messages_by_message_id")
            .chain(["messages_by_message_key".into()])
            .collect();
        expected.sort();
        assert_eq!(after, expected, "every other index is rebuilt");
        let unique: i64 = c
            .query_row(
                "SELECT \"unique\" FROM pragma_index_list('messages') WHERE name = 'messages_by_message_key'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unique, 0, "two messageIds may share a key");
    }

    #[test]
    fn migration_9_refuses_a_row_whose_body_does_not_carry_its_message_id() {
        let mut c = Connection::open_in_memory().unwrap();
        apply_up_to(&mut c, 8).unwrap();
        let body = StoredBody::pack(include_bytes!("../../tests/fixtures/messages/valid-1.json"));
        v8_message(&c, 1 << 16, "electricity_lu_20210131T0000", &body);
        v8_message(&c, 2 << 16, "another-id", &body);
        let refused = apply(&mut c).unwrap_err().to_string();
        assert!(refused.contains("message 131072") && refused.contains("another-id"), "{refused}");
        assert_eq!(status(&c).unwrap().current, 8, "rolled back");
        let kept: i64 = c
            .query_row("SELECT count(*) FROM messages WHERE message_id = 'another-id'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "the messageId column is still there");
    }

    #[test]
    fn a_migration_leaving_a_dangling_reference_is_refused_and_not_applied() {
        let mut c = Connection::open_in_memory().unwrap();
        apply_up_to(&mut c, 6).unwrap();
        c.pragma_update(None, "foreign_keys", "OFF").unwrap();
        c.execute(
            "INSERT INTO delivery_attempts (message, at, outcome, duration_ms) VALUES (999, 7, 'retry', 1)",
            [],
        )
        .unwrap();
        let refused = apply(&mut c).unwrap_err();
        assert!(
            matches!(refused, StorageError::Corrupt(ref m) if m.contains("delivery_attempts")),
            "{refused}"
        );
        assert_eq!(status(&c).unwrap().current, 6, "rolled back");
    }

    #[test]
    fn refuses_a_newer_database() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
        assert!(matches!(apply(&mut c), Err(StorageError::TooNew { .. })));
    }
}
