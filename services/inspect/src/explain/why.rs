//! The "why" of `events explain`: one sentence per event, and the walk
//! backwards from the event that set the object's key state through its
//! causes (causation ids, and an approval decision back to its request).

use super::object::{peer_label, ObjectKind};
use super::{Link, Lookup};
use powernode_events::{Envelope, EventPayload};
use powernode_projections::FleetState;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use uuid::Uuid;

/// How far back the walk goes.
const MAX_STEPS: usize = 12;

/// The short answer: what the object's key state is, and the events that
/// led to it, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Why {
    /// The key state in one sentence (`inst-b (peer p-2) holds fd00::1 at generation 2`).
    pub answer: String,
    /// The event that set it, then its cause, then that one's, …
    pub steps: Vec<WhyStep>,
}

/// One event on the walk back.
#[derive(Debug, Clone, Serialize)]
pub struct WhyStep {
    /// How it relates to the step before: `set it` (the first), `caused by`,
    /// `decided the request of`.
    pub relation: &'static str,
    /// Its sequence (absent when the event is not in the log).
    pub seq: Option<u64>,
    /// Its id.
    pub id: Uuid,
    /// Its kind, when known.
    pub kind: Option<String>,
    /// Who caused it, when known.
    pub actor: Option<String>,
    /// What it did, in words.
    pub text: String,
}

/// The key state of an object whose view is `v`, in one sentence.
pub fn answer(kind: ObjectKind, id: &str, v: &Value) -> String {
    let s = |key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    if v.is_null() {
        return format!("{} {id} does not exist at this point", kind.label());
    }
    match kind {
        ObjectKind::VirtualIp if s("status") == "released" => format!(
            "VIP {} was released: {}",
            s("vip"),
            v["release_reason"].as_str().unwrap_or("no reason given")
        ),
        ObjectKind::VirtualIp => format!(
            "{} (peer {}) holds VIP {} at generation {}",
            s("holder_instance_id"),
            s("holder_peer_id"),
            s("vip"),
            v["generation"]
        ),
        ObjectKind::Cluster => format!("cluster {} ({id}) is {}", s("name"), s("status")),
        ObjectKind::Approval => {
            let mut out = format!("approval {id} is {}", s("status"));
            if let Some(by) = super::object::actor_text(&v["decided_by"]) {
                out.push_str(&format!(", decided by {by}"));
            }
            out
        }
        ObjectKind::Instance => format!(
            "instance {id} is {}, k3s phase {}, cluster {}",
            s("status"),
            s("k3s_phase"),
            s("cluster_id")
        ),
        ObjectKind::Node | ObjectKind::Network | ObjectKind::Peer | ObjectKind::Template => {
            format!("{} {id} exists", kind.label())
        }
    }
}

/// Walks back from `key` (the event that set the key state).
pub(super) fn walk(lookup: &Lookup<'_>, state: &FleetState, key: (u64, &Envelope)) -> Vec<WhyStep> {
    let mut steps = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(("set it", key));
    while let Some((relation, (seq, ev))) = next.take() {
        if !seen.insert(ev.id) || steps.len() >= MAX_STEPS {
            break;
        }
        steps.push(WhyStep {
            relation,
            seq: Some(seq),
            id: ev.id,
            kind: Some(ev.kind().to_string()),
            actor: Some(ev.actor.to_string()),
            text: describe(ev, state),
        });
        if let Some(cause) = ev.causation_id {
            match lookup.event(cause) {
                Some(found) => next = Some(("caused by", found)),
                None => steps.push(untraced("caused by", cause, lookup.link(cause))),
            }
            continue;
        }
        let request = match &ev.payload {
            EventPayload::ApprovalGranted(p) => Some(&p.approval_id),
            EventPayload::ApprovalRejected(p) => Some(&p.approval_id),
            EventPayload::ApprovalExpired(p) => Some(&p.approval_id),
            EventPayload::ApprovalSuperseded(p) => Some(&p.approval_id),
            _ => None,
        };
        next = request
            .and_then(|a| lookup.approval_request(a))
            .map(|found| ("decided the request of", found));
    }
    steps
}

/// A cause whose payload was not kept (or that is not in the log at all).
fn untraced(relation: &'static str, id: Uuid, link: Link) -> WhyStep {
    let text = if link.seq.is_some() {
        "its details were not kept (too far back in the log)".to_string()
    } else {
        format!("event {id} is not in the log (a submission that was not appended)")
    };
    WhyStep {
        relation,
        seq: link.seq,
        id,
        kind: link.kind,
        actor: link.actor,
        text,
    }
}

fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// What an event did, in words.
pub fn describe(ev: &Envelope, state: &FleetState) -> String {
    let acct = &ev.account_id;
    let peer = |p: &str| peer_label(state, acct, p);
    match &ev.payload {
        EventPayload::VipHolderSilent(p) => format!(
            "holder {} not heard since {} (threshold {} ms, observer {})",
            peer(&p.holder_peer_id),
            p.last_seen_at,
            p.threshold_ms,
            p.observer
        ),
        EventPayload::VipHolderRecovered(p) => format!(
            "holder {} heard again after {} ms",
            peer(&p.holder_peer_id),
            p.silent_for_ms
        ),
        EventPayload::FailoverProposed(p) => format!(
            "proposed moving the VIP from {} to {} (score {:.2}, {} candidate(s)); approval {}",
            peer(&p.current_holder_peer_id),
            peer(&p.candidate_peer_id),
            p.score,
            p.candidates.len(),
            p.approval_id
        ),
        EventPayload::FailoverNoCandidate(p) => format!("no failover candidate: {}", p.reason),
        EventPayload::FailoverSuppressed(p) => format!("failover held back: {}", p.reason),
        EventPayload::ApprovalRequested(p) => format!(
            "asked an operator to approve {} (expires {}): {}",
            p.approval_id, p.expires_at, p.summary
        ),
        EventPayload::ApprovalGranted(p) => format!("{} approved {}", ev.actor, p.approval_id),
        EventPayload::ApprovalRejected(p) => {
            format!("{} rejected {}: {}", ev.actor, p.approval_id, p.reason)
        }
        EventPayload::ApprovalExpired(p) => format!("{} expired undecided", p.approval_id),
        EventPayload::ApprovalSuperseded(p) => {
            format!("{} superseded: {}", p.approval_id, p.reason)
        }
        EventPayload::VirtualIpPromoted(p) => {
            let from = p.from_peer_id.as_deref().map_or("-".into(), peer);
            let mut out = format!(
                "promoted {} over {from} to generation {} ({})",
                peer(&p.to_peer_id),
                p.generation,
                p.reason
            );
            if let Some(a) = &p.approval_id {
                out.push_str(&format!(", approval {a}"));
            }
            out
        }
        EventPayload::VirtualIpAllocated(p) => format!(
            "allocated {} for cluster {} with {} as holder",
            p.vip,
            p.cluster_id,
            peer(&p.primary_holder_peer_id)
        ),
        EventPayload::VirtualIpAllocationFailed(p) => format!(
            "no VIP for cluster {}: {} (endpoint {})",
            p.cluster_id, p.reason, p.fallback_api_endpoint
        ),
        EventPayload::VirtualIpCandidateAdded(p) => {
            format!("{} became a failover candidate", peer(&p.peer_id))
        }
        EventPayload::VirtualIpApplied(p) => format!(
            "agent of {} reports {} the VIP at generation {}",
            p.instance_id,
            if p.held { "holding" } else { "not holding" },
            p.generation
        ),
        EventPayload::VirtualIpReleased(p) => format!("VIP released: {}", p.reason),
        EventPayload::VirtualIpReachable(p) => format!(
            "a probe from {} reached {} through the VIP at generation {}",
            peer(&p.probed_by_peer_id),
            peer(&p.holder_peer_id),
            p.generation
        ),
        EventPayload::WireguardKeyRegistered(p) => format!(
            "agent of {} registered WireGuard key {} at {}",
            p.instance_id, p.public_key, p.endpoint
        ),
        EventPayload::AccessGrantCreated(p) => format!(
            "access grant {} ({}) created through gateway {}",
            p.grant_id,
            p.name,
            peer(&p.gateway_peer_id)
        ),
        EventPayload::AccessGrantRevoked(p) => {
            format!("access grant {} ended ({:?})", p.grant_id, p.reason)
        }
        EventPayload::InstanceDrained(p) => format!("{} drained {}", ev.actor, p.instance_id),
        EventPayload::InstanceTerminated(p) => {
            format!("{} terminated {}", ev.actor, p.instance_id)
        }
        EventPayload::HandshakeBootstrap(p) => format!(
            "agent of {} bootstrapped k3s {} (a new cluster)",
            p.instance_id, p.k3s_version
        ),
        EventPayload::HandshakeReady(p) => format!(
            "agent of {} reported node {} ready in {}",
            p.instance_id, p.node_name, p.cluster_id
        ),
        EventPayload::HandshakeJoinRequest(p) => format!(
            "agent of {} asked to join {} as {}",
            p.instance_id,
            p.target_cluster_id
                .as_deref()
                .unwrap_or("the newest active cluster"),
            name(&p.module_name)
        ),
        EventPayload::JoinTokenIssued(p) => {
            format!("{} may join {}", p.instance_id, p.cluster_id)
        }
        EventPayload::JoinRejected(p) => format!("join of {} refused: {}", p.instance_id, p.reason),
        EventPayload::BootstrapRejected(p) => {
            format!("bootstrap of {} refused: {}", p.instance_id, p.reason)
        }
        EventPayload::ClusterBootstrapped(p) => format!(
            "cluster {} created by its bootstrap server {} (endpoint {}, {})",
            p.name,
            p.bootstrap_instance_id,
            p.api_endpoint,
            name(&p.cni_plugin)
        ),
        EventPayload::ClusterActivated(p) => format!("cluster {} became active", p.cluster_id),
        EventPayload::NodeRegistered(p) => format!(
            "{} registered in {} as {}",
            p.instance_id,
            p.cluster_id,
            name(&p.role)
        ),
        EventPayload::ClusterDecommissioned(p) => {
            format!("{} decommissioned {}", ev.actor, p.cluster_id)
        }
        EventPayload::ModuleAssigned(p) => format!(
            "{} assigned {} to template {}{}",
            ev.actor,
            name(&p.module_name),
            p.template_id,
            p.config
                .target_cluster_id
                .as_deref()
                .map_or(String::new(), |c| format!(" targeting {c}"))
        ),
        EventPayload::InstanceProvisioned(p) => format!(
            "{} provisioned {} on node {}",
            ev.actor, p.instance_id, p.node_id
        ),
        EventPayload::AgentEnrolled(p) => format!("agent of {} enrolled its key", p.instance_id),
        EventPayload::PeerAttached(p) => format!(
            "{} attached {} to network {} as {} ({})",
            ev.actor, p.instance_id, p.network_id, p.peer_id, p.overlay_ip
        ),
        EventPayload::AccountCreated(_)
        | EventPayload::OperatorTokenIssued(_)
        | EventPayload::OperatorTokenRevoked(_)
        | EventPayload::TemplateCreated(_)
        | EventPayload::NodeCreated(_)
        | EventPayload::AgentSubmissionRejected(_)
        | EventPayload::NetworkCreated(_)
        | EventPayload::PodSubnetPrefixSet(_)
        | EventPayload::RuntimeInstalling(_)
        | EventPayload::JoinTokenRotated(_)
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
        | EventPayload::RecordRejected(_)
        | EventPayload::LogSealed(_)
        | EventPayload::AgentSubmissionsRejectedSummary(_) => generic(ev),
    }
}

/// `key=value …` of a payload: fingerprints and keys left out, cut at 140 characters.
fn generic(ev: &Envelope) -> String {
    let v = serde_json::to_value(&ev.payload).unwrap_or(Value::Null);
    let mut parts = Vec::new();
    if let Value::Object(m) = &v {
        for (k, x) in m {
            if k.contains("fingerprint") || k == "public_key" || x.is_null() {
                continue;
            }
            let x = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{k}={x}"));
        }
    }
    if parts.is_empty() {
        return ev.kind().to_string();
    }
    let text = parts.join(" ");
    if text.chars().count() > 140 {
        format!("{}…", text.chars().take(139).collect::<String>())
    } else {
        text
    }
}
