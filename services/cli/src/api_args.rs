//! Where the API is and who we are: the global options of every client
//! command, and the admin-token fallback. They convert into the client
//! crate's [`ClientConfig`]; the client itself parses no command line and
//! reads no token file.

use anyhow::Context;
use powernode_client::{Api, ClientConfig};
use std::path::Path;

/// Where the API is and who we are: global options of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The API address (client commands).
    #[arg(
        long,
        env = "POWERNODE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Operator token (client commands); defaults to `<data-dir>/admin.token`.
    #[arg(long, env = "POWERNODE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl ApiArgs {
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
    pub fn config(&self, data_dir: &Path) -> anyhow::Result<ClientConfig> {
        Ok(ClientConfig::new(self.url.clone(), self.token(data_dir)?))
    }

    /// The client these options select; without a token, the admin token
    /// `powernode up` wrote into `data_dir`.
    pub fn connect(&self, data_dir: &Path) -> anyhow::Result<Api> {
        Ok(Api::from_config(&self.config(data_dir)?)?)
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
    fn the_token_falls_back_to_the_admin_token_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ApiArgs {
            url: "http://127.0.0.1:1".into(),
            token: None,
        };
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
