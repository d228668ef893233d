//! The one place rustls client settings are made: which CAs an encrypted upstream's
//! certificate must chain to, and the [`ClientConfig`] built on them.
//!
//! The CAs are `--upstream-ca FILE` when given, else the system's store (read by
//! `rustls-native-certs`, so a CA the operator installed on the host counts, and a distrust
//! shipped by the distribution applies). The file replaces the system store rather than adding
//! to it, so a host without `ca-certificates` works with `--upstream-ca` alone.
//!
//! The crypto provider is `ring`, passed explicitly: no process-wide default is installed, so
//! other rustls users in the process (the TLS listeners) choose their own.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why there are no CAs to check upstream certificates against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// `--upstream-ca` cannot be read or holds no usable certificate.
    #[error("--upstream-ca {file}: {why}")]
    CaFile {
        /// The file as given.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// An encrypted upstream, no `--upstream-ca`, and no system CA certificates.
    #[error("tls:// and https:// upstreams need CA certificates: none found in the system store ({0}); install ca-certificates or give --upstream-ca FILE")]
    NoSystemRoots(String),
    /// rustls refused the settings (not expected with the ring provider's defaults).
    #[error("cannot set up TLS for upstreams: {0}")]
    Settings(String),
}

/// The CA certificates in the PEM file `file`.
pub fn roots_from_file(file: &Path) -> Result<Arc<RootCertStore>, TrustError> {
    let error = |why: String| TrustError::CaFile {
        file: file.display().to_string(),
        why,
    };
    // Read first, so a missing file says so rather than "no certificate".
    let pem = std::fs::read(file).map_err(|e| error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| error(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(format!("a certificate rustls cannot use: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error("no CERTIFICATE block in it".to_string()));
    }
    Ok(Arc::new(roots))
}

/// The system's CA certificates; certificates it cannot parse are skipped.
pub fn system_roots() -> Result<Arc<RootCertStore>, TrustError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _skipped) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "it is empty".to_string(), ToString::to_string);
        return Err(TrustError::NoSystemRoots(why));
    }
    for e in &found.errors {
        tracing::debug!(error = %e, "part of the system CA store could not be read");
    }
    Ok(Arc::new(roots))
}

/// The client settings of encrypted upstreams, made once at start.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// For `tls://` upstreams.
    pub dot: Arc<ClientConfig>,
    /// For `https://` upstreams: offers ALPN `h2`.
    pub doh: Arc<ClientConfig>,
}

impl UpstreamTls {
    /// Both settings over `roots`.
    pub fn new(roots: Arc<RootCertStore>) -> Result<Self, TrustError> {
        Ok(UpstreamTls {
            dot: client_config(Arc::clone(&roots), &[])?,
            doh: client_config(roots, &[b"h2"])?,
        })
    }
}

/// The cryptography both TLS sides use: ring's.
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; the
    // aws-lc-rs one has it but needs cmake and nasm to build.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring's provider the process default, for the TLS settings rind does not build
/// itself: reqwest's clients (rind-ctl's, the tests') take theirs from the default, and none
/// is compiled in since rind gives its one reqwest client, the blocklist fetcher, its own.
pub fn install_ring_default() {
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider();
    // An error means a default is installed already, which is all this asks.
    let _ = ring.install_default();
}

/// Client settings over `roots`, offering the ALPN protocols `alpn` (e.g. `h2`).
pub fn client_config(
    roots: Arc<RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TrustError> {
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Settings(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file_and_the_cause() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("missing.pem");
        let e = roots_from_file(&missing).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").expect("write");
        let e = roots_from_file(&empty).expect_err("no cert");
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn a_generated_ca_loads() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.pem()).expect("write");
        let roots = roots_from_file(&file).expect("loads");
        assert_eq!(roots.len(), 1);
        assert!(client_config(roots, &[b"h2"]).is_ok());
    }
}
