//! A running API node for action tests, on either log backend.

use crate::http::action;
use crate::nats::NatsServer;
use anyhow::ensure;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::SharedLog;
use powernode_server::node::{start_node, RunningNode};
use powernode_server::services::ServiceName;
use serde_json::json;
use std::sync::Arc;

/// A node running the API on a free port, with what keeps it alive.
pub struct Api {
    /// The node.
    pub node: RunningNode,
    /// Its log.
    pub log: SharedLog,
    /// The API's port.
    pub port: u16,
    /// The admin token.
    pub admin: String,
    /// Its data dir.
    pub _dir: tempfile::TempDir,
    /// Its nats-server, on JetStream.
    pub _nats: Option<NatsServer>,
}

impl Api {
    /// Starts the API on `log`.
    pub async fn start(
        log: SharedLog,
        dir: tempfile::TempDir,
        nats: Option<NatsServer>,
    ) -> anyhow::Result<Self> {
        let node = start_node(
            log.clone(),
            dir.path(),
            &[ServiceName::Api],
            "127.0.0.1:0".parse()?,
            "api",
        )
        .await?;
        let port = node.api_addr.expect("the API runs here").port();
        let admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().expect("admin token file"))?
                .trim()
                .to_string();
        Ok(Self {
            node,
            log,
            port,
            admin,
            _dir: dir,
            _nats: nats,
        })
    }

    /// On the embedded log.
    pub async fn embedded() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log: SharedLog = Arc::new(EmbeddedLog::open(&dir.path().join("log"))?);
        Self::start(log, dir, None).await
    }

    /// On a fresh nats-server.
    pub async fn jetstream() -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let log: SharedLog =
            Arc::new(JetStreamLog::connect(crate::nats::log_config(nats.url())).await?);
        Self::start(log, tempfile::tempdir()?, Some(nats)).await
    }

    /// Creates an account and a token for it with `permissions`.
    pub async fn account_with_token(
        &self,
        name: &str,
        permissions: &[&str],
    ) -> anyhow::Result<(String, String)> {
        let a = action(
            self.port,
            Some(&self.admin),
            "system_create_account",
            &json!({"name": name}),
        )
        .await?;
        ensure!(a.status == 200, "create account: {:?}", a.body);
        let id = a.body["data"]["account"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = action(
            self.port,
            Some(&self.admin),
            "system_create_operator_token",
            &json!({"account_id": id, "permissions": permissions}),
        )
        .await?;
        ensure!(t.status == 200, "create token: {:?}", t.body);
        Ok((
            id,
            t.body["data"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }
}

/// One `#[tokio::test]` per check and backend: `api_both_backends!(check_a, check_b)`
/// where each check is `async fn(Api) -> anyhow::Result<()>`.
#[macro_export]
macro_rules! api_both_backends {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $check() -> anyhow::Result<()> { super::$check($crate::api_support::Api::embedded().await?).await } )*
        }
        mod jetstream {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $check() -> anyhow::Result<()> { super::$check($crate::api_support::Api::jetstream().await?).await } )*
        }
    };
}
