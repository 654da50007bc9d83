//! The API's own certificates under `<data-dir>/tls/`: a self-signed CA
//! (10 years) made on first start, and a server certificate (1 year)
//! signed by it, remade when it is within [`RENEW_BEFORE`] of its expiry or
//! its names no longer cover the listen address. Keys are written 0600.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use tracing::info;

/// How long the made CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a made server certificate is valid.
pub const SERVER_VALIDITY: Duration = Duration::days(365);
/// A server certificate this close to its expiry is remade at start.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// The files of the made CA and server certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `<dir>/ca.pem`.
    pub ca_cert: PathBuf,
    /// `<dir>/ca.key` (0600).
    pub ca_key: PathBuf,
    /// `<dir>/server.pem`.
    pub server_cert: PathBuf,
    /// `<dir>/server.key` (0600).
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// The files under `dir` (`<data-dir>/tls`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// `sha256:<hex>` of a certificate's DER: the fingerprint logs, the CLI's
/// trust prompt and its errors show (the client computes the same).
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// The names a made server certificate carries: `localhost`, `127.0.0.1`,
/// `::1`, this host's name, the listen IP unless unspecified, and `extra`.
pub fn server_names(listen: IpAddr, extra: &[String]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Some(host) = hostname() {
        names.insert(host);
    }
    if !listen.is_unspecified() {
        names.insert(listen.to_string());
    }
    names.extend(
        extra
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    );
    names
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// Makes the CA when absent and the server certificate when absent, close
/// to expiry or not covering `names`; answers the files.
pub fn ensure(dir: &Path, names: &BTreeSet<String>) -> anyhow::Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = TlsFiles::in_dir(dir);
    let now = OffsetDateTime::now_utc();
    let issuer = if files.ca_cert.exists() && files.ca_key.exists() {
        let key_pem = read(&files.ca_key)?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a private key", files.ca_key.display()))?;
        Issuer::from_ca_cert_pem(&read(&files.ca_cert)?, key)
            .with_context(|| format!("{} is not a CA certificate", files.ca_cert.display()))?
    } else {
        let key = KeyPair::generate().context("cannot make the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("powernode API CA {}", short_id()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "powernode");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .context("cannot make the CA certificate")?;
        write_file(&files.ca_key, key.serialize_pem().as_bytes(), true)?;
        write_file(&files.ca_cert, cert.pem().as_bytes(), false)?;
        // Made fresh: any server certificate there is not this CA's.
        let _ = std::fs::remove_file(&files.server_cert);
        info!(ca = %files.ca_cert.display(), "made a CA for the API");
        Issuer::new(params, key)
    };
    if let Some(reason) = server_cert_stale(&files, names, now) {
        let key = KeyPair::generate().context("cannot make the server key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.as_str().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()
            .context("an invalid name for the server certificate (see --tls-san)")?;
        params
            .distinguished_name
            .push(DnType::CommonName, "powernode API");
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVER_VALIDITY;
        let cert = params
            .signed_by(&key, &issuer)
            .context("cannot sign the server certificate")?;
        write_file(&files.server_key, key.serialize_pem().as_bytes(), true)?;
        write_file(&files.server_cert, cert.pem().as_bytes(), false)?;
        info!(cert = %files.server_cert.display(), "made the API's server certificate ({reason})");
    }
    Ok(files)
}

/// Why the server certificate must be made again, if it must.
fn server_cert_stale(
    files: &TlsFiles,
    names: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Option<&'static str> {
    if !files.server_cert.exists() || !files.server_key.exists() {
        return Some("none yet");
    }
    let Some((not_after, has)) = read(&files.server_cert)
        .ok()
        .and_then(|pem| cert_facts(&pem))
    else {
        return Some("the old one is unreadable");
    };
    if not_after - RENEW_BEFORE.whole_seconds() < now.unix_timestamp() {
        return Some("the old one expires within 30 days");
    }
    if !names.is_subset(&has) {
        return Some("the names changed");
    }
    None
}

/// A PEM certificate's expiry (Unix seconds) and its DNS and IP names.
fn cert_facts(pem: &str) -> Option<(i64, BTreeSet<String>)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => {
                    names.insert(n.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Some((cert.validity().not_after.timestamp(), names))
}

fn short_id() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename (mode
/// 0600 when `secret`).
pub(crate) fn write_file(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if secret { 0o600 } else { 0o644 };
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_reused_and_remade_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = server_names("127.0.0.1".parse().unwrap(), &[]);
        let files = ensure(dir.path(), &names).unwrap();
        let ca = std::fs::read(&files.ca_cert).unwrap();
        let server = std::fs::read(&files.server_cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&files.ca_key, &files.server_key] {
                let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        ensure(dir.path(), &names).unwrap();
        assert_eq!(std::fs::read(&files.server_cert).unwrap(), server, "reused");
        let more = server_names("10.1.2.3".parse().unwrap(), &["api.example".into()]);
        ensure(dir.path(), &more).unwrap();
        assert_ne!(std::fs::read(&files.server_cert).unwrap(), server, "remade");
        assert_eq!(std::fs::read(&files.ca_cert).unwrap(), ca, "same CA");
        let (not_after, has) = cert_facts(&read(&files.server_cert).unwrap()).unwrap();
        assert!(
            has.contains("10.1.2.3") && has.contains("api.example"),
            "{has:?}"
        );
        let in_a_year = OffsetDateTime::now_utc() + SERVER_VALIDITY;
        assert!((not_after - in_a_year.unix_timestamp()).abs() < 7200);
    }
}
