//! `kubernetes_rotate_join_token` reaching running nodes.

use anyhow::Context as _;
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};
use std::path::Path;

/// The fingerprint in the agent's state and what its simulated node saved.
fn node_view(state_dir: &Path) -> Result<(String, u64, String), String> {
    let read = |name: &str| -> Result<Value, String> {
        let text = std::fs::read_to_string(state_dir.join(name)).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    let state = read("state.json")?;
    let node = read("simulated-k3s.json")?;
    let token = node["server"]["token"]
        .as_str()
        .or_else(|| node["agent"]["token"].as_str())
        .ok_or("the simulated node has no started plan")?;
    Ok((
        state["token_fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        node["token_rotations"].as_u64().unwrap_or_default(),
        powernode_protocol::fingerprint(token.as_bytes()),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_join_token_reaches_every_node() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let (server, cluster) = p.bootstrap(&p.op, "k3s-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    let second = p
        .start_member(
            &p.op,
            "k3s-server-2",
            SERVER,
            Some(&cluster_id),
            Some(&net),
            2048,
        )
        .await?;
    let worker = p
        .start_member(
            &p.op,
            "k3s-worker-1",
            AGENT,
            Some(&cluster_id),
            Some(&net),
            2048,
        )
        .await?;
    for m in [&server, &second, &worker] {
        p.op.wait_node_ready(&cluster_id, &m.instance_id)
            .await
            .with_context(|| m.agent.log_tail(30))?;
    }

    let rotated = p
        .ok(
            "kubernetes_rotate_join_token",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    let new_fp = str_at(&rotated, "/token_fingerprint")?;

    for (m, rotations) in [(&server, 1), (&second, 0), (&worker, 0)] {
        let dir = m.state_dir.clone();
        let want = new_fp.clone();
        wait_until(
            WAIT,
            &format!("{} holds the rotated token", m.instance_id),
            || {
                let (dir, want) = (dir.clone(), want.clone());
                async move {
                    match node_view(&dir)? {
                        (held, n, started) if held == want && started == want && n == rotations => {
                            Ok(())
                        }
                        other => Err(format!(
                            "agent fingerprint, rotations, node token: {other:?}"
                        )),
                    }
                }
            },
        )
        .await
        .with_context(|| m.agent.log_tail(30))?;
    }
    // The token itself is in no record of the log.
    let token = std::fs::read_to_string(worker.state_dir.join("state.json"))?;
    let token: Value = serde_json::from_str(&token)?;
    let token = token["token"].as_str().context("the worker's token")?;
    p.assert_log_free_of("the rotated join token", token)
        .await?;
    Ok(())
}
