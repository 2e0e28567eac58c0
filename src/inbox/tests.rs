//! Inbox imports against a real database and ingest writer on a temp dir,
//! with the message fixtures from `tests/fixtures/messages/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::config::StorageConfig;
use crate::domain::message::content_hash;
use crate::storage::Storage;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/messages");
const LIMIT: u64 = 8 * 1024 * 1024;
const VALID: [&str; 5] =
    ["unknown-meter.json", "unknown-site.json", "valid-1.json", "valid-2.json", "valid-3.json"];

struct Env {
    _tmp: TempDir,
    inbox: PathBuf,
    storage: Storage,
    writer: IngestWriter,
}

fn same_content(a: &[u8], b: &[u8]) -> bool {
    a == b || content_hash(a) == content_hash(b)
}

async fn env() -> Env {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("data");
    let inbox = tmp.path().join("inbox");
    fs::create_dir(&inbox).unwrap();
    let (storage, writer) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&StorageConfig { data_dir, ..Default::default() }).unwrap();
        storage.migrate().unwrap();
        let (writer, _thread) =
            IngestWriter::start(&storage, same_content, Default::default(), |_| {}).unwrap();
        (storage, writer)
    })
    .await
    .unwrap();
    Env { _tmp: tmp, inbox, storage, writer }
}

impl Env {
    fn drop_fixture(&self, name: &str) {
        fs::copy(Path::new(FIXTURES).join(name), self.inbox.join(name)).unwrap();
    }

    fn drop_all_fixtures(&self) -> usize {
        let mut n = 0;
        for entry in fs::read_dir(FIXTURES).unwrap() {
            self.drop_fixture(entry.unwrap().file_name().to_str().unwrap());
            n += 1;
        }
        n
    }

    async fn import(&self, prefix: Option<&str>, limit: u64) -> ImportReport {
        let prefix = prefix.map(|p| FileNamePrefix::parse(p).unwrap());
        import(&self.inbox, prefix.as_ref(), limit, &self.writer).await.unwrap()
    }

    async fn stored(&self) -> i64 {
        self.storage
            .run(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    fn names_in(&self, sub: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.inbox.join(sub)) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

#[tokio::test]
async fn valid_files_are_stored_and_invalid_ones_filed_by_code() {
    let env = env().await;
    let total = env.drop_all_fixtures();
    let report = env.import(None, LIMIT).await;

    assert_eq!(report.processed, total);
    let accepted: Vec<_> = report.accepted.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(accepted, VALID);
    assert!(report.accepted.iter().all(|f| !f.duplicate && f.id > 0));
    assert_eq!(report.accepted[2].message_id, "electricity_lu_20210131T0000");
    assert_eq!(env.stored().await, VALID.len() as i64);
    assert_eq!(env.names_in("accepted"), VALID);
    assert_eq!(report.rejected.len(), total - VALID.len());
    for r in &report.rejected {
        assert_eq!(r.file, format!("invalid-{}.json", r.code), "{r:?}");
        assert_eq!(env.names_in(&format!("failed/{}", r.code)), std::slice::from_ref(&r.file));
    }
    assert!(env.names_in("").is_empty(), "the inbox is empty after the import");
}

#[tokio::test]
async fn a_prefix_imports_only_matching_files() {
    let env = env().await;
    env.drop_all_fixtures();
    let report = env.import(Some("valid-"), LIMIT).await;
    let files: Vec<_> = report.accepted.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(files, ["valid-1.json", "valid-2.json", "valid-3.json"]);
    assert!(report.rejected.is_empty());
    assert_eq!(report.processed, 3);
    assert_eq!(env.names_in("").len(), 9, "the other files stay");
    assert_eq!(env.import(Some("nothing"), LIMIT).await, ImportReport::default());
}

#[tokio::test]
async fn the_same_file_again_is_a_duplicate_and_is_not_overwritten() {
    let env = env().await;
    env.drop_fixture("valid-1.json");
    let first = env.import(None, LIMIT).await;
    env.drop_fixture("valid-1.json");
    let second = env.import(None, LIMIT).await;
    assert!(second.accepted[0].duplicate);
    assert_eq!(second.accepted[0].id, first.accepted[0].id);
    assert_eq!(env.stored().await, 1);
    assert_eq!(env.names_in("accepted"), ["valid-1.1.json", "valid-1.json"]);
}

#[tokio::test]
async fn a_commit_without_the_move_is_not_imported_twice() {
    let env = env().await;
    env.drop_fixture("valid-3.json");
    let raw = fs::read(env.inbox.join("valid-3.json")).unwrap();
    let message = files::read_all(
        vec![files::Listed { name: "x".into(), path: env.inbox.join("valid-3.json"), len: raw.len() as u64 }],
        LIMIT,
    );
    let Some((_, files::ReadOutcome::Valid(message))) = message.into_iter().next() else { panic!() };
    let committed = env.writer.store(vec![message]).await.unwrap();
    let StoreOutcome::Inserted(id) = committed[0] else { panic!("{committed:?}") };

    let report = env.import(None, LIMIT).await;
    assert_eq!(report.accepted[0].id, id);
    assert!(report.accepted[0].duplicate);
    assert_eq!(env.stored().await, 1);
    assert_eq!(env.names_in("accepted"), ["valid-3.json"]);
}

#[tokio::test]
async fn other_content_under_a_stored_message_id_is_a_conflict() {
    let env = env().await;
    env.drop_fixture("valid-1.json");
    env.import(None, LIMIT).await;
    let changed =
        fs::read_to_string(Path::new(FIXTURES).join("valid-1.json")).unwrap().replacen("10.0", "11.0", 1);
    fs::write(env.inbox.join("valid-1-again.json"), changed).unwrap();
    let report = env.import(None, LIMIT).await;
    assert_eq!(report.rejected[0].code, CONFLICT_CODE);
    assert_eq!(env.names_in("failed/Conflict"), ["valid-1-again.json"]);
    assert_eq!(env.stored().await, 1);
}

#[tokio::test]
async fn files_over_the_limit_are_refused_unread() {
    let env = env().await;
    env.drop_fixture("valid-1.json");
    env.drop_fixture("valid-2.json");
    let report = env.import(None, 2_000).await;
    assert_eq!(report.accepted.len(), 1);
    assert_eq!(report.rejected[0].file, "valid-2.json");
    assert_eq!(report.rejected[0].code, TOO_LARGE_CODE);
    assert_eq!(env.names_in("failed/RequestEntityTooLarge"), ["valid-2.json"]);
    assert_eq!(env.stored().await, 1);
}

#[tokio::test]
async fn only_regular_json_files_directly_in_the_inbox_count() {
    let env = env().await;
    let sub = env.inbox.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::copy(Path::new(FIXTURES).join("valid-1.json"), sub.join("valid-1.json")).unwrap();
    fs::copy(Path::new(FIXTURES).join("valid-2.json"), env.inbox.join(".valid-2.json")).unwrap();
    fs::copy(Path::new(FIXTURES).join("valid-3.json"), env.inbox.join("valid-3.txt")).unwrap();
    std::os::unix::fs::symlink(sub.join("valid-1.json"), env.inbox.join("link.json")).unwrap();
    fs::create_dir(env.inbox.join("dir.json")).unwrap();
    assert_eq!(env.import(None, LIMIT).await, ImportReport::default());
    assert_eq!(env.stored().await, 0);
    assert!(sub.join("valid-1.json").exists());
}

#[tokio::test]
async fn a_missing_inbox_is_empty() {
    let env = env().await;
    let report = import(&env.inbox.join("absent"), None, LIMIT, &env.writer).await.unwrap();
    assert_eq!(report, ImportReport::default());
}

#[test]
fn prefixes_that_could_leave_the_inbox_are_refused() {
    for bad in ["", "a/b", "/", "a\\b", "..", "x..y", "a\0b"] {
        assert!(matches!(FileNamePrefix::parse(bad), Err(InboxError::InvalidPrefix(_))), "{bad:?}");
    }
    assert_eq!(FileNamePrefix::parse("valid-1.j").unwrap().as_str(), "valid-1.j");
}

#[test]
fn the_report_serialises_as_the_contract_says() {
    let report = ImportReport {
        processed: 2,
        accepted: vec![ImportedFile {
            file: "a.json".into(),
            id: 1 << 60,
            message_id: "m".into(),
            duplicate: true,
        }],
        rejected: vec![RejectedFile {
            file: "b.json".into(),
            code: "NoMessageId".into(),
            message: "x".into(),
        }],
    };
    let json = serde_json::to_value(&report).unwrap();
    let expected = serde_json::json!({
        "processed": 2,
        "accepted": [{"file": "a.json", "id": (1i64 << 60).to_string(), "messageId": "m",
                      "status": "pending", "duplicate": true}],
        "rejected": [{"file": "b.json", "code": "NoMessageId", "message": "x"}],
    });
    assert_eq!(json, expected);
}

#[tokio::test]
async fn the_poller_imports_until_shutdown() {
    let env = env().await;
    let (stop, shutdown) = watch::channel(false);
    let poller =
        spawn_poller(env.inbox.clone(), Duration::from_millis(20), LIMIT, env.writer.clone(), shutdown);
    env.drop_fixture("valid-1.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.names_in("accepted").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the poller did not import");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), poller).await.unwrap().unwrap();
    assert_eq!(env.stored().await, 1);

    let (_keep, shutdown) = watch::channel(false);
    let off = spawn_poller(env.inbox.clone(), Duration::ZERO, LIMIT, env.writer.clone(), shutdown);
    tokio::time::timeout(Duration::from_secs(1), off).await.unwrap().unwrap();
}

#[test]
fn chunks_cap_files_and_bytes_but_never_split_a_file() {
    let listed = |len: u64, n: usize| -> Vec<files::Listed> {
        (0..n).map(|i| files::Listed { name: format!("{i}.json"), path: PathBuf::new(), len }).collect()
    };
    let sizes = |c: Vec<Vec<files::Listed>>| c.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(sizes(chunks(listed(1, CHUNK_FILES + 1), LIMIT)), [CHUNK_FILES, 1]);
    assert_eq!(sizes(chunks(listed(40 << 20, 3), 50 << 20)), [1, 1, 1]);
    assert_eq!(sizes(chunks(listed(40 << 20, 3), 1 << 20)), [3], "oversized files are not read");
    assert!(chunks(Vec::new(), LIMIT).is_empty());
}
