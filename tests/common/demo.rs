//! `energyload demo` as a child process: started as a tester would, with its
//! banner (admin URL, username, password) read from stdout. Killed on drop
//! if a test fails half-way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::bin;

/// A running demo.
pub struct DemoProcess {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT/admin/`.
    pub admin_url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The printed admin username.
    pub username: String,
    /// The printed admin password.
    pub password: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl DemoProcess {
    /// Starts `energyload demo --fresh --listen 127.0.0.1:0 --data-dir DATA`
    /// in `cwd` and reads its banner.
    pub fn start(cwd: &Path, data: &Path) -> Self {
        let mut child = Command::new(bin())
            .args(["demo", "--fresh", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Self {
            child,
            admin_url: String::new(),
            base: String::new(),
            username: String::new(),
            password: String::new(),
            lines,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let field =
            |prefix: &'static str| move |l: &str| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string());
        demo.admin_url = demo.wait_line(deadline, field("admin page:"));
        demo.username = demo.wait_line(deadline, field("username:"));
        demo.password = demo.wait_line(deadline, field("password:"));
        demo.base = demo
            .admin_url
            .strip_suffix("/admin/")
            .unwrap_or_else(|| panic!("admin URL {}", demo.admin_url))
            .to_string();
        demo
    }

    /// Waits for a stdout line satisfying `pick`; keeps every line seen.
    pub fn wait_line<T>(&mut self, deadline: Instant, pick: impl Fn(&str) -> Option<T>) -> T {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(v) = found {
                        return v;
                    }
                }
                Err(_) => panic!("the demo did not print what was expected; output so far: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
