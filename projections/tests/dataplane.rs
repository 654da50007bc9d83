//! Given/when/then tests of the data plane's fold details the services
//! rely on: a data-path silence ends with the promotion it causes, node
//! rows keep when they were registered, and a registered key is found by
//! its owner.

mod common;

use common::*;
use powernode_events::payloads::sdwan::{
    SilenceReason, VipHolderSilent, VirtualIpPromoted, WireguardKeyRegistered,
};
use powernode_projections::FleetState;

fn acme() -> (Stream, Ids, powernode_events::AccountId) {
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    bootstrap(&mut s, a, &ids);
    worker_join(&mut s, a, &ids);
    let acct = powernode_events::AccountId::new(a).expect("a valid account id");
    (s, ids, acct)
}

#[test]
fn a_promotion_ends_a_data_path_silence_and_its_reason() {
    let (mut s, ids, acct) = acme();
    s.push(
        "acme",
        VipHolderSilent {
            virtual_ip_id: ids.vip.clone(),
            holder_peer_id: ids.server_peer.clone(),
            last_seen_at: "2026-11-21T12:00:00.000Z".into(),
            threshold_ms: 3000,
            observer: "sensor@test".into(),
            reason: SilenceReason::DataPath,
        },
    );
    let state: FleetState = s.fold();
    let vip = state.virtual_ip(&acct, &ids.vip).expect("the VIP");
    assert!(vip.holder_silent);
    assert_eq!(vip.silence_reason, Some(SilenceReason::DataPath));
    s.push(
        "acme",
        VirtualIpPromoted {
            virtual_ip_id: ids.vip.clone(),
            from_peer_id: Some(ids.server_peer.clone()),
            to_peer_id: ids.worker_peer.clone(),
            generation: 2,
            reason: "auto_failover".into(),
            to_instance_id: None,
            approval_id: None,
        },
    );
    let state: FleetState = s.fold();
    let vip = state.virtual_ip(&acct, &ids.vip).expect("the VIP");
    assert!(!vip.holder_silent);
    assert_eq!(vip.silence_reason, None);
}

#[test]
fn node_rows_keep_when_they_were_registered() {
    let (s, ids, acct) = acme();
    let state: FleetState = s.fold();
    let rows = state.cluster_nodes(&acct, &ids.cluster);
    assert_eq!(rows.len(), 2);
    for row in rows {
        let event_time = s
            .events
            .iter()
            .find(|(seq, _)| *seq == row.registered_seq)
            .map(|(_, e)| e.occurred_at);
        assert_eq!(row.registered_at, event_time, "{row:?}");
    }
}

#[test]
fn a_new_key_frees_the_old_one() {
    let (mut s, ids, acct) = acme();
    let key = |n: u8| powernode_events::wireguard::encode_base64(&[n; 32]);
    for n in [1, 2] {
        s.push(
            "acme",
            WireguardKeyRegistered {
                instance_id: ids.worker.clone(),
                public_key: key(n),
                endpoint: "10.99.0.2:51820".into(),
            },
        );
    }
    let state: FleetState = s.fold();
    assert_eq!(state.wireguard_key_owner(&key(1)), None);
    assert_eq!(
        state.wireguard_key_owner(&key(2)),
        Some((&acct, ids.worker.as_str()))
    );
}
