//! A node running the API on either log backend, its secrets sealed with a
//! key file of the test's own.

use super::*;

/// A node running the API on either log backend, its secrets sealed with a
/// key file of the test's own.
pub(super) struct Node {
    pub(super) node: Option<RunningNode>,
    pub(super) log: SharedLog,
    pub(super) port: u16,
    pub(super) admin: String,
    pub(super) dir: tempfile::TempDir,
    pub(super) key_file: PathBuf,
    pub(super) nats: Option<NatsServer>,
    pub(super) services: Vec<ServiceName>,
    pub(super) _keys: tempfile::TempDir,
}

impl Node {
    pub(super) async fn start(jetstream: bool) -> anyhow::Result<Self> {
        Self::start_with(jetstream, &[ServiceName::Api]).await
    }

    pub(super) async fn start_with(
        jetstream: bool,
        services: &[ServiceName],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let keys = tempfile::tempdir()?;
        let key_file = keys.path().join("secrets.key");
        let (log, nats): (SharedLog, _) = if jetstream {
            let nats = NatsServer::start()?;
            (
                Arc::new(JetStreamLog::connect(nats.log_config()).await?),
                Some(nats),
            )
        } else {
            (Arc::new(EmbeddedLog::open(&dir.path().join("log"))?), None)
        };
        let mut n = Self {
            node: None,
            log,
            port: 0,
            admin: String::new(),
            dir,
            key_file,
            nats,
            services: services.to_vec(),
            _keys: keys,
        };
        n.restart().await?;
        Ok(n)
    }

    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        let node = start_node_with(
            self.log.clone(),
            self.dir.path(),
            &self.services,
            "127.0.0.1:0".parse()?,
            "api",
            NodeExtras {
                secrets_key_file: Some(self.key_file.clone()),
                ..NodeExtras::default()
            },
        )
        .await?;
        self.port = node.api_addr.context("the API runs here")?.port();
        self.admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().context("admin token")?)?
                .trim()
                .to_string();
        self.node = Some(node);
        Ok(())
    }

    pub(super) async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.stop().await?;
        }
        Ok(())
    }

    /// The node's secret store, opened beside it (embedded: stop it first).
    pub(super) async fn store(&self) -> anyhow::Result<SharedSecrets> {
        Ok(match &self.nats {
            Some(nats) => Arc::new(
                JetStreamSecrets::open(nats.client().await?, DEFAULT_BUCKET, 1, &self.key_file)
                    .await?,
            ),
            None => {
                ensure!(self.node.is_none(), "stop the embedded node first");
                Arc::new(EmbeddedSecrets::open(
                    &self.dir.path().join(DEFAULT_DIR),
                    &self.key_file,
                )?)
            }
        })
    }

    pub(super) async fn call(
        &self,
        token: &str,
        name: &str,
        args: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let a = action(self.port, Some(token), name, &args).await?;
        Ok((a.status, a.body))
    }

    /// A fresh account and a token with the lifecycle permissions.
    pub(super) async fn operator(&self, name: &str) -> anyhow::Result<(AccountId, String)> {
        let (s, a) = self
            .call(&self.admin, "system_create_account", json!({"name": name}))
            .await?;
        ensure!(s == 200, "{a}");
        let id = str_at(&a, "/data/account/id")?;
        let (s, t) = self
            .call(
                &self.admin,
                "system_create_operator_token",
                json!({"account_id": id, "permissions": OPERATOR_PERMISSIONS}),
            )
            .await?;
        ensure!(s == 200, "{t}");
        Ok((AccountId::new(id)?, str_at(&t, "/data/token")?))
    }

    /// A cluster as the provisioner records one, with no join token yet;
    /// waits until the API lists it.
    pub(super) async fn fake_cluster(
        &self,
        account: &AccountId,
        token: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        use powernode_events::payloads::fleet::CniPlugin;
        use powernode_events::payloads::k3s::{ClusterActivated, ClusterBootstrapped};
        use powernode_events::{Actor, Envelope};
        for p in [
            EventPayload::from(ClusterBootstrapped {
                cluster_id: id.into(),
                name: format!("{id}-name"),
                bootstrap_instance_id: format!("{id}-srv"),
                api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
                network_id: None,
                cni_plugin: CniPlugin::Flannel,
                pod_cidr: None,
                server_flags: vec![],
                join_token_fingerprint: String::new(),
            }),
            EventPayload::from(ClusterActivated {
                cluster_id: id.into(),
            }),
        ] {
            let e = Envelope::new(account.clone(), Actor::service("provisioner"), p);
            self.log.append(&e, powernode_log::Expect::Any).await?;
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (s, _) = self
                .call(token, "kubernetes_get_cluster", json!({"id": id}))
                .await?;
            if s == 200 {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "cluster {id} never listed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
