//! The runbook's two clusters, through the API, with every agent in its
//! own container: a bootstrap server each, then a targeted worker and an
//! HA server each. Meanwhile one agent's NKey tries to read the other
//! cluster's worker's token delivery and to publish as it
//! ([`super::security`]).

use crate::security::Spy;
use crate::support::{ms, Rig, STEP};
use anyhow::ensure;
use powernode_log::jetstream::DEFAULT_STREAM;
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::time::Instant;

/// The clusters the runbook formed.
pub struct Clusters {
    /// Cluster A (a-server-1 bootstrapped it).
    pub a: String,
    /// Cluster B (b-server-1 bootstrapped it).
    pub b: String,
    /// What the runbook measured.
    pub report: Value,
}

/// Forms both clusters; answers them.
pub async fn run(rig: &mut Rig) -> anyhow::Result<Clusters> {
    println!("\n== rig scenario: runbook (+ security)");
    let started = Instant::now();
    // Phase 1 and 2: a bootstrap server per cluster.
    rig.assign("a-server-1", "k3s-server", None).await?;
    rig.assign("b-server-1", "k3s-server", None).await?;
    rig.wait_phase("a-server-1", "ready").await?;
    rig.wait_phase("b-server-1", "ready").await?;
    let a = rig.cluster_of("a-server-1").await?;
    let b = rig.cluster_of("b-server-1").await?;
    ensure!(a != b, "both bootstrap servers are in cluster {a}");
    for c in [&a, &b] {
        wait_active(rig, c).await?;
    }
    let bootstrapped_ms = ms(started);

    // An agent (a-worker-1's NKey) spies on b-worker-1 while it joins.
    let spy = Spy::start(rig, "a-worker-1", "b-worker-1").await?;

    // Phases 3 and 4: targeted workers and HA servers.
    let joined = Instant::now();
    rig.assign("a-worker-1", "k3s-agent", Some(&a)).await?;
    rig.assign("b-worker-1", "k3s-agent", Some(&b)).await?;
    rig.assign("a-server-2", "k3s-server", Some(&a)).await?;
    rig.assign("b-server-2", "k3s-server", Some(&b)).await?;
    for slot in ["a-worker-1", "b-worker-1", "a-server-2", "b-server-2"] {
        rig.wait_phase(slot, "ready").await?;
    }
    for (slot, cluster) in [
        ("a-worker-1", &a),
        ("a-server-2", &a),
        ("b-worker-1", &b),
        ("b-server-2", &b),
    ] {
        let state = rig.agent_state(slot)?;
        ensure!(
            state["cluster_id"] == cluster.as_str(),
            "{slot} joined {} instead of {cluster}",
            state["cluster_id"]
        );
    }
    let joined_ms = ms(joined);

    // Every cluster: three nodes (two control-plane), the second server a
    // failover candidate of the VIP, a kubeconfig pointing at the VIP.
    let mut clusters = serde_json::Map::new();
    for (name, id, second) in [("a", &a, "a-server-2"), ("b", &b, "b-server-2")] {
        let second = rig.agent(second).instance_id.clone();
        let nodes = rig
            .call("kubernetes_list_nodes", json!({ "cluster_id": id }))
            .await?;
        let nodes = nodes["nodes"].as_array().cloned().unwrap_or_default();
        ensure!(nodes.len() == 3, "cluster {name} has nodes {nodes:?}");
        let vip = wait_until(
            STEP,
            &format!("{second} a failover candidate of {id}'s VIP"),
            || async {
                let v = rig.vip(id).await.map_err(|e| format!("{e:#}"))?;
                let candidate = v["failover_candidates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["instance_id"] == second.as_str());
                if candidate {
                    Ok(v)
                } else {
                    Err(v.to_string())
                }
            },
        )
        .await?;
        let kubeconfig = rig
            .call("kubernetes_get_kubeconfig", json!({ "cluster_id": id }))
            .await?;
        ensure!(
            kubeconfig["api_endpoint"] == vip["api_endpoint"],
            "kubeconfig endpoint {} is not the VIP's {}",
            kubeconfig["api_endpoint"],
            vip["api_endpoint"]
        );
        clusters.insert(
            name.into(),
            json!({
                "id": id,
                "nodes": nodes.len(),
                "vip": vip["vip"],
                "holder": vip["holders"],
            }),
        );
    }
    let security = spy.finish(rig, "b-worker-1").await?;
    // The log and the secret store are replicated on all three nodes.
    let mut replication = serde_json::Map::new();
    let secrets = format!(
        "KV_{}",
        powernode_server::secrets::jetstream::DEFAULT_BUCKET
    );
    for stream in [DEFAULT_STREAM, secrets.as_str()] {
        let c = rig.cluster_of_stream(stream).await?;
        let members = 1 + c["replicas"].as_array().map_or(0, Vec::len);
        ensure!(members == 3, "{stream} has {members} replica(s): {c}");
        replication.insert(stream.into(), json!(members));
    }
    let list = rig.call("kubernetes_list_clusters", json!({})).await?;
    let active = list["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "active")
        .count();
    ensure!(active == 2, "active clusters: {list}");
    Ok(Clusters {
        report: json!({
            "bootstrap_both_ms": bootstrapped_ms,
            "join_workers_and_ha_servers_ms": joined_ms,
            "clusters": clusters,
            "security": security,
            "replicas": replication,
        }),
        a,
        b,
    })
}

/// Waits until the cluster is `active`.
pub async fn wait_active(rig: &Rig, cluster_id: &str) -> anyhow::Result<Value> {
    wait_until(STEP, &format!("cluster {cluster_id} active"), || async {
        let c = rig
            .call("kubernetes_get_cluster", json!({ "id": cluster_id }))
            .await
            .map_err(|e| format!("{e:#}"))?;
        if c["cluster"]["status"] == "active" {
            Ok(c["cluster"].clone())
        } else {
            Err(c["cluster"]["status"].to_string())
        }
    })
    .await
}
