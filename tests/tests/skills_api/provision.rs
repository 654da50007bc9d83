//! `provision_cluster`'s own part, without the skills service that runs
//! it: the start, the network attachments and the bootstrap server's
//! assignment; with no executor, the call answers the running execution
//! once its `timeout_secs` are over.

use super::world::*;
use anyhow::ensure;
use powernode_events::{Envelope, EventPayload};
use powernode_log::Filter;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_starts_attaches_and_assigns_the_bootstrap_server() -> anyhow::Result<()> {
    let w = world().await?;
    let servers = s(&w
        .ok("system_create_template", json!({"name": "new-servers"}))
        .await?["template"]["id"]);
    let workers = s(&w
        .ok("system_create_template", json!({"name": "new-workers"}))
        .await?["template"]["id"]);
    let net = s(&w
        .ok("system_sdwan_create_network", json!({"name": "new"}))
        .await?["network"]["id"]);
    // Idle instances (enrolled, in no cluster); `member` attaches them to
    // the world's network, not to the new one.
    let mut ids = Vec::new();
    for (host, t) in [
        ("new-s1", &servers),
        ("new-s2", &servers),
        ("new-w1", &workers),
    ] {
        ids.push(w.member(host, t).await?.instance_id);
    }
    let inputs = json!({"network_id": net, "server_template_id": servers,
        "worker_template_id": workers, "servers": 2, "workers": 1, "timeout_secs": 1});
    let plan = w
        .ok(
            "execute_skill",
            json!({"skill": "provision_cluster", "inputs": inputs, "dry_run": true}),
        )
        .await?;
    ensure!(
        plan["execution"]["batches"] == json!([[0], [1], [2]]),
        "{plan}"
    );

    let before = w.last_seq().await?;
    let a = w
        .ok(
            "execute_skill",
            json!({"skill": "provision_cluster", "inputs": inputs}),
        )
        .await?;
    let e = &a["execution"];
    ensure!(
        e["status"] == "running" && a.get("cluster").is_none(),
        "{a}"
    );
    ensure!(e["scope"] == format!("template/{servers}"), "{e}");
    ensure!(
        e["steps"] == plan["execution"]["steps"],
        "the dry run's plan runs: {e}"
    );
    let names: Vec<String> = e["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| s(&x["node_name"]))
        .collect();
    ensure!(names == ["new-s1", "new-s2", "new-w1"], "{names:?}");

    let mut attached = Vec::new();
    let mut assigned = Vec::new();
    let mut started = 0;
    for r in w.api.log.read(before + 1, 10_000, &Filter::all()).await? {
        match Envelope::decode(&r.bytes)?.payload {
            EventPayload::SkillExecutionStarted(_) => started += 1,
            EventPayload::PeerAttached(p) if p.network_id == net => attached.push(p.instance_id),
            EventPayload::ModuleAssigned(p) => assigned.push(p),
            _ => {}
        }
    }
    ensure!(started == 1, "{started} starts");
    attached.sort();
    let mut want = ids.clone();
    want.sort();
    ensure!(attached == want, "attached {attached:?}, wanted {want:?}");
    ensure!(assigned.len() == 1, "{assigned:?}");
    let b = &assigned[0];
    ensure!(
        b.instance_id.as_deref() == Some(ids[0].as_str())
            && b.template_id == servers
            && b.config.target_cluster_id.is_none()
            && b.module_version_id.as_deref() == Some("v-k3s-1.31.0"),
        "{b:?}"
    );

    // The template is busy while it runs.
    let (status, code, message) = w
        .refused(
            "execute_skill",
            json!({"skill": "provision_cluster", "inputs": inputs}),
        )
        .await?;
    ensure!(
        status == 409 && code == "execution_in_progress",
        "{code}: {message}"
    );
    Ok(())
}
