//! Litestream's control socket: HTTP over a unix socket (`socket:` in
//! `litestream.yml`). Blocking and minimal on purpose: one HTTP/1.0 request
//! per connection (so the answer is never chunked and ends at EOF), used by
//! the one replication thread. `POST /sync` with `wait: true` syncs the
//! WAL and returns only once Litestream's replica holds everything
//! committed before the request (status `synced`, or `no_change` when
//! nothing was new); `GET /list` tells whether the database is replicated.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a control request failed (text for the status and the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

/// What `POST /sync` answered.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncAnswer {
    /// `synced`, `no_change` or `synced_local`.
    pub status: String,
    /// Litestream's local transaction id after the sync.
    pub txid: u64,
    /// The transaction id the replica holds.
    #[serde(default)]
    pub replicated_txid: u64,
}

#[derive(Deserialize)]
struct ListAnswer {
    databases: Vec<ListedDatabase>,
}

#[derive(Deserialize)]
struct ListedDatabase {
    path: String,
    status: String,
}

/// A client of one Litestream control socket for one database.
#[derive(Debug, Clone)]
pub struct ControlSocket {
    socket: PathBuf,
    database: String,
}

impl ControlSocket {
    /// A client for `database` (absolute path, as Litestream knows it) at
    /// `socket`.
    pub fn new(socket: &Path, database: &Path) -> Self {
        Self { socket: socket.to_path_buf(), database: database.to_string_lossy().into_owned() }
    }

    /// Syncs and waits until the replica holds everything committed before
    /// this call, at most `timeout` (Litestream counts whole seconds).
    pub fn sync_and_wait(&self, timeout: Duration) -> Result<SyncAnswer, ControlError> {
        let secs = super::barrier::whole_secs(timeout);
        let body = serde_json::json!({"path": self.database, "wait": true, "timeout": secs}).to_string();
        let answer = self.exchange("POST", "/sync", Some(&body), timeout + Duration::from_secs(2))?;
        let parsed: SyncAnswer = serde_json::from_str(&answer)
            .map_err(|e| ControlError(format!("unexpected answer from Litestream's /sync: {e}")))?;
        if parsed.status == "synced_local" {
            return Err(ControlError("Litestream synced locally but did not confirm the replica".into()));
        }
        Ok(parsed)
    }

    /// Whether Litestream replicates this database now (`GET /list`):
    /// `Ok(true)` when it lists it as open or replicating.
    pub fn is_replicating(&self, timeout: Duration) -> Result<bool, ControlError> {
        let answer = self.exchange("GET", "/list", None, timeout)?;
        let list: ListAnswer = serde_json::from_str(&answer)
            .map_err(|e| ControlError(format!("unexpected answer from Litestream's /list: {e}")))?;
        Ok(list.databases.iter().any(|d| d.path == self.database && d.status != "stopped"))
    }

    /// One request, the body of a `200` answer back.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ControlError> {
        let fail = |what: &str, e: std::io::Error| {
            ControlError(format!("Litestream control socket {}: {what}: {e}", self.socket.display()))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| fail("cannot connect", e))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| fail("cannot set a timeout", e))?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| fail("cannot set a timeout", e))?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: litestream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(|e| fail("cannot send", e))?;
        let mut raw = Vec::with_capacity(512);
        stream.take(1 << 20).read_to_end(&mut raw).map_err(|e| fail("no answer", e))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, answer) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ControlError("Litestream's control socket sent an incomplete answer".into()))?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            let detail = serde_json::from_str::<serde_json::Value>(answer)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| answer.trim().chars().take(200).collect());
            return Err(ControlError(format!("Litestream answered {status} to {path}: {detail}")));
        }
        Ok(answer.to_string())
    }
}
