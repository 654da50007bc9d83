//! VIP failover with real containers: `docker kill` the holder's agent →
//! the sensor reports the silence → the failover service proposes →
//! an operator approves with the CLI → the VIP moves (generation + 1) and
//! the new holder's agent holds it; then the old agent starts again and
//! releases the old generation.

use crate::runbook::Clusters;
use crate::support::{ms, Acked, Rig, STEP};
use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::time::Instant;

/// Something done between the proposal and the approval.
pub type Between = dyn Fn(&Rig) -> anyhow::Result<()> + Sync;

/// Runs the scenario on cluster A.
pub async fn run(rig: &mut Rig, clusters: &Clusters) -> anyhow::Result<Value> {
    let moved = move_vip(rig, &clusters.a, None).await?;
    Ok(moved)
}

/// Kills the holder of `cluster`'s VIP, waits for the proposal, approves it
/// with the CLI (calling `between` after the proposal, before approving),
/// checks the VIP moved and, after the old agent restarts, that it
/// released the old generation. Answers the figures.
pub async fn move_vip(
    rig: &mut Rig,
    cluster: &str,
    between: Option<&Between>,
) -> anyhow::Result<Value> {
    let vip = rig.vip(cluster).await?;
    let vip_id = vip["id"].as_str().context("vip id")?.to_string();
    let generation = vip["generation"].as_u64().context("generation")?;
    let old_instance = vip["holders"][0].as_str().context("holder")?.to_string();
    let old_peer = vip["holder_peer_id"]
        .as_str()
        .context("holder peer")?
        .to_string();
    let old = rig.agent_of(&old_instance)?.clone();
    ensure!(
        !vip["failover_candidates"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "VIP {vip_id} has no failover candidate: {vip}"
    );
    let silent_before = vip_events(rig, "sdwan.vip_holder_silent", &vip_id)
        .await?
        .len();
    // A proposal of an earlier episode (a holder cut off by an earlier
    // scenario) is not this one's.
    let earlier: Vec<Value> = rig.call("system_list_approvals", json!({})).await?["approvals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let earlier: std::collections::HashSet<String> = earlier
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect();

    // The holder dies.
    let killed = Instant::now();
    rig.docker(&["kill", &old.container])?;
    let approval = wait_until(
        STEP,
        &format!("a failover proposal for {vip_id}"),
        || async {
            let list = rig
                .call("system_list_approvals", json!({}))
                .await
                .map_err(|e| format!("{e:#}"))?;
            list["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| {
                    a["virtual_ip_id"] == vip_id.as_str()
                        && a["status"] == "requested"
                        && !a["id"].as_str().is_some_and(|id| earlier.contains(id))
                })
                .cloned()
                .ok_or_else(|| list.to_string())
        },
    )
    .await?;
    let proposed_ms = ms(killed);
    let approval_id = approval["id"].as_str().context("approval id")?.to_string();
    let proposed_peer = approval["proposed_peer"]
        .as_str()
        .context("proposed peer")?
        .to_string();
    let silent = vip_events(rig, "sdwan.vip_holder_silent", &vip_id).await?;
    ensure!(
        silent.len() == silent_before + 1,
        "expected one new silence report for {vip_id}, found {}",
        silent.len() - silent_before
    );
    let detect_after_kill_ms = silent
        .last()
        .and_then(|e| e["occurred_at"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds()
                + killed.elapsed().as_millis() as i64
        });
    if let Some(between) = between {
        between(rig)?;
    }

    // The operator approves with the CLI.
    let approved = Instant::now();
    rig.cli(&["approvals", "approve", &approval_id])?;
    rig.ledger.push(Acked {
        what: format!("approval {approval_id} granted"),
        aggregate_id: approval_id.clone(),
        kind: "system.approval.granted".into(),
    });
    let new_gen = generation + 1;
    let moved = wait_until(
        STEP,
        &format!("{vip_id} held by {proposed_peer} at generation {new_gen}, applied by its agent"),
        || async {
            let v = rig.vip(cluster).await.map_err(|e| format!("{e:#}"))?;
            if v["holder_peer_id"] == proposed_peer.as_str()
                && v["generation"] == new_gen
                && v["applied_generations"][&proposed_peer] == new_gen
            {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await?;
    let promote_ms = ms(approved);
    let new_instance = moved["holders"][0]
        .as_str()
        .context("new holder")?
        .to_string();
    let new = rig.agent_of(&new_instance)?.clone();
    let held = rig.agent_state(&new.slot)?["vips"][&vip_id]["held_generation"].clone();
    ensure!(held == new_gen, "{} holds {vip_id} at {held}", new.slot);
    rig.ledger.push(Acked {
        what: format!("{vip_id} promoted to generation {new_gen}"),
        aggregate_id: vip_id.clone(),
        kind: "system.sdwan.virtual_ip.promoted".into(),
    });

    // The old holder comes back and releases the old generation.
    let restarted = Instant::now();
    rig.docker(&["start", &old.container])?;
    let released = wait_until(
        STEP,
        &format!("{} to release {vip_id} (generation {generation})", old.slot),
        || async {
            let state = rig.agent_state(&old.slot).map_err(|e| format!("{e:#}"))?;
            let v = rig.vip(cluster).await.map_err(|e| format!("{e:#}"))?;
            let mine = &state["vips"][&vip_id];
            let still_stale = v["stale_holders"]
                .as_array()
                .is_some_and(|s| s.iter().any(|p| p == old_peer.as_str()));
            if mine["held_generation"].is_null()
                && mine["seen_generation"] == new_gen
                && !still_stale
                && v["split"] == false
            {
                Ok(v)
            } else {
                Err(format!("agent {mine}, vip {v}"))
            }
        },
    )
    .await?;
    let release_ms = ms(restarted);

    // Exactly once: one promotion to the new generation, one proposal.
    let promotions: Vec<Value> = vip_events(rig, "system.sdwan.virtual_ip.promoted", &vip_id)
        .await?
        .into_iter()
        .filter(|e| e["payload"]["generation"] == new_gen)
        .collect();
    ensure!(
        promotions.len() == 1,
        "promotions to {new_gen}: {promotions:?}"
    );
    let proposals: Vec<Value> = vip_events(rig, "system.sdwan.failover.proposed", &vip_id)
        .await?
        .into_iter()
        .filter(|e| e["payload"]["approval_id"] == approval_id.as_str())
        .collect();
    ensure!(
        proposals.len() == 1,
        "proposals for {approval_id}: {proposals:?}"
    );
    Ok(json!({
        "vip": vip_id,
        "killed": old.container,
        "from": old.slot,
        "to": new.slot,
        "generation": [generation, new_gen],
        "kill_to_proposal_ms": proposed_ms,
        "kill_to_silence_event_ms": detect_after_kill_ms,
        "approve_to_new_holder_ms": promote_ms,
        "restart_to_release_ms": release_ms,
        "promotions_at_new_generation": promotions.len(),
        "split": released["split"],
    }))
}

/// The events of `kind` about the VIP.
pub async fn vip_events(rig: &Rig, kind: &str, vip_id: &str) -> anyhow::Result<Vec<Value>> {
    Ok(rig
        .events_of(kind)
        .await?
        .into_iter()
        .filter(|e| e["payload"]["virtual_ip_id"] == vip_id)
        .collect())
}
