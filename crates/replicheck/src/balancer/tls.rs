//! The certificates a run's balancer terminates TLS with, made for the run: a certificate
//! authority that exists only in this process, and the balancer's certificate signed by
//! it. The run's virtual users trust that authority and nothing else, so they speak real
//! https to the balancer as browsers do to a TLS-terminating proxy, and `Secure` cookies
//! flow as they would in production.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot make the run's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The run's certificate authority and the balancer's certificate.
pub struct RunCertificates {
    authority: CertificateDer<'static>,
    authority_pem: String,
    certificate: CertificateDer<'static>,
    certificate_pem: String,
    key: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

impl std::fmt::Debug for RunCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("RunCertificates").finish_non_exhaustive()
    }
}

impl RunCertificates {
    /// Certificates for `localhost` and `addresses` (where clients reach the balancer).
    pub fn generate(addresses: &[IpAddr]) -> Result<Self, TlsError> {
        let mut authority = CertificateParams::new(Vec::<String>::new())?;
        authority.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        authority.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        authority
            .distinguished_name
            .push(DnType::CommonName, "replicheck run authority");
        let authority = CertifiedIssuer::self_signed(authority, KeyPair::generate()?)?;

        let mut names = vec!["localhost".to_owned()];
        names.extend(addresses.iter().map(IpAddr::to_string));
        let mut leaf = CertificateParams::new(names)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "replicheck balancer");
        let key = KeyPair::generate()?;
        let certificate = leaf.signed_by(&key, &authority)?;
        Ok(Self {
            authority: authority.der().clone(),
            authority_pem: authority.pem(),
            certificate: certificate.der().clone(),
            certificate_pem: certificate.pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            key_pem: key.serialize_pem(),
        })
    }

    /// The server side: the balancer's certificate and key, HTTP/1.1 only.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.certificate.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The authority clients must trust, DER-encoded.
    pub fn authority(&self) -> &CertificateDer<'static> {
        &self.authority
    }

    /// The authority, PEM-encoded (for curl's `--cacert`).
    pub fn authority_pem(&self) -> &str {
        &self.authority_pem
    }

    /// The balancer's certificate chain and key, PEM-encoded, for another server that
    /// should present the same identity (a reference proxy in a benchmark).
    pub fn server_pem(&self) -> (String, &str) {
        (
            format!("{}{}", self.certificate_pem, self.authority_pem),
            &self.key_pem,
        )
    }
}
