//! Scenario 6: the VIP stays reachable via its holder as recorded. While
//! the server upgrade runs, a prober reads `system_sdwan_get_virtual_ip`
//! again and again and sends `GET /version` to the recorded holder's
//! simulated k3s API (verified with the cluster's CA from the kubeconfig);
//! a simulated server's API answers 503 during its own `upgrade` phase (k3s
//! restarting), so a holder upgraded before its VIP moved would not answer. Every probe of
//! the recorded holder answers, and the log shows the VIP promoted (reason
//! `upgrade`) to an upgraded server before the holder's step started.

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use powernode_tests::lifecycle_support::Operator;
use powernode_tests::netns::probe::ApiTarget;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_of_the_recorded_holder_answers_through_the_server_upgrade(
) -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w.cluster("vip", 3, 0, |_| AgentFlags::default()).await?;
    let args = World::upgrade_inputs(&c.server_template, "mod-k3s-server", SERVER_TO, 50, 1);
    let prober = Prober::start(&w, &c).await?;
    let exec = w.execute(args).await?;
    let done = w
        .wait_finished(exec["id"].as_str().context("execution id")?)
        .await;
    let probes = prober.stop().await?;
    let done = done?;
    ensure!(done["status"] == "completed", "{done}");
    assert_holder_always_answered(&c, &probes)?;
    assert_moved_before_the_holders_step(&w, &c, &done).await?;
    // Every server's API answers again, on the new release.
    let target = api_target(&w, &c).await?;
    let client = target.client(Duration::from_secs(2))?;
    for s in &c.servers {
        let port = s.api_port.context("a server serves its API")?;
        let body = client
            .get(format!("https://127.0.0.1:{port}/version"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let v: Value = serde_json::from_str(&body)?;
        ensure!(v["gitVersion"] == "v1.31.0+k3s1", "{}: {v}", s.host);
    }
    Ok(())
}

/// The cluster's API as its kubeconfig names it (its CA).
async fn api_target(w: &World, c: &Cluster) -> anyhow::Result<ApiTarget> {
    let kc =
        w.op.ok("kubernetes_get_kubeconfig", json!({ "cluster_id": c.id }))
            .await?;
    ApiTarget::from_kubeconfig(kc["kubeconfig"].as_str().context("kubeconfig")?)
}

/// One probe of the recorded holder.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The VIP's generation as read before the probe.
    pub generation: u64,
    /// The holder's peer, as recorded.
    pub holder: String,
    /// The answer (the instance that answered), or why there was none.
    pub outcome: Result<String, String>,
    /// Whether the VIP had moved by the time a failed probe came back
    /// (read again): the probe raced the move, not the holder.
    pub moved_meanwhile: bool,
}

/// Probes the recorded holder in the background until stopped.
pub struct Prober {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<Probe>>>,
}

async fn vip(op: &Operator, cluster_id: &str) -> anyhow::Result<Value> {
    Ok(op
        .ok(
            "system_sdwan_get_virtual_ip",
            json!({ "cluster_id": cluster_id }),
        )
        .await?["virtual_ip"]
        .clone())
}

impl Prober {
    /// Starts probing the holder of `c`'s VIP every 10 ms.
    pub async fn start(w: &World, c: &Cluster) -> anyhow::Result<Self> {
        let kc =
            w.op.ok("kubernetes_get_kubeconfig", json!({ "cluster_id": c.id }))
                .await?;
        let target = ApiTarget::from_kubeconfig(kc["kubeconfig"].as_str().context("kubeconfig")?)?;
        let client = target.client(Duration::from_secs(2))?;
        let ports: BTreeMap<String, (u16, String)> = c
            .servers
            .iter()
            .filter_map(|s| Some((s.peer_id.clone(), (s.api_port?, s.instance_id.clone()))))
            .collect();
        let (op, cluster_id) = (w.op.clone(), c.id.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let v = vip(&op, &cluster_id).await?;
                let holder = v["holder_peer_id"].as_str().unwrap_or_default().to_string();
                let generation = v["generation"].as_u64().unwrap_or(0);
                let (port, instance) = ports
                    .get(&holder)
                    .cloned()
                    .with_context(|| format!("the VIP's holder {holder} is no server: {v}"))?;
                let url = format!("https://127.0.0.1:{port}/version");
                let outcome = match client.get(&url).send().await {
                    Err(e) => Err(format!("{e:#}")),
                    Ok(r) if !r.status().is_success() => Err(format!("HTTP {}", r.status())),
                    Ok(r) => {
                        let who = r
                            .headers()
                            .get("x-powernode-instance")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        if who == instance {
                            Ok(who)
                        } else {
                            Err(format!("answered by {who:?}, not the holder {instance}"))
                        }
                    }
                };
                let moved_meanwhile = outcome.is_err()
                    && vip(&op, &cluster_id).await?["generation"].as_u64() != Some(generation);
                out.push(Probe {
                    generation,
                    holder,
                    outcome,
                    moved_meanwhile,
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(out)
        });
        Ok(Self { stop, task })
    }

    /// Stops probing; every probe.
    pub async fn stop(self) -> anyhow::Result<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// Every probe of the recorded holder answered (a probe that raced the
/// VIP's move aside), and the probes watched the VIP move from the
/// bootstrap server to another server.
pub fn assert_holder_always_answered(c: &Cluster, probes: &[Probe]) -> anyhow::Result<()> {
    ensure!(probes.len() >= 10, "only {} probes", probes.len());
    let failed: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.outcome.is_err() && !p.moved_meanwhile)
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of {} probes of the recorded holder got no answer: {failed:?}",
        failed.len(),
        probes.len()
    );
    let raced = probes.iter().filter(|p| p.moved_meanwhile).count();
    ensure!(
        raced <= 2,
        "{raced} probes failed while the VIP moved: {probes:?}"
    );
    let first = &c.servers[0].peer_id;
    ensure!(
        probes.first().is_some_and(|p| &p.holder == first),
        "the first probe reached the bootstrap server: {:?}",
        probes.first()
    );
    let before = probes[0].generation;
    let later = probes.iter().find(|p| &p.holder != first);
    ensure!(
        later.is_some_and(|p| p.outcome.is_ok() && p.generation > before),
        "the probes saw the VIP answered by another server after the move: {:?}",
        later
    );
    Ok(())
}

/// In the log: the VIP was promoted (reason `upgrade`) off the bootstrap
/// server to a server whose step had already succeeded, before the
/// bootstrap server's step started; the holder's step is the last batch.
pub async fn assert_moved_before_the_holders_step(
    w: &World,
    c: &Cluster,
    exec: &Value,
) -> anyhow::Result<()> {
    let id = exec["id"].as_str().context("execution id")?;
    let holder = &c.servers[0];
    let steps = exec["steps"].as_array().context("steps")?;
    let mine = steps
        .iter()
        .find(|s| s["instance_id"] == holder.instance_id.as_str())
        .with_context(|| format!("no step of the holder in {exec}"))?;
    let last_batch = steps.iter().filter_map(|s| s["batch"].as_u64()).max();
    ensure!(
        mine["batch"].as_u64() == last_batch
            && !mine["vip_moves"].as_array().is_none_or(Vec::is_empty),
        "the holder goes last, moving its VIP: {mine}"
    );
    let step = mine["step"].as_u64().context("step")? as u32;
    let intervals = crate::quorum::intervals(w, id).await?;
    let (holder_start, _) = intervals
        .get(&step)
        .copied()
        .with_context(|| format!("the holder's step {step} never ran"))?;
    let vip_id = w.vip(&c.id).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let promotions: Vec<(u64, String, String)> = w
        .events("system.sdwan.virtual_ip.promoted")
        .await?
        .into_iter()
        .filter_map(|(seq, e)| match e.payload {
            EventPayload::VirtualIpPromoted(p) if p.virtual_ip_id == vip_id => {
                Some((seq, p.reason, p.to_peer_id))
            }
            _ => None,
        })
        .collect();
    let (seq, _, to) = promotions
        .iter()
        .find(|(_, reason, _)| reason == "upgrade")
        .with_context(|| format!("no promotion with reason upgrade: {promotions:?}"))?;
    ensure!(
        *seq < holder_start,
        "the VIP moved at seq {seq}, after the holder's step started at seq {holder_start}"
    );
    let new_holder = c
        .node_of_peer(to)
        .with_context(|| format!("the VIP went to {to}, no server"))?;
    let new_step = steps
        .iter()
        .find(|s| s["instance_id"] == new_holder.instance_id.as_str())
        .and_then(|s| s["step"].as_u64())
        .with_context(|| format!("{} has no step", new_holder.host))? as u32;
    let (_, upgraded_at) = intervals
        .get(&new_step)
        .copied()
        .with_context(|| format!("{}'s step never ran", new_holder.host))?;
    ensure!(
        upgraded_at < *seq,
        "the VIP went to {} (seq {seq}) before its upgrade finished (seq {upgraded_at})",
        new_holder.host
    );
    Ok(())
}
