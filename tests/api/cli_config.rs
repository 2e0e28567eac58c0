//! The operator's contract on the command line: configuration errors in one
//! line naming key and source, `config check` with secrets redacted, start-up
//! without any config file, `--help` with examples.

use std::process::Command;

use crate::common::http::request;
use crate::common::process::{ChildServer, bin, run_cli};

fn stderr_line(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    assert_eq!(text.lines().count(), 1, "expected exactly one line: {text:?}");
    text
}

#[test]
fn serve_with_an_impossible_port_names_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:70000\"\n").unwrap();
    let out = run_cli(&file, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(line.contains("server.listen"), "{line}");
    assert!(line.contains(file.to_str().unwrap()), "{line}");
}

#[test]
fn serve_with_an_unknown_key_or_wrong_type_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[delivery]\nworkerz = 3\n").unwrap();
    let line = stderr_line(&run_cli(&file, &["serve"]));
    assert!(line.contains("delivery.workerz"), "{line}");

    std::fs::write(&file, "[auth]\ntoken_ttl = 3600\n").unwrap();
    let line = stderr_line(&run_cli(&file, &["serve"]));
    assert!(line.contains("auth.token_ttl"), "{line}");

    std::fs::write(&file, "[server\n").unwrap();
    let line = stderr_line(&run_cli(&file, &["serve"]));
    assert!(line.contains("line 1"), "{line}");
}

/// A mistyped section or key is reported from the file it was written in,
/// with its line and the name that was probably meant (before: a section
/// typo said "(from built-in default)", and nothing suggested a name).
#[test]
fn a_mistyped_section_or_key_names_file_line_and_the_name_meant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    let at = |line: usize| format!("(from file {}, line {line})", file.display());

    std::fs::write(&file, "# listener\n[servr]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = run_cli(&file, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_line(&out),
        format!("config error: servr: unknown section; did you mean `[server]`? {}", at(2))
    );

    std::fs::write(&file, "[server]\nmax_body_bytes = 100\nlistn = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(
        stderr_line(&run_cli(&file, &["serve"])),
        format!("config error: server.listn: unknown key in [server]; did you mean `listen`? {}", at(3))
    );

    // Nothing near: the known names instead of a guess.
    std::fs::write(&file, "[metrics]\nport = 9100\n").unwrap();
    assert_eq!(
        stderr_line(&run_cli(&file, &["config", "check"])),
        format!(
            "config error: metrics: unknown section; the sections are [server], [storage], [auth], \
             [esight], [delivery], [inbox], [audit], [log], [retention], [replication] {}",
            at(1)
        )
    );
    std::fs::write(&file, "[log]\ncolour = true\n").unwrap();
    assert_eq!(
        stderr_line(&run_cli(&file, &["config", "check"])),
        format!(
            "config error: log.colour: unknown key in [log]; its keys are dir, keep_files, level, format, files, access, access_sample {}",
            at(2)
        )
    );
}

/// A key left at its default that clashes with one the file sets is blamed
/// on the file (it said "(from built-in default)").
#[test]
fn a_clash_with_a_key_set_in_the_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.toml");
    std::fs::write(&file, "[server]\ntls_cert = \"/etc/tls/cert.pem\"\n").unwrap();
    assert_eq!(
        stderr_line(&run_cli(&file, &["serve"])),
        format!(
            "config error: server.tls_key: must be set when server.tls_cert is (from file {})",
            file.display()
        )
    );
}

/// The environment is checked the same way: a near miss in a section's keys
/// or in the section itself is named with the variable meant; variables
/// that are nobody's typo (Kubernetes' `ENERGYLOAD_SERVICE_HOST`) pass.
#[test]
fn a_mistyped_environment_variable_names_the_variable_meant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, "").unwrap();
    let check = |var: &str| {
        Command::new(bin())
            .args(["config", "check", "--config"])
            .arg(&file)
            .env(var, "127.0.0.1:0")
            .env("ENERGYLOAD_SERVICE_HOST", "10.0.0.1")
            .output()
            .unwrap()
    };
    let out = check("ENERGYLOAD_SERVER_LISTN");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_line(&out),
        "config error: server.listn: unknown key in [server]; did you mean `ENERGYLOAD_SERVER_LISTEN`? \
         (from environment variable ENERGYLOAD_SERVER_LISTN)"
    );
    assert_eq!(
        stderr_line(&check("ENERGYLOAD_SERVR_LISTEN")),
        "config error: servr.listen: unknown section [servr]; did you mean `ENERGYLOAD_SERVER_LISTEN`? \
         (from environment variable ENERGYLOAD_SERVR_LISTEN)"
    );
    assert!(check("ENERGYLOAD_SERVER_LISTEN").status.success());
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&file)
        .env("ENERGYLOAD_STORAGE_SYNCHRONOUS", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("storage.synchronous") && line.contains("ENERGYLOAD_STORAGE_SYNCHRONOUS"),
        "{line}"
    );
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("post-password");
    std::fs::write(&secret_file, "file-secret-42\n").unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[esight]\npassword = \"inline-secret-17\"\ntimeout = \"5s\"\n").unwrap();
    let out = Command::new(bin())
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("ENERGYLOAD_ESIGHT_POST_PASSWORD_FILE", &secret_file)
        .env("ENERGYLOAD_DELIVERY_WORKERS", "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("inline-secret-17") && !text.contains("file-secret-42"), "{text}");
    assert_eq!(text.matches("<redacted>").count(), 2, "{text}");
    let effective: toml::Table = text.parse().unwrap();
    assert_eq!(effective["delivery"]["workers"].as_integer(), Some(7));
    assert_eq!(effective["esight"]["timeout"].as_str(), Some("5s"));

    std::fs::write(&file, "[esight]\ntimeout = \"soon\"\n").unwrap();
    let out = run_cli(&file, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("esight.timeout"));
}

#[test]
fn the_repository_config_file_documents_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let loaded = energyload::config::load(Some(std::path::Path::new(path)), Vec::new()).unwrap();
    let documented = toml::to_string(&loaded.config).unwrap();
    let defaults = toml::to_string(&energyload::config::Config::default()).unwrap();
    assert_eq!(documented, defaults);
    let text = std::fs::read_to_string(path).unwrap();
    for (section, keys) in
        toml::Value::try_from(energyload::config::Config::default()).unwrap().as_table().unwrap()
    {
        assert!(text.contains(&format!("[{section}]")), "section {section} undocumented");
        for key in keys.as_table().unwrap().keys() {
            let line = text.lines().position(|l| l.trim_start_matches("# ").starts_with(&format!("{key} =")));
            let line = line.unwrap_or_else(|| panic!("{section}.{key} is not in config.toml"));
            let above = text.lines().nth(line - 1).unwrap();
            assert!(above.starts_with('#'), "{section}.{key} has no comment above it");
        }
    }
}

#[test]
fn serve_without_any_config_file_serves_health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with(
        Command::new(bin())
            .arg("serve")
            .current_dir(dir.path())
            .env("ENERGYLOAD_SERVER_LISTEN", "127.0.0.1:0")
            .env("ENERGYLOAD_STORAGE_MIN_FREE_BYTES", "1048576")
            .env("ENERGYLOAD_LOG_FORMAT", "json"),
    );
    assert_eq!(request("GET", &format!("{}/health", server.base()), &[], None).status, 200);
    assert_eq!(request("GET", &format!("{}/readyz", server.base()), &[], None).status, 200);
    assert!(dir.path().join("data/energyload.db").is_file(), "default data dir ./data");
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("data/logs")).unwrap().collect();
    assert_eq!(logs.len(), 1, "one daily log file");
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [&["serve"][..], &["migrate"], &["config", "check"], &["backup"], &["restore"], &["version"]] {
        let out = Command::new(bin()).args(cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "{cmd:?}: {text}");
        assert!(text.contains("--config"), "{cmd:?}: {text}");
    }
    let out = Command::new(bin()).arg("version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("energyload {}", env!("CARGO_PKG_VERSION")))
    );
}
