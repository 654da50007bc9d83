//! Heartbeats: verified proof of life, answered with what the instance
//! should be doing — its module assignments and its duty for every virtual
//! IP it is a member of (hold it at the newest generation, or not).
//!
//! A heartbeat also says which VIPs the agent holds, at which generation.
//! When that differs from what the log last recorded for the instance, the
//! change is appended (`system.sdwan.virtual_ip.applied`), once per change,
//! never per beat: that is how a split (two agents holding one VIP) is seen,
//! and how an old holder's release after a restart is on the record.
//!
//! The answer also carries the instance's data plane (WireGuard configs,
//! VIPs to probe, its cluster's nodes) and a probe that reached a new
//! holder is recorded as the data-path check: see [`super::dataplane`].

use super::{refusal, validate, Intake, Refusal, MAX_SKEW};
use crate::liveness::SharedLiveness;
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::sdwan::VirtualIpApplied;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::Expect;
use powernode_projections::fleet::InstanceStatus;
use powernode_projections::FleetState;
use powernode_protocol::{Assignment, Heartbeat, HeartbeatReply, HeldVip, VipDuty};
use powernode_runtime::derived_event_id;
use tracing::warn;
use uuid::Uuid;

/// Longest a heartbeat waits for the sequence its nudge named.
const AFTER_SEQ_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Namespace of the ids of `virtual_ip.applied` events.
const APPLIED_NAMESPACE: Uuid = Uuid::from_u128(0x7e1d_a991_0000_4000_8000_6170_706c_6965);

/// Checks a heartbeat: bounded fields, fresh (within [`MAX_SKEW`]), from a known instance,
/// signed with the key it enrolled with. A terminated instance's beat is not
/// checked here (it is answered "terminated" so the agent stops) and never
/// counts as proof of life.
pub fn verify_heartbeat(fleet: &FleetState, hb: &Heartbeat) -> Result<(), Refusal> {
    super::limits::heartbeat(hb)?;
    let now = chrono::Utc::now().timestamp_millis();
    if (now - hb.sent_at_ms).unsigned_abs() > MAX_SKEW.as_millis() as u64 {
        return Err(refusal(
            "stale_heartbeat",
            format!(
                "heartbeat is {} ms away from the platform's clock (max {} ms)",
                now - hb.sent_at_ms,
                MAX_SKEW.as_millis()
            ),
        ));
    }
    let (account, instance) = fleet.find_instance(&hb.instance_id).ok_or_else(|| {
        refusal(
            "unknown_instance",
            format!("no instance {}", hb.instance_id),
        )
    })?;
    if instance.status == InstanceStatus::Terminated {
        return Err(refusal(
            "terminated",
            format!("instance {} is terminated", hb.instance_id),
        ));
    }
    let key = fleet
        .agent_key_in(account, &hb.instance_id)
        .ok_or_else(|| {
            refusal(
                "not_enrolled",
                format!("instance {} has no enrolled key", hb.instance_id),
            )
        })?;
    validate::verify_detached(&key, &hb.bytes_to_sign(), &hb.signature)?;
    super::dataplane::check_vip_addresses(fleet, account, hb)
}

impl Intake {
    /// A heartbeat: verified, remembered (in memory), answered with the
    /// instance's assignments and VIP duties.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, Refusal> {
        self.heartbeat_from(None, hb).await
    }

    /// [`Self::heartbeat`] for a beat that arrived on an instance's own
    /// subject (`pn.agent.heartbeat.<sender>`): a beat of another instance
    /// is refused (`subject_mismatch`).
    pub async fn heartbeat_from(
        &self,
        sender: Option<&str>,
        hb: Heartbeat,
    ) -> Result<HeartbeatReply, Refusal> {
        powernode_log::metrics::heartbeat_received();
        super::limits::heartbeat(&hb)?;
        if let Some(sender) = sender.filter(|s| *s != hb.instance_id) {
            return Err(refusal(
                "subject_mismatch",
                format!(
                    "a heartbeat of instance {} arrived on the subject of instance {sender}; an agent beats only on its own subject",
                    hb.instance_id
                ),
            ));
        }
        if let Some(seq) = hb.after_seq {
            // Nudged about a change at `seq`: answer once the view has it
            // (briefly: the hint is unsigned, so never wait long for it).
            if seq > self.fleet.applied() {
                self.fleet.wait_for(seq, AFTER_SEQ_WAIT).await;
            }
        }
        let fleet = self.fleet.state.read().await;
        let (account, instance) = fleet.find_instance(&hb.instance_id).ok_or_else(|| {
            refusal(
                "unknown_instance",
                format!("no instance {}", hb.instance_id),
            )
        })?;
        let terminated = instance.status == InstanceStatus::Terminated;
        if !terminated {
            verify_heartbeat(&fleet, &hb)?;
            self.liveness.record_heartbeat(&hb);
        }
        let status = match instance.status {
            InstanceStatus::Provisioned => "provisioned",
            InstanceStatus::Enrolled => "enrolled",
            InstanceStatus::Drained => "drained",
            InstanceStatus::Terminated => "terminated",
        };
        let acct = fleet.account(account);
        let assignments: Vec<Assignment> = fleet
            .template(account, &instance.template_id)
            .map(|t| {
                t.assignments_for(&instance.id)
                    .into_iter()
                    .map(|a| Assignment {
                        assignment_id: a.assignment_id.clone(),
                        module_name: a.module_name,
                        target_cluster_id: a.config.target_cluster_id.clone(),
                        version: acct
                            .and_then(|acct| {
                                acct.instance_module_version(&instance.id, a.module_name)
                            })
                            .map(super::upgrade::pin),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let bootstraps = assignments.iter().any(|a: &Assignment| {
            a.module_name == K3sModule::K3sServer
                && a.target_cluster_id.as_deref().is_none_or(str::is_empty)
        });
        let bootstrap_server_flags = if bootstraps {
            crate::services::provisioner::stamp(&fleet, account, &instance.id, None).server_flags
        } else {
            Vec::new()
        };
        let vips = if terminated {
            Vec::new()
        } else {
            vip_duties(&fleet, account, &hb.instance_id, self.liveness())
        };
        let mut changes = if terminated {
            Vec::new()
        } else {
            self.holding_changes(&fleet, account, &hb.instance_id, &hb.held_vips)
        };
        let data_plane = !terminated;
        if data_plane && !hb.vip_probes.is_empty() {
            let mut sent = self
                .reachable_sent
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if sent.len() > 10_000 {
                sent.clear();
            }
            changes.extend(super::dataplane::reachable_events(
                &fleet,
                account,
                &hb.instance_id,
                &hb.vip_probes,
                &mut sent,
            ));
        }
        let mut reply = HeartbeatReply {
            status: status.to_string(),
            assignments,
            cluster_id: instance.cluster_id.clone(),
            bootstrap_server_flags,
            vips,
            wireguard: if data_plane {
                fleet.wireguard_configs_for_instance(account, &hb.instance_id)
            } else {
                Vec::new()
            },
            probe_targets: if data_plane {
                super::dataplane::probe_targets(&fleet, account, instance)
            } else {
                Vec::new()
            },
            cluster_nodes: if data_plane {
                super::dataplane::cluster_nodes(&fleet, account, instance)
            } else {
                Vec::new()
            },
            upgrade: match (terminated, acct) {
                (false, Some(acct)) => super::upgrade::order_for(acct, &instance.id),
                _ => None,
            },
            join_token: None,
        };
        let stale_token = super::token::stale_token(&fleet, &hb);
        drop(fleet);
        if let Some(stale) = stale_token {
            reply.join_token = self.join_token_update(stale).await;
        }
        if !changes.is_empty() {
            // Recorded in the background: the beat is answered at once.
            // A few appends, each tried once: the helper ends on its own,
            // soon, and the node joins it at shutdown.
            let log = self.log.clone();
            let reachable_sent = self.reachable_sent.clone();
            self.spawn_helper(
                format!("intake: VIP holdings of {}", hb.instance_id),
                async move {
                    for event in changes {
                        if let Err(e) = log.append(&event, Expect::Any).await {
                            warn!(error = %e, kind = event.kind(), "could not record a VIP holding change or data-path check; the next heartbeat retries");
                            if let EventPayload::VirtualIpReachable(p) = &event.payload {
                                reachable_sent
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&(p.virtual_ip_id.clone(), p.generation));
                            }
                        }
                    }
                },
            );
        }
        Ok(reply)
    }

    /// `virtual_ip.applied` events for every difference between what the
    /// agent reports holding and what the log last recorded for it.
    fn holding_changes(
        &self,
        fleet: &FleetState,
        account: &AccountId,
        instance_id: &str,
        held: &[HeldVip],
    ) -> Vec<Envelope> {
        let Some(acct) = fleet.account(account) else {
            return Vec::new();
        };
        let peers: Vec<&str> = acct
            .instance_peers
            .get(instance_id)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut reports: Vec<(String, String, u64, bool)> = Vec::new();
        // Held now: recorded unless the log already says so.
        for h in held {
            let Some(vip) = acct.virtual_ips.get(&h.virtual_ip_id) else {
                continue;
            };
            let Some(peer) = peers.iter().find(|p| {
                vip.applied.contains_key(**p)
                    || vip.holder_peer_id == **p
                    || vip.failover_candidate_peer_ids.iter().any(|c| c == *p)
            }) else {
                continue;
            };
            if vip.applied.get(*peer) != Some(&h.generation) {
                reports.push((vip.id.clone(), peer.to_string(), h.generation, true));
            }
        }
        // Recorded as held but no longer reported: released.
        for peer in &peers {
            for vip_id in acct.peer_holdings.get(*peer).into_iter().flatten() {
                let Some(vip) = acct.virtual_ips.get(vip_id) else {
                    continue;
                };
                if let Some(g) = vip.applied.get(*peer) {
                    if !held.iter().any(|h| h.virtual_ip_id == vip.id) {
                        reports.push((vip.id.clone(), peer.to_string(), *g, false));
                    }
                }
            }
        }
        let mut sent = self.applied_sent.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = Vec::new();
        for (vip_id, peer_id, generation, now_held) in reports {
            let key = (vip_id.clone(), instance_id.to_string());
            if sent.get(&key) == Some(&(generation, now_held)) {
                continue;
            }
            sent.insert(key, (generation, now_held));
            let before = fleet
                .virtual_ip(account, &vip_id)
                .and_then(|v| v.applied.get(&peer_id).copied());
            let mut event = Envelope::new(
                account.clone(),
                Actor::service("intake"),
                VirtualIpApplied {
                    virtual_ip_id: vip_id.clone(),
                    instance_id: instance_id.to_string(),
                    peer_id: peer_id.clone(),
                    generation,
                    held: now_held,
                },
            );
            event.id = derived_event_id(
                Uuid::new_v5(&APPLIED_NAMESPACE, vip_id.as_bytes()),
                &format!("{peer_id}/{generation}/{now_held}/{before:?}"),
            );
            event.correlation_id = event.id;
            events.push(event);
        }
        events
    }
}

/// How recently a peer must have been heard for its applied WireGuard
/// revision to hold back a hand-over (a dead peer never blocks one).
const HANDOVER_PEER_FRESH: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The duty of an instance for every VIP it is a member of: the newest
/// generation and whether it is the holder.
///
/// Make before break: a member that still holds an older generation keeps
/// it (`hold` at its own generation) while the data plane still routes the
/// VIP to it: until the new holder reports holding the address, and then
/// until every live peer of the network has applied the WireGuard revision
/// that moved the route. Only then is it told to let go. (Without a
/// registered WireGuard key nothing routes by the VIP's holder, and an old
/// holder lets go at once.)
pub fn vip_duties(
    fleet: &FleetState,
    account: &AccountId,
    instance_id: &str,
    liveness: &SharedLiveness,
) -> Vec<VipDuty> {
    fleet
        .vip_memberships(account, instance_id)
        .into_iter()
        .map(|(vip, peer, holder)| {
            let in_data_plane = fleet
                .account(account)
                .is_some_and(|a| a.wireguard_keys.contains_key(instance_id));
            let handing_over = !holder
                && in_data_plane
                && vip
                    .applied
                    .get(&peer.id)
                    .is_some_and(|g| *g < vip.generation)
                && !handover_done(fleet, account, vip, liveness);
            let generation = if handing_over {
                vip.applied.get(&peer.id).copied().unwrap_or(vip.generation)
            } else {
                vip.generation
            };
            VipDuty {
                virtual_ip_id: vip.id.clone(),
                vip: vip.vip.to_string(),
                generation,
                hold: holder || handing_over,
                network_id: Some(vip.network_id.clone()),
            }
        })
        .collect()
}

/// Whether the data plane routes `vip` to its holder everywhere: the holder
/// holds the newest generation, and every peer of the network heard
/// lately has applied a config at or after the route's move.
fn handover_done(
    fleet: &FleetState,
    account: &AccountId,
    vip: &powernode_projections::fleet::VirtualIp,
    liveness: &SharedLiveness,
) -> bool {
    if vip.route_holder() != vip.holder_peer_id {
        return false;
    }
    let Some(a) = fleet.account(account) else {
        return true;
    };
    let now = chrono::Utc::now();
    a.peers
        .values()
        .filter(|p| p.network_id == vip.network_id && a.wireguard_keys.contains_key(&p.instance_id))
        .filter(|p| {
            liveness
                .last_seen(&p.instance_id)
                .is_some_and(|t| now - t < HANDOVER_PEER_FRESH)
        })
        .all(|p| {
            liveness
                .applied_revision(&p.instance_id, &vip.network_id)
                .is_some_and(|r| r >= vip.route_changed_seq)
        })
}
