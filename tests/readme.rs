//! The README's "First steps with `serve`" run as they stand: the two shell
//! blocks of that section are read out of README.md (so the README and this
//! test cannot drift apart) and run with bash in a temporary copy of the
//! repository: terminal 1's block (`cargo install --path . --locked`, then
//! `energyload serve`) in the background, terminal 2's block once the
//! server answers. The only change made to them is the port: 8080 becomes a
//! free one (`ENERGYLOAD_SERVER_LISTEN` for `serve`, the URLs in terminal 2).
//!
//! Each `# …` comment line that shows output (it starts with `{`) must match
//! what the commands printed, in order, `…` standing for any text. The
//! installed binary must be the statically linked one.
//!
//! `cargo install` builds into `target/readme-install/` (its own target
//! directory: it must not replace the binary the other tests run, and a
//! second build there is incremental). On a fresh machine that first build
//! takes about as long as the release build itself (README, "The two
//! commands").

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/elf.rs"]
mod elf;

use elf::has_interpreter;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const SECTION: &str = "## First steps with `serve`";
/// Long enough for `cargo install`'s first build on a fresh 2-core machine.
const INSTALL_AND_START: Duration = Duration::from_secs(30 * 60);

/// The fenced `sh` blocks of the section headed `heading`, in order.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let body = &readme[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The output shown in `# {…}` comment lines, in order.
fn shown_outputs(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# "))
        .filter(|l| l.starts_with('{'))
        .map(str::to_string)
        .collect()
}

/// Checks that every shown output occurs in `printed`, in order, each `…`
/// matching any text.
fn assert_shown_outputs_printed(shown: &[String], printed: &str) {
    let mut at = 0;
    for expected in shown {
        for fragment in expected.split('…').filter(|f| !f.is_empty()) {
            match printed[at..].find(fragment) {
                Some(i) => at += i + fragment.len(),
                None => panic!(
                    "README shows {expected:?}, but {fragment:?} is not in what followed:\n{}",
                    &printed[at..]
                ),
            }
        }
    }
}

/// A copy of the repository without build output, data or git.
fn copy_repository(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | "data" | "demo-data")) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_repository(&entry.path(), &dest);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Terminal 1, in its own process group so that stopping it stops `serve`.
struct Terminal1(Child);

impl Drop for Terminal1 {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Waits until `GET /readyz` answers on `port`, or terminal 1 ended.
fn wait_until_serving(terminal: &mut Terminal1, port: u16, log: &Path) {
    let deadline = Instant::now() + INSTALL_AND_START;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = terminal.0.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("terminal 1 ended ({status}) before serving:\n{text}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port} after {INSTALL_AND_START:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_first_steps_of_the_readme_run_as_they_stand() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let blocks = shell_blocks(&readme, SECTION);
    assert_eq!(blocks.len(), 2, "two shell blocks (terminal 1, terminal 2) under {SECTION:?}");
    assert!(blocks[0].contains("cargo install --path . --locked"), "{}", blocks[0]);
    assert!(blocks[0].contains("energyload serve"), "{}", blocks[0]);

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("energyload");
    copy_repository(Path::new(REPO), &clone);
    let cargo_root: PathBuf = tmp.path().join("cargo-root");
    let path = format!("{}:{}", cargo_root.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let port = free_port();

    let log = tmp.path().join("terminal-1.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &blocks[0]])
        .current_dir(&clone)
        .env("PATH", &path)
        .env("CARGO_INSTALL_ROOT", &cargo_root)
        .env("CARGO_TARGET_DIR", Path::new(REPO).join("target/readme-install"))
        .env("ENERGYLOAD_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut terminal1 = Terminal1(child);
    wait_until_serving(&mut terminal1, port, &log);

    let installed = cargo_root.join("bin/energyload");
    assert!(!has_interpreter(&std::fs::read(&installed).unwrap()), "the installed binary is dynamic");

    let terminal2 = blocks[1].replace("localhost:8080", &format!("localhost:{port}"));
    let mut out = Command::new("bash")
        .args(["-eu", "-c", &terminal2])
        .current_dir(&clone)
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    out.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let mut errors = String::new();
    out.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
    let status = out.wait().unwrap();
    assert!(status.success(), "terminal 2 failed ({status}):\n{printed}\n{errors}");

    assert_shown_outputs_printed(&shown_outputs(&blocks[1]), &printed);
    let last = printed.lines().last().unwrap_or_default();
    let password = last.rsplit(' ').next().unwrap_or_default();
    assert!(
        last.starts_with("admin page: http://localhost:") && password.len() >= 16,
        "the last line names the admin page and alice's password: {last:?}"
    );
    drop(terminal1);
    let served = std::fs::read_to_string(&log).unwrap();
    assert!(served.contains("listening"), "serve's log: {served}");
}

#[test]
fn a_shown_output_that_was_not_printed_fails_the_check() {
    let shown = vec![r#"{…"status":"accepted",…}"#.to_string()];
    assert_shown_outputs_printed(&shown, r#"{"x":1,"status":"accepted","y":2}"#);
    let missing =
        std::panic::catch_unwind(|| assert_shown_outputs_printed(&shown, r#"{"status":"invalid"}"#));
    assert!(missing.is_err());
    let order = vec!["{\"a\"…".to_string(), "{\"b\"…".to_string()];
    assert!(std::panic::catch_unwind(|| assert_shown_outputs_printed(&order, "{\"b\":1}{\"a\":1}")).is_err());
}
