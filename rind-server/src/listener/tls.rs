//! TLS for the encrypted listeners: the certificate and key from `--tls-cert` and
//! `--tls-key`, swapped in place on reload, and the one rustls configuration (ring provider,
//! TLS 1.2 and 1.3) both DNS over TLS and DNS over HTTPS use.
//!
//! A reload builds the new [`CertifiedKey`] completely before it replaces the old one, so a
//! missing file, bad PEM or a key that does not match the certificate leaves the server
//! with the certificate it had. Handshakes in progress keep the key they started with;
//! connections already open are not touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Time a client has to finish the TLS handshake: a stalled one holds only its own
/// connection slot, and not for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// ALPN for DNS over TLS (RFC 7858 §3.2 via the IANA registry; RFC 9103 needs it for XoT).
pub const ALPN_DOT: &[u8] = b"dot";
/// ALPN for DNS over HTTPS, HTTP/2 first (RFC 8484 §5.2 recommends HTTP/2).
pub const ALPN_DOH: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not PEM of the right kind.
    #[error("the TLS {what} {} is not usable PEM: {detail}", path.display())]
    Pem {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// rustls refused the pair (unsupported key type, or a key of another certificate).
    #[error("the TLS key {} does not fit the certificate {}: {source}", key.display(), cert.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The protocol versions or provider were refused (not expected with the built-in ones).
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The serving certificate, replaceable while connections use the old one.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let provider = crate::upstream::trust::ring_provider();
        let current = read_pair(cert, key, &provider)?;
        Ok(Certificate {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads both files again and serves them from the next handshake on; on error the
    /// current certificate stays.
    pub fn reload(&self) -> Result<(), CertError> {
        let fresh = Arc::new(read_pair(&self.cert, &self.key, &self.provider)?);
        // A writer that panicked cannot have left a half-written Arc behind.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Server settings offering `alpn`, serving whatever certificate is current at each
    /// handshake.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, CertError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(CertError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// Completes the server side of a handshake within [`HANDSHAKE_TIMEOUT`]; `None` (logged at
/// debug) when the client fails or stalls.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not finished in time; closing");
            None
        }
    }
}

fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "key")?;
    let pem_error = |what, path: &Path, detail: String| CertError::Pem {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate",
            cert,
            "no CERTIFICATE section".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let detail = match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY section".to_string(),
            other => other.to_string(),
        };
        pem_error("key", key, detail)
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|source| CertError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}
