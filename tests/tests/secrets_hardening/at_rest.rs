//! Decommission deletes a cluster's secrets; secrets are sealed at rest;
//! the key file is private and outside the data dir.

use super::node::Node;
use super::*;

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
