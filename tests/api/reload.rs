//! Secret rotation without downtime on a real `energyload serve`: eSight's
//! passwords come from files; the simulator switches to new passwords, the
//! files are rewritten, SIGHUP applies them while requests keep coming (none
//! fails), the eSight token is fetched again with the new credential, later
//! messages are delivered, and the reload is audited, naming a changed key
//! that needs a restart. A reload that cannot
//! read a secret file keeps the working credentials and audits the failure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use energyload::config::Secret;
use energyload::simulator::Catalog;
use rustix::process::Signal;
use serde_json::Value;

use super::cli_identity::{call, cli_ok, token};
use crate::common::esight::{Sim, spawn_simulator, wait_until};
use crate::common::http::request;
use crate::common::process::{ChildServer, write_config};
use crate::common::session::{MESSAGES, message, message_for, unique_id};

const ADMIN_PASSWORD: &str = "Reload-admin-pass-1";
const NEW_TOKEN_PASSWORD: &str = "rotated-token-pass-B";
const NEW_POST_PASSWORD: &str = "rotated-post-pass-B";

/// `[esight]` pointing at `sim`, passwords read from files in `dir`.
fn esight_section(sim: &Sim, dir: &Path) -> String {
    let s = sim.sim();
    let cfg = s.config();
    std::fs::write(dir.join("token-pw"), format!("{}\n", cfg.password.expose())).unwrap();
    std::fs::write(dir.join("post-pw"), format!("{}\n", cfg.post_password.expose())).unwrap();
    format!(
        "[esight]\ntoken_url = {:?}\nsites_url = {:?}\nmeters_url = {:?}\nconsumption_url = {:?}\n\
         username = {:?}\npassword_file = {:?}\npost_username = {:?}\npost_password_file = {:?}\n\
         timeout = \"5s\"\n\n[delivery]\nbackoff_initial = \"50ms\"\nbackoff_max = \"500ms\"\n",
        s.token_url(),
        s.sites_url(),
        s.meters_url(),
        s.consumption_url(),
        cfg.username,
        dir.join("token-pw"),
        cfg.post_username,
        dir.join("post-pw"),
    )
}

/// Audit events of `kind`, read with the CLI from the data directory in
/// `dir` (with a config of its own: the server's may name a missing file).
fn audited(dir: &Path, kind: &str) -> Vec<Value> {
    let config = dir.join("cli.toml");
    std::fs::write(&config, format!("[storage]\ndata_dir = {:?}\n", dir.join("data"))).unwrap();
    let out = cli_ok(&config, &["audit", "export"]);
    out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|e| e["type"] == kind).collect()
}

fn statuses(server: &ChildServer, key: &str, admin: &str) -> Vec<String> {
    let r = call(server, "GET", &format!("{MESSAGES}?limit=500"), key, admin, None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sighup_applies_rotated_esight_passwords_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let sim = spawn_simulator();
    let config = write_config(dir.path(), &esight_section(&sim, dir.path()));
    let admin_pw = dir.path().join("admin-pw");
    std::fs::write(&admin_pw, ADMIN_PASSWORD).unwrap();
    cli_ok(
        &config,
        &["user", "add", "boss", "--role", "admin", "--password-file", admin_pw.to_str().unwrap()],
    );
    let key = super::cli_identity::cli_key(&config, "main").0;
    let mut server = ChildServer::start(&config);
    let admin = token(&server, &key, "boss", ADMIN_PASSWORD);
    let post = |id: &str| call(&server, "POST", MESSAGES, &key, &admin, Some(&message(id)));

    // Password A works.
    assert_eq!(post(&unique_id("before")).status, 202);
    wait_until(Duration::from_secs(20), "delivery with password A", || sim.received().len() == 1);
    let tokens_before = sim.stats().tokens.issued;

    // eSight rotates to B; hold delivery while the files are switched so no
    // attempt meets the gap between eSight's switch and ours.
    assert_eq!(call(&server, "POST", "/api/v1/management/delivery/pause", &key, &admin, None).status, 200);
    sim.sim().set_passwords(Secret::new(NEW_TOKEN_PASSWORD), Secret::new(NEW_POST_PASSWORD));
    std::fs::write(dir.path().join("token-pw"), format!("{NEW_TOKEN_PASSWORD}\n")).unwrap();
    std::fs::write(dir.path().join("post-pw"), format!("{NEW_POST_PASSWORD}\n")).unwrap();
    // A change that only a restart applies, in the same reload.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("backoff_max = \"500ms\"", "backoff_max = \"400ms\"")).unwrap();

    // Requests keep coming while the server reloads: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (loop_stop, loop_rounds) = (stop.clone(), rounds.clone());
    let (base, loop_key, loop_admin) = (server.base(), key.clone(), admin.clone());
    let traffic = std::thread::spawn(move || {
        let bearer = format!("Bearer {loop_admin}");
        let headers = [
            ("X-API-Key", loop_key.as_str()),
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let mut statuses = Vec::new();
        while !loop_stop.load(Ordering::Acquire) {
            let body = message(&unique_id("during")).to_string();
            let r = request("POST", &format!("{base}{MESSAGES}"), &headers, Some(body.as_bytes()));
            statuses.push(r.status);
            statuses.push(request("GET", &format!("{base}/readyz"), &[], None).status);
            loop_rounds.fetch_add(1, Ordering::AcqRel);
        }
        statuses
    });
    let rounds_done = || rounds.load(Ordering::Acquire);
    wait_until(Duration::from_secs(20), "requests before the reload", || rounds_done() >= 2);
    server.signal(Signal::HUP);
    wait_until(Duration::from_secs(20), "the reload to be audited", || {
        !audited(dir.path(), "config_reloaded").is_empty()
    });
    let at_reload = rounds_done();
    wait_until(Duration::from_secs(20), "requests after the reload", || rounds_done() >= at_reload + 2);
    stop.store(true, Ordering::Release);
    let seen = traffic.join().unwrap();
    assert!(seen.iter().step_by(2).all(|s| *s == 202), "an ingest failed during the reload: {seen:?}");
    assert!(
        seen.iter().skip(1).step_by(2).all(|s| *s == 200),
        "readiness failed during the reload: {seen:?}"
    );

    let event = &audited(dir.path(), "config_reloaded")[0];
    let applied = event["detail"]["applied"].as_str().unwrap();
    assert!(applied.contains("esight.username/password"), "{event}");
    assert!(applied.contains("esight.post_username/post_password"), "{event}");
    assert_eq!(event["detail"]["restart_needed"], "delivery.backoff_max", "{event}");

    // Everything is delivered with B (eSight refuses A now). A meter new to
    // the catalog makes the appliance fetch the catalog, and so a token,
    // again: with B, since the reload dropped the token fetched with A.
    let sample = Catalog::sample();
    let meters = sample.meter_codes().iter().cloned().chain(["LU_VPC_Elec_Rotated".to_string()]);
    sim.sim().set_catalog(Catalog::from_codes(sample.site_codes().to_vec(), meters));
    assert_eq!(call(&server, "POST", "/api/v1/management/delivery/resume", &key, &admin, None).status, 200);
    let new_meter = message_for(&unique_id("after"), "lu", "electricity", "VPC", "LU_VPC_Elec_Rotated");
    assert_eq!(call(&server, "POST", MESSAGES, &key, &admin, Some(&new_meter)).status, 202);
    let expected = seen.len() / 2 + 2;
    wait_until(Duration::from_secs(30), "delivery with password B", || {
        statuses(&server, &key, &admin).iter().filter(|s| *s == "delivered").count() == expected
    });
    assert!(statuses(&server, &key, &admin).iter().all(|s| s == "delivered"));
    let tokens = sim.stats().tokens;
    assert!(tokens.issued > tokens_before, "the eSight token was not fetched again");
    assert_eq!(tokens.refused, 0, "a token was asked for with the old password");

    // A reload that cannot read a secret file changes nothing.
    std::fs::remove_file(dir.path().join("post-pw")).unwrap();
    server.signal(Signal::HUP);
    wait_until(Duration::from_secs(20), "the failed reload to be audited", || {
        !audited(dir.path(), "config_reload_failed").is_empty()
    });
    let failure = &audited(dir.path(), "config_reload_failed")[0];
    assert!(failure["detail"]["reason"].as_str().unwrap().contains("esight.post_password_file"), "{failure}");
    let last = unique_id("after_failed_reload");
    assert_eq!(post(&last).status, 202);
    wait_until(Duration::from_secs(30), "delivery after the failed reload", || {
        sim.received().iter().any(|m| m.message_id.as_deref().is_some_and(|id| id.starts_with(&last)))
    });
    assert!(statuses(&server, &key, &admin).iter().all(|s| s == "delivered"));

    server.signal(Signal::TERM);
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
    let output = server.lines.lock().unwrap().join("\n");
    for logged in ["configuration reloaded", "needs a restart", "reload failed"] {
        assert!(output.contains(logged), "{logged:?} not logged: {output}");
    }
    for secret in [NEW_TOKEN_PASSWORD, NEW_POST_PASSWORD, ADMIN_PASSWORD] {
        assert!(!output.contains(secret), "a secret in the server output");
    }
}
