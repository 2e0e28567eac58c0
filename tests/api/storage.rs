//! The data directory and database: permissions, the single-server lock,
//! migrations, refusal of newer databases, and online backups.

use std::os::unix::fs::PermissionsExt;

use energyload::app::App;
use energyload::storage::LATEST_VERSION;

use crate::common::process::{run_cli, write_config};
use crate::common::{spawn_app, start};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_data_directory_is_private() {
    let app = spawn_app();
    let mode = std::fs::metadata(app.data_dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let app = spawn_app();
    let err = runtime().block_on(App::build(app.config.clone())).err().expect("second server refused");
    let holder = format!("is in use by process {} (", std::process::id());
    assert!(err.to_string().contains(&holder), "{err}");
}

#[test]
fn a_database_from_a_newer_binary_is_refused() {
    let (dir, config) = spawn_app().stop();
    let db = rusqlite::Connection::open(config.storage.data_dir.join("energyload.db")).unwrap();
    db.pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
    drop(db);

    let err = runtime().block_on(App::build(config.clone())).err().expect("refused");
    assert!(err.to_string().contains("newer than this binary supports"), "{err}");

    let file = write_config(dir.path(), "");
    let out = run_cli(&file, &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("newer than this binary supports"), "{stderr}");
}

#[test]
fn migrate_applies_pending_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "");
    let out = run_cli(&file, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("from version 0 to {LATEST_VERSION}")), "{stdout}");
    let out = run_cli(&file, &["migrate"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("is current"));
    let db = rusqlite::Connection::open(dir.path().join("data/energyload.db")).unwrap();
    let v: u32 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, LATEST_VERSION);
}

#[test]
fn an_online_backup_is_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::test_config(dir.path());
    let app = start(dir, config);
    assert_eq!(app.get("/readyz").status, 200);
    // Keep writing while the backup runs.
    let base = app.base();
    let writer = std::thread::spawn(move || {
        for _ in 0..50 {
            crate::common::http::request("GET", &format!("{base}/readyz"), &[], None);
        }
    });
    let file = write_config(app.dir.path(), "");
    let target = app.dir.path().join("snapshot.db");
    let out = run_cli(&file, &["backup", target.to_str().unwrap()]);
    writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let copy = rusqlite::Connection::open(&target).unwrap();
    let check: String = copy.pragma_query_value(None, "integrity_check", |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let v: u32 = copy.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, LATEST_VERSION);
    let probes: i64 =
        copy.query_row("SELECT count(*) FROM meta WHERE key = 'readiness_probe'", [], |r| r.get(0)).unwrap();
    assert_eq!(probes, 1);
}

#[test]
fn backup_without_a_database_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "");
    let out = run_cli(&file, &["backup", dir.path().join("x.db").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no database"));
}

#[test]
fn a_cli_backup_is_private_under_a_permissive_umask_and_leaves_no_temp_file() {
    let app = spawn_app();
    assert_eq!(app.get("/readyz").status, 200);
    let file = write_config(app.dir.path(), "");
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("snapshot.db");
    // The operator's shell: umask 022 would make a new file world-readable.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" backup \"$1\" --config \"$2\"")
        .arg(crate::common::process::bin())
        .arg(&target)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    // A backup whose final rename fails (the name is a directory) leaves
    // no temporary file behind, and neither does a crashed one (pid 0).
    std::fs::write(out_dir.path().join(".taken.partial-0"), b"left by a crash").unwrap();
    let taken = out_dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("x"), b"x").unwrap();
    let out = run_cli(&file, &["backup", taken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let left: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn backup_downloads_leave_nothing_behind_and_a_restart_sweeps_what_a_crash_left() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let r = app.authed("GET", "/api/v1/management/backup", &key, &token, None);
    assert_eq!(r.status, 200);
    let downloads = app.data_dir().join(energyload::storage::DOWNLOADS_DIR);
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0);
    std::fs::write(downloads.join("download-crashed.db"), b"a copy of every user and hash").unwrap();
    let (dir, config) = app.stop();
    let app = start(dir, config);
    assert_eq!(app.get("/readyz").status, 200);
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0);
}
