//! How the platform's processes connect to NATS: with the platform's
//! credentials, over TLS when the URL says `tls://` (verifying the server
//! against `--nats-ca` when given), and never to a server that lets an
//! anonymous client use JetStream unless the operator said so.

use super::PlatformCreds;
use async_nats::ConnectOptions;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tracing::warn;

/// The command-line flags of every command that connects to NATS as the
/// platform (`up`, `serve`, `replay`, `events import`, the benches).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsClientArgs {
    /// The platform's NATS credentials (`powernode nats init` writes
    /// `platform.creds`; services other than the API may use
    /// `service.creds`, which lacks the auth-callout key). A bare NKey seed
    /// file (`SU…`) works too.
    #[arg(long, env = "POWERNODE_NATS_CREDS", alias = "nats-nkey-file")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) the NATS server's TLS certificate is checked
    /// against; implies TLS (as does a `tls://` URL).
    #[arg(long, env = "POWERNODE_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Connect even when the server lets anonymous clients use JetStream
    /// (anyone could then forge events and read secrets): a throwaway
    /// laptop only.
    #[arg(long, env = "POWERNODE_ALLOW_ANONYMOUS_NATS")]
    pub allow_anonymous_nats: bool,
}

impl NatsClientArgs {
    /// The credentials and TLS settings these flags name.
    pub fn client_auth(&self) -> anyhow::Result<ClientAuth> {
        let creds = self
            .nats_creds
            .as_deref()
            .map(PlatformCreds::read)
            .transpose()?;
        if let Some(ca) = &self.nats_ca {
            if !ca.is_file() {
                anyhow::bail!("--nats-ca {}: no such file", ca.display());
            }
        }
        Ok(ClientAuth {
            creds,
            ca_file: self.nats_ca.clone(),
            allow_anonymous: self.allow_anonymous_nats,
        })
    }
}

/// How a platform process authenticates to NATS.
#[derive(Clone, Default)]
pub struct ClientAuth {
    /// The platform's credentials (`--nats-creds`).
    pub creds: Option<PlatformCreds>,
    /// CA certificate(s) (PEM) that sign the server's TLS certificate
    /// (`--nats-ca`); implies TLS.
    pub ca_file: Option<PathBuf>,
    /// Connect even to a server that lets anonymous clients use JetStream
    /// (`--allow-anonymous-nats`: a throwaway laptop only).
    pub allow_anonymous: bool,
}

impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.creds.as_ref().map(|c| (&c.user_seed, &c.issuer_seed))
            == other.creds.as_ref().map(|c| (&c.user_seed, &c.issuer_seed))
            && self.ca_file == other.ca_file
            && self.allow_anonymous == other.allow_anonymous
    }
}
impl Eq for ClientAuth {}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("creds", &self.creds)
            .field("ca_file", &self.ca_file)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl ClientAuth {
    /// Authenticated with `creds`.
    pub fn with_creds(creds: PlatformCreds) -> Self {
        Self {
            creds: Some(creds),
            ..Self::default()
        }
    }

    /// `options` with these credentials and TLS settings.
    pub fn apply(&self, mut options: ConnectOptions, url: &str) -> ConnectOptions {
        if let Some(c) = &self.creds {
            options = options.nkey(c.user_seed.clone());
        }
        tls_options(options, url, self.ca_file.as_ref())
    }
}

/// TLS for `tls://` URLs or when a CA file is given.
pub fn tls_options(mut options: ConnectOptions, url: &str, ca: Option<&PathBuf>) -> ConnectOptions {
    if let Some(ca) = ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    } else if url.split(',').any(|u| u.trim().starts_with("tls://")) {
        options = options.require_tls(true);
    }
    options
}

/// Servers already checked by this process.
static CHECKED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// How long the anonymous probe may take: an anonymous client that is not
/// admitted by then is taken as refused (a server with an auth callout
/// holds it until the callout answers or its auth timeout passes).
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// Fails when `url` lets a client with no credentials use JetStream,
/// unless `auth.allow_anonymous` (then it warns, loudly).
pub async fn refuse_anonymous_jetstream(url: &str, auth: &ClientAuth) -> Result<(), String> {
    if CHECKED
        .lock()
        .expect("not poisoned")
        .get_or_insert_with(HashSet::new)
        .contains(url)
    {
        return Ok(());
    }
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let options = tls_options(
        ConnectOptions::new()
            .name("powernode-anonymous-probe")
            .connection_timeout(PROBE_TIMEOUT)
            .max_reconnects(Some(0)),
        url,
        auth.ca_file.as_ref(),
    );
    let admitted = match tokio::time::timeout(PROBE_TIMEOUT, options.connect(servers)).await {
        Ok(Ok(client)) => {
            let js = async_nats::jetstream::new(client.clone());
            let uses_js = tokio::time::timeout(Duration::from_secs(2), js.query_account())
                .await
                .is_ok_and(|r| r.is_ok());
            drop(client);
            uses_js
        }
        _ => false,
    };
    if admitted {
        if auth.allow_anonymous {
            warn!(
                %url,
                "!!! this NATS server lets ANY client use JetStream without credentials: anyone who can reach it can forge events, read join tokens and kubeconfigs, and impersonate agents. --allow-anonymous-nats is for a throwaway laptop only; run `powernode nats init` for a server config with the platform's auth !!!"
            );
        } else {
            return Err(format!(
                "the NATS server at {url} lets an anonymous client use JetStream: anyone who can reach it could forge events and read every secret. Run `powernode nats init --dir <dir>` for a server config with authentication, start nats-server with it, and connect with `--nats-creds <dir>/platform.creds` (or pass --allow-anonymous-nats on a throwaway laptop)"
            ));
        }
    }
    CHECKED
        .lock()
        .expect("not poisoned")
        .get_or_insert_with(HashSet::new)
        .insert(url.to_string());
    Ok(())
}
