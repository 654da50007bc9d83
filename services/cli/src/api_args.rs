//! The global options of every command (they may go before or after the
//! subcommand): where the API is and who we are (`--url`, `--token`,
//! `--context`, `--ca-cert`, `--timeout`), where a local node keeps its
//! state (`--data-dir`), and how answers are printed (`-o`,
//! `--no-headers`). They convert into the client crate's [`ClientConfig`];
//! the client itself parses no command line and reads no token file.

use crate::output::Format;
use anyhow::Context;
use powernode_client::{Api, ClientConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a local `powernode up` keeps its state when no --data-dir is given.
pub const DEFAULT_DATA_DIR: &str = "./.powernode";

/// The API a command talks to when neither --url nor a context names one:
/// a local `powernode up` (https, its CA in `<data-dir>/tls/ca.pem`).
pub const DEFAULT_URL: &str = "https://127.0.0.1:8080";

/// Where the API's settings come from, after the resolution order of
/// [`ApiArgs::resolve`].
#[derive(Clone, Default)]
pub struct Resolved {
    /// The API base URL.
    pub url: String,
    /// The token, when a flag, the environment or a context gives it
    /// (else the data dir's admin token).
    pub token: Option<String>,
    /// The CA file to trust (`--ca-cert`, or a local data dir's CA).
    pub ca_cert: Option<PathBuf>,
    /// The CA PEM pinned in the context used.
    pub ca_pem: Option<String>,
    /// The context used, if any.
    pub context: Option<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("ca_cert", &self.ca_cert)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Global options of every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The API address (default: the current context's, else
    /// https://127.0.0.1:8080).
    #[arg(long, env = "POWERNODE_URL", global = true)]
    pub url: Option<String>,
    /// Operator token (default: the current context's, else
    /// `<data-dir>/admin.token`).
    #[arg(long, env = "POWERNODE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The context (a named API, token and pinned CA) to use instead of the
    /// current one.
    #[arg(long, env = "POWERNODE_CONTEXT", global = true)]
    pub context: Option<String>,
    /// A PEM file with the CA certificate(s) to trust for https.
    #[arg(long, env = "POWERNODE_CA_CERT", global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// The longest one API call may take, e.g. `30s`, `2m` (default: no limit).
    #[arg(long, env = "POWERNODE_TIMEOUT", global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Where `powernode up` keeps its state (its log, checkpoints and the
    /// admin token client commands fall back to).
    #[arg(long, env = "POWERNODE_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table",
        global = true
    )]
    pub output: Format,
    /// Tables without their header row.
    #[arg(long, global = true)]
    pub no_headers: bool,
}

/// `30s`, `2m`, `1h`, `500ms` or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl ApiArgs {
    /// `url` with the admin token of `data_dir` and every other option at
    /// its default (tests and embedding programs).
    pub fn for_url(url: &str, data_dir: &Path) -> Self {
        Self {
            url: Some(url.to_string()),
            token: None,
            context: None,
            ca_cert: None,
            timeout: None,
            data_dir: Some(data_dir.to_path_buf()),
            output: Format::Table,
            no_headers: false,
        }
    }

    /// The data dir: --data-dir / `POWERNODE_DATA_DIR`, else `./.powernode`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The API address these options select (see [`resolve`](Self::resolve);
    /// the given or default URL when the config file cannot be read).
    pub fn url(&self) -> String {
        match self.resolve() {
            Ok(r) => r.url,
            Err(_) => self.url.clone().unwrap_or_else(|| DEFAULT_URL.to_string()),
        }
    }

    /// Where the API's settings come from, field by field: flags and the
    /// environment (`--url`, `--token`, `--ca-cert`) first; then the
    /// context named by `--context` / `POWERNODE_CONTEXT`, else the config
    /// file's current context (only when no `--url` is given: a context's
    /// token goes to its own API only); then the zero-config local
    /// defaults: [`DEFAULT_URL`], `<data-dir>/tls/ca.pem` when it exists
    /// (for a loopback URL), and the data dir's admin token.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let named = self
            .context
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let context = if named.is_some() || self.url.is_none() {
            let path = crate::context::file::path()?;
            let config = crate::context::file::load(&path)?;
            match named.map(String::from).or(config.current.clone()) {
                Some(name) => Some(config.require(&name, &path)?.clone()),
                None => None,
            }
        } else {
            None
        };
        let url = self
            .url
            .clone()
            .or_else(|| context.as_ref().map(|c| c.url.clone()))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let token = self
            .token
            .as_ref()
            .map(|t| t.trim().to_string())
            .or_else(|| context.as_ref().map(|c| c.token.clone()));
        let mut resolved = Resolved {
            url,
            token,
            ca_cert: self.ca_cert.clone(),
            ca_pem: None,
            context: context.as_ref().map(|c| c.name.clone()),
        };
        if resolved.ca_cert.is_none() {
            match &context {
                Some(c) => resolved.ca_pem = c.ca_pem.clone(),
                None if is_local(&resolved.url) => {
                    let local = self.data_dir().join("tls").join("ca.pem");
                    if local.exists() {
                        resolved.ca_cert = Some(local);
                    }
                }
                None => {}
            }
        }
        Ok(resolved)
    }

    /// The operator token these options select: `--token` /
    /// `POWERNODE_TOKEN`, or the admin token `powernode up` wrote into
    /// `data_dir`.
    pub fn token(&self, data_dir: &Path) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        admin_token(data_dir)
    }

    /// The client configuration these options select (see
    /// [`resolve`](Self::resolve)).
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let r = self.resolve()?;
        let token = match r.token {
            Some(t) => t,
            None => admin_token(&self.data_dir())?,
        };
        let mut config = ClientConfig::new(r.url, token);
        config.ca_cert = r.ca_cert;
        config.ca_pem = r.ca_pem;
        config.context = r.context;
        config.timeout = self.timeout;
        Ok(config)
    }

    /// The client these options select.
    pub fn client(&self) -> anyhow::Result<Api> {
        Ok(Api::from_config(&self.client_config()?)?)
    }
}

/// The admin token a local `powernode up` wrote into `data_dir`.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin.token");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| {
            format!(
                "no --token / POWERNODE_TOKEN, no context, and cannot read {} (is `powernode up` \
                 running with this --data-dir?)",
                path.display()
            )
        })?
        .trim()
        .to_string())
}

/// True when `url`'s host is a loopback address or `localhost`.
fn is_local(url: &str) -> bool {
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    match url::Url::parse(&full)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_are_the_servers() {
        // The client cannot depend on the archive or the server (nor they
        // on the client): one route, two constants, kept equal here.
        assert_eq!(
            powernode_client::EXPORT_PATH,
            powernode_archive::EXPORT_PATH
        );
        assert_eq!(
            powernode_client::EVENTS_PATH,
            powernode_server::api::sse::PATH
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn the_token_falls_back_to_the_admin_token_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ApiArgs::for_url("http://127.0.0.1:1", dir.path());
        assert!(args.token(dir.path()).is_err());
        std::fs::write(dir.path().join("admin.token"), "t0ken\n").expect("write");
        assert_eq!(args.token(dir.path()).expect("token"), "t0ken");
        let given = ApiArgs {
            token: Some(" given ".into()),
            ..args
        };
        assert_eq!(given.token(dir.path()).expect("token"), "given");
    }
}
