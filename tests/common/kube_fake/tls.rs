//! The fake cluster's PKI and kubeconfig: a CA made for this run, a serving certificate for
//! 127.0.0.1 and localhost signed by it (kube's rustls client verifies it like a real API
//! server's, IP SAN included), and kubeconfig files with the CA inline and a bearer token.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn generate() -> Result<Pki, String> {
    let err = |e: rcgen::Error| format!("generating the fake cluster's certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "kube-fake-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &ca).map_err(err)?;

    let chain =
        vec![CertificateDer::from(cert.der().to_vec()), CertificateDer::from(ca.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| e.to_string())?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Pki { ca_pem: ca.pem(), server: Arc::new(server) })
}

/// Writes a kubeconfig for `user` (authenticating with `token`) whose context's default
/// namespace is `namespace`.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    token: &str,
    namespace: &str,
) -> std::io::Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    // Double-quoted YAML scalars (user names like `system:serviceaccount:x:y` need quoting).
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let (user, token, namespace) = (quote(user), quote(token), quote(namespace));
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: kube-fake\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  user:\n    token: {token}\n\
         contexts:\n\
         - name: kube-fake\n  context:\n    cluster: kube-fake\n    user: {user}\n    namespace: {namespace}\n\
         current-context: kube-fake\n"
    );
    std::fs::write(path, text)
}
