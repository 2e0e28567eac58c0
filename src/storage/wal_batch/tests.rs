//! Tests for the WAL batching VFS: what one connection commits through it,
//! other connections (default VFS) read back at once and intact, across
//! commits larger than its buffer and one write call, checkpoints and WAL
//! restarts; and the storage layer uses it only under `synchronous=FULL`.

use std::ffi::{CStr, c_void};

use rusqlite::{Connection, OpenFlags, ffi, params};
use tempfile::TempDir;

use super::*;
use crate::config::{StorageConfig, Synchronous};
use crate::storage::Storage;

/// The payload stored for row `id`: its length varies, its bytes depend on
/// the id, so a stale or torn page cannot pass for it.
fn payload(id: i64) -> Vec<u8> {
    let len = 50 + (id as usize * 7919) % 3000;
    (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
}

/// The name of the VFS a connection was opened with.
fn vfs_name(c: &Connection) -> String {
    let mut vfs: *mut ffi::sqlite3_vfs = ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_VFS_POINTER writes the connection's VFS (static,
    // registered) to the pointer passed.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            c.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_VFS_POINTER,
            (&raw mut vfs).cast::<c_void>(),
        );
        assert_eq!(rc, ffi::SQLITE_OK);
        CStr::from_ptr((*vfs).zName).to_string_lossy().into_owned()
    }
}

fn open_batching(path: &std::path::Path) -> Connection {
    register().unwrap();
    let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c
}

#[test]
fn commits_are_read_back_intact_by_other_connections_at_once() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("t.db");
    let mut writer = open_batching(&path);
    assert_eq!(vfs_name(&writer), VFS_NAME.to_str().unwrap());
    writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)").unwrap();
    let reader = Connection::open(&path).unwrap();
    assert_eq!(vfs_name(&reader), "unix");

    let mut next = 1_i64;
    // Transactions of 1 to ~3,000 rows: the largest hold ~4.5 MiB of pages,
    // past both the buffer cap and the unix VFS's 128 KiB per write.
    for round in 0..60_i64 {
        let rows = match round % 6 {
            0 => 3000,
            1 => 1,
            2 => 40,
            _ => 1 + round * 5,
        };
        let first = next;
        let tx = writer.transaction().unwrap();
        for _ in 0..rows {
            tx.execute("INSERT INTO t (id, payload) VALUES (?1, ?2)", params![next, payload(next)]).unwrap();
            next += 1;
        }
        tx.commit().unwrap();

        let count: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(count, next - 1, "round {round}: every committed row is visible");
        let mut stmt = reader.prepare("SELECT id, payload FROM t WHERE id >= ?1").unwrap();
        let rows = stmt.query_map([first], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap();
        for row in rows {
            let (id, bytes) = row.unwrap();
            assert!(bytes == payload(id), "round {round}: row {id} reads back as written");
        }
        if round % 10 == 9 {
            // Copy the WAL into the database and let the next commit
            // restart the WAL from its start (overwriting earlier frames).
            let (busy, _, _): (i64, i64, i64) = writer
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            assert_eq!(busy, 0);
        }
    }
    drop(writer);

    let check: String = reader.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(reader);
    let reopened = Connection::open(&path).unwrap();
    let mut stmt = reopened.prepare("SELECT id, payload FROM t ORDER BY id").unwrap();
    let mut seen = 0_i64;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap() {
        let (id, bytes) = row.unwrap();
        seen += 1;
        assert_eq!(id, seen);
        assert!(bytes == payload(id), "row {id} survives the close");
    }
    assert_eq!(seen, next - 1);
}

#[test]
fn a_rolled_back_transaction_leaves_no_trace() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("t.db");
    let mut writer = open_batching(&path);
    // A small page cache makes SQLite spill frames of the open transaction
    // into the WAL before the rollback.
    writer.pragma_update(None, "cache_size", 10).unwrap();
    writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)").unwrap();
    writer.execute("INSERT INTO t VALUES (1, ?1)", [payload(1)]).unwrap();
    let tx = writer.transaction().unwrap();
    for id in 2..2000_i64 {
        tx.execute("INSERT INTO t VALUES (?1, ?2)", params![id, payload(id)]).unwrap();
    }
    tx.rollback().unwrap();
    writer.execute("INSERT INTO t VALUES (2, ?1)", [payload(2)]).unwrap();

    let reader = Connection::open(&path).unwrap();
    let ids: Vec<i64> = reader
        .prepare("SELECT id FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, vec![1, 2]);
    let check: String = reader.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn storage_batches_the_writer_only_under_full_sync() {
    for (sync, expected) in [(Synchronous::Full, VFS_NAME.to_str().unwrap()), (Synchronous::Normal, "unix")] {
        let tmp = TempDir::new().unwrap();
        let cfg =
            StorageConfig { data_dir: tmp.path().join("data"), synchronous: sync, ..Default::default() };
        let storage = Storage::open(&cfg).unwrap();
        storage.migrate().unwrap();
        assert_eq!(vfs_name(&storage.open_writer_connection().unwrap()), expected, "{sync:?}");
        assert_eq!(vfs_name(&storage.open_connection().unwrap()), "unix", "{sync:?}: other connections");
    }
}
