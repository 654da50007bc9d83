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

/// The API a command talks to when neither --url nor a context names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Global options of every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The API address (default: the current context's, else
    /// http://127.0.0.1:8080).
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

    /// The API address these options select: --url / `POWERNODE_URL`, else
    /// the default.
    pub fn url(&self) -> String {
        self.url.clone().unwrap_or_else(|| DEFAULT_URL.to_string())
    }

    /// The operator token these options select: `--token` /
    /// `POWERNODE_TOKEN`, or the admin token `powernode up` wrote into
    /// `data_dir`.
    pub fn token(&self, data_dir: &Path) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        let path = data_dir.join("admin.token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "no --token / POWERNODE_TOKEN and cannot read {}",
                    path.display()
                )
            })?
            .trim()
            .to_string())
    }

    /// The client configuration these options select (see
    /// [`token`](Self::token)).
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let data_dir = self.data_dir();
        let mut config = ClientConfig::new(self.url(), self.token(&data_dir)?);
        config.ca_cert = self.ca_cert.clone();
        config.timeout = self.timeout;
        Ok(config)
    }

    /// The client these options select.
    pub fn client(&self) -> anyhow::Result<Api> {
        Ok(Api::from_config(&self.client_config()?)?)
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
