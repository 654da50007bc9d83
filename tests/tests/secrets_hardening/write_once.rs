//! Finding 4: a bootstrap re-sent with its original id cannot replace a
//! cluster's secrets, on NATS and on the embedded log; a decommissioned
//! cluster's secrets stay deleted.

use super::node::Node;
use super::*;

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
        cluster_ca: None,
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
        cluster_ca: None,
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
        cluster_ca: None,
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
        skills: Default::default(),
        replica: Some("secrets-test".into()),
        status: Default::default(),
        partitions: Default::default(),
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
        cluster_ca: None,
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
        cluster_ca: None,
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
