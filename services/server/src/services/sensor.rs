//! The sensor: notices when a VIP's holder goes silent.
//!
//! Every few tens of milliseconds it compares, for each allocated VIP, when
//! the holder's agent was last heard ([`crate::liveness`]) with the silence
//! threshold. Past it, `sdwan.vip_holder_silent` is appended — once per
//! silence episode: the event id is derived from the VIP, its generation and
//! the episode number, so the same episode seen again (by this sensor after
//! a restart, or by a second replica) is a duplicate, not a second fact.
//! When the holder is heard again, `sdwan.vip_holder_recovered` ends the
//! episode.
//!
//! A holder that heartbeats but whose VIP the cluster's other agents
//! cannot reach through the tunnel for longer than the threshold is silent
//! too, with reason `data_path` (a zombie holder); a probe reaching it
//! again ends that episode ([`datapath`]).

pub mod datapath;

use crate::liveness::SharedLiveness;
use crate::services::failover::FailoverConfig;
use chrono::{DateTime, Utc};
use powernode_events::payloads::sdwan::{SilenceReason, VipHolderRecovered, VipHolderSilent};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::{Expect, SharedLog};
use powernode_projections::fleet::VipStatus;
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Shared};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// Namespace of the sensor's event ids.
const SENSOR_NAMESPACE: Uuid = Uuid::from_u128(0x5e45_0a11_0000_4000_8000_7369_6c65_6e74);

/// How often the sensor looks: a small fraction of the threshold, so a
/// silence is reported soon after it crosses it.
fn tick_for(threshold: Duration) -> Duration {
    (threshold / 20).clamp(Duration::from_millis(10), Duration::from_millis(50))
}

/// Watches VIP holders until `shutdown`, reading the time from `clock`
/// (the wall clock; tests pass one that follows tokio's paused time).
pub async fn run_detector(
    log: SharedLog,
    shared: Shared<FleetState>,
    liveness: SharedLiveness,
    config: FailoverConfig,
    clock: impl Fn() -> DateTime<Utc> + Send + 'static,
    shutdown: CancellationToken,
) {
    let threshold = config.threshold();
    let observer = config.observer.clone().unwrap_or_else(|| {
        format!(
            "sensor@{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into())
        )
    });
    info!(threshold_ms = threshold.as_millis() as u64, %observer, "watching VIP holders");
    let mut tick = tokio::time::interval(tick_for(threshold));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Episodes this process has reported, until the projection shows them.
    let mut reported: HashSet<Uuid> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock();
        let events = {
            let state = shared.state.read().await;
            observe(&state, &liveness, threshold, &observer, now)
        };
        for event in events {
            if !reported.insert(event.id) {
                continue;
            }
            match log.append(&event, Expect::Any).await {
                Ok(a) if !a.duplicate => {
                    info!(kind = event.kind(), seq = a.seq, "{}", describe(&event))
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "could not record a holder's silence; retrying");
                    reported.remove(&event.id);
                }
            }
        }
        if reported.len() > 100_000 {
            reported.clear();
        }
    }
}

fn describe(event: &Envelope) -> String {
    match &event.payload {
        EventPayload::VipHolderSilent(p) => format!(
            "VIP {} holder {} silent ({}) since {}",
            p.virtual_ip_id,
            p.holder_peer_id,
            match p.reason {
                SilenceReason::Heartbeat => "no heartbeat",
                SilenceReason::DataPath => "heartbeats, but its VIP does not answer",
            },
            p.last_seen_at
        ),
        EventPayload::VipHolderRecovered(p) => format!(
            "VIP {} holder {} heard again after {} ms",
            p.virtual_ip_id, p.holder_peer_id, p.silent_for_ms
        ),
        EventPayload::AccountCreated(_)
        | EventPayload::OperatorTokenIssued(_)
        | EventPayload::OperatorTokenRevoked(_)
        | EventPayload::TemplateCreated(_)
        | EventPayload::NodeCreated(_)
        | EventPayload::InstanceProvisioned(_)
        | EventPayload::AgentEnrolled(_)
        | EventPayload::InstanceDrained(_)
        | EventPayload::InstanceTerminated(_)
        | EventPayload::AgentSubmissionRejected(_)
        | EventPayload::NetworkCreated(_)
        | EventPayload::PodSubnetPrefixSet(_)
        | EventPayload::PeerAttached(_)
        | EventPayload::VirtualIpAllocated(_)
        | EventPayload::VirtualIpAllocationFailed(_)
        | EventPayload::VirtualIpCandidateAdded(_)
        | EventPayload::VirtualIpPromoted(_)
        | EventPayload::VirtualIpReleased(_)
        | EventPayload::FailoverProposed(_)
        | EventPayload::FailoverNoCandidate(_)
        | EventPayload::FailoverSuppressed(_)
        | EventPayload::VirtualIpApplied(_)
        | EventPayload::VirtualIpReachable(_)
        | EventPayload::WireguardKeyRegistered(_)
        | EventPayload::AccessGrantCreated(_)
        | EventPayload::AccessGrantRevoked(_)
        | EventPayload::ModuleAssigned(_)
        | EventPayload::RuntimeInstalling(_)
        | EventPayload::HandshakeBootstrap(_)
        | EventPayload::HandshakeJoinRequest(_)
        | EventPayload::JoinTokenIssued(_)
        | EventPayload::JoinRejected(_)
        | EventPayload::HandshakeReady(_)
        | EventPayload::BootstrapRejected(_)
        | EventPayload::JoinTokenRotated(_)
        | EventPayload::ClusterBootstrapped(_)
        | EventPayload::ClusterActivated(_)
        | EventPayload::NodeRegistered(_)
        | EventPayload::ClusterDecommissioned(_)
        | EventPayload::PodSubnetPrefixIgnored(_)
        | EventPayload::KubeconfigRetrieved(_)
        | EventPayload::McpToolCalled(_)
        | EventPayload::ModuleVersionCreated(_)
        | EventPayload::SkillExecutionStarted(_)
        | EventPayload::SkillStepStarted(_)
        | EventPayload::SkillStepSucceeded(_)
        | EventPayload::SkillStepFailed(_)
        | EventPayload::SkillExecutionPaused(_)
        | EventPayload::SkillExecutionResumed(_)
        | EventPayload::SkillExecutionCompleted(_)
        | EventPayload::SkillExecutionAborted(_)
        | EventPayload::ModuleUpgraded(_)
        | EventPayload::ModuleUpgradeFailed(_)
        | EventPayload::AgentOutdated(_)
        | EventPayload::ApprovalRequested(_)
        | EventPayload::ApprovalGranted(_)
        | EventPayload::ApprovalRejected(_)
        | EventPayload::ApprovalExpired(_)
        | EventPayload::ApprovalSuperseded(_)
        | EventPayload::RecordRejected(_)
        | EventPayload::LogSealed(_)
        | EventPayload::AgentSubmissionsRejectedSummary(_) => event.kind().to_string(),
    }
}

/// Whether `prober`'s probes of `vip` are evidence about its holder: the
/// prober is of the VIP's account, its tunnel already routes the VIP where
/// the log says (it applied the route's move and the holder's key), and
/// the holder's tunnel already knows the prober (it applied the prober's
/// key and peer), so an answer could come back. A probe that fails before
/// both sides have their configs says nothing about the holder.
fn probe_counts(
    account: &powernode_projections::fleet::AccountState,
    liveness: &crate::liveness::Liveness,
    vip: &powernode_projections::fleet::VirtualIp,
    holder: &str,
    prober: &str,
) -> bool {
    if !account.instances.contains_key(prober) {
        return false;
    }
    let known_since = |instance: &str| {
        let key = account
            .wireguard_keys
            .get(instance)
            .map(|k| k.registered_seq);
        let peer = account
            .peers
            .values()
            .filter(|p| p.instance_id == instance && p.network_id == vip.network_id)
            .map(|p| p.attached_seq)
            .max();
        key.max(peer).unwrap_or(u64::MAX)
    };
    let applied = |instance: &str| liveness.applied_revision(instance, &vip.network_id);
    let prober_ready =
        applied(prober).is_some_and(|r| r >= vip.route_changed_seq.max(known_since(holder)));
    let holder_ready = applied(holder).is_some_and(|r| r >= known_since(prober));
    prober_ready && holder_ready
}

/// The silence and recovery events the state and liveness call for now.
pub fn observe(
    state: &FleetState,
    liveness: &crate::liveness::Liveness,
    threshold: Duration,
    observer: &str,
    now: DateTime<Utc>,
) -> Vec<Envelope> {
    let mut out = Vec::new();
    for (account_id, account) in state.accounts() {
        for vip in account.virtual_ips.values() {
            if vip.status != VipStatus::Allocated {
                continue;
            }
            let Some(peer) = account.peers.get(&vip.holder_peer_id) else {
                continue;
            };
            let heard = liveness.heard_or_start(&peer.instance_id);
            // A fresh holder gets the threshold from its promotion to be heard.
            let since_promotion = vip.promotions.last().map(|p| p.at);
            let reference = since_promotion.map_or(heard, |p| p.max(heard));
            let quiet = (now - reference).to_std().unwrap_or_default();
            let episode = format!("{}/{}/{}", vip.id, vip.generation, vip.silence_episodes);
            let path = || {
                datapath::assess(
                    &liveness.probes(&vip.id),
                    &peer.instance_id,
                    vip.generation,
                    |prober| probe_counts(account, liveness, vip, &peer.instance_id, prober),
                    since_promotion,
                    threshold,
                    now,
                )
            };
            let silent = |last_seen: DateTime<Utc>, reason| {
                event(
                    account_id,
                    &format!("silent/{episode}"),
                    VipHolderSilent {
                        virtual_ip_id: vip.id.clone(),
                        holder_peer_id: vip.holder_peer_id.clone(),
                        last_seen_at: last_seen
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        threshold_ms: threshold.as_millis() as u64,
                        observer: observer.to_string(),
                        reason,
                    },
                )
            };
            let recovered = |silent_for: chrono::Duration| {
                event(
                    account_id,
                    &format!("recovered/{episode}"),
                    VipHolderRecovered {
                        virtual_ip_id: vip.id.clone(),
                        holder_peer_id: vip.holder_peer_id.clone(),
                        silent_for_ms: silent_for.num_milliseconds().max(0) as u64,
                    },
                )
            };
            let silent_since = vip
                .silent_since
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc));
            match (vip.holder_silent, vip.silence_reason) {
                (false, _) if quiet > threshold => {
                    out.push(silent(reference, SilenceReason::Heartbeat));
                }
                // Heard: is its VIP reachable through the tunnel? Judged
                // once it was promoted, or reached once since allocation
                // (a cluster still starting is not a zombie).
                (false, _) if since_promotion.is_some() || vip.reachable.is_some() => {
                    if let datapath::DataPath::Unreachable(bad_since) = path() {
                        let from = since_promotion.map_or(bad_since, |p| p.max(bad_since));
                        if (now - from).to_std().unwrap_or_default() > threshold {
                            out.push(silent(from, SilenceReason::DataPath));
                        }
                    }
                }
                (false, _) => {}
                (true, Some(SilenceReason::DataPath)) => {
                    if let (datapath::DataPath::Reachable(at), Some(since)) = (path(), silent_since)
                    {
                        if at > since {
                            out.push(recovered(at - since));
                        }
                    }
                }
                (true, _) => {
                    if let Some(since) = silent_since.filter(|s| heard > *s && quiet <= threshold) {
                        out.push(recovered(heard - since));
                    }
                }
            }
        }
    }
    out
}

fn event(account: &AccountId, tag: &str, payload: impl Into<EventPayload>) -> Envelope {
    let mut e = Envelope::new(account.clone(), Actor::service("sensor"), payload);
    e.id = derived_event_id(SENSOR_NAMESPACE, tag);
    e.correlation_id = e.id;
    e
}

#[cfg(test)]
mod tests;
