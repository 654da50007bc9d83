//! Where the API is and how to reach it: [`ClientConfig`], the base URL and
//! the paths under it, and the HTTP stack built from them (rustls on the
//! `ring` provider, set per client: no process-wide provider is installed).

use crate::error::ConfigError;
use crate::tls::{Trust, Verifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Idle connections a client keeps per host for reuse.
pub const MAX_IDLE: usize = 64;

/// Everything a client needs: a plain struct (the CLI's clap options
/// convert into it; this crate parses no command line and reads no token
/// file). Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The API base URL: `http://host:port`, `https://host:8443/prefix/`, or
    /// a bare `host:port` (http). Every API path is resolved under it, so
    /// `https://host:8443/powernode` calls
    /// `https://host:8443/powernode/v1/actions/<name>`.
    pub url: String,
    /// The operator token, sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// A PEM file with the CA certificate(s) to trust for https, instead of
    /// the system's roots (before [`ca_pem`](Self::ca_pem)).
    pub ca_cert: Option<PathBuf>,
    /// The CA certificate(s) pinned in a context, as PEM text: trusted for
    /// https instead of the system's roots when no `ca_cert` is given.
    pub ca_pem: Option<String>,
    /// The context the settings come from (named in refusals: "not signed
    /// by the CA pinned in context `prod`").
    pub context: Option<String>,
    /// The longest one action call or plain request may take, connecting
    /// included; `None` waits as long as the connection lives (as the
    /// hand-written client did). A stream or an export is bounded by it
    /// only until its answer's head has arrived; after that by its own idle
    /// limit.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &"<hidden>")
            .field("ca_cert", &self.ca_cert)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pinned>"))
            .field("context", &self.context)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientConfig {
    /// `url` and `token`, system CA roots, no time limit.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            ca_cert: None,
            ca_pem: None,
            context: None,
            timeout: None,
        }
    }

    /// The same, trusting the CA PEM pinned in context `context`.
    pub fn with_pinned_ca(mut self, context: impl Into<String>, pem: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self.ca_pem = Some(pem.into());
        self
    }

    /// The same, trusting the CA certificate(s) in the PEM file `path`.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// The same, with this limit on one call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The base URL `given` normalised: a scheme (`http` when none), no query,
/// no fragment, no credentials, a path ending in `/`.
pub(crate) fn base_url(given: &str) -> Result<Url, ConfigError> {
    let bad = |reason: &str| ConfigError::Url {
        url: given.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = given.trim();
    let full = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL takes no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials go in the token, not in the URL"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `path` (an API path such as `/v1/events/stream?since=5`, query
/// included) under `base`'s path prefix.
pub(crate) fn endpoint(base: &Url, path: &str) -> Result<Url, ConfigError> {
    // `./` keeps a first segment with a colon from reading as a scheme.
    let relative = format!("./{}", path.trim_start_matches('/'));
    base.join(&relative).map_err(|e| ConfigError::Url {
        url: format!("{base}{}", path.trim_start_matches('/')),
        reason: e.to_string(),
    })
}

/// `{base}v1/actions/<name>`, the name one percent-encoded path segment.
pub(crate) fn action_url(base: &Url, name: &str) -> Result<Url, ConfigError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ConfigError::Url {
            url: base.to_string(),
            reason: "cannot be a base".into(),
        })?
        .pop_if_empty()
        .extend(["v1", "actions", name]);
    Ok(url)
}

/// The HTTP stack for `base`: HTTP/1.1, keep-alive with at most `max_idle`
/// idle connections, no redirects followed (a redirect is answered as it
/// is), proxies from the environment (reqwest's defaults).
pub(crate) fn http_client(
    base: &Url,
    config: &ClientConfig,
    max_idle: usize,
) -> Result<reqwest::Client, ConfigError> {
    let tls = tls_config(base.scheme() == "https", config)?;
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(max_idle)
        .tcp_nodelay(true)
        .user_agent(concat!("powernode-client/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = config.timeout {
        builder = builder.connect_timeout(t);
    }
    builder.build().map_err(ConfigError::Request)
}

/// rustls on `ring`: the CA certificates of `ca_cert` when given, else
/// the CA pinned in the context, else the system's roots, behind a
/// [`Verifier`] that names what is wrong with a refused certificate. A
/// plain-http client gets a configuration that trusts nothing (it never
/// speaks TLS, and so needs no system roots).
fn tls_config(https: bool, config: &ClientConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Tls)?;
    if !https {
        let mut tls = builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        return Ok(tls);
    }
    let webpki = |roots: rustls::RootCertStore| {
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map(|v| v as Arc<dyn rustls::client::danger::ServerCertVerifier>)
        .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))
    };
    let verifier = match (&config.ca_cert, &config.ca_pem) {
        (Some(path), _) => {
            let pem = std::fs::read(path).map_err(|source| ConfigError::CaFile {
                path: path.to_path_buf(),
                source,
            })?;
            let (roots, pins) = ca_roots(&pem, &path.display().to_string())?;
            Verifier {
                inner: webpki(roots)?,
                trust: Trust::CaFile {
                    path: path.clone(),
                    pins,
                },
            }
        }
        (None, Some(pem)) => {
            let context = config.context.clone().unwrap_or_else(|| "?".into());
            let (roots, pins) = ca_roots(
                pem.as_bytes(),
                &format!("the CA pinned in context `{context}`"),
            )?;
            Verifier {
                inner: webpki(roots)?,
                trust: Trust::Pinned { context, pins },
            }
        }
        (None, None) => Verifier {
            inner: Arc::new(
                rustls_platform_verifier::Verifier::new(provider).map_err(ConfigError::Tls)?,
            ),
            trust: Trust::System,
        },
    };
    let mut tls = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// The certificates of PEM text `pem` (from `origin`, for messages) as
/// trust roots, with their fingerprints.
fn ca_roots(pem: &[u8], origin: &str) -> Result<(rustls::RootCertStore, Vec<String>), ConfigError> {
    let bad = |reason: String| ConfigError::CaCert {
        path: PathBuf::from(origin),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let mut pins = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        pins.push(crate::tls::fingerprint(&cert));
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok((roots, pins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output() {
        let shown = format!("{:?}", ClientConfig::new("http://h:1", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn base_urls_are_normalised() {
        let b = |s: &str| base_url(s).map(|u| u.to_string());
        assert_eq!(b("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(b("http://h:1/").unwrap(), "http://h:1/");
        assert_eq!(
            b("https://host:8443/powernode").unwrap(),
            "https://host:8443/powernode/"
        );
        assert_eq!(b("localhost:8080").unwrap(), "http://localhost:8080/");
        for bad in ["ftp://h/", "http://u:p@h/", "http://h/?a=1", "http://", ""] {
            assert!(b(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_stay_under_the_prefix() {
        let base = base_url("https://host:8443/powernode/").unwrap();
        assert_eq!(
            action_url(&base, "system_list_instances").unwrap().as_str(),
            "https://host:8443/powernode/v1/actions/system_list_instances"
        );
        assert_eq!(
            action_url(&base, "a/b c").unwrap().as_str(),
            "https://host:8443/powernode/v1/actions/a%2Fb%20c"
        );
        assert_eq!(
            endpoint(&base, "/v1/events/stream?since=5")
                .unwrap()
                .as_str(),
            "https://host:8443/powernode/v1/events/stream?since=5"
        );
        assert_eq!(
            endpoint(&base, "healthz").unwrap().as_str(),
            "https://host:8443/powernode/healthz"
        );
        let root = base_url("http://h:1").unwrap();
        assert_eq!(
            endpoint(&root, "/v1/actions/x:y").unwrap().as_str(),
            "http://h:1/v1/actions/x:y"
        );
    }
}
