//! An agent cut off the network (`docker network disconnect`) and
//! reconnected: cluster A's VIP holder. Cut off, it goes silent and the
//! failover service proposes a move; nobody approves; reconnected, it is
//! heard again, the silence is over (`sdwan.vip_holder_recovered`), the
//! waiting proposal is superseded, and the VIP never moved. It comes back
//! with its address (its WireGuard endpoint, when it runs the data plane).

use crate::failover::vip_events;
use crate::runbook::Clusters;
use crate::support::{ms, Rig, STEP};
use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::time::Instant;

/// Runs the scenario.
pub async fn run(rig: &mut Rig, clusters: &Clusters) -> anyhow::Result<Value> {
    let vip = rig.vip(&clusters.a).await?;
    let vip_id = vip["id"].as_str().context("vip id")?.to_string();
    let generation = vip["generation"].clone();
    let holder_peer = vip["holder_peer_id"].clone();
    let holder = rig
        .agent_of(vip["holders"][0].as_str().context("holder")?)?
        .clone();
    let network = rig.fleet["network"]
        .as_str()
        .unwrap_or("powernode-rig")
        .to_string();
    let recovered_before = vip_events(rig, "sdwan.vip_holder_recovered", &vip_id)
        .await?
        .len();

    // Reconnected with the address it had: a data-plane agent's WireGuard
    // endpoint is that address (Docker would hand out a new one).
    let address = rig.docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        &holder.container,
    ])?;
    let cut = Instant::now();
    rig.docker(&["network", "disconnect", &network, &holder.container])?;
    let outcome = async {
        let approval = wait_until(STEP, &format!("a proposal to move {vip_id}"), || async {
            let list = rig
                .call("system_list_approvals", json!({}))
                .await
                .map_err(|e| format!("{e:#}"))?;
            list["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["virtual_ip_id"] == vip_id.as_str() && a["status"] == "requested")
                .cloned()
                .ok_or_else(|| list.to_string())
        })
        .await?;
        anyhow::Ok((approval, ms(cut)))
    }
    .await;
    // Reconnect whatever happened.
    let healed = Instant::now();
    rig.docker(&[
        "network",
        "connect",
        "--ip",
        &address,
        &network,
        &holder.container,
    ])?;
    let (approval, proposed_ms) = outcome?;
    let approval_id = approval["id"].as_str().context("approval id")?.to_string();

    let recovered = wait_until(STEP, &format!("{} heard again", holder.slot), || async {
        let v = rig.vip(&clusters.a).await.map_err(|e| format!("{e:#}"))?;
        if v["holder_silent"] == false {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await?;
    let recovered_ms = ms(healed);
    let superseded = wait_until(
        STEP,
        &format!("approval {approval_id} superseded"),
        || async {
            let list = rig
                .call("system_list_approvals", json!({ "status": "all" }))
                .await
                .map_err(|e| format!("{e:#}"))?;
            list["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["id"] == approval_id.as_str() && a["status"] == "superseded")
                .cloned()
                .ok_or_else(|| list.to_string())
        },
    )
    .await?;
    let recovered_events = vip_events(rig, "sdwan.vip_holder_recovered", &vip_id)
        .await?
        .len();
    ensure!(
        recovered_events == recovered_before + 1,
        "expected one new sdwan.vip_holder_recovered, found {}",
        recovered_events - recovered_before
    );
    ensure!(
        recovered["generation"] == generation && recovered["holder_peer_id"] == holder_peer,
        "the VIP moved without an approval: {recovered}"
    );
    ensure!(recovered["split"] == false, "split: {recovered}");
    let state = rig.agent_state(&holder.slot)?;
    ensure!(
        state["vips"][&vip_id]["held_generation"] == generation,
        "{} no longer holds {vip_id}: {}",
        holder.slot,
        state["vips"]
    );
    Ok(json!({
        "partitioned": holder.container,
        "vip": vip_id,
        "cut_to_proposal_ms": proposed_ms,
        "reconnect_to_heard_ms": recovered_ms,
        "approval": approval_id,
        "approval_status": superseded["status"],
        "generation_unchanged": generation,
    }))
}
