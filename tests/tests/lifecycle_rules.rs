//! Lifecycle rules beyond the tutorial and the runbook: an agent restarted
//! with its state dir is the same instance, CNI chosen from RAM with flannel
//! stamped from the SD-WAN prefix, the `pod_subnet_prefix` rules, and a
//! server attached to the network after joining becoming a failover
//! candidate. Real nats-server, every service, real `powernode-agent`
//! processes with the simulated runtime.
//!
//! `cargo nextest run -p powernode-tests --test lifecycle_rules`

use anyhow::{ensure, Context as _};
use powernode_protocol::subjects;
use powernode_tests::lifecycle_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_is_the_same_instance() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let (mut server, cluster) = p.bootstrap(&p.op, "k3s-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    let mut worker = p
        .start_member(
            &p.op,
            "k3s-worker-1",
            AGENT,
            Some(&cluster_id),
            Some(&net),
            2048,
        )
        .await?;
    p.wait_node_ready(&cluster_id, &worker.instance_id).await?;
    let server_before = server.agent.wait_phase("ready").await?;
    let worker_before = worker.agent.wait_phase("ready").await?;
    let before = p.settle().await?;

    server.agent.kill();
    worker.agent.kill();
    let heartbeats = p.watch(subjects::HEARTBEAT_ANY).await?;
    let enrolls = p.watch(subjects::ENROLL).await?;
    // The worker restarts bare; the server as a unit file would start it,
    // with the (used) credential again.
    worker.agent.restart(&p.nats_url(), None)?;
    server
        .agent
        .restart(&p.nats_url(), Some(&server.credential))?;
    let beats = |id: &str| heartbeats.count(|v| v["instance_id"] == id);
    wait_until(WAIT, "3 heartbeats from each restarted agent", || {
        let (s, w) = (beats(&server.instance_id), beats(&worker.instance_id));
        async move {
            if s >= 3 && w >= 3 {
                Ok(())
            } else {
                Err(format!("server {s}, worker {w}"))
            }
        }
    })
    .await
    .with_context(|| format!("worker log:\n{}", worker.agent.log_tail(20)))?;

    ensure!(
        enrolls.all().is_empty(),
        "a restarted agent enrolled again: {:?}",
        enrolls.all().len()
    );
    ensure!(
        p.settle().await? == before,
        "restarts appended events: {:?}",
        p.events("").await?.iter().rev().take(5).collect::<Vec<_>>()
    );
    for m in [&server, &worker] {
        let enrolled = p
            .instance_events("system.agent.enrolled", &m.instance_id)
            .await?;
        ensure!(enrolled.len() == 1, "{enrolled:?}");
    }
    for (m, old) in [(&server, &server_before), (&worker, &worker_before)] {
        let now = m.agent.state()?;
        for key in [
            "instance_id",
            "phase",
            "cluster_id",
            "token",
            "api_endpoint",
        ] {
            ensure!(
                now[key] == old[key],
                "{key} changed across the restart of {}: {} → {}",
                m.instance_id,
                old[key],
                now[key]
            );
        }
    }
    let nodes = p.nodes(&cluster_id).await?;
    ensure!(
        nodes.len() == 2 && nodes.iter().all(|n| n["status"] == "ready"),
        "{nodes:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_from_ram_and_flannel_over_the_sdwan() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-prod-net", Some("10.42.0.0/16")).await?;
    let handle = str_at(&p.network_json(&net).await?, "/handle")?;

    // A lightweight node: flannel, stamped to run over the overlay.
    let (_light, flannel) = p.bootstrap(&p.op, "k3s-light-1", Some(&net)).await?;
    ensure!(
        flannel["cni_plugin"] == "flannel"
            && flannel["pod_cidr"] == "10.42.0.0/16"
            && flannel["server_flags"]
                == json!([
                    format!("--flannel-iface=wg-sdwan-{handle}"),
                    "--flannel-backend=host-gw",
                    "--cluster-cidr=10.42.0.0/16"
                ]),
        "{flannel}"
    );

    // A heavyweight node: ovn-kubernetes, the prefix ignored with a warning.
    let heavy = p
        .start_member(&p.op, "k3s-heavy-1", SERVER, None, Some(&net), 8192)
        .await?;
    let ovn = p.wait_cluster_active(&heavy.instance_id).await?;
    let ovn_id = str_at(&ovn, "/id")?;
    ensure!(
        ovn["cni_plugin"] == "ovn_kubernetes"
            && ovn["server_flags"] == json!([])
            && ovn["pod_cidr"].is_null(),
        "{ovn}"
    );
    let ignored = p
        .events("system.cluster_bootstrap.pod_subnet_prefix_ignored")
        .await?;
    ensure!(
        ignored.len() == 1
            && ignored[0]["payload"]["cluster_id"] == ovn_id.as_str()
            && ignored[0]["payload"]["pod_subnet_prefix"] == "10.42.0.0/16"
            && ignored[0]["payload"]["network_id"] == net.as_str(),
        "{ignored:?}"
    );

    // ovn_kubernetes asked for on a 2048 MiB node is refused, nothing stored.
    let t = p.template("light").await?;
    let node = p
        .ok(
            "system_create_node",
            json!({"hostname": "k3s-light-2", "node_template_id": t, "memory_mb": 2048}),
        )
        .await?;
    let before = p.last_seq().await?;
    let refused = p
        .action(
            "system_provision_instance",
            json!({"node_id": str_at(&node, "/node/id")?, "cni_plugin": "ovn_kubernetes"}),
        )
        .await;
    ensure!(
        matches!(&refused, Err(e) if e.status() == Some(400) && e.code() == "CniProfileMismatchError"),
        "{refused:?}"
    );
    ensure!(
        p.last_seq().await? == before,
        "a refused provision appended events"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_subnet_prefix_rules() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let prod = p.network("k3s-prod-net", Some("10.42.0.0/16")).await?;
    let staging = p.network("k3s-staging-net", None).await?;

    // Overlapping another network's prefix.
    let before = p.last_seq().await?;
    let overlap = p
        .action(
            "system_sdwan_update_network",
            json!({"network_id": staging, "pod_subnet_prefix": "10.42.128.0/17"}),
        )
        .await;
    ensure!(
        matches!(&overlap, Err(e) if e.status() == Some(409) && e.code() == "prefix_overlap" && e.refusal().is_some_and(|r| r.message.contains(&prod))),
        "{overlap:?}"
    );
    ensure!(
        p.last_seq().await? == before,
        "a refused update appended events"
    );

    // A cluster on the network, then the prefix set once (opt-in migration).
    let (_server, cluster) = p.bootstrap(&p.op, "k3s-staging-1", Some(&staging)).await?;
    ensure!(cluster["network_id"] == staging.as_str(), "{cluster}");
    let set = p
        .ok(
            "system_sdwan_update_network",
            json!({"network_id": staging, "pod_subnet_prefix": "10.43.0.0/16"}),
        )
        .await?;
    ensure!(
        set["changed"] == true && set["network"]["pod_subnet_prefix"] == "10.43.0.0/16",
        "{set}"
    );
    let same = p
        .ok(
            "system_sdwan_update_network",
            json!({"network_id": staging, "pod_subnet_prefix": "10.43.0.0/16"}),
        )
        .await?;
    ensure!(
        same["changed"] == false,
        "setting the same prefix again is a no-op: {same}"
    );

    // Never changed once a cluster references it.
    let before = p.settle().await?;
    let change = p
        .action(
            "system_sdwan_update_network",
            json!({"network_id": staging, "pod_subnet_prefix": "10.44.0.0/16"}),
        )
        .await;
    ensure!(
        matches!(&change, Err(e) if e.status() == Some(409) && e.code() == "pod_subnet_prefix_immutable"),
        "{change:?}"
    );
    ensure!(
        p.settle().await? == before,
        "a refused change appended events"
    );
    let n = p.network_json(&staging).await?;
    ensure!(n["pod_subnet_prefix"] == "10.43.0.0/16", "{n}");
    Ok(())
}

/// Runbook phase 4 with the steps in another order: a second server joins
/// before it is attached to the SD-WAN network (so it cannot be a failover
/// candidate yet); attaching it afterwards makes it one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_attached_after_joining_becomes_a_failover_candidate() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let (_prod, cluster) = p.bootstrap(&p.op, "k3s-prod-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    let server2 = p
        .start_member(
            &p.op,
            "k3s-prod-server-2",
            SERVER,
            Some(&cluster_id),
            None,
            2048,
        )
        .await?;
    let row = p.wait_node_ready(&cluster_id, &server2.instance_id).await?;
    ensure!(row["role"] == "control-plane", "{row}");
    let vip = p
        .ok(
            "system_sdwan_get_virtual_ip",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    ensure!(
        vip["virtual_ip"]["failover_holder_peer_ids"] == json!([]),
        "no peer, no candidate: {vip}"
    );

    let peer = str_at(&p.attach(&net, &server2.instance_id).await?, "/id")?;
    wait_until(
        WAIT,
        "the late-attached server among the VIP's failover candidates",
        || {
            let (p, cluster_id, peer) = (&p, &cluster_id, &peer);
            async move {
                let v = p
                    .ok(
                        "system_sdwan_get_virtual_ip",
                        json!({"cluster_id": cluster_id}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if v["virtual_ip"]["failover_holder_peer_ids"] == json!([peer]) {
                    Ok(())
                } else {
                    Err(v["virtual_ip"].to_string())
                }
            }
        },
    )
    .await?;
    Ok(())
}
