//! Optional TLS on the listener (`server.tls_cert` + `server.tls_key`):
//! loading a PEM certificate chain and private key into a rustls server
//! configuration (ring provider, HTTP/1.1 only), and the swappable slot the
//! accept loop reads for every new connection, so that a SIGHUP can put a new
//! certificate in place while open connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS certificate or key cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable PEM private key.
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key cannot be used: {0}")]
    Rejected(String),
}

/// A loaded certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct TlsMaterial {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

impl TlsMaterial {
    /// Reads and checks the PEM files: at least one certificate, a private
    /// key, and a key that matches the leaf certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
        };
        let cert_pem = read(cert_path)?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
        let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate { path: cert_path.to_path_buf() })?;
        let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
        let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
            .map_err(|_| TlsError::NoKey { path: key_path.to_path_buf() })?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rejected(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rejected(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config), fingerprint })
    }

    /// SHA-256 of the leaf certificate (DER), lower-case hex: public, and
    /// what an operator compares to see which certificate is served.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The certificate new connections are served with; replaced on reload.
pub struct TlsSlot {
    current: RwLock<TlsMaterial>,
}

impl TlsSlot {
    /// A slot holding `material`.
    pub fn new(material: TlsMaterial) -> Self {
        Self { current: RwLock::new(material) }
    }

    /// An acceptor for one new connection, with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        let material = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(material.config.clone())
    }

    /// Serves `material` to connections accepted from now on.
    pub fn replace(&self, material: TlsMaterial) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = material;
    }

    /// The fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> String {
        self.current.read().unwrap_or_else(|e| e.into_inner()).fingerprint.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key, generated.cert.der().to_vec())
    }

    #[test]
    fn a_matching_pair_loads_and_names_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = write_pair(dir.path(), "a");
        let material = TlsMaterial::load(&cert, &key).unwrap();
        assert_eq!(material.fingerprint(), hex::encode(Sha256::digest(&der)));
        let slot = TlsSlot::new(material);
        let (cert_b, key_b, der_b) = write_pair(dir.path(), "b");
        slot.replace(TlsMaterial::load(&cert_b, &key_b).unwrap());
        assert_eq!(slot.fingerprint(), hex::encode(Sha256::digest(&der_b)));
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a, _) = write_pair(dir.path(), "a");
        let (_, key_b, _) = write_pair(dir.path(), "b");
        let missing = dir.path().join("missing.pem");
        assert!(matches!(TlsMaterial::load(&missing, &key_a), Err(TlsError::Read { .. })));
        assert!(matches!(TlsMaterial::load(&key_a, &key_a), Err(TlsError::NoCertificate { .. })));
        assert!(matches!(TlsMaterial::load(&cert_a, &cert_a), Err(TlsError::NoKey { .. })));
        let mismatch = TlsMaterial::load(&cert_a, &key_b).err().expect("a foreign key is refused");
        assert!(matches!(mismatch, TlsError::Rejected(_)), "{mismatch}");
        let key_text = std::fs::read_to_string(&key_b).unwrap();
        assert!(!mismatch.to_string().contains(key_text.lines().nth(1).unwrap()));
    }
}
