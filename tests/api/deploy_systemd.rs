//! The systemd unit (`systemd/energyload.service`) and the VM config beside
//! it: the config passes `energyload config check`; the unit, parsed into
//! sections and keys, runs `serve --config` as `Type=notify` with the
//! hardening keys, gives the config's data and log directories (and only
//! those) write access, and waits longer than the shutdown timeout; and
//! `systemd-analyze verify` finds nothing wrong with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use energyload::config::Config;

use crate::common::process::bin;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/energyload.service");
const VM_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/config.toml");
const LITESTREAM_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/energyload-litestream.service");
const LITESTREAM_YML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/litestream.yml");
const SYSUSERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/energyload.sysusers");
/// Where the unit expects the binary.
const INSTALLED_BIN: &str = "/usr/local/bin/energyload";
/// Where the VM config expects the eSight credential files.
const VM_SECRETS: &str = "/etc/energyload/esight/";

/// A unit file: section → key → every value assigned, in order (systemd
/// keys may repeat; an empty assignment resets a list).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Parses unit-file syntax: `[Section]`, `Key=Value`, `#`/`;` comments,
/// trailing-backslash continuations.
fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = None;
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let name = section.as_ref().unwrap_or_else(|| panic!("a key before any section: {line}"));
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not Key=Value: {line}"));
        let values = unit.get_mut(name).unwrap().entry(key.trim().to_string()).or_default();
        values.push(value.trim().to_string());
    }
    assert!(pending.is_empty(), "the unit ends in a continuation");
    unit
}

/// The one value of `section.key` (panics when unset or set twice).
fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit.get(section).and_then(|s| s.get(key));
    match values.map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("[{section}] {key}: expected one value, got {other:?}"),
    }
}

/// The space-separated items of every assignment of a list key.
fn items(unit: &Unit, section: &str, key: &str) -> BTreeSet<String> {
    let values = unit[section].get(key).unwrap_or_else(|| panic!("[{section}] {key} is not set"));
    values.iter().flat_map(|v| v.split_whitespace()).map(str::to_string).collect()
}

/// A systemd time span such as `30s`, `5min`, `1h` or `500ms`.
fn timespan(text: &str) -> Duration {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let n: u64 = text[..digits].parse().unwrap_or_else(|_| panic!("time span {text}"));
    match text[digits..].trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" | "sec" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" | "hr" => Duration::from_secs(n * 3600),
        unit => panic!("time span unit {unit} in {text}"),
    }
}

/// The VM config with its credential files placed in `dir`: checked by the
/// real binary's `config check`, then loaded.
fn checked_vm_config(dir: &Path) -> Config {
    let secrets = dir.join("esight");
    std::fs::create_dir(&secrets).unwrap();
    for name in ["username", "password", "post-username", "post-password"] {
        std::fs::write(secrets.join(name), format!("test-{name}\n")).unwrap();
    }
    let text = std::fs::read_to_string(VM_CONFIG).unwrap();
    assert!(text.contains(VM_SECRETS), "the VM config reads its credentials from {VM_SECRETS}");
    let file = dir.join("config.toml");
    std::fs::write(&file, text.replace(VM_SECRETS, &format!("{}/", secrets.display()))).unwrap();
    let out =
        Command::new(bin()).args(["config", "check", "--config"]).arg(&file).env_clear().output().unwrap();
    assert!(out.status.success(), "config check: {}", String::from_utf8_lossy(&out.stderr));
    energyload::config::load(Some(&file), Vec::new()).unwrap().config
}

#[test]
fn the_unit_runs_serve_hardened_with_write_access_to_the_configured_directories_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = checked_vm_config(dir.path());
    let unit = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    let service = "Service";

    assert_eq!(one(&unit, service, "Type"), "notify");
    assert_eq!(one(&unit, service, "NotifyAccess"), "main");
    assert_eq!(
        one(&unit, service, "ExecStart"),
        format!("{INSTALLED_BIN} serve --config /etc/energyload/config.toml")
    );
    assert_eq!(one(&unit, service, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&unit, service, "Restart"), "on-failure");
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");

    // Its own user: the sysusers file creates it, or systemd makes one up.
    let dynamic = unit[service].get("DynamicUser").is_some_and(|v| v == &["yes"]);
    if !dynamic {
        let user = one(&unit, service, "User");
        let sysusers = std::fs::read_to_string(SYSUSERS).unwrap();
        let declared = sysusers.lines().filter(|l| !l.starts_with('#')).any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.first() == Some(&"u") && fields.get(1) == Some(&user)
        });
        assert!(declared, "user {user} is declared in {SYSUSERS}");
        assert_ne!(user, "root");
    }

    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(one(&unit, service, key), value, "{key}");
    }
    // No capability unless the listener needs one to bind below 1024.
    let capabilities: BTreeSet<String> = unit[service]["CapabilityBoundingSet"]
        .last()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if config.server.listen.port() < 1024 {
        assert_eq!(capabilities, BTreeSet::from(["CAP_NET_BIND_SERVICE".to_string()]));
    } else {
        assert!(capabilities.is_empty(), "CapabilityBoundingSet must be empty: {capabilities:?}");
    }
    let families = items(&unit, service, "RestrictAddressFamilies");
    let allowed: BTreeSet<String> = ["AF_INET", "AF_INET6", "AF_UNIX"].map(String::from).into();
    assert!(families.is_subset(&allowed) && families.contains("AF_UNIX"), "{families:?} (AF_UNIX: notify)");
    assert!(items(&unit, service, "SystemCallFilter").contains("@system-service"));

    // Writable: exactly the data and log directories the config names, and
    // systemd creates both for the service's user.
    let writable: BTreeSet<PathBuf> =
        items(&unit, service, "ReadWritePaths").into_iter().map(PathBuf::from).collect();
    assert_eq!(writable, BTreeSet::from([config.storage.data_dir.clone(), config.log_dir()]));
    let state = Path::new("/var/lib").join(one(&unit, service, "StateDirectory"));
    assert_eq!(state, config.storage.data_dir, "StateDirectory is storage.data_dir");
    let logs = Path::new("/var/log").join(one(&unit, service, "LogsDirectory"));
    assert_eq!(logs, config.log_dir(), "LogsDirectory is log.dir");

    let stop = timespan(one(&unit, service, "TimeoutStopSec"));
    assert!(
        stop > config.server.shutdown_timeout.get(),
        "TimeoutStopSec {stop:?} must exceed server.shutdown_timeout {:?}",
        config.server.shutdown_timeout.get()
    );
}

/// `systemd-analyze`, if installed. CI installs it; elsewhere the test says
/// it skipped.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is required in CI");
        eprintln!("systemd-analyze not found: unit verification skipped");
    }
    found
}

fn analyze(tool: &Path, args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new(tool).args(args).arg(unit).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(tool) = systemd_analyze() else { return };
    let verify = ["verify", "--recursive-errors=no"];
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(UNIT).unwrap();

    // As shipped: the only possible complaint is the binary not being
    // installed on this machine.
    let shipped = dir.path().join("shipped");
    std::fs::create_dir(&shipped).unwrap();
    std::fs::write(shipped.join("energyload.service"), &text).unwrap();
    let (_, output) = analyze(&tool, &verify, &shipped.join("energyload.service"));
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.contains(INSTALLED_BIN), "systemd-analyze verify: {line}");
    }

    // With ExecStart pointing at the binary under test: no complaint at all.
    let built = dir.path().join("built");
    std::fs::create_dir(&built).unwrap();
    let unit = built.join("energyload.service");
    let rewritten =
        text.replace(&format!("ExecStart={INSTALLED_BIN} "), &format!("ExecStart={} ", bin().display()));
    assert_ne!(rewritten, text, "ExecStart names {INSTALLED_BIN}");
    std::fs::write(&unit, rewritten).unwrap();
    let (ok, output) = analyze(&tool, &verify, &unit);
    assert!(ok && output.trim().is_empty(), "systemd-analyze verify: {output}");

    // The sandbox as systemd rates it: exposure at most 2.0 ("OK") of 10.
    let (ok, output) = analyze(&tool, &["security", "--offline=yes", "--threshold=20", "--no-pager"], &unit);
    assert!(ok, "systemd-analyze security rates the unit's exposure above 2.0:\n{output}");
}

/// The value of `key:` on its first uncommented line in a YAML text.
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key}: in litestream.yml"))
        .trim()
}

#[test]
fn the_litestream_unit_is_hardened_like_ours_and_matches_the_configs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = checked_vm_config(dir.path());
    let ours = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    let unit = parse_unit(&std::fs::read_to_string(LITESTREAM_UNIT).unwrap());
    let yml = std::fs::read_to_string(LITESTREAM_YML).unwrap();
    let service = "Service";
    assert_eq!(
        one(&unit, service, "ExecStart"),
        "/usr/local/bin/litestream replicate -config /etc/energyload/litestream.yml"
    );
    assert_eq!(
        one(&unit, "Unit", "Before"),
        "energyload.service",
        "up before energyload's readiness needs it"
    );
    // Same user as energyload (it shares the data directory), and every
    // hardening key of ours with the same value, except the paths.
    assert_eq!(one(&unit, service, "User"), one(&ours, service, "User"));
    for key in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "SystemCallArchitectures",
        "UMask",
    ] {
        assert_eq!(one(&unit, service, key), one(&ours, service, key), "{key}");
    }
    assert_eq!(unit[service]["CapabilityBoundingSet"].last().map(String::as_str), Some(""));
    assert_eq!(items(&unit, service, "SystemCallFilter"), items(&ours, service, "SystemCallFilter"));
    // It may write the data directory and the replica directory, nothing else.
    let writable: BTreeSet<PathBuf> =
        items(&unit, service, "ReadWritePaths").into_iter().map(PathBuf::from).collect();
    let database = PathBuf::from(
        yml.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("- path:"))
            .expect("a database in litestream.yml")
            .trim(),
    );
    // The first `path:` is the socket's (its block comes first), the next the replica's.
    let socket = PathBuf::from(yaml_value(&yml, "path"));
    assert_eq!(
        socket.parent(),
        Some(Path::new("/run").join(one(&unit, service, "RuntimeDirectory")).as_path())
    );
    assert_eq!(
        database,
        config.storage.data_dir.join("energyload.db"),
        "litestream.yml replicates our database"
    );
    let replica_dir = yml
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("path:"))
        .map(|p| PathBuf::from(p.trim()))
        .find(|p| *p != socket)
        .expect("the directory replica's path");
    assert_eq!(writable, BTreeSet::from([config.storage.data_dir.clone(), replica_dir.clone()]));
    // The commented [replication] block of the VM config, switched on, names
    // that socket and passes `config check`.
    let vm = std::fs::read_to_string(VM_CONFIG).unwrap();
    let block: String = vm
        .lines()
        .skip_while(|l| *l != "# [replication]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(block.contains(&format!("socket = {:?}", socket.display().to_string())), "{block}");
    let file = dir.path().join("with-replication.toml");
    std::fs::write(&file, format!("{block}\n[storage]\ndata_dir = {:?}\n", dir.path().join("data"))).unwrap();
    config = energyload::config::load(Some(&file), Vec::new()).unwrap().config;
    assert_eq!(config.replication.socket.as_deref(), Some(socket.as_path()));

    if let Some(tool) = systemd_analyze() {
        let verify_dir = dir.path().join("verify");
        std::fs::create_dir(&verify_dir).unwrap();
        let copy = verify_dir.join("energyload-litestream.service");
        std::fs::write(&copy, std::fs::read_to_string(LITESTREAM_UNIT).unwrap()).unwrap();
        let (_, output) = analyze(&tool, &["verify", "--recursive-errors=no"], &copy);
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains("/usr/local/bin/litestream") || line.contains("energyload.service"),
                "systemd-analyze verify: {line}"
            );
        }
    }
}
