//! Start-up refusals through the real binary: a busy port is found before
//! anything is written (no data directory left behind) and the message
//! names every place the address is set; a data directory in use is refused
//! once, naming the process that holds it and what to change.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::process::{ChildServer, bin, run_cli, write_config};

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_string()
}

/// `serve --config FILE` with the environment emptied but for `vars`.
fn serve_with_env(config: &Path, vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"]).arg(config).env_clear();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_busy_port_leaves_no_data_directory_and_names_where_the_address_is_set() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh-data");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n\n[storage]\ndata_dir = {data:?}\nmin_free_bytes = 1048576\n"
        ),
    )
    .unwrap();
    let hint = "stop the process that uses it or choose another address with server.listen in the config file \
                or ENERGYLOAD_SERVER_LISTEN (port 0: any free port)";

    let out = run_cli(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: cannot listen on {addr} (server.listen, from file {}): Address already in use (os error 98); {hint}",
            config.display()
        )
    );
    assert!(
        !data.exists(),
        "nothing created: {:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    assert!(
        out.stdout.is_empty(),
        "nothing logged before the refusal: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The same address from the environment is named as such; the data
    // directory from the environment is not created either.
    let other_data = dir.path().join("env-data");
    let out = serve_with_env(
        &config,
        &[
            ("ENERGYLOAD_SERVER_LISTEN", &addr.to_string()),
            ("ENERGYLOAD_STORAGE_DATA_DIR", other_data.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: cannot listen on {addr} (server.listen, from environment variable ENERGYLOAD_SERVER_LISTEN): \
             Address already in use (os error 98); {hint}"
        )
    );
    assert!(!other_data.exists() && !data.exists());

    // The demo names its flag, and leaves its data directory alone too.
    let demo_data = dir.path().join("demo-data");
    let out = Command::new(bin())
        .args(["demo", "--listen", &addr.to_string(), "--data-dir"])
        .arg(&demo_data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: cannot listen on {addr} (--listen): Address already in use (os error 98); stop the process \
             that uses it or choose another address with --listen (port 0: any free port)"
        )
    );
    assert!(!demo_data.exists());
    drop(busy);
}

#[test]
fn a_second_server_is_refused_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let first = ChildServer::start(&config);
    let data = dir.path().join("data");
    let in_use = format!(
        "data directory {} is in use by process {} (energyload serve)",
        data.display(),
        first.child.id()
    );

    let out = run_cli(&config, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: {in_use}; stop it or use another data directory (storage.data_dir in the config file or \
             ENERGYLOAD_STORAGE_DATA_DIR)"
        )
    );
    // Once: not logged on stdout as well (it was, before).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("is in use"), "{stdout}");

    // The demo on the same directory names the same process, and --fresh
    // does not delete a directory in use.
    let out = Command::new(bin())
        .args(["demo", "--fresh", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr_of(&out), format!("error: {in_use}; stop it or use another --data-dir"));
    assert!(data.join("energyload.db").is_file(), "the data directory is intact");
    drop(first);
}
