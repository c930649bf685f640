//! TLS served by kterm itself (rustls, ring provider), for a host without a reverse proxy.
//!
//! The certificate lives behind [`TlsCertificate`], a resolver that every handshake asks; a
//! reload (SIGHUP) reads the files again and swaps it, so new connections get the new
//! certificate while open ones keep theirs. A reload that fails keeps the old certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{ConfigError, TlsConfig};

#[derive(Debug)]
pub struct TlsCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl TlsCertificate {
    /// Reads `tls.cert` and `tls.key`; errors name the key.
    pub fn load(config: &TlsConfig) -> Result<TlsCertificate, ConfigError> {
        let key = read_pair(&config.cert, &config.key)?;
        Ok(TlsCertificate {
            cert: config.cert.clone(),
            key: config.key.clone(),
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Reads the files again and serves the new certificate from the next handshake on.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let key = read_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The rustls server config that serves this certificate (HTTP/1.1 over TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ConfigError> {
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError(format!("TLS setup: {e}")))?
                .with_no_client_auth()
                .with_cert_resolver(self.clone());
        Ok(config)
    }
}

impl ResolvesServerCert for TlsCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, ConfigError> {
    let bad = |key: &str, path: &Path, what: String| {
        ConfigError(format!("config key `{key}`: {}: {what}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad("tls.cert", cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("tls.cert", cert_path, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| bad("tls.key", key_path, e.to_string()))?;
    let signing_key = ring::sign::any_supported_type(&key)
        .map_err(|e| bad("tls.key", key_path, e.to_string()))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .map_err(|e| bad("tls.key", key_path, format!("does not match tls.cert ({e})")))?;
    Ok(certified)
}
