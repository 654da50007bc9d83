//! Nudges on a data-plane change: when an event changes what a network's
//! tunnels must look like (the projection raised the network's
//! `config_seq` to the event's sequence — a peer attached, a key
//! registered, a VIP allocated, promoted or released, a grant created or
//! revoked, a pod subnet given, a cluster decommissioned, an instance
//! terminated), every agent with a data plane (a registered WireGuard
//! key) and a peer on that network is told to beat
//! now, so it applies the new revision within milliseconds instead of a
//! heartbeat interval later. This is on the failover critical path: a
//! promotion appended → every peer's AllowedIPs updated.

use chrono::{DateTime, Utc};
use powernode_events::Envelope;
use powernode_projections::fleet::InstanceStatus;
use powernode_projections::FleetState;
use std::collections::BTreeSet;

/// Events older than this when decided are being replayed (a restart, a
/// new replica): their change was applied long ago, nobody is nudged.
pub const REPLAY_AGE: chrono::Duration = chrono::Duration::seconds(30);

/// Tell these agents to heartbeat, answered with the view at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    /// The sequence the change landed at.
    pub seq: u64,
    /// The instances to nudge (sorted, each once).
    pub instances: Vec<String>,
}

/// The nudge `event` (folded at `seq`) calls for, if it changed a
/// network's data plane and is not a replay.
pub fn config_nudge(
    state: &FleetState,
    seq: u64,
    event: &Envelope,
    now: DateTime<Utc>,
) -> Option<Nudge> {
    if now - event.occurred_at > REPLAY_AGE {
        return None;
    }
    let account = state.account(&event.account_id)?;
    let changed: BTreeSet<&str> = account
        .networks
        .values()
        .filter(|n| n.config_seq == seq)
        .map(|n| n.id.as_str())
        .collect();
    if changed.is_empty() {
        return None;
    }
    // Only agents running a data plane (a registered key) apply configs;
    // walking the keys, not every peer, keeps this cheap on a fleet whose
    // agents run none.
    let instances: BTreeSet<String> = account
        .wireguard_keys
        .keys()
        .filter(|instance| {
            account
                .instances
                .get(*instance)
                .is_some_and(|i| i.status != InstanceStatus::Terminated)
        })
        .filter(|instance| {
            account
                .instance_peers
                .get(*instance)
                .into_iter()
                .flatten()
                .filter_map(|p| account.peers.get(p))
                .any(|p| changed.contains(p.network_id.as_str()))
        })
        .cloned()
        .collect();
    (!instances.is_empty()).then(|| Nudge {
        seq,
        instances: instances.into_iter().collect(),
    })
}
