//! A Litestream process started by us (the demo's `--replicate DIR`, and
//! the tests): writes a `litestream.yml` for one database and a directory
//! replica, runs `litestream replicate -config …` and waits for its control
//! socket. Stopped (SIGTERM, then SIGKILL) when dropped. Production runs
//! Litestream as its own service instead (`systemd/`, `deploy/kubernetes/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How `litestream` is found: `ENERGYLOAD_LITESTREAM` (a path), else
/// `litestream` on the PATH.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENERGYLOAD_LITESTREAM").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join("litestream")).find(|p| p.is_file())
}

/// What to replicate where.
#[derive(Debug, Clone)]
pub struct LitestreamSetup {
    /// The `litestream` binary.
    pub binary: PathBuf,
    /// The database (absolute).
    pub database: PathBuf,
    /// The replica directory.
    pub replica_dir: PathBuf,
    /// Where `litestream.yml`, the socket and the log go.
    pub work_dir: PathBuf,
    /// Litestream's `sync-interval` (e.g. `1s`).
    pub sync_interval: String,
}

/// A running `litestream replicate`.
#[derive(Debug)]
pub struct LitestreamProcess {
    child: Option<Child>,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl LitestreamProcess {
    /// Writes the config, starts Litestream and waits (up to 10 s) until its
    /// control socket answers.
    pub fn start(setup: &LitestreamSetup) -> Result<Self, String> {
        std::fs::create_dir_all(&setup.work_dir)
            .map_err(|e| format!("cannot create {}: {e}", setup.work_dir.display()))?;
        std::fs::create_dir_all(&setup.replica_dir)
            .map_err(|e| format!("cannot create {}: {e}", setup.replica_dir.display()))?;
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let socket = abs(&setup.work_dir.join("litestream.sock"));
        let config = abs(&setup.work_dir.join("litestream.yml"));
        let log = abs(&setup.work_dir.join("litestream.log"));
        let yaml = format!(
            "# Written by energyload for a local replica.\nsocket:\n  enabled: true\n  path: {socket}\ndbs:\n  - path: \
             {db}\n    replica:\n      type: file\n      path: {replica}\n      sync-interval: {interval}\n",
            socket = socket.display(),
            db = abs(&setup.database).display(),
            replica = abs(&setup.replica_dir).display(),
            interval = setup.sync_interval,
        );
        std::fs::write(&config, yaml).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&setup.binary)
            .arg("replicate")
            .arg("-config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", setup.binary.display()))?;
        let mut process = Self { child: Some(child), socket, config, log };
        process.wait_for_socket(Duration::from_secs(10))?;
        Ok(process)
    }

    fn wait_for_socket(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("litestream exited ({status}); see {}", self.log.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("litestream's control socket did not appear; see {}", self.log.display()))
    }

    /// The control socket (for `replication.socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The written `litestream.yml`.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops Litestream: SIGTERM (it finishes its sync), SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // Our own child, not reaped yet: its pid cannot have been reused.
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LitestreamProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
