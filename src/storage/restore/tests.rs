//! Unit tests of the restore swap: what goes aside, what stays untouched.

use std::path::Path;

use rusqlite::Connection;

use super::*;

/// A database at `path` migrated to `version`, with `meta('marker') = marker`.
fn database(path: &Path, version: u32, marker: &str) {
    let mut c = Connection::open(path).unwrap();
    migrations::apply_up_to(&mut c, version).unwrap();
    c.execute("INSERT INTO meta (key, value) VALUES ('marker', ?1)", [marker]).unwrap();
}

fn marker(path: &Path) -> String {
    let c = Connection::open(path).unwrap();
    c.query_row("SELECT value FROM meta WHERE key = 'marker'", [], |r| r.get(0)).unwrap()
}

fn no_callback(_: &mut Connection, _: &RestorePlan) -> Result<(), StorageError> {
    Ok(())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

#[test]
fn the_old_wal_goes_aside_with_its_database_and_never_meets_the_restored_one() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // A server that crashed: its last commit is only in the WAL.
    let crashed = work.path().join("crashed.db");
    database(&crashed, LATEST, "old");
    let c = Connection::open(&crashed).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.execute("UPDATE meta SET value = 'old-in-wal' WHERE key = 'marker'", []).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        std::fs::copy(with_suffix(&crashed, suffix), with_suffix(&data.path().join(DB_FILE), suffix))
            .unwrap();
    }
    std::mem::forget(c);
    let backup = work.path().join("backup.db");
    database(&backup, LATEST, "backup");

    let lock = DataDirLock::acquire(data.path()).unwrap();
    let report = restore(&lock, &backup, no_callback).unwrap();

    let installed = data.path().join(DB_FILE);
    assert_eq!(marker(&installed), "backup");
    let aside = report.plan.kept_aside.expect("the old database is kept");
    assert!(report.aside_standalone);
    assert!(!with_suffix(&aside, "-wal").exists(), "the WAL was folded into the kept file");
    let copy = work.path().join("aside-copy.db");
    std::fs::copy(&aside, &copy).unwrap();
    assert_eq!(marker(&copy), "old-in-wal", "the kept file holds the last commit on its own");
    let names = entries(data.path());
    assert!(names.iter().all(|n| !n.contains("restoring")), "no staging file left: {names:?}");
}

#[test]
fn an_older_backup_is_migrated_and_the_callback_writes_into_it() {
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("v1.db");
    database(&backup, 1, "v1");
    let lock = DataDirLock::acquire(work.path()).unwrap();
    let report = restore(&lock, &backup, |conn, plan| {
        assert_eq!(plan.backup_version, 1);
        assert_eq!(plan.kept_aside, None);
        conn.execute("INSERT INTO meta (key, value) VALUES ('callback', 'ran')", [])?;
        Ok::<_, StorageError>(())
    })
    .unwrap();
    assert_eq!(report.schema_version, LATEST);
    let c = Connection::open(work.path().join(DB_FILE)).unwrap();
    let ran: String = c.query_row("SELECT value FROM meta WHERE key = 'callback'", [], |r| r.get(0)).unwrap();
    assert_eq!(ran, "ran");
    assert_eq!(marker(&work.path().join(DB_FILE)), "v1");
}

#[test]
fn a_refused_file_or_callback_leaves_the_directory_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    database(&data.path().join(DB_FILE), LATEST, "current");
    let before = entries(data.path());
    let garbage = work.path().join("garbage.db");
    std::fs::write(&garbage, b"SQLite format 3\0 and then nothing a database would hold").unwrap();
    let foreign = work.path().join("foreign.db");
    Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let newer = work.path().join("newer.db");
    database(&newer, LATEST, "newer");
    Connection::open(&newer).unwrap().pragma_update(None, "user_version", LATEST + 1).unwrap();
    let with_wal = work.path().join("with-wal.db");
    database(&with_wal, LATEST, "committed");
    let live = Connection::open(&with_wal).unwrap();
    live.pragma_update(None, "journal_mode", "WAL").unwrap();
    live.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    live.execute("UPDATE meta SET value = 'only in the wal' WHERE key = 'marker'", []).unwrap();
    std::mem::forget(live);
    let fine = work.path().join("fine.db");
    database(&fine, LATEST, "fine");

    let lock = DataDirLock::acquire(data.path()).unwrap();
    let refusals = [
        (&garbage, "cannot be"),
        (&foreign, "no meta table"),
        (&newer, "is newer"),
        (&with_wal, "-wal beside it"),
    ];
    for (file, expected) in refusals {
        let err = restore(&lock, file, no_callback).unwrap_err().to_string();
        assert!(err.contains(expected), "{}: {err}", file.display());
    }
    let refused = restore(&lock, &fine, |_, _| Err(StorageError::TaskFailed));
    assert!(refused.is_err());

    let mut after = entries(data.path());
    after.retain(|n| n != DataDirLock::FILE);
    let mut expected = before;
    expected.retain(|n| n != DataDirLock::FILE);
    assert_eq!(after, expected);
    assert_eq!(marker(&data.path().join(DB_FILE)), "current");
}

#[test]
fn a_copy_staged_by_a_crashed_restore_is_cleared() {
    let work = tempfile::tempdir().unwrap();
    let stale = work.path().join(format!("{STAGING_PREFIX}1"));
    std::fs::write(&stale, b"half a copy").unwrap();
    let backup = work.path().join("backup.db");
    database(&backup, LATEST, "backup");
    let lock = DataDirLock::acquire(work.path()).unwrap();
    restore(&lock, &backup, no_callback).unwrap();
    assert!(!stale.exists());
}

const LATEST: u32 = migrations::LATEST_VERSION;
