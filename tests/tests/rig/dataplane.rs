//! The SD-WAN's data plane in the rig: cluster A's agents run WireGuard
//! (userspace, in their containers) and the simulated k3s API. An operator
//! on the test machine takes an access grant, brings its wg-quick file up,
//! fetches cluster A's kubeconfig and runs the real `kubectl get nodes`
//! through the VIP; then the VIP holder's container is `docker kill`ed, the
//! failover proposal approved ([`crate::failover::move_vip`]), and
//! `kubectl` works again, answered by the new holder. A loop of requests
//! through the VIP measures what the client saw; the grant is revoked at
//! the end and the VIP no longer answers the operator.

use crate::failover::move_vip;
use crate::operator::{self, probe_once, Nodes, Prober, QuickConfig, Tunnel};
use crate::runbook::Clusters;
use crate::support::{ms, Acked, Rig, STEP};
use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::wait_until;
use powernode_tests::netns::probe::{longest_outage, ApiTarget, ProbeResult};
use powernode_tests::netns::wireguard::KeyPair;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator's probe loop interval.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one probe may take (a SYN lost to a dead holder is sent again
/// only after a second: start afresh instead).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs the scenario on cluster A.
pub async fn run(rig: &mut Rig, clusters: &Clusters) -> anyhow::Result<Value> {
    let cluster = clusters.a.clone();
    let started = Instant::now();
    let vip = wait_until(
        STEP,
        "cluster A's VIP reached through the tunnel by its other agents' probes",
        || async {
            let v = rig.vip(&cluster).await.map_err(|e| format!("{e:#}"))?;
            if v["reachable_now"] == true && v["holder_silent"] == false {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await?;
    let reachable_ms = ms(started);
    let holder = vip["holders"][0].as_str().context("holder")?.to_string();
    let expected = platform_nodes(rig, &cluster).await?;

    // The operator: a key made on its machine, a grant, the tunnel up.
    let dir = rig.rig_dir.join("operator");
    std::fs::create_dir_all(&dir)?;
    let key = KeyPair::generate()?;
    let network_id = rig.fleet["network_id"]
        .as_str()
        .context("fleet.network_id")?
        .to_string();
    let granted = Instant::now();
    let g = rig
        .call(
            "system_sdwan_create_access_grant",
            json!({ "network_id": network_id, "name": "rig-laptop", "public_key": key.public, "ttl_secs": 3600 }),
        )
        .await?;
    rig.ledger.push(Acked {
        what: "access grant rig-laptop created".into(),
        aggregate_id: network_id.clone(),
        kind: "system.sdwan.access_grant.created".into(),
    });
    let grant_id = g["grant"]["id"].as_str().context("grant id")?.to_string();
    let gateway_peer = g["grant"]["gateway_peer_id"]
        .as_str()
        .context("gateway")?
        .to_string();
    let gateway = rig
        .call(
            "system_sdwan_get_peer_config",
            json!({ "peer_id": gateway_peer }),
        )
        .await?;
    let worker = rig.agent("a-worker-1").instance_id.clone();
    ensure!(
        gateway["instance_id"] == worker.as_str(),
        "the grant's gateway is not a-worker-1 (the data-plane peer without VIP duty): {gateway}"
    );
    let text = g["wireguard_config"].as_str().context("wireguard_config")?;
    let config = QuickConfig::parse(text)?;
    ensure!(
        gateway["wireguard"]["endpoint"] == config.endpoint.as_str(),
        "the grant's endpoint {} is not the gateway's {}",
        config.endpoint,
        gateway["wireguard"]["endpoint"]
    );
    let tunnel = Tunnel::up(&config, &key.private, &dir)?;
    println!(
        "operator interface {} up: gateway {} ({}), allowed {:?}",
        tunnel.interface, config.endpoint, gateway_peer, config.allowed_ips
    );
    // On any failure `tunnel` is dropped on the way out: the interface goes.
    let mut report = through_the_failover(rig, &cluster, &vip, &holder, &expected, &dir).await?;
    report["vip_reachable_before_ms"] = json!(reachable_ms);

    // Revoked: the gateway drops the operator's peer.
    let revoked = Instant::now();
    rig.call(
        "system_sdwan_revoke_access_grant",
        json!({ "grant_id": grant_id }),
    )
    .await?;
    rig.ledger.push(Acked {
        what: format!("access grant {grant_id} revoked"),
        aggregate_id: network_id,
        kind: "system.sdwan.access_grant.revoked".into(),
    });
    let target = target_of(&dir)?;
    wait_until(
        STEP,
        "the VIP to stop answering the revoked grant",
        || async {
            match probe_once(&target, PROBE_TIMEOUT).await {
                Ok(r) if r.outcome.is_err() => Ok(()),
                Ok(r) => Err(format!("still answered: {:?}", r.outcome)),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await?;
    let cut_ms = ms(revoked);
    let kubeconfig = dir.join("a.yaml");
    ensure!(
        tokio::task::block_in_place(|| operator::nodes(&kubeconfig)).is_err(),
        "kubectl still works after the grant was revoked"
    );
    drop(tunnel);
    report["revoke_to_cut_ms"] = json!(cut_ms);
    report["grant_to_revoked_s"] = json!(granted.elapsed().as_secs());
    Ok(report)
}

/// kubectl through the VIP, the holder killed, the move approved, kubectl
/// again; the probe loop's figures.
async fn through_the_failover(
    rig: &mut Rig,
    cluster: &str,
    vip: &Value,
    holder: &str,
    expected: &BTreeSet<String>,
    dir: &Path,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let kc = rig
        .call(
            "kubernetes_get_kubeconfig",
            json!({ "cluster_id": cluster }),
        )
        .await?;
    let kubeconfig = dir.join("a.yaml");
    std::fs::write(
        &kubeconfig,
        kc["kubeconfig"].as_str().context("kubeconfig")?,
    )?;
    let target = target_of(dir)?;
    let address = vip["vip"].as_str().context("vip")?;
    ensure!(
        target.server.contains(address),
        "the kubeconfig points at {}, not the VIP {address}",
        target.server
    );
    wait_until(
        STEP,
        "an answer through the VIP from its holder",
        || async {
            let r = probe_once(&target, Duration::from_secs(2))
                .await
                .map_err(|e| format!("{e:#}"))?;
            match r.outcome {
                Ok(a) if a.instance == holder => Ok(a),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    let before = tokio::task::block_in_place(|| operator::nodes(&kubeconfig))?;
    let grant_to_kubectl_ms = ms(started);
    check_nodes(&before, expected, holder, "before the kill")?;
    let table =
        tokio::task::block_in_place(|| operator::kubectl(&kubeconfig, "5s", &["get", "nodes"]))?;
    println!("kubectl get nodes through the VIP:\n{table}");
    ensure!(table.contains("SERVED-BY"), "no SERVED-BY column:\n{table}");

    // The holder dies; the probe loop says who answers until the new holder
    // does (nobody before the approval: checked in `client_view`).
    let prober = Prober::start(&target, PROBE_EVERY, PROBE_TIMEOUT)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let approving: Arc<Mutex<Option<Instant>>> = Arc::default();
    let approval_at = approving.clone();
    let between = move |_: &Rig| -> anyhow::Result<()> {
        *approval_at.lock().expect("approval time lock") = Some(Instant::now());
        Ok(())
    };
    let moved = move_vip(rig, cluster, Some(&between)).await;
    let results = prober.stop().await;
    let moved = moved?;
    let approved = approving
        .lock()
        .expect("approval time lock")
        .context("the approval hook did not run")?;
    let to = moved["to"].as_str().context("to")?;
    let new_holder = rig.agent(to).instance_id.clone();
    let after = tokio::task::block_in_place(|| operator::nodes(&kubeconfig))?;
    check_nodes(&after, expected, &new_holder, "after the failover")?;
    let generations = (
        moved["generation"][0].as_u64().context("old generation")?,
        moved["generation"][1].as_u64().context("new generation")?,
    );
    let seen = client_view(&results, holder, &new_holder, generations, approved)?;
    println!("dataplane: what the client saw: {seen}");
    Ok(json!({
        "grant_to_kubectl_ms": grant_to_kubectl_ms,
        "kubectl_before": { "nodes": before.names, "served_by": before.served_by },
        "kubectl_after": { "nodes": after.names, "served_by": after.served_by },
        "failover": moved,
        "client": seen,
    }))
}

/// The probe loop's story: answers from the old holder at the old
/// generation, an outage, then only the new holder at the new generation
/// (never before the approval, never the old one after).
fn client_view(
    results: &[ProbeResult],
    old: &str,
    new: &str,
    (old_gen, new_gen): (u64, u64),
    approved: Instant,
) -> anyhow::Result<Value> {
    let end = |r: &ProbeResult| r.at + r.took;
    let first_new = results
        .iter()
        .position(|r| r.outcome.as_ref().is_ok_and(|a| a.instance == new))
        .context("no request through the VIP reached the new holder")?;
    let (before, after) = results.split_at(first_new);
    let last_old = before
        .iter()
        .rev()
        .find(|r| r.outcome.is_ok())
        .context("no request reached the old holder before the kill")?;
    for r in before.iter().filter(|r| r.outcome.is_ok()) {
        let a = r.outcome.as_ref().expect("filtered on Ok");
        ensure!(
            a.instance == old && a.generation == Some(old_gen),
            "before the new holder answered, {a:?} did (expected {old} at generation {old_gen})"
        );
    }
    for r in after.iter().filter(|r| r.outcome.is_ok()) {
        let a = r.outcome.as_ref().expect("filtered on Ok");
        ensure!(
            a.instance == new && a.generation == Some(new_gen),
            "after the new holder answered, {a:?} did (expected {new} at generation {new_gen})"
        );
    }
    let first = &results[first_new];
    ensure!(
        end(first) >= approved,
        "the new holder answered before the move was approved"
    );
    let failed_after = after.iter().filter(|r| r.outcome.is_err()).count();
    let (outage, failed) = longest_outage(results).context("the kill caused no failed request")?;
    let errors: BTreeSet<String> = results
        .iter()
        .filter_map(|r| r.outcome.as_ref().err())
        .map(|e| e.chars().take(120).collect())
        .take(3)
        .collect();
    Ok(json!({
        "requests": results.len(),
        "every_ms": PROBE_EVERY.as_millis() as u64,
        "timeout_ms": PROBE_TIMEOUT.as_millis() as u64,
        "downtime_ms": (end(first) - end(last_old)).as_millis() as u64,
        "longest_outage_ms": outage.as_millis() as u64,
        "failed_requests": failed,
        "approve_to_first_answer_ms": (end(first) - approved).as_millis() as u64,
        "failed_after_recovery": failed_after,
        "first_answer_by": new,
        "first_answer_generation": new_gen,
        "sample_errors": errors,
    }))
}

/// kubectl listed the platform's nodes of the cluster, served by `by`.
fn check_nodes(
    nodes: &Nodes,
    expected: &BTreeSet<String>,
    by: &str,
    when: &str,
) -> anyhow::Result<()> {
    ensure!(
        &nodes.names == expected && nodes.names.len() == 3,
        "{when}: kubectl listed {:?}, the platform has {expected:?}",
        nodes.names
    );
    ensure!(
        nodes.served_by == BTreeSet::from([by.to_string()]),
        "{when}: served by {:?}, expected {by}",
        nodes.served_by
    );
    Ok(())
}

/// The kubeconfig's server and CA.
fn target_of(dir: &Path) -> anyhow::Result<ApiTarget> {
    let path = dir.join("a.yaml");
    ApiTarget::from_kubeconfig(
        &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
    )
}

/// The cluster's node names as the platform knows them.
async fn platform_nodes(rig: &Rig, cluster: &str) -> anyhow::Result<BTreeSet<String>> {
    let nodes = rig
        .call("kubernetes_list_nodes", json!({ "cluster_id": cluster }))
        .await?;
    let nodes = nodes["nodes"].as_array().cloned().unwrap_or_default();
    let names: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n["node_name"].as_str().map(str::to_string))
        .collect();
    ensure!(
        names.len() == nodes.len(),
        "nodes without a name: {nodes:?}"
    );
    Ok(names)
}
