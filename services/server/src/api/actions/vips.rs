//! SD-WAN reads: `system_sdwan_get_virtual_ip`, `system_sdwan_list_networks`,
//! `system_sdwan_get_peer_config`.

use super::{handlers, views, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::sdwan::{
    GetPeerConfigAnswer, GetPeerConfigArgs, ListNetworksAnswer, ListNetworksArgs, ListPeersAnswer,
    ListPeersArgs, NetworkView, PeerView,
};
use powernode_actions::vips::{
    FailoverPeer, GetVirtualIpAnswer, GetVirtualIpArgs, Reachability, VirtualIpView,
};
use powernode_events::AccountId;
use powernode_projections::fleet::{VipStatus, VirtualIp};
use powernode_projections::FleetState;
use serde_json::json;

handlers! {
    GetVirtualIp => get_virtual_ip,
    ListNetworks => list_networks,
    GetPeerConfig => get_peer_config,
    ListPeers => list_peers,
}

/// `system_sdwan_list_peers({network_id?})` → `{peers: [...]}`, oldest
/// first, each with its instance's hostname.
pub async fn list_peers(
    ctx: &ActionContext<'_>,
    a: ListPeersArgs,
) -> Result<ListPeersAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let acc = fleet.account(&ctx.operator.account);
    if let Some(n) = &a.network_id {
        if acc.is_none_or(|acc| !acc.networks.contains_key(n)) {
            return Err(ApiError::not_found("network", n));
        }
    }
    let Some(acc) = acc else {
        return Ok(ListPeersAnswer { peers: Vec::new() });
    };
    let mut all: Vec<_> = acc
        .peers
        .values()
        .filter(|p| a.network_id.as_ref().is_none_or(|n| *n == p.network_id))
        .collect();
    all.sort_by_key(|p| p.attached_seq);
    let peers = all
        .into_iter()
        .map(|p| PeerView {
            peer: views::peer_with_key(p, acc.wireguard_keys.get(&p.instance_id)),
            hostname: acc
                .instances
                .get(&p.instance_id)
                .and_then(|i| acc.nodes.get(&i.node_id))
                .map(|n| n.hostname.clone()),
        })
        .collect();
    Ok(ListPeersAnswer { peers })
}

/// A VIP as operators see it: `holders` are instance ids (the tutorial's
/// shape), with the peer-level detail beside them.
pub(super) fn vip_json(fleet: &FleetState, account: &AccountId, v: &VirtualIp) -> VirtualIpView {
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
    let candidates: Vec<FailoverPeer> = v
        .failover_candidates()
        .map(|p| FailoverPeer {
            peer_id: p.to_string(),
            instance_id: instance_of(p),
        })
        .collect();
    let mut gens: Vec<u64> = v.applied.values().copied().collect();
    gens.sort_unstable();
    let split = gens.windows(2).any(|w| w[0] == w[1]);
    let stale: Vec<String> = v
        .applied
        .iter()
        .filter(|(_, g)| **g < v.generation)
        .map(|(p, _)| p.clone())
        .collect();
    VirtualIpView {
        id: v.id.clone(),
        name: v.purpose,
        vip: v.vip,
        purpose: v.purpose,
        network_id: v.network_id.clone(),
        cluster_id: v.cluster_id.clone(),
        api_endpoint: v.api_endpoint(),
        status: views::vip_status(v.status),
        generation: v.generation,
        holders,
        holder_peer_id: v.holder_peer_id.clone(),
        holder_silent: v.holder_silent,
        failover_holder_peer_ids: v.failover_candidates().map(str::to_string).collect(),
        failover_candidates: candidates,
        // What each member's agent reports holding: more than one entry is
        // a split the fencing is resolving (the older generation releases).
        applied_generations: v.applied.clone(),
        // Two agents at one generation: a true split (fencing never lets
        // it happen). An older generation still reported is stale: that
        // agent has not been heard releasing yet (e.g. it is down).
        split,
        stale_holders: stale,
        silent_since: v.silent_since.clone(),
        pending_approval: v.pending_proposal.as_ref().map(|p| p.approval_id.clone()),
        last_promotion: v.promotions.last().map(views::promotion),
        release_reason: v.release_reason.clone(),
        silence_reason: v.silence_reason,
        reachable: v.reachable.as_ref().map(|r| Reachability {
            generation: r.generation,
            holder_peer_id: r.holder_peer_id.clone(),
            probed_by_peer_id: r.probed_by_peer_id.clone(),
            probed_at: r.probed_at.clone(),
        }),
        reachable_now: v.status == VipStatus::Allocated
            && v.reachable.as_ref().is_some_and(|r| {
                r.generation == v.generation && r.holder_peer_id == v.holder_peer_id
            }),
    }
}

/// `system_sdwan_get_virtual_ip({id} | {cluster_id} | {name})`: one VIP.
/// `name` is the VIP's purpose (`k3s_api_endpoint`); with several live
/// VIPs of that purpose, the answer lists them and asks for `cluster_id`.
pub async fn get_virtual_ip(
    ctx: &ActionContext<'_>,
    a: GetVirtualIpArgs,
) -> Result<GetVirtualIpAnswer, ApiError> {
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
                    ErrorCode::Ambiguous,
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
            ErrorCode::InvalidArguments,
            "give one of id, cluster_id or name",
        ));
    };
    Ok(GetVirtualIpAnswer {
        virtual_ip: vip_json(&fleet, account, vip),
    })
}

/// `system_sdwan_list_networks({})` → `{networks: [...]}`, oldest first.
pub async fn list_networks(
    ctx: &ActionContext<'_>,
    _: ListNetworksArgs,
) -> Result<ListNetworksAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let mut networks: Vec<_> = fleet
        .account(&ctx.operator.account)
        .map(|a| a.networks.values().collect())
        .unwrap_or_default();
    networks.sort_by_key(|n| n.created_seq);
    let out: Vec<NetworkView> = networks
        .into_iter()
        .map(|n| NetworkView {
            network: views::network(n),
            peer_count: fleet.account(&ctx.operator.account).map_or(0, |a| {
                a.peers.values().filter(|p| p.network_id == n.id).count()
            }),
        })
        .collect();
    Ok(ListNetworksAnswer { networks: out })
}

/// `system_sdwan_get_peer_config({peer_id})`: the peer's desired WireGuard
/// config (public keys only), the revision its agent last reported
/// applied (as heard by this API), and whether they match. A peer of
/// another account is not found, like any unknown peer.
pub async fn get_peer_config(
    ctx: &ActionContext<'_>,
    a: GetPeerConfigArgs,
) -> Result<GetPeerConfigAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let acct = fleet
        .account(account)
        .ok_or_else(|| ApiError::not_found("peer", &a.peer_id))?;
    let peer = acct
        .peers
        .get(&a.peer_id)
        .ok_or_else(|| ApiError::not_found("peer", &a.peer_id))?;
    let desired = fleet.wireguard_config(account, &peer.id);
    let applied_revision = ctx
        .liveness()
        .applied_revision(&peer.instance_id, &peer.network_id);
    let in_sync = match (&desired, applied_revision) {
        (Some(d), Some(r)) => r >= d.revision,
        _ => false,
    };
    Ok(GetPeerConfigAnswer {
        peer_id: peer.id.clone(),
        network_id: peer.network_id.clone(),
        instance_id: peer.instance_id.clone(),
        wireguard: views::peer_wireguard(acct.wireguard_keys.get(&peer.instance_id)),
        desired,
        applied_revision,
        in_sync,
    })
}
