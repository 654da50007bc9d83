//! SD-WAN reads: `system_sdwan_get_virtual_ip`, `system_sdwan_list_networks`.

use super::ActionContext;
use crate::api::error::ApiError;
use axum::http::StatusCode;
use powernode_events::AccountId;
use powernode_projections::fleet::{VipStatus, VirtualIp};
use powernode_projections::FleetState;
use serde::Deserialize;
use serde_json::{json, Value};

/// A VIP as operators see it: `holders` are instance ids (the tutorial's
/// shape), with the peer-level detail beside them.
pub(super) fn vip_json(fleet: &FleetState, account: &AccountId, v: &VirtualIp) -> Value {
    let instance_of = |peer_id: &str| {
        fleet
            .account(account)
            .and_then(|a| a.peers.get(peer_id))
            .map(|p| p.instance_id.clone())
    };
    let holders: Vec<String> = match v.status {
        VipStatus::Allocated => instance_of(&v.holder_peer_id).into_iter().collect(),
        VipStatus::Released => Vec::new(),
    };
    let candidates: Vec<Value> = v
        .failover_candidates()
        .map(|p| json!({ "peer_id": p, "instance_id": instance_of(p) }))
        .collect();
    let mut gens: Vec<u64> = v.applied.values().copied().collect();
    gens.sort_unstable();
    let split = gens.windows(2).any(|w| w[0] == w[1]);
    let stale: Vec<&String> = v
        .applied
        .iter()
        .filter(|(_, g)| **g < v.generation)
        .map(|(p, _)| p)
        .collect();
    json!({
        "id": v.id,
        "name": v.purpose,
        "vip": v.vip.to_string(),
        "purpose": v.purpose,
        "network_id": v.network_id,
        "cluster_id": v.cluster_id,
        "api_endpoint": v.api_endpoint(),
        "status": v.status,
        "generation": v.generation,
        "holders": holders,
        "holder_peer_id": v.holder_peer_id,
        "holder_silent": v.holder_silent,
        "failover_holder_peer_ids": v.failover_candidates().collect::<Vec<_>>(),
        "failover_candidates": candidates,
        // What each member's agent reports holding: more than one entry is
        // a split the fencing is resolving (the older generation releases).
        "applied_generations": v.applied,
        // Two agents at one generation: a true split (fencing never lets
        // it happen). An older generation still reported is stale: that
        // agent has not been heard releasing yet (e.g. it is down).
        "split": split,
        "stale_holders": stale,
        "silent_since": v.silent_since,
        "pending_approval": v.pending_proposal.as_ref().map(|p| p.approval_id.clone()),
        "last_promotion": v.promotions.last(),
        "release_reason": v.release_reason,
    })
}

/// `system_sdwan_get_virtual_ip({id} | {cluster_id} | {name})`: one VIP.
/// `name` is the VIP's purpose (`k3s_api_endpoint`); with several live
/// VIPs of that purpose, the answer lists them and asks for `cluster_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetVirtualIp {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    cluster_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub async fn get_virtual_ip(ctx: &ActionContext<'_>, a: GetVirtualIp) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let vip = if let Some(id) = &a.id {
        fleet
            .virtual_ip(account, id)
            .ok_or_else(|| ApiError::not_found("virtual_ip", id))?
    } else if let Some(cluster) = &a.cluster_id {
        fleet
            .cluster_virtual_ip(account, cluster)
            .ok_or_else(|| ApiError::not_found("virtual_ip of cluster", cluster))?
    } else if let Some(name) = &a.name {
        let live: Vec<&VirtualIp> = fleet
            .account(account)
            .map(|acc| {
                acc.virtual_ips
                    .values()
                    .filter(|v| v.status == VipStatus::Allocated)
                    .filter(|v| json!(v.purpose) == json!(name))
                    .collect()
            })
            .unwrap_or_default();
        match live.as_slice() {
            [] => return Err(ApiError::not_found("virtual_ip named", name)),
            [one] => *one,
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|v| format!("{} (cluster {})", v.id, v.cluster_id))
                    .collect();
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ambiguous",
                    format!(
                        "{} live VIPs are named {name}: {}; pass cluster_id or id",
                        many.len(),
                        list.join(", ")
                    ),
                ));
            }
        }
    } else {
        return Err(ApiError::bad_request(
            "invalid_arguments",
            "give one of id, cluster_id or name",
        ));
    };
    Ok(json!({ "virtual_ip": vip_json(&fleet, account, vip) }))
}

/// `system_sdwan_list_networks({})` → `{networks: [...]}`, oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListNetworks {}

pub async fn list_networks(ctx: &ActionContext<'_>, _: ListNetworks) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let mut networks: Vec<_> = fleet
        .account(&ctx.operator.account)
        .map(|a| a.networks.values().collect())
        .unwrap_or_default();
    networks.sort_by_key(|n| n.created_seq);
    let out: Vec<Value> = networks
        .into_iter()
        .map(|n| {
            let mut v = json!(n);
            v["peer_count"] = json!(fleet.account(&ctx.operator.account).map_or(0, |a| a
                .peers
                .values()
                .filter(|p| p.network_id == n.id)
                .count()));
            v
        })
        .collect();
    Ok(json!({ "networks": out }))
}
