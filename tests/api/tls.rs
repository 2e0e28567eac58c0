//! Optional TLS on the listener, through a real `energyload serve` with a
//! self-signed certificate made in the test: HTTPS works for a client that
//! trusts it, plain HTTP on the TLS port gets no HTTP answer, SIGHUP puts a
//! replaced certificate in place for new connections while an open
//! connection keeps working, and a reload with a broken certificate keeps
//! the current one. `config check` validates the pair.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::cli_identity::cli_ok;
use crate::common::esight::wait_for;
use crate::common::process::{ChildServer, bin, run_cli, write_config};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Writes a new self-signed certificate for `localhost` and its key to
/// `cert`/`key`; returns the certificate (DER).
fn new_certificate(cert: &Path, key: &Path) -> CertificateDer<'static> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(cert, generated.cert.pem()).unwrap();
    std::fs::write(key, generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().clone()
}

/// A TLS connection to `addr` for `localhost`, trusting only `trusted`.
fn connect(addr: SocketAddr, trusted: &[&CertificateDer<'static>]) -> std::io::Result<TlsStream> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The certificate the server presented on `stream`.
fn peer_certificate(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}

/// One keep-alive `GET path` on an open connection: (status, JSON body).
fn get(stream: &mut TlsStream, path: &str) -> (u16, Value) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stream.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn https_serves_with_the_certificate_and_sighup_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let config = write_config(dir.path(), "");
    let first = new_certificate(&cert, &key);
    let mut server = ChildServer::start_with(
        Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("ENERGYLOAD_SERVER_TLS_CERT", &cert)
            .env("ENERGYLOAD_SERVER_TLS_KEY", &key)
            // The kept-alive connection below idles while the test reloads.
            .env("ENERGYLOAD_SERVER_HEADER_READ_TIMEOUT", "120s"),
    );

    let mut kept = connect(server.addr, &[&first]).expect("TLS with the first certificate");
    assert_eq!(peer_certificate(&kept), first);
    let (status, body) = get(&mut kept, "/healthz");
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    assert_eq!(get(&mut kept, "/readyz").0, 200);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP answered: {}", String::from_utf8_lossy(&answer));

    let second = new_certificate(&cert, &key);
    server.signal(Signal::HUP);
    let seen = wait_for(Duration::from_secs(20), "the new certificate on new connections", || {
        let stream = connect(server.addr, &[&first, &second]).ok()?;
        (peer_certificate(&stream) == second).then_some(stream)
    });
    let mut fresh = seen;
    assert_eq!(get(&mut fresh, "/healthz").0, 200);
    assert!(connect(server.addr, &[&first]).is_err(), "the old certificate is still served");
    assert_eq!(get(&mut kept, "/healthz").0, 200, "an open connection broke on reload");

    // A broken certificate file: the reload fails and the second one stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    server.signal(Signal::HUP);
    wait_for(Duration::from_secs(20), "the failed reload to be audited", || {
        let out = cli_ok(&config, &["audit", "export"]);
        out.contains("config_reload_failed").then_some(())
    });
    let mut after = connect(server.addr, &[&second]).expect("the second certificate still served");
    assert_eq!(peer_certificate(&after), second);
    assert_eq!(get(&mut after, "/healthz").0, 200);

    server.signal(Signal::TERM);
    assert_eq!(server.wait(Duration::from_secs(20)), Some(0));
}

#[test]
fn config_check_validates_the_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", cert, key)).unwrap();
    new_certificate(&cert, &key);
    let out = run_cli(&config, &["config", "check"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLS certificate SHA-256 fingerprint"), "{text}");
    let effective: toml::Table = text.parse().unwrap();
    assert_eq!(effective["server"]["tls_cert"].as_str(), Some(cert.to_str().unwrap()));

    // A key that does not belong to the certificate.
    new_certificate(&dir.path().join("other.crt"), &key);
    let out = run_cli(&config, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.tls_cert") && err.lines().count() == 1, "{err}");

    // Only one of the two.
    std::fs::write(&config, format!("[server]\ntls_cert = {cert:?}\n")).unwrap();
    let out = run_cli(&config, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls_key"));
}
