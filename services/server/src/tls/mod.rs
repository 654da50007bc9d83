//! TLS for the operator API (issue 17 item 1): `powernode up` / `serve api`
//! serve https by default with a CA and server certificate made in the data
//! dir on first start ([`certs`]), or the operator's `--tls-cert/--tls-key`;
//! `--insecure-http` serves plain http on loopback only.
//!
//! The library's default ([`ApiTransport::Http`], what
//! `NodeExtras::default()` carries) stays plain http: in-process tests and
//! benches use it. Only the CLI turns [`TlsArgs`] into https.

pub mod certs;
mod listener;

pub use listener::TlsListener;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS options of a node that serves the API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// The API's certificate chain (PEM, the server's certificate first),
    /// instead of the one made under `<data-dir>/tls/`. Needs --tls-key.
    #[arg(
        long,
        env = "POWERNODE_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "POWERNODE_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve plain http instead of https: only on a loopback listen address.
    #[arg(long, env = "POWERNODE_INSECURE_HTTP", conflicts_with_all = ["tls_cert", "tls_key", "tls_san"])]
    pub insecure_http: bool,
    /// Another name or IP address for the made server certificate
    /// (repeatable; `localhost`, `127.0.0.1`, `::1`, the host name and the
    /// listen IP are always in it).
    #[arg(
        long,
        env = "POWERNODE_TLS_SAN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub tls_san: Vec<String>,
}

impl TlsArgs {
    /// How a node listening on `listen` serves the API with these options:
    /// https unless `--insecure-http`, which a non-loopback address refuses.
    pub fn transport(&self, listen: SocketAddr) -> anyhow::Result<ApiTransport> {
        if !self.insecure_http {
            return Ok(ApiTransport::Https(self.clone()));
        }
        if !listen.ip().is_loopback() {
            anyhow::bail!(
                "--insecure-http refused: plain http would send tokens in clear, so it may only \
                 listen on a loopback address, and {listen} is not one. Serve https (drop \
                 --insecure-http; --tls-cert/--tls-key for your own certificate) or listen on \
                 127.0.0.1"
            );
        }
        Ok(ApiTransport::Http)
    }
}

/// How the API serves.
#[derive(Debug, Clone, Default)]
pub enum ApiTransport {
    /// Plain http (the library's default; the CLI only on loopback).
    #[default]
    Http,
    /// https: with `--tls-cert/--tls-key`, or a CA and certificate made in
    /// `<data-dir>/tls/`.
    Https(TlsArgs),
}

impl ApiTransport {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https(_) => "https",
        }
    }
}

/// A ready https set-up: the rustls configuration and what to tell about it.
pub struct ServingTls {
    /// The server configuration (chain server + CA).
    pub config: Arc<rustls::ServerConfig>,
    /// The CA file clients trust: the made `ca.pem`, or the last
    /// certificate of an operator's chain when it has more than one
    /// (`None` then otherwise).
    pub ca_file: Option<PathBuf>,
    /// The CA's fingerprint (`sha256:…`) when known.
    pub ca_fingerprint: Option<String>,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls")
            .field("ca_file", &self.ca_file)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

/// The https set-up of `args` for a node with `data_dir` listening on
/// `listen`: the operator's files, or the made ones (made or remade now).
pub fn prepare(args: &TlsArgs, data_dir: &Path, listen: SocketAddr) -> anyhow::Result<ServingTls> {
    let (chain_file, key_file, ca_file) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
        (None, None) => {
            let names = certs::server_names(listen.ip(), &args.tls_san);
            let files = certs::ensure(&data_dir.join("tls"), &names)?;
            (files.server_cert, files.server_key, Some(files.ca_cert))
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    let mut chain = load_certs(&chain_file)?;
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .with_context(|| format!("no private key in {}", key_file.display()))?;
    let ca = match &ca_file {
        Some(path) => {
            let ca = load_certs(path)?;
            chain.extend(ca.iter().cloned());
            ca.into_iter().next()
        }
        None if chain.len() > 1 => chain.last().cloned(),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable certificate and key",
                chain_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingTls {
        config: Arc::new(config),
        ca_fingerprint: ca.as_ref().map(|c| certs::fingerprint(c)),
        ca_file,
    })
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no CERTIFICATE in {}", path.display());
    }
    Ok(certs)
}
