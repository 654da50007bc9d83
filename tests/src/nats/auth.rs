//! powernode's auth for test servers: the platform's credentials, which
//! server (by URL) has which, and how clients and child processes use them.

use anyhow::Context;
use powernode_log::jetstream::JetStreamConfig;
use powernode_log::nats::connect::ClientAuth;
use powernode_log::nats::PlatformCreds;
use std::path::{Path, PathBuf};

/// The platform's credentials for a test server (or cluster), and a file
/// holding them for child processes (`--nats-creds`).
#[derive(Debug, Clone)]
pub struct PlatformAuth {
    /// The credentials.
    pub creds: PlatformCreds,
    /// `platform.creds` in the server's directory.
    pub file: PathBuf,
}

impl PlatformAuth {
    pub(super) fn generate(dir: &Path) -> anyhow::Result<Self> {
        let creds = PlatformCreds::generate();
        let file = dir.join("platform.creds");
        std::fs::write(&file, creds.to_file_text())
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(Self { creds, file })
    }

    pub(super) fn config(&self) -> String {
        powernode_server::natsauth::server_auth_config(
            &self.creds.user_public_key(),
            &self
                .creds
                .issuer()
                .expect("generated with an issuer")
                .public_key(),
        )
    }
}

/// Every server this process started, by URL (each node's and a
/// cluster's comma-joined one): what its platform connects with.
static STARTED: std::sync::Mutex<Vec<(String, Option<PlatformAuth>)>> =
    std::sync::Mutex::new(Vec::new());

pub(super) fn register(url: String, auth: Option<PlatformAuth>) {
    let mut started = STARTED.lock().expect("not poisoned");
    started.retain(|(u, _)| *u != url);
    started.push((url, auth));
}

/// The credentials of the server (or cluster) at `url`, started by this
/// process; `None` for an anonymous one or a URL this harness did not start.
pub fn auth_for(url: &str) -> Option<PlatformAuth> {
    STARTED
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|(u, _)| u == url)
        .and_then(|(_, a)| a.clone())
}

/// What the platform connects to `url` with (see [`auth_for`]).
pub fn client_auth_for(url: &str) -> ClientAuth {
    client_auth(auth_for(url).as_ref())
}

/// A log config for `url` with its platform credentials.
pub fn log_config(url: impl Into<String>) -> JetStreamConfig {
    let url = url.into();
    JetStreamConfig {
        auth: client_auth_for(&url),
        ..JetStreamConfig::new(url)
    }
}

/// A NATS connection to `url` as the platform's user.
pub async fn connect(url: impl AsRef<str>) -> anyhow::Result<async_nats::Client> {
    let url = url.as_ref();
    platform_client(url, auth_for(url).as_ref()).await
}

/// Environment for a powernode child process that connects to `url`:
/// `POWERNODE_NATS_CREDS` (or, for an anonymous server,
/// `POWERNODE_ALLOW_ANONYMOUS_NATS`).
pub fn child_env(url: &str) -> Vec<(String, String)> {
    match auth_for(url) {
        Some(a) => vec![("POWERNODE_NATS_CREDS".into(), a.file.display().to_string())],
        None => vec![("POWERNODE_ALLOW_ANONYMOUS_NATS".into(), "true".into())],
    }
}

/// An agent link's NATS auth as the platform's own user (for tests that
/// drive the intake's subjects directly, standing in for many agents).
pub fn platform_link_auth(url: &str) -> powernode_agent::link::NatsAuth {
    powernode_bench::platform_link_auth(&client_auth_for(url))
}

/// [`child_env`] for the URL after `--nats` in `args` (nothing without one).
pub fn child_env_for_args<S: AsRef<str>>(args: &[S]) -> Vec<(String, String)> {
    args.iter()
        .position(|a| a.as_ref() == "--nats")
        .and_then(|i| args.get(i + 1))
        .map(|url| child_env(url.as_ref()))
        .unwrap_or_default()
}

/// What the platform connects with, for a server with `auth` (none:
/// anonymous, allowed explicitly).
pub(super) fn client_auth(auth: Option<&PlatformAuth>) -> ClientAuth {
    match auth {
        Some(a) => ClientAuth::with_creds(a.creds.clone()),
        None => ClientAuth {
            allow_anonymous: true,
            ..ClientAuth::default()
        },
    }
}

/// `--nats <url>` and, with `auth`, `--nats-creds <file>` (else
/// `--allow-anonymous-nats`): how a powernode child process reaches the server.
pub(super) fn nats_args(url: String, auth: Option<&PlatformAuth>) -> Vec<String> {
    let mut args = vec!["--nats".to_string(), url];
    match auth {
        Some(a) => {
            args.push("--nats-creds".into());
            args.push(a.file.display().to_string());
        }
        None => args.push("--allow-anonymous-nats".into()),
    }
    args
}

/// A platform connection (the user the services connect as) to `url`.
pub(super) async fn platform_client(
    url: &str,
    auth: Option<&PlatformAuth>,
) -> anyhow::Result<async_nats::Client> {
    let servers: Vec<&str> = url.split(',').collect();
    let options = client_auth(auth).apply(async_nats::ConnectOptions::new(), url);
    Ok(options.connect(servers).await?)
}
