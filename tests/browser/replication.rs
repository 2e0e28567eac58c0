//! The System view with Litestream replication (issue 15): a real
//! `litestream` replicating the appliance's database to a directory, the
//! admin page in real Chromium showing the replication check (confirmed,
//! the replica without secrets, the last confirmation as a time), then
//! Litestream stopped: the same view says the replica does not confirm.

use std::time::{Duration, Instant};

use energyload::config::{Acknowledge, ReplicationMode};
use energyload::replication::{LitestreamProcess, LitestreamSetup};
use serde_json::Value;

use crate::common::litestream::litestream;
use crate::common::{TestApp, spawn_app_with};
use crate::driver::browser_test;

/// Waits until `/readyz`'s replication check has `status` (it changes
/// within about a second: the replication thread probes once a second).
fn wait_replication(app: &TestApp, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let check = app.get("/readyz").json()["checks"]["replication"].clone();
        if check["status"] == status {
            return check;
        }
        assert!(Instant::now() < deadline, "replication never became {status}: {check}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_system_view_shows_the_replica_confirming_then_not_confirming() {
    let Some(binary) = litestream() else { return };
    let work = tempfile::tempdir().unwrap();
    let socket = work.path().join("litestream/litestream.sock");
    let replica = work.path().join("replica");
    let shown_replica = "sftp://backup:s3cret-pass@replica.example/energyload?key=abc".to_string();
    let app = {
        let (socket, shown_replica) = (socket.clone(), shown_replica.clone());
        spawn_app_with(move |c| {
            c.replication.mode = ReplicationMode::Litestream;
            c.replication.socket = Some(socket);
            c.replication.acknowledge = Acknowledge::Replicated;
            c.replication.timeout = energyload::config::Duration::from_secs(2);
            c.replication.replica = Some(shown_replica);
        })
    };
    let mut litestream = LitestreamProcess::start(&LitestreamSetup {
        binary,
        database: app.data_dir().join("energyload.db"),
        replica_dir: replica,
        work_dir: work.path().join("litestream"),
        sync_interval: "1s".into(),
    })
    .unwrap();
    let admin = app.seed_user("admin", "admin");
    wait_replication(&app, "ok");

    browser_test(|b| async move {
        b.sign_in(&format!("{}/admin/", app.base()), &admin.username, &admin.password).await;
        b.route("#/system", "System").await;
        b.wait_visible("#readiness [data-check=replication]").await;
        let check = "#readiness [data-check=replication]";
        assert_eq!(b.js(&format!("return document.querySelector('{check}').dataset.status;")).await, "ok");
        let text = b.text_of(check).await;
        assert!(text.contains("replicated"), "the acknowledge mode: {text}");
        assert!(text.contains("sftp://replica.example/energyload"), "the replica: {text}");
        assert!(!text.contains("s3cret") && !text.contains("backup") && !text.contains("key=abc"), "{text}");
        // The last confirmation (unix ms) reads as a UTC time, the number in
        // its tooltip.
        let confirmed = b
            .js(&format!(
                "return [...document.querySelectorAll('{check} [title]')]
                   .filter((e) => /^[0-9]{{13}}$/.test(e.title))
                   .map((e) => [e.textContent, new Date(e.textContent).getTime() === Number(e.title)]);"
            ))
            .await;
        let confirmed = confirmed.as_array().unwrap();
        assert_eq!(confirmed.len(), 1, "one time shown: {confirmed:?}");
        let (shown, same) = (confirmed[0][0].as_str().unwrap(), confirmed[0][1].as_bool().unwrap());
        assert!(shown.ends_with('Z') && shown.contains('T') && same, "an ISO time of that moment: {shown}");
        assert_eq!(b.js("return document.querySelector('#readiness').dataset.status;").await, "ok");

        litestream.stop();
        let check_json = wait_replication(&app, "fail");
        assert_eq!(check_json["confirming"], false, "{check_json}");
        b.route("#/dashboard", "Dashboard").await;
        b.route("#/system", "System").await;
        b.wait_visible("#readiness[data-status=fail] [data-check=replication][data-status=fail]").await;
        let text = b.text_of(check).await;
        assert!(text.contains("the replica does not confirm"), "the reason: {text}");
        assert!(text.contains("Litestream control socket"), "the last error: {text}");
        b.assert_page_clean("system (replication failing)").await;
    });
}
