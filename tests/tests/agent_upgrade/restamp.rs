//! Setting `pod_subnet_prefix` on a network under a running flannel
//! cluster re-stamps it through the skills executor: batch by batch, never
//! two of its servers at once, each node reinstalled with the flannel over
//! SD-WAN flags (a worker with its per-node `--flannel-iface` only).

use anyhow::Context as _;
use powernode_events::EventPayload;
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What the simulated node saved.
fn saved(state_dir: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(state_dir.join("simulated-k3s.json"))?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_the_pod_subnet_prefix_restamps_a_flannel_cluster_batch_by_batch(
) -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let (server, cluster) = p.bootstrap(&p.op, "k3s-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    assert_eq!(
        cluster["pod_cidr"],
        Value::Null,
        "bootstrapped without a prefix"
    );
    let mut members = vec![server];
    for (host, module) in [
        ("k3s-server-2", SERVER),
        ("k3s-server-3", SERVER),
        ("k3s-worker-1", AGENT),
    ] {
        members.push(
            p.start_member(&p.op, host, module, Some(&cluster_id), Some(&net), 2048)
                .await?,
        );
    }
    for m in &members {
        p.op.wait_node_ready(&cluster_id, &m.instance_id)
            .await
            .with_context(|| m.agent.log_tail(30))?;
    }

    p.op.ok(
        "system_sdwan_update_network",
        json!({"network_id": net, "pod_subnet_prefix": "10.42.0.0/16"}),
    )
    .await?;

    let op = p.op.clone();
    let execution = wait_until(Duration::from_secs(60), "the re-stamp to finish", || {
        let op = op.clone();
        async move {
            let list = op
                .ok(
                    "system_list_skill_executions",
                    json!({"skill": "system-pod-subnet-restamp"}),
                )
                .await
                .map_err(|e| e.to_string())?;
            match list["executions"].as_array().and_then(|a| a.first()) {
                Some(e) if e["status"] == "completed" || e["status"] == "aborted" => Ok(e.clone()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .with_context(|| members[0].agent.log_tail(30))?;
    assert_eq!(execution["status"], "completed", "{execution:#}");
    let steps = execution["steps"].as_array().context("steps")?;
    assert_eq!(
        steps.len(),
        4,
        "every ready node is re-stamped: {execution:#}"
    );
    assert!(
        steps.iter().all(|s| s["status"] == "succeeded"),
        "{execution:#}"
    );
    let batches = execution["batches"].as_array().context("batches")?;
    assert!(batches.len() >= 3, "not all at once: {batches:?}");

    // The cluster records its new stamp.
    let c =
        p.op.ok("kubernetes_get_cluster", json!({"id": cluster_id}))
            .await?;
    assert_eq!(c["cluster"]["pod_cidr"], "10.42.0.0/16", "{c:#}");
    let flags: Vec<String> = serde_json::from_value(c["cluster"]["server_flags"].clone())?;
    assert!(
        flags.contains(&"--cluster-cidr=10.42.0.0/16".to_string()),
        "{flags:?}"
    );
    let iface = flags
        .iter()
        .find(|f| f.starts_with("--flannel-iface="))
        .context("a --flannel-iface flag")?
        .clone();

    // Every node runs with it: servers the whole stamp, the worker its iface.
    for m in &members[..3] {
        let node = saved(&m.state_dir)?;
        let extra: Vec<String> = serde_json::from_value(node["server"]["extra_flags"].clone())?;
        assert_eq!(extra, flags, "{}: {node:#}", m.instance_id);
    }
    let worker = saved(&members[3].state_dir)?;
    assert_eq!(worker["agent_flags"], json!([iface]), "{worker:#}");

    // Never two servers at once: from the log, each server step's
    // started → outcome interval overlaps no other server's.
    let events = p.log_events("system.skill.execution.").await?;
    let servers: Vec<String> = members[..3].iter().map(|m| m.instance_id.clone()).collect();
    let mut spans: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut server_steps = Vec::new();
    for (seq, e) in &events {
        match &e.payload {
            EventPayload::SkillStepStarted(s) if servers.contains(&s.instance_id) => {
                server_steps.push(s.step);
                spans.entry(s.step).or_insert((*seq, u64::MAX)).0 = *seq;
            }
            EventPayload::SkillStepSucceeded(s) if servers.contains(&s.instance_id) => {
                spans.entry(s.step).or_insert((0, *seq)).1 = *seq;
            }
            _ => {}
        }
    }
    assert_eq!(server_steps.len(), 3, "{spans:?}");
    let spans: Vec<(u64, u64)> = spans.into_values().collect();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            assert!(
                a.1 < b.0 || b.1 < a.0,
                "two servers re-stamped at once: {spans:?}"
            );
        }
    }
    Ok(())
}
