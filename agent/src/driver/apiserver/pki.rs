//! The cluster's certificates, like k3s makes them: a per-cluster CA at
//! bootstrap, the API server's certificate (its SANs are what
//! `--tls-san` adds for real k3s) and the admin's client certificate, both
//! issued from that CA. Every key is ECDSA P-256.
//!
//! Private keys only ever leave this module inside a [`ClusterCa`] or a
//! [`ServerCert`], whose `Debug` output redacts them.

use crate::driver::{ClusterCa, RuntimeError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names every API certificate carries besides the plan's: what
/// k3s's own certificate lists for a node talking to itself.
pub const LOCAL_SANS: [&str; 5] = [
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
];

fn pki_error(what: &str, e: rcgen::Error) -> RuntimeError {
    RuntimeError::Unexpected(format!("cannot {what}: {e}"))
}

/// A new self-signed cluster CA, named like k3s names its server CA
/// (`k3s-server-ca@<unix time>`).
pub fn new_cluster_ca() -> Result<ClusterCa, RuntimeError> {
    let key = KeyPair::generate().map_err(|e| pki_error("generate the CA key", e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("k3s-server-ca@{}", chrono::Utc::now().timestamp()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| pki_error("self-sign the cluster CA", e))?;
    Ok(ClusterCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The issuer of `ca` (its certificate parsed, its key loaded).
fn issuer(ca: &ClusterCa) -> Result<Issuer<'static, KeyPair>, RuntimeError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| pki_error("read the CA key", e))?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|e| pki_error("read the CA certificate", e))
}

/// A certificate and its key, issued from the cluster CA.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
    /// Its private key (PEM, PKCS#8; secret).
    pub key_pem: String,
    /// Its private key (DER, PKCS#8; secret).
    key_der: Vec<u8>,
}

impl IssuedCert {
    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn issue(
    ca: &ClusterCa,
    mut params: CertificateParams,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<IssuedCert, RuntimeError> {
    let issuer = issuer(ca)?;
    let key = KeyPair::generate().map_err(|e| pki_error("generate a certificate key", e))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        name.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| pki_error(&format!("issue the certificate of {common_name}"), e))?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    })
}

/// The names a server certificate of `node_name` carries: [`LOCAL_SANS`],
/// the node name and `sans` (IPv6 literals without brackets), each once.
pub fn server_sans(node_name: &str, sans: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = LOCAL_SANS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::once(node_name.to_owned()))
        .chain(sans.iter().map(|s| {
            let s = s.trim();
            s.strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s)
                .to_owned()
        }));
    for san in all {
        if !san.is_empty() && !out.contains(&san) {
            out.push(san);
        }
    }
    out
}

/// The API server certificate of `node_name`, valid for
/// [`server_sans`]`(node_name, sans)`.
pub fn server_cert(
    ca: &ClusterCa,
    node_name: &str,
    sans: &[String],
) -> Result<IssuedCert, RuntimeError> {
    let names = server_sans(node_name, sans);
    let params = CertificateParams::new(names.clone())
        .map_err(|e| pki_error(&format!("use {names:?} as subject alternative names"), e))?;
    issue(
        ca,
        params,
        "k3s",
        Some("k3s"),
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// The admin's client certificate (`system:admin` in `system:masters`,
/// as in k3s's admin kubeconfig).
pub fn admin_client_cert(ca: &ClusterCa) -> Result<IssuedCert, RuntimeError> {
    issue(
        ca,
        CertificateParams::default(),
        "system:admin",
        Some("system:masters"),
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

/// The CA certificate as DER (what client certificates are verified
/// against).
pub fn ca_der(ca: &ClusterCa) -> Result<CertificateDer<'static>, RuntimeError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|e| {
        RuntimeError::Unexpected(format!("the cluster CA certificate is not PEM: {e}"))
    })
}
