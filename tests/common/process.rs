//! `energyload` as a child process: CLI commands and `serve` with a
//! temporary data directory, for exit codes, signals and crash tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_energyload"))
}

/// Writes a config file into `dir` for a child server: ephemeral port, data
/// directory `dir/data`, JSON logs, small disk floor, then `extra` TOML
/// appended inside the named sections.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.join("data");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\ndata_dir = {data:?}\nmin_free_bytes = 1048576\n\n[log]\nformat = \"json\"\n\n{extra}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a CLI command to completion with a config file.
pub fn run_cli(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

/// Creates an admin `admin` with `password` and an API key named `key_name`
/// through the CLI on `config`'s data directory; returns the key.
pub fn seed_admin_and_key(config: &Path, password: &str, key_name: &str) -> String {
    let pw = config.with_file_name("admin.pw");
    std::fs::write(&pw, password).unwrap();
    let out = run_cli(
        config,
        &["user", "add", "admin", "--role", "admin", "--password-file", pw.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_cli(config, &["apikey", "create", key_name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string()
}

/// A running `energyload serve` child.
pub struct ChildServer {
    /// The process.
    pub child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Every stdout line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts `serve --config FILE` and waits until it logs its address.
    pub fn start(config: &Path) -> Self {
        Self::start_with(Command::new(bin()).arg("serve").arg("--config").arg(config))
    }

    /// Starts a prepared `serve` command and waits until it logs its address.
    pub fn start_with(cmd: &mut Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; output: {:?}", lines.lock().unwrap());
            }
        };
        Self { child, addr, lines }
    }

    /// Sends a signal to the child.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the child to exit (at most `limit`) and returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses the address out of the log line `listening` (JSON or text).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    // `log.format = "text"`: `… INFO energyload::…: listening addr=127.0.0.1:1234`.
    if let Some((_, rest)) = line.split_once(": listening addr=") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}
