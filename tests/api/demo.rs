//! `energyload demo`: the real binary, started as a tester would, prints the
//! admin URL and password; within seconds messages flow through the
//! simulator (seen through the admin page's own API and cookie session);
//! Ctrl-C stops it cleanly.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::common::demo::DemoProcess;
use crate::common::http;

#[test]
fn demo_runs_with_one_command_and_messages_flow() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let data = dir.path().join("demo-data");
    let mut demo = DemoProcess::start(&cwd, &data);
    let (admin_url, base) = (demo.admin_url.clone(), demo.base.clone());
    let (username, password) = (demo.username.clone(), demo.password.clone());
    assert!(base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"), "a real loopback port: {base}");
    assert_eq!(username, "admin");
    assert!(password.len() >= 12, "a generated password: {password:?}");

    // The admin page is served, and its sign-in works with the printed password.
    let page = http::request("GET", &admin_url, &[], None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("sign-in-form"));
    let creds = serde_json::json!({"username": username, "password": password}).to_string();
    let signed_in = http::request(
        "POST",
        &format!("{base}/admin/session"),
        &[("Content-Type", "application/json")],
        Some(creds.as_bytes()),
    );
    assert_eq!(signed_in.status, 200, "sign-in: {}", signed_in.text());
    let cookie = signed_in
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("el_session=") && c.len() > "el_session=".len())
        .unwrap_or_else(|| panic!("a session cookie: {:?}", signed_in.headers))
        .to_string();

    // Messages flow: the simulator accepts some within ~20 s.
    let flow_deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let r =
            http::request("GET", &format!("{base}/api/v1/service/send/stats"), &[("Cookie", &cookie)], None);
        assert_eq!(r.status, 200, "stats: {}", r.text());
        let stats = r.json();
        if stats["by_status"]["delivered"].as_u64().unwrap_or(0) > 0 {
            break stats;
        }
        assert!(Instant::now() < flow_deadline, "no message delivered within 20 s: {stats}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(stats["delivered_last_hour"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(data.join("energyload.db").is_file(), "the data lives in --data-dir");
    assert!(!cwd.join("demo-data").exists(), "nothing written to the default place");

    // Ctrl-C: a clean stop with exit code 0 and a summary line.
    let pid = rustix::process::Pid::from_raw(demo.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::INT).unwrap();
    let stop_deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < stop_deadline, "the demo did not stop within 25 s of SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let summary = demo.wait_line(Instant::now() + Duration::from_secs(5), |l| {
        l.starts_with("demo stopped:").then(|| l.to_string())
    });
    assert!(summary.contains("messages accepted"), "{summary}");
    assert!(summary.contains("invalid (refused at ingest)"), "one word for ingest refusals: {summary}");
    assert!(!summary.contains("rejected"), "\"rejected\" is eSight's word: {summary}");
}

/// A second demo on a running demo's data directory names the first one's
/// process and the flag to change, and `--fresh` does not delete the
/// directory in use.
#[test]
fn a_second_demo_names_the_process_that_holds_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let first = DemoProcess::start(dir.path(), &data);
    let out = std::process::Command::new(crate::common::process::bin())
        .args(["demo", "--fresh", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!(
            "error: data directory {} is in use by process {} (energyload demo); stop it or use another --data-dir",
            data.display(),
            first.child.id()
        )
    );
    assert!(data.join("energyload.db").is_file(), "the first demo's data is intact");
}
