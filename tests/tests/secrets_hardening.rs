//! The secret store's side of issue 13, against real nodes:
//!
//! * a bootstrap re-sent with its original id cannot replace a cluster's
//!   secrets (write-once), an identical retry is still answered, and a
//!   decommissioned cluster's secrets are never written again;
//! * 50 concurrent join-token rotations leave the stored token matching the
//!   fingerprint the log (and so the API) reports, on both log backends;
//! * decommission deletes the cluster's join token and kubeconfig;
//! * secrets are sealed at rest: neither sled's files nor the nats-server's
//!   JetStream files hold a plaintext value, and a store opened with another
//!   key file cannot read them.
//!
//! `cargo nextest run -p powernode-tests --test secrets_hardening`

use anyhow::{ensure, Context as _};
use powernode_events::payloads::k3s::{HandshakeBootstrap, HandshakeReady};
use powernode_events::{AccountId, EventPayload};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::SharedLog;
use powernode_protocol::{fingerprint, BootstrapSecrets};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::secrets::embedded::{EmbeddedSecrets, DEFAULT_DIR};
use powernode_server::secrets::jetstream::{JetStreamSecrets, DEFAULT_BUCKET};
use powernode_server::secrets::{SecretError, SecretKey, SecretStore, SharedSecrets};
use powernode_server::services::ServiceName;
use powernode_tests::http::action;
use powernode_tests::lifecycle_support::*;
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const REJECTED: &str = "system.agent.submission_rejected";

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| contains(&b, needle)) {
                found.push(path);
            }
        }
    }
    Ok(found)
}

fn kubeconfig(ca: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:6443\n  name: default\n"
    )
}

// ------------------------------------------------ finding 4: write-once bootstrap

/// A bootstrap server driven by hand on `p`: the signed report, its
/// secrets, and the cluster id it created (the cluster active).
async fn bootstrapped(
    p: &Platform,
) -> anyhow::Result<(
    ManualAgent,
    powernode_events::Envelope,
    BootstrapSecrets,
    String,
)> {
    let s = ManualAgent::enroll(p, &p.op, "k3s-server-1", Some((SERVER, None))).await?;
    let secrets = BootstrapSecrets {
        node_token: format!("K10{}::server:{}", "ab".repeat(32), "cd".repeat(32)),
        kubeconfig: kubeconfig("REAL-CA-0123456789abcdef"),
    };
    let report = s.signed(HandshakeBootstrap {
        instance_id: s.instance_id.clone(),
        k3s_version: K3S_VERSION.into(),
        node_token_fingerprint: fingerprint(secrets.node_token.as_bytes()),
        kubeconfig_fingerprint: fingerprint(secrets.kubeconfig.as_bytes()),
    })?;
    let r = s.submit(&report, Some(secrets.clone())).await?;
    let cluster_id = str_at(&r, "/ok/cluster_id").with_context(|| format!("bootstrap: {r}"))?;
    let ready = s.signed(HandshakeReady {
        instance_id: s.instance_id.clone(),
        cluster_id: cluster_id.clone(),
        node_name: "k3s-server-1".into(),
        k3s_version: K3S_VERSION.into(),
        token_fingerprint: None,
    })?;
    let r = s.submit(&ready, None).await?;
    ensure!(r["ok"]["outcome"] == "accepted", "ready: {r}");
    p.wait_cluster_active(&s.instance_id).await?;
    Ok((s, report, secrets, cluster_id))
}

/// `report` with other secrets: the same event id, fingerprints of the
/// new secrets, signed again by the same agent.
fn forged(
    s: &ManualAgent,
    report: &powernode_events::Envelope,
    other: &BootstrapSecrets,
) -> anyhow::Result<powernode_events::Envelope> {
    let mut e = report.clone();
    let EventPayload::HandshakeBootstrap(p) = &mut e.payload else {
        anyhow::bail!("not a bootstrap report");
    };
    p.node_token_fingerprint = fingerprint(other.node_token.as_bytes());
    p.kubeconfig_fingerprint = fingerprint(other.kubeconfig.as_bytes());
    e.signature = None;
    s.identity.sign(&mut e)?;
    Ok(e)
}

/// The platform's secret store, opened beside it with the same key file.
async fn platform_store(p: &Platform, key_file: &Path) -> anyhow::Result<JetStreamSecrets> {
    let client = powernode_tests::nats::connect(p.nats_url()).await?;
    Ok(JetStreamSecrets::open(client, DEFAULT_BUCKET, 1, key_file).await?)
}

/// Finding 4: the attack (the same id, other secrets, signed by the
/// enrolled server) is refused as `secrets_exist`, recorded, and changes no
/// stored secret; the served kubeconfig keeps the real CA; an identical
/// retry is answered with the same cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_bootstrap_cannot_replace_the_clusters_secrets() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("secrets.key");
    let p = Platform::start_with(NodeExtras {
        secrets_key_file: Some(key_file.clone()),
        ..NodeExtras::default()
    })
    .await?;
    let (s, report, real, cluster_id) = bootstrapped(&p).await?;
    let account = AccountId::new(p.op.account_id.clone())?;
    let store = platform_store(&p, &key_file).await?;
    let token_key = SecretKey::join_token(&account, &cluster_id)?;
    let kube_key = SecretKey::kubeconfig(&account, &cluster_id)?;

    let fake = BootstrapSecrets {
        node_token: format!("K10{}::server:{}", "ee".repeat(32), "ff".repeat(32)),
        kubeconfig: kubeconfig("ATTACKER-CA-fedcba9876543210"),
    };
    let before = p.settle().await?;
    let r = s
        .submit(&forged(&s, &report, &fake)?, Some(fake.clone()))
        .await?;
    ensure!(
        error_code(&r) == Ok("secrets_exist"),
        "re-sent bootstrap: {r}"
    );
    // Only the kubeconfig alone differing is refused too (and the join
    // token, equal, is left as it is).
    let half = BootstrapSecrets {
        node_token: real.node_token.clone(),
        kubeconfig: fake.kubeconfig.clone(),
    };
    let r = s
        .submit(&forged(&s, &report, &half)?, Some(half.clone()))
        .await?;
    ensure!(
        error_code(&r) == Ok("secrets_exist"),
        "half-forged bootstrap: {r}"
    );
    p.settle().await?;
    let added: Vec<_> = p
        .log_events("")
        .await?
        .into_iter()
        .filter(|(seq, _)| *seq > before)
        .map(|(_, e)| serde_json::to_value(&e))
        .collect::<Result<_, _>>()?;
    ensure!(
        added.len() == 2
            && added.iter().all(|e| e["kind"] == REJECTED
                && e["payload"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("secrets_exist"))),
        "each refusal is recorded as a rejection, and nothing else is appended: {added:?}"
    );
    ensure!(
        store.get(&token_key).await?.as_deref() == Some(real.node_token.as_bytes()),
        "the join token was replaced"
    );
    ensure!(
        store.get(&kube_key).await?.as_deref() == Some(real.kubeconfig.as_bytes()),
        "the kubeconfig was replaced"
    );
    let served = p
        .ok(
            "kubernetes_get_kubeconfig",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    let served = served["kubeconfig"].as_str().unwrap_or_default();
    ensure!(
        served.contains("REAL-CA") && !served.contains("ATTACKER-CA"),
        "{served}"
    );

    // An identical retry of the real report is fine: the same cluster.
    let r = s.submit(&report, Some(real.clone())).await?;
    ensure!(
        r["ok"]["cluster_id"] == cluster_id.as_str(),
        "identical retry: {r}"
    );
    Ok(())
}

/// Finding "decommission deletes the cluster's secrets", through the
/// intake: after decommission both secrets are gone from the store, and
/// the original bootstrap re-sent (same id, same secrets) does not write
/// them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_clusters_secrets_stay_deleted() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let key_file = keys.path().join("secrets.key");
    let p = Platform::start_with(NodeExtras {
        secrets_key_file: Some(key_file.clone()),
        ..NodeExtras::default()
    })
    .await?;
    let (s, report, real, cluster_id) = bootstrapped(&p).await?;
    let account = AccountId::new(p.op.account_id.clone())?;
    let store = platform_store(&p, &key_file).await?;
    let keys_of = [
        SecretKey::join_token(&account, &cluster_id)?,
        SecretKey::kubeconfig(&account, &cluster_id)?,
    ];
    for k in &keys_of {
        ensure!(store.get(k).await?.is_some(), "{k} before decommission");
    }
    p.ok(
        "kubernetes_decommission_cluster",
        json!({"cluster_id": cluster_id}),
    )
    .await?;
    for k in &keys_of {
        ensure!(store.get(k).await?.is_none(), "{k} after decommission");
    }
    let r = s.submit(&report, Some(real)).await?;
    ensure!(r.get("ok").is_none(), "re-sent after decommission: {r}");
    for k in &keys_of {
        ensure!(
            store.get(k).await?.is_none(),
            "{k} was written again by a re-sent bootstrap: {r}"
        );
    }
    let again = p
        .action(
            "kubernetes_decommission_cluster",
            json!({"cluster_id": cluster_id}),
        )
        .await;
    ensure!(
        again.as_ref().err().map(|e| e.code()) == Some("already_decommissioned"),
        "{again:?}"
    );
    Ok(())
}

// ------------------------------------------ rotation and decommission, both backends

/// Finding 4 on the embedded log and sled store, where agents reach the
/// intake by direct call: an intake over the log of a node running every
/// service (its provisioner decides), with a sled store of the test's own.
/// The re-sent bootstrap (same id, other secrets, signed by the enrolled
/// server) is refused as `secrets_exist` and recorded; nothing stored
/// changes; an identical retry is answered with the same cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_resent_bootstrap_cannot_replace_the_clusters_secrets() -> anyhow::Result<()> {
    use powernode_agent::identity::Identity;
    use powernode_events::{Actor, Envelope};
    use powernode_protocol::{EnrollRequest, Submission, SubmitReply};
    use powernode_runtime::Shared;
    use powernode_server::intake::Intake;
    use powernode_server::services::{run_service, ServiceContext};

    let n = Node::start_with(false, &ServiceName::ALL).await?;
    let (account, token) = n.operator("boot").await?;
    let op = Operator {
        port: n.port,
        token,
        account_id: account.to_string(),
    };
    let template = op.template("srv-template").await?;
    op.assign(&template, SERVER, None).await?;
    let (instance_id, credential) = op.provision("k3s-server-1", &template, 2048).await?;

    // The intake's own projection and store.
    let own = tempfile::tempdir()?;
    let fleet = Shared::default();
    let ctx = ServiceContext {
        log: n.log.clone(),
        checkpoints: Arc::new(powernode_runtime::checkpoint::CheckpointStore::open(
            own.path().join("checkpoints"),
        )?),
        shutdown: n.node.as_ref().context("running")?.shutdown.clone(),
        liveness: powernode_server::liveness::Liveness::shared(),
        failover: Default::default(),
        replica: Some("secrets-test".into()),
    };
    let liveness = ctx.liveness.clone();
    tokio::spawn(run_service(ServiceName::Api, ctx, fleet.clone()));
    let store = Arc::new(EmbeddedSecrets::open(
        &own.path().join("secrets"),
        &n.key_file,
    )?);
    let intake = Intake::new(n.log.clone(), fleet, store.clone(), liveness);
    ensure!(intake.caught_up_with_log(WAIT).await, "the projection lags");

    let identity = Identity::ephemeral();
    intake
        .enroll(EnrollRequest {
            credential,
            public_key: identity.public_key_hex(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("enroll: {e:?}"))?;
    let submit = |e: &Envelope, secrets: &BootstrapSecrets| {
        let s = Submission {
            event: hex::encode(e.encode().expect("encodes")),
            secrets: Some(secrets.clone()),
        };
        let intake = intake.clone();
        async move { intake.submit(s).await }
    };
    let real = BootstrapSecrets {
        node_token: format!("K10{}::server:{}", "ab".repeat(32), "cd".repeat(32)),
        kubeconfig: kubeconfig("REAL-CA-0123456789abcdef"),
    };
    let mut report = Envelope::new(
        account.clone(),
        Actor::Agent {
            instance_id: instance_id.clone(),
        },
        HandshakeBootstrap {
            instance_id: instance_id.clone(),
            k3s_version: K3S_VERSION.into(),
            node_token_fingerprint: fingerprint(real.node_token.as_bytes()),
            kubeconfig_fingerprint: fingerprint(real.kubeconfig.as_bytes()),
        },
    );
    identity.sign(&mut report)?;
    let cluster_id = match submit(&report, &real).await {
        Ok(SubmitReply::ClusterCreated { cluster_id, .. }) => cluster_id,
        other => anyhow::bail!("bootstrap: {other:?}"),
    };

    let fake = BootstrapSecrets {
        node_token: format!("K10{}::server:{}", "ee".repeat(32), "ff".repeat(32)),
        kubeconfig: kubeconfig("ATTACKER-CA-fedcba9876543210"),
    };
    let mut forged = report.clone();
    if let EventPayload::HandshakeBootstrap(p) = &mut forged.payload {
        p.node_token_fingerprint = fingerprint(fake.node_token.as_bytes());
        p.kubeconfig_fingerprint = fingerprint(fake.kubeconfig.as_bytes());
    }
    forged.signature = None;
    identity.sign(&mut forged)?;
    let before = n.log.last_seq().await?;
    match submit(&forged, &fake).await {
        Err(refused) if refused.code == "secrets_exist" => {}
        other => anyhow::bail!("re-sent bootstrap: {other:?}"),
    }
    let filter = powernode_log::Filter::all();
    let added = n.log.read(before + 1, 1000, &filter).await?;
    ensure!(
        added.iter().any(|r| r.kind() == REJECTED)
            && added
                .iter()
                .all(|r| r.kind() == REJECTED || !r.kind().starts_with("system.k3s")),
        "the refusal is recorded, and no k3s fact: {:?}",
        added.iter().map(|r| r.kind()).collect::<Vec<_>>()
    );
    let token_key = SecretKey::join_token(&account, &cluster_id)?;
    let kube_key = SecretKey::kubeconfig(&account, &cluster_id)?;
    ensure!(
        store.get(&token_key).await?.as_deref() == Some(real.node_token.as_bytes()),
        "the join token was replaced"
    );
    ensure!(
        store.get(&kube_key).await?.as_deref() == Some(real.kubeconfig.as_bytes()),
        "the kubeconfig was replaced"
    );
    match submit(&report, &real).await {
        Ok(SubmitReply::ClusterCreated {
            cluster_id: again, ..
        }) if again == cluster_id => {}
        other => anyhow::bail!("identical retry: {other:?}"),
    }
    // A refused bootstrap leaves nothing it wrote: with the join token
    // gone, the forged report creates it, then meets the kubeconfig and is
    // refused — and the token it created is removed again.
    store.delete(&token_key).await?;
    match submit(&forged, &fake).await {
        Err(refused) if refused.code == "secrets_exist" => {}
        other => anyhow::bail!("re-sent bootstrap, token gone: {other:?}"),
    }
    ensure!(
        store.get(&token_key).await?.is_none(),
        "a refused bootstrap left the join token it wrote"
    );
    Ok(())
}

/// A node running the API on either log backend, its secrets sealed with a
/// key file of the test's own.
struct Node {
    node: Option<RunningNode>,
    log: SharedLog,
    port: u16,
    admin: String,
    dir: tempfile::TempDir,
    key_file: PathBuf,
    nats: Option<NatsServer>,
    services: Vec<ServiceName>,
    _keys: tempfile::TempDir,
}

impl Node {
    async fn start(jetstream: bool) -> anyhow::Result<Self> {
        Self::start_with(jetstream, &[ServiceName::Api]).await
    }

    async fn start_with(jetstream: bool, services: &[ServiceName]) -> anyhow::Result<Self> {
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

    async fn restart(&mut self) -> anyhow::Result<()> {
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

    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.stop().await?;
        }
        Ok(())
    }

    /// The node's secret store, opened beside it (embedded: stop it first).
    async fn store(&self) -> anyhow::Result<SharedSecrets> {
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

    async fn call(&self, token: &str, name: &str, args: Value) -> anyhow::Result<(u16, Value)> {
        let a = action(self.port, Some(token), name, &args).await?;
        Ok((a.status, a.body))
    }

    /// A fresh account and a token with the lifecycle permissions.
    async fn operator(&self, name: &str) -> anyhow::Result<(AccountId, String)> {
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
    async fn fake_cluster(&self, account: &AccountId, token: &str, id: &str) -> anyhow::Result<()> {
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

/// Finding "rotation is atomic": 50 concurrent rotations, then the stored
/// token's fingerprint is the one the API (the log) reports, and the answer
/// of the rotation that won last.
async fn concurrent_rotations_leave_store_and_log_agreeing(jetstream: bool) -> anyhow::Result<()> {
    let mut n = Node::start(jetstream).await?;
    let (account, token) = n.operator("rot").await?;
    n.fake_cluster(&account, &token, "cluster-rot").await?;
    // On JetStream, a second API replica (its own connection and data
    // dir, the same key file) takes every other call.
    let mut ports = vec![n.port];
    let _replica = match &n.nats {
        Some(nats) => {
            let dir = tempfile::tempdir()?;
            let log: SharedLog = Arc::new(JetStreamLog::connect(nats.log_config()).await?);
            let node = start_node_with(
                log,
                dir.path(),
                &[ServiceName::Api],
                "127.0.0.1:0".parse()?,
                "api",
                NodeExtras {
                    secrets_key_file: Some(n.key_file.clone()),
                    // Its own durable cursor, or the two would split the log.
                    replica: Some("second".into()),
                    ..NodeExtras::default()
                },
            )
            .await?;
            ports.push(node.api_addr.context("the API runs here")?.port());
            Some((node, dir))
        }
        None => None,
    };
    // Every replica knows the cluster before the race starts.
    for &port in &ports {
        let deadline = std::time::Instant::now() + WAIT;
        while action(
            port,
            Some(&token),
            "kubernetes_get_cluster",
            &json!({"id": "cluster-rot"}),
        )
        .await?
        .status
            != 200
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "port {port} never saw the cluster"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let calls = (0..50).map(|i| {
        let (port, token) = (ports[i % ports.len()], token.clone());
        async move {
            let a = action(
                port,
                Some(&token),
                "kubernetes_rotate_join_token",
                &json!({"cluster_id": "cluster-rot"}),
            )
            .await?;
            Ok::<_, anyhow::Error>((a.status, a.body))
        }
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join_all(calls),
    )
    .await
    .context("50 concurrent rotations did not finish within 60 s")?;
    let mut won = std::collections::HashSet::new();
    for a in answers {
        let (status, body) = a?;
        match status {
            200 => {
                won.insert(str_at(&body, "/data/token_fingerprint")?);
            }
            409 => ensure!(body["error"]["code"] == "conflict", "{body}"),
            _ => anyhow::bail!("rotation answered {status}: {body}"),
        }
    }
    ensure!(!won.is_empty(), "no rotation succeeded");
    eprintln!("{} of 50 concurrent rotations succeeded", won.len());
    let (s, c) = n
        .call(
            &token,
            "kubernetes_get_cluster",
            json!({"id": "cluster-rot"}),
        )
        .await?;
    ensure!(s == 200, "{c}");
    let logged = str_at(&c, "/data/cluster/join_token_fingerprint")?;
    ensure!(
        won.contains(&logged),
        "the logged fingerprint is no rotation's answer"
    );
    let filter = powernode_log::Filter {
        kind_prefix: Some("system.k3s.join_token.rotated".into()),
        ..Default::default()
    };
    let rotations = n.log.read(1, 100_000, &filter).await?.len();
    ensure!(
        rotations == won.len(),
        "{rotations} rotation events for {} successful answers",
        won.len()
    );
    n.stop().await?;
    let store = n.store().await?;
    let stored = store
        .get(&SecretKey::join_token(&account, "cluster-rot")?)
        .await?
        .context("no join token stored")?;
    ensure!(
        fingerprint(&stored) == logged,
        "the stored token ({}) does not match the logged fingerprint ({logged})",
        fingerprint(&stored)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_concurrent_rotations_leave_store_and_log_agreeing() -> anyhow::Result<()> {
    concurrent_rotations_leave_store_and_log_agreeing(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_concurrent_rotations_leave_store_and_log_agreeing() -> anyhow::Result<()> {
    concurrent_rotations_leave_store_and_log_agreeing(true).await
}

/// Finding "decommission deletes the cluster's secrets" and "secrets at
/// rest are encrypted", on both backends: a cluster's secrets (seeded
/// through the store) are deleted by decommission; no file of the store
/// (sled's, or the nats-server's JetStream directory) ever held a plaintext
/// value; and another key file cannot read what is stored.
async fn decommission_deletes_and_nothing_is_plaintext(jetstream: bool) -> anyhow::Result<()> {
    const KUBECONFIG: &str = "client-key-data: PLAINTEXT-KUBECONFIG-KEY-5f3a9c";
    const KEEP: &str = "PLAINTEXT-OTHER-CLUSTER-TOKEN-77e1";
    let mut n = Node::start(jetstream).await?;
    let (account, token) = n.operator("dec").await?;
    n.fake_cluster(&account, &token, "cluster-dec").await?;
    n.fake_cluster(&account, &token, "cluster-keep").await?;
    let kube = SecretKey::kubeconfig(&account, "cluster-dec")?;
    let keep = SecretKey::join_token(&account, "cluster-keep")?;
    // Seed through the store (embedded: with the node stopped).
    if !jetstream {
        n.stop().await?;
    }
    {
        let store = n.store().await?;
        store.put(&kube, KUBECONFIG.as_bytes()).await?;
        store.put(&keep, KEEP.as_bytes()).await?;
    }
    if !jetstream {
        n.restart().await?;
    }
    let (s, r) = n
        .call(
            &token,
            "kubernetes_get_kubeconfig",
            json!({"cluster_id": "cluster-dec"}),
        )
        .await?;
    ensure!(
        s == 200
            && r["data"]["kubeconfig"]
                .as_str()
                .is_some_and(|k| k.contains(KUBECONFIG)),
        "{r}"
    );
    let (s, r) = n
        .call(
            &token,
            "kubernetes_decommission_cluster",
            json!({"cluster_id": "cluster-dec"}),
        )
        .await?;
    ensure!(s == 200, "{r}");
    n.stop().await?;

    let store = n.store().await?;
    ensure!(
        store.get(&kube).await?.is_none(),
        "the decommissioned cluster's kubeconfig is still stored"
    );
    ensure!(
        store.get(&keep).await?.as_deref() == Some(KEEP.as_bytes()),
        "another cluster's secret was touched"
    );
    drop(store);

    // Nothing on disk holds a plaintext value (nor did it: sled keeps old
    // values in its log until it compacts).
    let on_disk = match &n.nats {
        Some(nats) => nats.store_dir(),
        None => n.dir.path().join(DEFAULT_DIR),
    };
    for plain in [KUBECONFIG, KEEP] {
        let found = files_containing(&on_disk, plain.as_bytes())?;
        ensure!(found.is_empty(), "{plain:?} in plaintext in {found:?}");
    }

    // Another key file cannot read them: an error naming the key, never
    // the value.
    let other = tempfile::tempdir()?;
    let other_key = other.path().join("other.key");
    let wrong: SharedSecrets = match &n.nats {
        Some(nats) => Arc::new(
            JetStreamSecrets::open(nats.client().await?, DEFAULT_BUCKET, 1, &other_key).await?,
        ),
        None => Arc::new(EmbeddedSecrets::open(
            &n.dir.path().join(DEFAULT_DIR),
            &other_key,
        )?),
    };
    let e = wrong.get(&keep).await.unwrap_err();
    let msg = e.to_string();
    ensure!(
        matches!(e, SecretError::Undecryptable(_))
            && msg.contains(keep.as_str())
            && !msg.contains(KEEP),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_decommission_deletes_and_nothing_is_plaintext() -> anyhow::Result<()> {
    decommission_deletes_and_nothing_is_plaintext(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_decommission_deletes_and_nothing_is_plaintext() -> anyhow::Result<()> {
    decommission_deletes_and_nothing_is_plaintext(true).await
}

/// The key file is refused inside the data directory, and a node started
/// with a key file creates it 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_file_is_private_and_outside_the_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: SharedLog = Arc::new(EmbeddedLog::open(&dir.path().join("log"))?);
    let inside = dir.path().join("secrets.key");
    let e = start_node_with(
        log.clone(),
        dir.path(),
        &[ServiceName::Api],
        "127.0.0.1:0".parse()?,
        "api",
        NodeExtras {
            secrets_key_file: Some(inside.clone()),
            ..NodeExtras::default()
        },
    )
    .await
    .err()
    .context("a key file inside the data dir was accepted")?;
    ensure!(
        format!("{e:#}").contains("inside the data directory"),
        "{e:#}"
    );
    ensure!(!inside.exists(), "the refused key file was created");
    drop(log);
    let n = Node::start(false).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&n.key_file)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "key file mode {mode:o}");
    }
    ensure!(std::fs::metadata(&n.key_file)?.len() == 32);
    Ok(())
}
