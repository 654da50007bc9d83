//! SD-WAN networks and peers: overlay /64 and VIP range allocation, peer
//! /128s, and the `pod_subnet_prefix` overlap rules.
//!
//! Every allocation from an account's address space — a network's overlay
//! /64, interface handle and VIP range, a `pod_subnet_prefix` (at creation
//! or by `system_sdwan_update_network`), a peer's LAN subnets — is decided
//! on a projection that has applied the last event of the account's
//! address-space aggregate ([`address_space`]) and appended on that
//! aggregate under an `Expect::LastSeq` guard ([`allocate`]). Two
//! concurrent allocations therefore never both win: the second is refused
//! by the log, decides again on the newer state, and either takes the next
//! free space or is refused with the clash named.

use super::{check_name, handlers, new_id, views, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use powernode_actions::sdwan::{
    AttachPeerAnswer, AttachPeerArgs, CreateNetworkAnswer, CreateNetworkArgs, UpdateNetworkAnswer,
    UpdateNetworkArgs,
};
use powernode_events::payloads::sdwan::{NetworkCreated, PeerAttached, RoutingMode};
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::FleetState;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::net::Ipv6Addr;
use std::time::Duration;

handlers! {
    CreateNetwork => create_network,
    AttachPeer => attach_peer,
    UpdateNetwork => update_network,
}

/// VIPs come from `<overlay>::100/120`.
const VIP_RANGE_HOST: u128 = 0x100;
const VIP_RANGE_LEN: u8 = 120;
/// Decisions made again when concurrent appends to the same aggregate went
/// first (50 concurrent creations in one account need up to 49 each).
pub(super) const GUARDED_ATTEMPTS: usize = 200;

/// The aggregate that owns an account's address space: the account's own
/// (`account/<account id>`). Network creations, pod prefix changes and
/// LAN-bearing peer attachments are appended on it, under its guard.
pub fn address_space(account: &AccountId) -> AggregateRef {
    AggregateRef::new(AggregateType::Account, account.as_str())
}

/// A short random pause before deciding again after a conflict: 1-2 ms
/// at first, up to 1-32 ms, so contenders spread out instead of colliding
/// in lock-step.
pub(super) async fn conflict_backoff(attempt: usize) {
    let cap = 2u64 << attempt.min(4);
    let ms = rand::thread_rng().gen_range(1..=cap);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The IPv4 prefix an IPv4-mapped IPv6 prefix (`::ffff:a.b.c.d/96+n`)
/// stands for, so `::ffff:10.42.0.0/112` compares as `10.42.0.0/16`.
fn normalized(p: &IpNet) -> IpNet {
    match p {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(
                Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix length of at most 32"),
            ),
            None => *p,
        },
        _ => *p,
    }
}

/// True when an IPv6 prefix covers the whole IPv4-mapped range `::ffff:0:0/96`
/// (and so, through it, every IPv4 prefix).
fn covers_mapped(p: &IpNet) -> bool {
    let mapped = Ipv6Addr::from(0xffff_0000_0000u128);
    matches!(p, IpNet::V6(v6) if v6.prefix_len() < 96 && v6.contains(&mapped))
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    let (a, b) = (normalized(a), normalized(b));
    a.contains(&b.network())
        || b.contains(&a.network())
        || (covers_mapped(&a) && matches!(b, IpNet::V4(_)))
        || (covers_mapped(&b) && matches!(a, IpNet::V4(_)))
}

fn parse_prefix(field: &str, s: &str) -> Result<IpNet, ApiError> {
    let net: IpNet = s.parse().map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("{field}: {s:?} is not a CIDR prefix ({e})"),
        )
    })?;
    if net.trunc() != net {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!(
                "{field}: {s} has host bits set; did you mean {}?",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

/// Refuses an IPv4-mapped IPv6 prefix that overlapped nothing: it is to be
/// written as the IPv4 prefix it stands for (checked after the overlap
/// rules, so one that clashes is answered with the clash).
fn refuse_mapped(field: &str, net: &IpNet) -> Result<(), ApiError> {
    let v4 = normalized(net);
    if v4 == *net {
        return Ok(());
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidArguments,
        format!("{field}: {net} is an IPv4-mapped IPv6 prefix; write it as {v4}"),
    ))
}

fn overlap_error(prefix: &IpNet, other: &IpNet, what: String) -> ApiError {
    let shown = |p: &IpNet| match normalized(p) {
        n if n == *p => p.to_string(),
        n => format!("{p} (IPv4 {n})"),
    };
    ApiError::new(
        ErrorCode::PrefixOverlap,
        format!("{} overlaps {what} {}", shown(prefix), shown(other)),
    )
}

/// The first of `taken` that `prefix` overlaps, as a `prefix_overlap` refusal.
fn check_clear(
    prefix: &IpNet,
    taken: impl IntoIterator<Item = (IpNet, String)>,
) -> Result<(), ApiError> {
    for (other, what) in taken {
        if overlap(prefix, &other) {
            return Err(overlap_error(prefix, &other, what));
        }
    }
    Ok(())
}

/// Every prefix in the account a new `pod_subnet_prefix` or LAN subnet must
/// stay clear of, with a description for the error message.
fn taken_prefixes(fleet: &FleetState, account: &AccountId) -> Vec<(IpNet, String)> {
    let mut out = Vec::new();
    let Some(acc) = fleet.account(account) else {
        return out;
    };
    for n in acc.networks.values() {
        out.push((
            IpNet::V6(n.vip_range),
            format!("the VIP range of network {}", n.id),
        ));
        out.push((
            IpNet::V6(n.overlay_prefix),
            format!("the overlay of network {}", n.id),
        ));
        if let Some(p) = n.pod_subnet_prefix {
            out.push((p, format!("the pod_subnet_prefix of network {}", n.id)));
        }
    }
    for p in acc.peers.values() {
        for lan in &p.lan_subnets {
            out.push((
                *lan,
                format!("a LAN subnet of peer {} (instance {})", p.id, p.instance_id),
            ));
        }
    }
    out
}

/// How an append made by [`allocate`] is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// On the account's address space: the event is moved onto
    /// [`address_space`] and appended under its last sequence.
    AddressSpace,
    /// No allocation from the address space: the event keeps its own
    /// aggregate and is appended unguarded.
    None,
}

/// Decides with `decide` on the projection and appends what it answers.
/// Under [`Guard::AddressSpace`] the decision is made on a projection that
/// has applied the address space's last event and appended under that
/// guard; when another allocation went first, it is made again (after a
/// short random pause), up to [`GUARDED_ATTEMPTS`] times. `decide`
/// answering `None` means there is nothing to append (the answer is already
/// in the projection). Answers the appended event's sequence.
async fn allocate(
    ctx: &ActionContext<'_>,
    guard: Guard,
    mut decide: impl FnMut(&FleetState) -> Result<Option<Envelope>, ApiError>,
) -> Result<Option<u64>, ApiError> {
    let account = ctx.operator.account.clone();
    let aggregate = address_space(&account);
    for attempt in 0..GUARDED_ATTEMPTS {
        let expect = match guard {
            Guard::AddressSpace => {
                let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
                // Decide on a projection that has seen everything up to the guard.
                ctx.wait_for(last.unwrap_or(0)).await?;
                last.map_or(Expect::NoEvents, Expect::LastSeq)
            }
            Guard::None => Expect::Any,
        };
        let decided = {
            let fleet = ctx.fleet().await;
            decide(&fleet)?
        };
        let Some(mut event) = decided else {
            return Ok(None);
        };
        if guard == Guard::AddressSpace {
            event.aggregate = aggregate.clone();
        }
        match ctx.append_guarded(&event, expect).await {
            Ok(seq) => return Ok(Some(seq)),
            // Another allocation went first; or (`id_taken`) the same
            // instance's peer was attached meanwhile on the other aggregate
            // (with or without LANs): decide again on what is there now.
            Err(ApiError {
                code: ErrorCode::Conflict | ErrorCode::IdTaken,
                ..
            }) => conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::unavailable(format!(
        "the address space of account {account} is busy ({GUARDED_ATTEMPTS} concurrent allocations went first); retry"
    )))
}

/// The account's ULA /48 (from a hash of the account id) and the first /64
/// in it that no network uses and no prefix of the account overlaps.
fn allocate_overlay(
    account: &AccountId,
    taken: &[(IpNet, String)],
    handles: &[&str],
) -> Result<Ipv6Net, ApiError> {
    let h = Sha256::digest(account.as_str().as_bytes());
    let global = u128::from_be_bytes([
        0xfd, h[0], h[1], h[2], h[3], h[4], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let exhausted = || {
        ApiError::new(
            ErrorCode::Exhausted,
            "the account has no free overlay /64 left",
        )
    };
    // Which /64s of the account's /48 the taken prefixes touch, found once
    // (a linear scan of every taken prefix per candidate made creating the
    // n-th network O(n²)): a /64 or longer blocks its own /64, a shorter
    // one a range of them, one covering the /48 all of them.
    let account48 = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(global), 48).expect("48 is valid"));
    let subnet_of = |a: Ipv6Addr| (u128::from(a) >> 64) & 0xffff;
    let mut blocked = std::collections::HashSet::new();
    let mut ranges = Vec::new();
    for (p, _) in taken {
        if !overlap(&account48, p) {
            continue;
        }
        let IpNet::V6(p) = normalized(p) else {
            continue;
        };
        if p.prefix_len() <= 48 {
            return Err(exhausted());
        }
        if p.prefix_len() >= 64 {
            blocked.insert(subnet_of(p.network()));
        } else {
            ranges.push((subnet_of(p.network()), subnet_of(p.broadcast())));
        }
    }
    let handles: std::collections::HashSet<&str> = handles.iter().copied().collect();
    (1u128..=0xffff)
        .find(|s| {
            !blocked.contains(s)
                && !ranges.iter().any(|(a, b)| a <= s && s <= b)
                && !handles.contains(format!("n{s:x}").as_str())
        })
        .map(|s| {
            Ipv6Net::new(Ipv6Addr::from(global | (s << 64)), 64)
                .expect("64 is a valid prefix length")
        })
        .ok_or_else(exhausted)
}

/// The interface handle of a network (`wg-sdwan-<handle>`): its /64's
/// subnet number in the account's /48.
fn handle_of(overlay: &Ipv6Net) -> String {
    let subnet = (u128::from(overlay.network()) >> 64) & 0xffff;
    format!("n{subnet:x}")
}

/// `system_sdwan_create_network({name, pod_subnet_prefix?, routing_mode?})`.
pub async fn create_network(
    ctx: &ActionContext<'_>,
    a: CreateNetworkArgs,
) -> Result<CreateNetworkAnswer, ApiError> {
    check_name("name", &a.name)?;
    let pod = a
        .pod_subnet_prefix
        .as_deref()
        .map(|p| parse_prefix("pod_subnet_prefix", p))
        .transpose()?;
    let id = new_id("net");
    let account = ctx.operator.account.clone();
    allocate(ctx, Guard::AddressSpace, |fleet| {
        let taken = taken_prefixes(fleet, &account);
        let handles: Vec<&str> = fleet
            .account(&account)
            .map(|acc| acc.networks.values().map(|n| n.handle.as_str()).collect())
            .unwrap_or_default();
        // The pod prefix first: a clash is the caller's to fix, whatever
        // overlay the network would get.
        if let Some(pod) = &pod {
            check_clear(pod, taken.iter().cloned())?;
        }
        let reserved: Vec<(IpNet, String)> = taken
            .iter()
            .cloned()
            .chain(pod.map(|p| (p, "this network's pod_subnet_prefix".to_string())))
            .collect();
        let overlay = allocate_overlay(&account, &reserved, &handles)?;
        let vip_base = u128::from(overlay.network()) | VIP_RANGE_HOST;
        let vip_range = Ipv6Net::new(Ipv6Addr::from(vip_base), VIP_RANGE_LEN)
            .expect("120 is a valid prefix length");
        if let Some(pod) = &pod {
            refuse_mapped("pod_subnet_prefix", pod)?;
        }
        Ok(Some(Envelope::new(
            account.clone(),
            ctx.actor(),
            NetworkCreated {
                network_id: id.clone(),
                name: a.name.clone(),
                handle: handle_of(&overlay),
                overlay_prefix: overlay,
                vip_range,
                pod_subnet_prefix: pod,
                routing_mode: a.routing_mode.unwrap_or(RoutingMode::Ibgp),
            },
        )))
    })
    .await?;
    let fleet = ctx.fleet().await;
    Ok(CreateNetworkAnswer {
        network: fleet.network(&account, &id).map(views::network),
    })
}

/// The id of an instance's peer on a network (and of the attaching event).
fn peer_uuid(network_id: &str, instance_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("powernode/peer/{network_id}/{instance_id}").as_bytes(),
    )
}

/// A /64 host id for the instance: 64 bits of a hash of (network,
/// instance) with the top bit set, so it never falls among the reserved low
/// ids or the VIP range `::100/120`; re-hashed in the (2^-63) case it is
/// taken.
fn peer_host(network_id: &str, instance_id: &str, used: &[u128]) -> u128 {
    (0u32..)
        .map(|salt| {
            let h = Sha256::digest(format!("{network_id}/{instance_id}/{salt}").as_bytes());
            let id = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) | (1 << 63);
            u128::from(id)
        })
        .find(|h| !used.contains(h))
        .expect("a free host id exists")
}

/// `system_sdwan_attach_peer({network_id, node_instance_id, lan_subnets?})`.
pub async fn attach_peer(
    ctx: &ActionContext<'_>,
    a: AttachPeerArgs,
) -> Result<AttachPeerAnswer, ApiError> {
    let lans = a
        .lan_subnets
        .iter()
        .map(|s| parse_prefix("lan_subnets", s))
        .collect::<Result<Vec<_>, _>>()?;
    let account = ctx.operator.account.clone();
    // The /128 is derived from the instance, so attaches without LAN
    // subnets take nothing from the account's address space and do not
    // contend; LAN subnets are allocations, guarded like the others.
    let guard = if lans.is_empty() {
        Guard::None
    } else {
        Guard::AddressSpace
    };
    allocate(ctx, guard, |fleet| {
        let network = fleet
            .network(&account, &a.network_id)
            .ok_or_else(|| ApiError::not_found("network", &a.network_id))?;
        match fleet.instance(&account, &a.node_instance_id) {
            Some(i) if i.status != powernode_projections::fleet::InstanceStatus::Terminated => {}
            _ => return Err(ApiError::not_found("instance", &a.node_instance_id)),
        }
        let acc = fleet
            .account(&account)
            .expect("the network's account exists");
        let peers: Vec<_> = acc
            .peers
            .values()
            .filter(|p| p.network_id == a.network_id)
            .collect();
        if peers.iter().any(|p| p.instance_id == a.node_instance_id) {
            return Ok(None);
        }
        // A LAN subnet stays clear of this network's VIP range and overlay,
        // of every other prefix in the account, and of the request's other
        // LANs; the same instance's LANs on its other networks are the same
        // LAN, so they may repeat.
        let own = [
            (
                IpNet::V6(network.vip_range),
                "this network's VIP range".to_string(),
            ),
            (
                IpNet::V6(network.overlay_prefix),
                "this network's overlay".to_string(),
            ),
        ];
        let instance_lans: Vec<IpNet> = acc
            .peers
            .values()
            .filter(|p| p.instance_id == a.node_instance_id)
            .flat_map(|p| p.lan_subnets.iter().copied())
            .collect();
        let others: Vec<(IpNet, String)> = own
            .into_iter()
            .chain(taken_prefixes(fleet, &account))
            .filter(|(p, _)| !instance_lans.contains(p))
            .collect();
        for (k, lan) in lans.iter().enumerate() {
            let earlier = lans[..k]
                .iter()
                .map(|l| (*l, "another LAN subnet of this request".to_string()));
            check_clear(lan, others.iter().cloned().chain(earlier))?;
        }
        for lan in &lans {
            refuse_mapped("lan_subnets", lan)?;
        }
        let base = u128::from(network.overlay_prefix.network());
        let used: Vec<u128> = peers
            .iter()
            .map(|p| u128::from(p.overlay_ip) - base)
            .collect();
        let host = peer_host(&a.network_id, &a.node_instance_id, &used);
        let mut event = Envelope::new(
            account.clone(),
            ctx.actor(),
            PeerAttached {
                network_id: a.network_id.clone(),
                peer_id: format!(
                    "peer-{}",
                    peer_uuid(&a.network_id, &a.node_instance_id).simple()
                ),
                instance_id: a.node_instance_id.clone(),
                overlay_ip: Ipv6Addr::from(base | host),
                lan_subnets: lans.clone(),
            },
        );
        // The same instance attached twice at once is one event.
        event.id = peer_uuid(&a.network_id, &a.node_instance_id);
        Ok(Some(event))
    })
    .await?;
    let fleet = ctx.fleet().await;
    let peer = fleet.account(&account).and_then(|acc| {
        acc.peers
            .values()
            .find(|p| p.network_id == a.network_id && p.instance_id == a.node_instance_id)
            .map(|p| views::peer_with_key(p, acc.wireguard_keys.get(&p.instance_id)))
    });
    Ok(AttachPeerAnswer { peer })
}

/// `system_sdwan_update_network({network_id, pod_subnet_prefix})`: opts a
/// network into routing flannel pod traffic over the overlay. The prefix
/// may be set on a network that already has clusters (migration), but once
/// a live cluster references the network it never changes.
pub async fn update_network(
    ctx: &ActionContext<'_>,
    a: UpdateNetworkArgs,
) -> Result<UpdateNetworkAnswer, ApiError> {
    let pod = parse_prefix("pod_subnet_prefix", &a.pod_subnet_prefix)?;
    let account = ctx.operator.account.clone();
    let appended = allocate(ctx, Guard::AddressSpace, |fleet| {
        let network = fleet
            .network(&account, &a.network_id)
            .ok_or_else(|| ApiError::not_found("network", &a.network_id))?;
        if network.pod_subnet_prefix == Some(pod) {
            return Ok(None);
        }
        if let Some(current) = network.pod_subnet_prefix {
            let referencing: Vec<&str> = fleet
                .clusters(&account, false)
                .into_iter()
                .filter(|c| c.network_id.as_deref() == Some(a.network_id.as_str()))
                .map(|c| c.id.as_str())
                .collect();
            if !referencing.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::PodSubnetPrefixImmutable,
                    format!(
                        "network {} has pod_subnet_prefix {current}, referenced by cluster(s) {}; a k3s pod CIDR cannot change after bootstrap — decommission and rebuild the cluster(s) to move to {pod}",
                        a.network_id,
                        referencing.join(", ")
                    ),
                ));
            }
        }
        let own = [
            (
                IpNet::V6(network.vip_range),
                "this network's VIP range".to_string(),
            ),
            (
                IpNet::V6(network.overlay_prefix),
                "this network's overlay".to_string(),
            ),
        ];
        let others = taken_prefixes(fleet, &account).into_iter().filter(|(p, _)| {
            Some(*p) != network.pod_subnet_prefix
                && *p != IpNet::V6(network.overlay_prefix)
                && *p != IpNet::V6(network.vip_range)
        });
        check_clear(&pod, own.into_iter().chain(others))?;
        refuse_mapped("pod_subnet_prefix", &pod)?;
        Ok(Some(Envelope::new(
            account.clone(),
            ctx.actor(),
            powernode_events::payloads::sdwan::PodSubnetPrefixSet {
                network_id: a.network_id.clone(),
                pod_subnet_prefix: pod,
            },
        )))
    })
    .await?;
    let fleet = ctx.fleet().await;
    Ok(UpdateNetworkAnswer {
        network: fleet.network(&account, &a.network_id).map(views::network),
        changed: appended.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("a prefix")
    }

    #[test]
    fn ipv4_mapped_prefixes_compare_as_ipv4() {
        assert_eq!(
            normalized(&net("::ffff:10.42.0.0/112")),
            net("10.42.0.0/16")
        );
        assert_eq!(normalized(&net("::ffff:0.0.0.0/96")), net("0.0.0.0/0"));
        assert_eq!(normalized(&net("fd00::/64")), net("fd00::/64"));
        assert!(overlap(&net("::ffff:10.42.0.0/112"), &net("10.42.0.0/16")));
        assert!(overlap(&net("10.42.3.0/24"), &net("::ffff:10.42.0.0/112")));
        assert!(!overlap(&net("::ffff:10.43.0.0/112"), &net("10.42.0.0/16")));
        // A short IPv6 prefix covering the whole mapped range covers IPv4 too.
        assert!(overlap(&net("::/64"), &net("10.42.0.0/16")));
        assert!(!overlap(&net("fd00::/8"), &net("10.42.0.0/16")));
    }

    #[test]
    fn mapped_input_is_refused_with_its_ipv4_form() {
        let e = refuse_mapped("pod_subnet_prefix", &net("::ffff:10.77.0.0/112")).unwrap_err();
        assert!(e.message.contains("10.77.0.0/16"), "{}", e.message);
        assert!(refuse_mapped("pod_subnet_prefix", &net("10.77.0.0/16")).is_ok());
        let e = overlap_error(
            &net("::ffff:10.42.0.0/112"),
            &net("10.42.0.0/16"),
            "x".into(),
        );
        assert!(
            e.message
                .contains("::ffff:10.42.0.0/112 (IPv4 10.42.0.0/16)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn overlays_skip_taken_prefixes_and_handles() {
        let account = AccountId::new("acct-test").expect("an account id");
        let first = allocate_overlay(&account, &[], &[]).expect("a /64");
        let taken = vec![(IpNet::V6(first), "x".to_string())];
        let second = allocate_overlay(&account, &taken, &[]).expect("a /64");
        assert_ne!(first, second);
        let by_handle =
            allocate_overlay(&account, &[], &[handle_of(&first).as_str()]).expect("a /64");
        assert_eq!(by_handle, second);
        // A prefix shorter than /64 inside the account's /48 blocks every
        // /64 it covers; a VIP range (/120) blocks its /64; one covering
        // the /48 leaves nothing.
        let wide = Ipv6Net::new(first.network(), 60)
            .expect("60 is valid")
            .trunc();
        let after_wide =
            allocate_overlay(&account, &[(IpNet::V6(wide), "w".into())], &[]).expect("a /64");
        assert!(
            !wide.contains(&after_wide.network()),
            "{after_wide} in {wide}"
        );
        let vip = Ipv6Net::new(Ipv6Addr::from(u128::from(first.network()) | 0x100), 120)
            .expect("120 is valid");
        assert_ne!(
            allocate_overlay(&account, &[(IpNet::V6(vip), "v".into())], &[]).expect("a /64"),
            first
        );
        let all = Ipv6Net::new(first.network(), 40)
            .expect("40 is valid")
            .trunc();
        assert!(allocate_overlay(&account, &[(IpNet::V6(all), "a".into())], &[]).is_err());
    }
}
