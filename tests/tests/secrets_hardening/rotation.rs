//! Rotation is atomic: concurrent rotations leave store and log agreeing.

use super::node::Node;
use super::*;

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
