//! The workload that runs while faults land, as an operator through the
//! API: templates and nodes created steadily; cluster C formed (bootstrap
//! server, targeted worker) and later decommissioned; and the approver,
//! which approves a VIP failover proposal while the holder is silent and
//! the proposed peer's agent is live. Every acknowledged action goes to the
//! shared ledger (what must be in the log).

use super::inject::World;
use crate::support::{retryable, Acked, Rig};
use powernode_client::Api;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the workload acknowledged and what went wrong, shared.
#[derive(Debug, Default)]
pub struct Shared {
    /// Acknowledged actions.
    pub ledger: Mutex<Vec<Acked>>,
    /// Outcome counts (`ok`, `retryable`, `unreachable`, `refused`, …).
    pub counts: Mutex<BTreeMap<String, u64>>,
    /// The latest few errors that were not retryable refusals.
    pub errors: Mutex<Vec<String>>,
    /// Cluster C, once formed.
    pub cluster_c: Mutex<Option<String>>,
    /// Notes of the cluster lifecycle (formed, joined, decommissioned).
    pub lifecycle: Mutex<Vec<String>>,
    /// Set to stop every task.
    pub stop: AtomicBool,
}

impl Shared {
    fn ack(&self, what: String, aggregate_id: &str, kind: &str) {
        self.ledger.lock().expect("ledger").push(Acked {
            what,
            aggregate_id: aggregate_id.to_string(),
            kind: kind.to_string(),
        });
    }

    fn count(&self, what: &str) {
        *self
            .counts
            .lock()
            .expect("counts")
            .entry(what.into())
            .or_default() += 1;
    }

    /// Sorts an action's outcome; answers the data when acknowledged.
    fn outcome(
        &self,
        action: &str,
        r: Result<Value, powernode_client::ActionError>,
    ) -> Option<Value> {
        match r {
            Ok(v) => {
                self.count("ok");
                Some(v)
            }
            Err(e) if retryable(&e) => {
                self.count("retryable_503");
                None
            }
            Err(e) => {
                let refused = e.refusal().is_some();
                self.count(if refused { "refused" } else { "unreachable" });
                let mut errors = self.errors.lock().expect("errors");
                if errors.len() < 20 {
                    errors.push(format!("{action}: {:#}", anyhow::Error::from(e)));
                }
                None
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Templates and nodes, one action every 250 ms.
pub async fn steady(api: Api, shared: Arc<Shared>) {
    let mut i = 0u64;
    let mut last_template: Option<String> = None;
    while !shared.stopped() {
        if i % 4 == 3 {
            if let Some(t) = &last_template {
                let args = json!({ "hostname": format!("chaos-{i}"), "node_template_id": t, "memory_mb": 2048 });
                let r = api.call("system_create_node", &args).await;
                if let Some(v) = shared.outcome("system_create_node", r) {
                    if let Some(id) = v["node"]["id"].as_str() {
                        shared.ack(format!("node {id}"), id, "system.node.created");
                    }
                }
            }
        } else {
            let r = api
                .call(
                    "system_create_template",
                    &json!({ "name": format!("chaos-{i}") }),
                )
                .await;
            if let Some(v) = shared.outcome("system_create_template", r) {
                if let Some(id) = v["template"]["id"].as_str() {
                    shared.ack(format!("template {id}"), id, "system.template.created");
                    last_template = Some(id.to_string());
                }
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One agent's template, instance and state file.
#[derive(Debug, Clone)]
pub struct Slot {
    /// `c-server-1`, …
    pub slot: String,
    /// Its template.
    pub template_id: String,
    /// Its instance.
    pub instance_id: String,
    /// Its `state.json`.
    pub state_file: PathBuf,
}

impl Slot {
    /// The slot as the rig knows it.
    pub fn of(rig: &Rig, slot: &str) -> Self {
        let a = rig.agent(slot);
        Self {
            slot: slot.into(),
            template_id: a.template_id.clone(),
            instance_id: a.instance_id.clone(),
            state_file: a.state_dir.join("state.json"),
        }
    }

    fn state(&self) -> Value {
        std::fs::read_to_string(&self.state_file)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null)
    }
}

/// Calls until acknowledged (retrying 503s and an unreachable API) or stopped.
async fn persist(api: &Api, shared: &Shared, action: &str, args: Value) -> Option<Value> {
    while !shared.stopped() {
        if let Some(v) = shared.outcome(action, api.call(action, &args).await) {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Waits (at most `limit`) until the agent's persisted phase is `ready`.
async fn ready(shared: &Shared, slot: &Slot, limit: Duration) -> Option<Value> {
    let started = Instant::now();
    while !shared.stopped() && started.elapsed() < limit {
        let s = slot.state();
        if s["phase"] == "ready" {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Cluster C's lifecycle: bootstrap server, targeted worker, then (after
/// `hold`) decommissioned. Runs while faults land; what it could not do is
/// noted, not failed (an unacknowledged action need not be in the log).
pub async fn lifecycle(api: Api, shared: Arc<Shared>, server: Slot, worker: Slot, hold: Duration) {
    let note = |s: String| {
        println!("chaos workload: {s}");
        shared.lifecycle.lock().expect("lifecycle").push(s);
    };
    let assign = |slot: &Slot, module: &str, target: Option<&str>| {
        let mut args = json!({ "template_id": slot.template_id, "module_name": module });
        if let Some(t) = target {
            args["config"] = json!({ "target_cluster_id": t });
        }
        args
    };
    let started = Instant::now();
    let args = assign(&server, "k3s-server", None);
    if persist(&api, &shared, "system_assign_module_to_template", args)
        .await
        .is_none()
    {
        return;
    }
    shared.ack(
        format!("k3s-server assigned to {}", server.slot),
        &server.template_id,
        "system.k3s.module.assigned",
    );
    let Some(state) = ready(&shared, &server, Duration::from_secs(180)).await else {
        note(format!("{} not ready within 180 s", server.slot));
        return;
    };
    shared.ack(
        format!("{} reported ready", server.slot),
        &server.instance_id,
        "system.k3s.handshake.ready",
    );
    let Some(cluster) = state["cluster_id"].as_str().map(str::to_string) else {
        note(format!("{} ready without a cluster", server.slot));
        return;
    };
    note(format!(
        "cluster C {cluster} formed in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    *shared.cluster_c.lock().expect("cluster c") = Some(cluster.clone());
    let args = assign(&worker, "k3s-agent", Some(&cluster));
    if persist(&api, &shared, "system_assign_module_to_template", args)
        .await
        .is_none()
    {
        return;
    }
    shared.ack(
        format!("k3s-agent assigned to {}", worker.slot),
        &worker.template_id,
        "system.k3s.module.assigned",
    );
    match ready(&shared, &worker, Duration::from_secs(180)).await {
        Some(_) => {
            shared.ack(
                format!("{} reported ready", worker.slot),
                &worker.instance_id,
                "system.k3s.handshake.ready",
            );
            note(format!(
                "{} joined C at {:.1} s",
                worker.slot,
                started.elapsed().as_secs_f64()
            ));
        }
        None => note(format!("{} did not join C within 180 s", worker.slot)),
    }
    let until = Instant::now() + hold;
    while !shared.stopped() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The checks stop looking at C's VIP before it is released.
    *shared.cluster_c.lock().expect("cluster c") = None;
    let args = json!({ "cluster_id": cluster });
    if persist(&api, &shared, "kubernetes_decommission_cluster", args)
        .await
        .is_some()
    {
        shared.ack(
            format!("cluster {cluster} decommissioned"),
            &cluster,
            "system.k3s.cluster.decommissioned",
        );
        note(format!(
            "cluster C {cluster} decommissioned at {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
}

/// Approves failover proposals as an operator would: while the VIP's
/// holder is silent and the proposed peer's agent is live.
pub async fn approver(rig: Arc<Rig>, world: World, shared: Arc<Shared>) {
    while !shared.stopped() {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let Ok(list) = rig.op.call("system_list_approvals", &json!({})).await else {
            continue;
        };
        for a in list["approvals"].as_array().into_iter().flatten() {
            let (Some(id), Some(vip_id), Some(peer)) = (
                a["id"].as_str(),
                a["virtual_ip_id"].as_str(),
                a["proposed_peer"].as_str(),
            ) else {
                continue;
            };
            if a["status"] != "requested" {
                continue;
            }
            let Ok(v) = rig
                .op
                .call("system_sdwan_get_virtual_ip", &json!({ "id": vip_id }))
                .await
            else {
                continue;
            };
            let v = &v["virtual_ip"];
            let instance = v["failover_candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["peer_id"] == peer)
                .and_then(|c| c["instance_id"].as_str());
            let live = instance
                .and_then(|i| rig.agent_of(i).ok())
                .is_some_and(|agent| world.live(&rig, &agent.container));
            if v["holder_silent"] != true || !live {
                continue;
            }
            let r = rig
                .op
                .call("system_approve", &json!({ "approval_id": id }))
                .await;
            if shared.outcome("system_approve", r).is_some() {
                println!("chaos approver: approved {id} ({vip_id} to {peer})");
                shared.ack(
                    format!("approval {id} granted"),
                    id,
                    "system.approval.granted",
                );
                shared.count("approved");
            }
        }
    }
}
