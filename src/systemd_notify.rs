//! systemd's service notification protocol (`sd_notify`, for
//! `Type=notify` / `Type=notify-reload` units), implemented directly: one
//! datagram of `KEY=VALUE` lines to the unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace). Without `NOTIFY_SOCKET`
//! every call does nothing. Sending never blocks and never fails the caller:
//! a lost notification is logged.
//!
//! Not the `sd-notify` crate (0.5): it `connect`s `NOTIFY_SOCKET` as a file
//! path, so an `@abstract` socket (containers, nspawn) fails, and it reads
//! the variable at every call instead of once.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;

/// Why `NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Neither a path nor an `@` abstract name (e.g. `vsock:`).
    #[error("NOTIFY_SOCKET is neither a socket path nor an @abstract name")]
    Unsupported,
    /// The address is invalid or the socket cannot be created.
    #[error("NOTIFY_SOCKET cannot be used: {0}")]
    Io(#[from] std::io::Error),
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

/// Sends state changes to systemd; cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

impl Notifier {
    /// A notifier for this process's `NOTIFY_SOCKET`; disabled (with a
    /// warning) when the variable is unusable, silent when it is unset.
    pub fn from_env() -> Self {
        let var = std::env::var_os("NOTIFY_SOCKET");
        Self::for_socket(var.as_deref()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "systemd notifications are off");
            Self::default()
        })
    }

    /// A notifier for the socket named like `NOTIFY_SOCKET` (`None` or empty: disabled).
    pub fn for_socket(name: Option<&OsStr>) -> Result<Self, NotifyError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else { return Ok(Self::default()) };
        let bytes = name.as_bytes();
        let addr = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
            Some(b'/') => SocketAddr::from_pathname(name)?,
            _ => return Err(NotifyError::Unsupported),
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self { target: Some(Arc::new(Target { socket, addr })) })
    }

    /// True when notifications go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: start-up (or a reload) is complete and the service serves.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd requires to match it
    /// to the reload request; follow with [`Notifier::ready`].
    pub fn reloading(&self, status: &str) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}", monotonic_usec(), one_line(status)));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`: a one-line description shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            tracing::warn!(error = %e, "systemd notification not delivered");
        }
    }
}

/// A status is one line: newlines would start new assignments.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares against.
fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    secs * 1_000_000 + micros
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_socket(Some(path.as_os_str())).unwrap();
        assert!(notifier.is_enabled());
        notifier.ready("serving\non port 1");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving on port 1");
        notifier.reloading("reloading");
        let reloading = receive(&listener);
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1].strip_prefix("MONOTONIC_USEC=").unwrap().parse().unwrap();
        assert!(usec > 0);
        notifier.stopping("bye");
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=bye");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("energyload-test-{}-{}", std::process::id(), rand::random::<u64>());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::for_socket(Some(OsStr::new(&format!("@{name}")))).unwrap();
        notifier.status("hello");
        assert_eq!(receive(&listener), "STATUS=hello");
    }

    #[test]
    fn unset_is_off_and_other_schemes_are_refused() {
        assert!(!Notifier::for_socket(None).unwrap().is_enabled());
        assert!(!Notifier::for_socket(Some(OsStr::new(""))).unwrap().is_enabled());
        Notifier::default().ready("nobody listens");
        assert!(matches!(Notifier::for_socket(Some(OsStr::new("vsock:2:1"))), Err(NotifyError::Unsupported)));
    }
}
