//! Scenario 7: `provision_cluster` end to end. Idle enrolled agents — three
//! on a server template, two on a worker template, no module assigned, on
//! no network — and one `execute_skill provision_cluster` call that answers
//! once every node is ready, with the cluster.

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_cluster_answers_an_active_cluster_of_ready_nodes() -> anyhow::Result<()> {
    let w = World::start().await?;
    let servers = w.template("new-servers").await?;
    let workers = w.template("new-workers").await?;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let host = format!("new-server-{i}");
        nodes.push(
            w.idle_node(&host, &servers, true, &AgentFlags::default())
                .await?,
        );
    }
    for i in 1..=2 {
        let host = format!("new-worker-{i}");
        nodes.push(
            w.idle_node(&host, &workers, false, &AgentFlags::default())
                .await?,
        );
    }
    for n in &nodes {
        wait_until(WAIT, &format!("{} enrolled", n.host), || async {
            let i =
                w.op.instance(&n.instance_id)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
            if i["status"] == "enrolled" {
                Ok(())
            } else {
                Err(i.to_string())
            }
        })
        .await?;
    }

    let inputs = json!({"network_id": w.net, "server_template_id": servers,
        "worker_template_id": workers, "servers": 3, "workers": 2, "timeout_secs": 60});
    let plan = w
        .dry_run(json!({"skill": "provision_cluster", "inputs": inputs}))
        .await?;
    ensure!(
        plan["batches"] == json!([[0], [1, 2], [3, 4]]),
        "bootstrap, the joining servers, the workers: {plan}"
    );
    let a =
        w.op.ok(
            "execute_skill",
            json!({"skill": "provision_cluster", "inputs": inputs}),
        )
        .await?;
    let e = &a["execution"];
    ensure!(
        e["status"] == "completed" && e["succeeded"] == 5 && e["failed"] == 0,
        "the call answers once every node is ready: {a}"
    );
    crate::dry_run::assert_plan_is_the_execution(&plan, e)?;
    let cluster = &a["cluster"];
    let id = cluster["id"].as_str().context("the answer's cluster")?;
    ensure!(cluster["status"] == "active", "{a}");
    ensure!(e["cluster_id"] == id, "{a}");
    ensure!(
        cluster["bootstrap_instance_id"] == nodes[0].instance_id.as_str(),
        "the first server (name order) bootstrapped: {a}"
    );

    let listed = w.op.nodes(id).await?;
    ensure!(listed.len() == 5, "{listed:?}");
    for n in &nodes {
        let row = listed
            .iter()
            .find(|r| r["instance_id"] == n.instance_id.as_str())
            .with_context(|| format!("{} is no node of {id}: {listed:?}", n.host))?;
        let role = if n.api_port.is_some() {
            "control-plane"
        } else {
            "worker"
        };
        ensure!(
            row["status"] == "ready" && row["role"] == role,
            "{} ready as {role}: {row}",
            n.host
        );
    }
    // The servers hold and stand by for the cluster's VIP.
    let v = w.vip(id).await?;
    let peers: Vec<String> = nodes[..3].iter().map(|n| n.instance_id.clone()).collect();
    ensure!(v["status"] == "allocated", "{v}");
    ensure!(
        v["failover_holder_peer_ids"].as_array().map(Vec::len) == Some(2),
        "the other two servers are failover candidates: {v} ({peers:?})"
    );
    Ok(())
}
