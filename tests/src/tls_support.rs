//! https in tests (issue 17): `powernode up` serving its default https,
//! the CLI run against it with a config file of the test's own, CAs and
//! server certificates made with rcgen (one expired, one for another name),
//! and a TLS-terminating reverse proxy under a path prefix.

use crate::bins::powernode_bin;
use crate::cli_support::{free_port, powernode, Running};
use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A `powernode up` child serving https (unless `extra` says otherwise),
/// its data dir and port.
pub struct Up {
    /// The child (killed on drop).
    pub child: Running,
    /// Its data dir.
    pub data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its diagnostics go.
    pub log: PathBuf,
}

impl Up {
    /// Starts `powernode up --data-dir data --listen 127.0.0.1:port extra…`
    /// and waits for its admin token and its API (over https, with the
    /// data dir's CA, unless `--insecure-http` or `--tls-cert` is in `extra`).
    pub async fn start(data: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Up> {
        std::fs::create_dir_all(data)?;
        let log = data.with_extension("log");
        let out = std::fs::File::create(&log)?;
        let child = Running(
            powernode(&powernode_bin()?)
                .arg("up")
                .arg("--data-dir")
                .arg(data)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()?,
        );
        let up = Up {
            child,
            data: data.to_path_buf(),
            port,
            log,
        };
        if extra.contains(&"--tls-cert") {
            up.wait_for_line("API listening").await?;
        } else {
            up.wait_ready(!extra.contains(&"--insecure-http")).await?;
        }
        Ok(up)
    }

    /// The data dir's CA file.
    pub fn ca(&self) -> PathBuf {
        self.data.join("tls").join("ca.pem")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// What the node logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for_line(&self, needle: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        while !self.log_text().contains(needle) {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("no {needle:?} within 30 s: {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn wait_ready(&self, https: bool) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(token) = std::fs::read_to_string(self.data.join("admin.token")) {
                let ca = self.ca();
                let url = if ca.exists() && https {
                    self.url()
                } else {
                    format!("http://127.0.0.1:{}", self.port)
                };
                let mut config = powernode_client::ClientConfig::new(url, token.trim());
                if ca.exists() && https {
                    config = config.with_ca_cert(ca);
                }
                let api = powernode_client::Api::from_config(&config)?;
                if api
                    .call("system_whoami", &serde_json::json!({}))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "powernode up did not answer within 30 s: {}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs the CLI with `args`, the config file `config` and the data dir
/// `data`; its output.
pub fn cli(config: &Path, data: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Ok(powernode(&powernode_bin()?)
        .env("POWERNODE_CONFIG", config)
        .env("POWERNODE_DATA_DIR", data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?)
}

/// A made CA: its certificate (PEM) and the issuer to sign with.
pub struct TestCa {
    /// Certificate PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh CA called `name`.
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes the CA to `<dir>/<file>`; its path.
    pub fn write(&self, dir: &Path, file: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem)?;
        Ok(path)
    }

    /// A server certificate for `names`, expired in 2020 when `expired`,
    /// written as `<dir>/<stem>.pem` (chain: server then CA) and
    /// `<dir>/<stem>.key`; the two paths.
    pub fn server(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        expired: bool,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the test certificate")?;
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.pem))?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

/// A free port on 127.0.0.1 (re-exported for the TLS tests).
pub fn port() -> u16 {
    free_port()
}

/// The text of a child's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The text of a child's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub mod proxy;
