//! Service replicas killed mid-flow. Both replicas of `failover` and of
//! `provisioner` consume the log and decide (decisions carry ids derived
//! from their cause, so the second one to append is a duplicate JetStream
//! drops); killing one must leave the flow to the other, and the killed
//! one, started again, resumes from its checkpoint and appends nothing.
//!
//! * failover: cluster B's VIP holder is killed; once the proposal is
//!   made, `failover-1` is killed; the approval must be carried out
//!   (by `failover-2`) exactly once.
//! * provisioner: cluster C's worker is assigned and `provisioner-1` is
//!   killed at once; the join must be decided (by `provisioner-2`) exactly
//!   once.

use crate::failover::move_vip;
use crate::runbook::{wait_active, Clusters};
use crate::support::{ms, Rig, STEP};
use anyhow::{ensure, Context as _};
use powernode_log::jetstream::{durable_name, DEFAULT_STREAM};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::time::Instant;

/// Runs the scenario.
pub async fn run(rig: &mut Rig, clusters: &Clusters) -> anyhow::Result<Value> {
    // failover-1 dies between the proposal and the approval.
    let kill_failover = |rig: &Rig| rig.docker(&["kill", "pn-failover-1"]).map(|_| ());
    let moved = move_vip(rig, &clusters.b, Some(&kill_failover)).await?;
    ensure!(
        !rig.running("pn-failover-1")?,
        "pn-failover-1 was not down during the approval"
    );
    let failover = restart_replica(rig, "pn-failover-1", "failover-1").await?;

    // provisioner-1 dies as cluster C's worker is assigned.
    let c = match rig.instance(&rig.agent("c-server-1").instance_id).await?["cluster_id"].as_str() {
        Some(c) => c.to_string(),
        None => {
            rig.assign("c-server-1", "k3s-server", None).await?;
            rig.wait_phase("c-server-1", "ready").await?;
            rig.cluster_of("c-server-1").await?
        }
    };
    wait_active(rig, &c).await?;
    let assigned = Instant::now();
    rig.assign("c-worker-1", "k3s-agent", Some(&c)).await?;
    rig.docker(&["kill", "pn-provisioner-1"])?;
    rig.wait_phase("c-worker-1", "ready").await?;
    let join_ms = ms(assigned);
    let worker = rig.agent("c-worker-1").instance_id.clone();
    let provisioner = restart_replica(rig, "pn-provisioner-1", "provisioner-1").await?;
    let mut decided = serde_json::Map::new();
    for kind in [
        "system.k3s.handshake.join_token_issued",
        "system.k3s.node.registered",
    ] {
        let n = rig
            .events_of(kind)
            .await?
            .iter()
            .filter(|e| e["payload"]["instance_id"] == worker.as_str())
            .count();
        decided.insert(kind.into(), json!(n));
        ensure!(n == 1, "{kind} for c-worker-1: {n} (expected exactly one)");
    }
    let requests = rig
        .events_of("system.k3s.handshake.join_request")
        .await?
        .iter()
        .filter(|e| e["payload"]["instance_id"] == worker.as_str())
        .count();
    Ok(json!({
        "failover": {
            "killed": "pn-failover-1 (after the proposal, before the approval)",
            "vip_moved": moved,
            "restart": failover,
        },
        "provisioner": {
            "killed": "pn-provisioner-1 (as c-worker-1 was assigned)",
            "assign_to_worker_ready_ms": join_ms,
            "join_requests": requests,
            "decisions": decided,
            "restart": provisioner,
        },
    }))
}

/// Starts the killed replica again; waits until it restored its checkpoint
/// and its cursor acknowledged everything; checks that catching up
/// appended nothing. Answers the figures.
async fn restart_replica(rig: &Rig, container: &str, cursor: &str) -> anyhow::Result<Value> {
    let before = rig.last_seq().await?;
    let since = chrono::Utc::now().to_rfc3339();
    let started = Instant::now();
    rig.docker(&["start", container])?;
    let restored = wait_until(
        STEP,
        &format!("{container} to restore its checkpoint"),
        || async {
            let logs = std::process::Command::new("docker")
                .args(["logs", "--since", &since, container])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&logs.stderr).to_string()
                + &String::from_utf8_lossy(&logs.stdout);
            text.lines()
                .find(|l| l.contains("restored checkpoint"))
                .and_then(|l| l.split("applied=").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| "no \"restored checkpoint\" yet".to_string())
        },
    )
    .await?;
    let js = async_nats::jetstream::new(rig.nats.clone());
    let durable = durable_name(cursor);
    let caught_up = wait_until(
        STEP,
        &format!("{durable} to acknowledge seq {before}"),
        || {
            let (js, durable) = (js.clone(), durable.clone());
            async move {
                let stream = js
                    .get_stream(DEFAULT_STREAM)
                    .await
                    .map_err(|e| e.to_string())?;
                let info = stream
                    .consumer_info(&durable)
                    .await
                    .map_err(|e| e.to_string())?;
                let floor = info.ack_floor.stream_sequence;
                if floor >= before {
                    Ok(floor)
                } else {
                    Err(format!("ack floor {floor}"))
                }
            }
        },
    )
    .await
    .context("the restarted replica did not catch up")?;
    let catch_up_ms = ms(started);
    let after = rig.last_seq().await?;
    let appended: Vec<Value> = rig
        .events()
        .await?
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) > before)
        .map(|e| json!({ "seq": e["seq"], "kind": e["kind"], "actor": e["actor"] }))
        .collect();
    ensure!(
        after == before,
        "{container} appended while catching up from its checkpoint: {appended:?}"
    );
    Ok(json!({
        "checkpoint_restored_at_seq": restored,
        "log_last_seq": before,
        "caught_up_to": caught_up,
        "start_to_caught_up_ms": catch_up_ms,
        "appended_while_catching_up": 0,
    }))
}
