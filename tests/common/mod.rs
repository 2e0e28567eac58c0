//! Test helpers shared by the integration test binaries: an in-process
//! appliance on an ephemeral port with a temporary data directory
//! (`spawn_app`), a child `energyload serve` process (`ChildServer`) for
//! signal and crash tests, and a small blocking HTTP client over loopback.
#![allow(dead_code)]

pub mod demo;
pub mod elf;
pub mod esight;
pub mod http;
pub mod identity;
pub mod litestream;
pub mod process;
pub mod session;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use energyload::app::App;
use energyload::config::Config;
use tempfile::TempDir;

pub use http::Reply;

/// An appliance running in this process, stopped when dropped.
pub struct TestApp {
    /// The bound address.
    pub addr: SocketAddr,
    /// The temporary data directory (removed when dropped).
    pub dir: TempDir,
    /// The configuration the app runs with.
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A configuration for tests: ephemeral port, a data directory inside `dir`,
/// a small disk floor so that test machines with little space still pass.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.storage.data_dir = dir.join("data");
    c.storage.min_free_bytes = 1024 * 1024;
    c
}

/// Starts an appliance with the test configuration.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// Starts an appliance after `customize` adjusts the test configuration.
pub fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    customize(&mut config);
    start(dir, config)
}

/// Starts an appliance on an existing directory and configuration.
pub fn start(dir: TempDir, config: Config) -> TestApp {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = config.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let app = match App::build(cfg).await {
                Ok(app) => app,
                Err(e) => {
                    addr_tx.send(Err(e.to_string())).unwrap();
                    return;
                }
            };
            addr_tx.send(Ok(app.local_addr())).unwrap();
            app.run_until_stopped(async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap().unwrap_or_else(|e| panic!("app did not start: {e}"));
    TestApp { addr, dir, config, stop: Some(stop_tx), thread: Some(thread) }
}

impl TestApp {
    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.storage.data_dir.clone()
    }

    /// A GET request.
    pub fn get(&self, path: &str) -> Reply {
        http::request("GET", &format!("{}{path}", self.base()), &[], None)
    }

    /// Any request with headers and an optional body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        http::request(method, &format!("{}{path}", self.base()), headers, body)
    }

    /// Stops the app and waits for it to finish, keeping the data directory.
    pub fn stop(mut self) -> (TempDir, Config) {
        self.shutdown();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.config.clone())
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown();
    }
}
