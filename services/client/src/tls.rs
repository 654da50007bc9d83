//! Whom the client trusts for https and how a refusal reads: a CA pinned
//! in a context (PEM kept in the context), the CA file of `--ca-cert`, or
//! the system's roots. [`Verifier`] wraps rustls' verification so that an
//! unknown CA, an expired certificate or a name mismatch comes back as a
//! [`CertProblem`] naming it (the pinned and presented fingerprints, the
//! expiry time, the names); [`probe`] fetches the chain a server presents
//! without trusting it, for the CLI's trust-on-first-use.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// `sha256:<hex>` of a certificate's DER (the server logs the same).
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex_encode(&Sha256::digest(der)))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a certificate says about itself, for a trust prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its subject, e.g. `CN=powernode API CA 1a2b3c4d, O=powernode`.
    pub subject: String,
    /// `sha256:<hex>` of its DER.
    pub fingerprint: String,
    /// Its expiry, `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
    /// True for a CA certificate (basic constraints CA).
    pub is_ca: bool,
}

/// Reads a DER certificate's subject, expiry and CA flag.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("not a certificate: {e}"))?;
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        fingerprint: fingerprint(der),
        not_after: utc(cert.validity().not_after.timestamp()),
        is_ca: cert.is_ca(),
    })
}

/// Where trust comes from, for the words of a refusal.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// The CA pinned in this context, with its fingerprints.
    Pinned { context: String, pins: Vec<String> },
    /// The CA file of `--ca-cert`, with its fingerprints.
    CaFile { path: PathBuf, pins: Vec<String> },
    /// The system's roots.
    System,
}

/// A certificate the client refuses, in words naming the problem. It
/// travels inside the rustls error and is found again by
/// [`ActionError::from_http`](crate::ActionError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProblem(pub String);

impl std::fmt::Display for CertProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertProblem {}

impl CertProblem {
    /// The problem in `e` or any of its sources (through `io::Error`s and
    /// rustls errors too).
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<CertProblem> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(p) = err.downcast_ref::<CertProblem>() {
                return Some(p.clone());
            }
            if let Some(found) = err.downcast_ref::<rustls::Error>().and_then(of_rustls) {
                return Some(found);
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    if let Some(found) = Self::find(inner) {
                        return Some(found);
                    }
                }
            }
            next = err.source();
        }
        None
    }
}

fn of_rustls(e: &rustls::Error) -> Option<CertProblem> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<CertProblem>().cloned()
        }
        rustls::Error::InvalidCertificate(other) => Some(CertProblem(format!(
            "the API's certificate is refused: {other:?}"
        ))),
        _ => None,
    }
}

/// rustls' verification, its refusals turned into [`CertProblem`]s.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) trust: Trust,
}

impl Verifier {
    fn explain(
        &self,
        error: CertificateError,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> CertProblem {
        let presented = fingerprint(intermediates.last().unwrap_or(end_entity));
        let text = match error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => match &self.trust {
                Trust::Pinned { context, pins } => format!(
                    "the API's certificate is not signed by the CA pinned in context `{context}` \
                     (pinned {}, presented {presented}): the API's CA changed, or this is not \
                     the API the context was made for; if the change is expected, delete and add \
                     the context again",
                    pins.join(", ")
                ),
                Trust::CaFile { path, pins } => format!(
                    "the API's certificate is not signed by the CA in --ca-cert {} ({}; presented \
                     {presented})",
                    path.display(),
                    some(pins)
                ),
                Trust::System => format!(
                    "the API's certificate is not trusted: no CA of this system signed it \
                     (presented {presented}); pass --ca-cert with the API's CA (a local `powernode \
                     up` keeps it in <data-dir>/tls/ca.pem) or add a context (`powernode context \
                     add NAME --url URL --token-file F` pins the CA on first use)"
                ),
            },
            CertificateError::ExpiredContext { time, not_after } => format!(
                "the API's certificate expired at {} (it is now {}): the server must renew it \
                 (a `powernode up` with its own CA does at its next start)",
                utc(not_after.as_secs() as i64),
                utc(time.as_secs() as i64)
            ),
            CertificateError::Expired => match cert_info(end_entity) {
                Ok(info) => format!("the API's certificate expired at {}", info.not_after),
                Err(_) => "the API's certificate has expired".to_string(),
            },
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "the API's certificate is not valid before {} (it is now {}): check the clocks",
                utc(not_before.as_secs() as i64),
                utc(time.as_secs() as i64)
            ),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the API's certificate is not valid for {} (it names {}): use one of those names \
                 in the URL, or have the server add this one (--tls-san)",
                expected.to_str(),
                presented.join(", ")
            ),
            CertificateError::NotValidForName => {
                format!("the API's certificate is not valid for {}", name.to_str())
            }
            other => format!("the API's certificate is refused: {other:?}"),
        };
        CertProblem(text)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(ce) => {
                    let problem = self.explain(ce, end_entity, intermediates, server_name);
                    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                        Arc::new(problem),
                    )))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// At most three fingerprints, and how many more.
fn some(pins: &[String]) -> String {
    match pins.len() {
        0..=3 => pins.join(", "),
        n => format!("{} and {} more", pins[..3].join(", "), n - 3),
    }
}

/// Accepts any certificate, keeping what was presented (for [`probe`]
/// only: nothing is sent over such a connection).
#[derive(Debug)]
struct Recorder {
    seen: std::sync::Mutex<Vec<CertificateDer<'static>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The certificate chain the https server at `url` presents (its own
/// certificate first), fetched without trusting it: a TLS handshake and
/// nothing sent. For trust-on-first-use; the caller shows it and decides.
pub async fn probe(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let base = crate::config::base_url(url).map_err(|e| e.to_string())?;
    if base.scheme() != "https" {
        return Err(format!("{url} is not an https URL"));
    }
    let host = base.host_str().unwrap_or_default().to_string();
    let port = base.port_or_known_default().unwrap_or(443);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Default::default(),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("no TLS handshake with {host}:{port}: {e}"))
    };
    let _tls = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| format!("{host}:{port} did not answer within {timeout:?}"))??;
    let seen = recorder
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(seen)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
