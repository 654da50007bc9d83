//! Given/when/then tests of the data plane's fold: who gets which
//! WireGuard peers and AllowedIPs, the gateway, grants, revisions, and the
//! make-before-break route of a VIP.

mod common;

use common::*;
use ipnet::IpNet;
use powernode_events::payloads::sdwan::{
    AccessGrantCreated, AccessGrantEnd, AccessGrantRevoked, VirtualIpApplied, VirtualIpPromoted,
    WireguardKeyRegistered,
};
use powernode_events::wireguard::{encode_base64, WireguardConfig};
use powernode_projections::FleetState;

const SERVER_KEY: u8 = 1;
const WORKER_KEY: u8 = 2;

fn key(n: u8) -> String {
    encode_base64(&[n; 32])
}

fn keyed(a: &str, ids: &Ids) -> Stream {
    let mut s = Stream::new();
    setup(&mut s, a, ids);
    bootstrap(&mut s, a, ids);
    worker_join(&mut s, a, ids);
    for (inst, k, ip) in [
        (&ids.server, SERVER_KEY, "10.99.0.2"),
        (&ids.worker, WORKER_KEY, "10.99.0.3"),
    ] {
        s.push(
            a,
            WireguardKeyRegistered {
                instance_id: inst.clone(),
                public_key: key(k),
                endpoint: format!("{ip}:51820"),
            },
        );
    }
    s
}

fn config(state: &FleetState, a: &str, peer: &str) -> WireguardConfig {
    state
        .wireguard_config(&acct(a), peer)
        .unwrap_or_else(|| panic!("no config for {peer}"))
}

fn allowed(c: &WireguardConfig, id: &str) -> Vec<String> {
    c.peers
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("{id} is not a peer of {}", c.interface))
        .allowed_ips
        .iter()
        .map(IpNet::to_string)
        .collect()
}

#[test]
fn peers_without_a_key_have_no_config_and_are_nobody_s_peer() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    bootstrap(&mut s, a, &ids);
    s.push(
        a,
        WireguardKeyRegistered {
            instance_id: ids.server.clone(),
            public_key: key(SERVER_KEY),
            endpoint: "10.99.0.2:51820".into(),
        },
    );
    let state = s.fold();
    assert!(state.wireguard_config(&acct(a), &ids.worker_peer).is_none());
    let server = config(&state, a, &ids.server_peer);
    assert!(server.peers.is_empty(), "{server:?}");
    assert_eq!(server.interface, "wg-sdwan-acme");
    assert_eq!(server.listen_port, 51820);
}

#[test]
fn a_full_mesh_routes_each_peer_s_address_vip_and_pod_subnet() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let state = keyed(a, &ids).fold();
    let server = config(&state, a, &ids.server_peer);
    let worker = config(&state, a, &ids.worker_peer);
    // The worker holds no VIP duty: it is the gateway and forwards.
    assert!(worker.forwarding && !server.forwarding);
    assert_eq!(
        state
            .wireguard_gateway(&acct(a), &ids.network)
            .map(|p| p.id.as_str()),
        Some(ids.worker_peer.as_str())
    );
    assert_eq!(
        allowed(&worker, &ids.server_peer),
        ["10.42.0.0/24", "fd00:abcd:1::5/128", "fd00:abcd:1::100/128"]
    );
    assert_eq!(
        allowed(&server, &ids.worker_peer),
        ["10.42.1.0/24", "fd00:abcd:1::6/128"]
    );
    let p = &worker.peers[0];
    assert_eq!(p.public_key, key(SERVER_KEY));
    assert_eq!(p.endpoint.as_deref(), Some("10.99.0.2:51820"));
    assert_eq!(server.revision, worker.revision);
}

#[test]
fn a_grant_is_a_peer_of_its_gateway_and_routed_through_it_everywhere_else() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = keyed(a, &ids);
    let before = config(&s.fold(), a, &ids.server_peer).revision;
    s.push(
        a,
        AccessGrantCreated {
            grant_id: "grant-1".into(),
            network_id: ids.network.clone(),
            name: "laptop".into(),
            public_key: key(9),
            address: "fd00:abcd:1::ff01".parse().unwrap(),
            gateway_peer_id: ids.worker_peer.clone(),
            expires_at: None,
        },
    );
    let state = s.fold();
    let server = config(&state, a, &ids.server_peer);
    let worker = config(&state, a, &ids.worker_peer);
    assert!(server.revision > before, "a grant changes the revision");
    assert!(allowed(&server, &ids.worker_peer).contains(&"fd00:abcd:1::ff01/128".to_string()));
    assert_eq!(allowed(&worker, "grant-1"), ["fd00:abcd:1::ff01/128"]);
    assert!(worker
        .peers
        .iter()
        .any(|p| p.id == "grant-1" && p.endpoint.is_none()));
    // Revoked: gone everywhere.
    s.push(
        a,
        AccessGrantRevoked {
            grant_id: "grant-1".into(),
            network_id: ids.network.clone(),
            reason: AccessGrantEnd::Expired,
        },
    );
    let state = s.fold();
    let server = config(&state, a, &ids.server_peer);
    let worker = config(&state, a, &ids.worker_peer);
    assert!(!allowed(&server, &ids.worker_peer).contains(&"fd00:abcd:1::ff01/128".to_string()));
    assert!(worker.peers.iter().all(|p| p.id != "grant-1"));
}

#[test]
fn a_promoted_vip_moves_only_once_its_new_holder_holds_it() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = keyed(a, &ids);
    let applied = |peer: &str, inst: &str, generation: u64, held: bool| VirtualIpApplied {
        virtual_ip_id: ids.vip.clone(),
        instance_id: inst.into(),
        peer_id: peer.into(),
        generation,
        held,
    };
    s.push(a, applied(&ids.server_peer, &ids.server, 1, true));
    s.push(
        a,
        VirtualIpPromoted {
            virtual_ip_id: ids.vip.clone(),
            from_peer_id: Some(ids.server_peer.clone()),
            to_peer_id: ids.worker_peer.clone(),
            generation: 2,
            reason: "drain".into(),
            to_instance_id: Some(ids.worker.clone()),
            approval_id: None,
        },
    );
    let state = s.fold();
    let vip_route = "fd00:abcd:1::100/128".to_string();
    // Promoted, but the new holder has not added the address yet: the old
    // holder still gets the traffic (make before break).
    let worker = config(&state, a, &ids.worker_peer);
    assert!(allowed(&worker, &ids.server_peer).contains(&vip_route));
    let moved_at = config(&state, a, &ids.server_peer).revision;
    s.push(a, applied(&ids.worker_peer, &ids.worker, 2, true));
    let state = s.fold();
    let server = config(&state, a, &ids.server_peer);
    let worker = config(&state, a, &ids.worker_peer);
    assert!(allowed(&server, &ids.worker_peer).contains(&vip_route));
    assert!(!allowed(&worker, &ids.server_peer).contains(&vip_route));
    assert!(server.revision > moved_at);
    let vip = &state.account(&acct(a)).unwrap().virtual_ips[&ids.vip];
    assert_eq!(vip.route_holder(), ids.worker_peer);
    assert_eq!(vip.route_changed_seq, server.revision);
}

#[test]
fn the_key_index_names_the_newest_registration() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = keyed(a, &ids);
    assert_eq!(
        s.fold().wireguard_key_owner(&key(SERVER_KEY)),
        Some((&acct(a), ids.server.as_str()))
    );
    s.push(
        a,
        WireguardKeyRegistered {
            instance_id: ids.server.clone(),
            public_key: key(7),
            endpoint: "10.99.0.2:51821".into(),
        },
    );
    let state = s.fold();
    assert_eq!(state.wireguard_key_owner(&key(SERVER_KEY)), None);
    assert_eq!(
        state.wireguard_key_owner(&key(7)),
        Some((&acct(a), ids.server.as_str()))
    );
    assert_eq!(config(&state, a, &ids.server_peer).listen_port, 51821);
}
