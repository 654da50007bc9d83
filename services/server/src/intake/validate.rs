//! The intake's checks: attribution, signature, freshness, and what each
//! handshake kind may claim.

use super::{limits, refusal, Refusal, MAX_SKEW};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_projections::fleet::ClusterStatus;
use powernode_projections::FleetState;
use powernode_protocol::{fingerprint, BootstrapSecrets, Submission};
use powernode_runtime::Shared;

/// A refused submission, with whom to record the refusal against.
pub(super) struct Rejected {
    pub refusal: Refusal,
    /// (account, instance) the refusal is recorded under: only when the
    /// submission was signed with that instance's enrolled key. A refusal
    /// nobody verified is only counted (see `super::summary`), so junk from
    /// unauthenticated senders cannot grow the log.
    pub attributed: Option<(AccountId, String)>,
    /// The decoded event, when it could be decoded.
    pub event: Option<Envelope>,
}

/// The instance an agent event reports about.
fn reported_instance(payload: &EventPayload) -> Option<&str> {
    Some(match payload {
        EventPayload::RuntimeInstalling(p) => &p.instance_id,
        EventPayload::HandshakeBootstrap(p) => &p.instance_id,
        EventPayload::HandshakeJoinRequest(p) => &p.instance_id,
        EventPayload::HandshakeReady(p) => &p.instance_id,
        EventPayload::WireguardKeyRegistered(p) => &p.instance_id,
        EventPayload::ModuleUpgraded(p) => &p.instance_id,
        EventPayload::ModuleUpgradeFailed(p) => &p.instance_id,
        _ => return None,
    })
}

/// Why an agent event's id is unacceptable, if it is. Agent events carry
/// fresh UUIDv7 ids (timestamp within [`MAX_SKEW`] of now): services mint
/// deterministic UUIDv5 ids for their decisions (and random v7 ones), so an
/// agent can never pre-claim the id of a fact a service will record.
pub(super) fn event_id_problem(
    id: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    if id.get_version() != Some(uuid::Version::SortRand) {
        return Some(format!(
            "event id {id} is not a UUIDv7 (version {}); an agent event carries a fresh UUIDv7 id",
            id.get_version_num()
        ));
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let at_ms = i128::from(secs) * 1000 + i128::from(nanos / 1_000_000);
    let skew = i128::from(now.timestamp_millis()) - at_ms;
    if skew.unsigned_abs() > MAX_SKEW.as_millis() {
        return Some(format!(
            "event id {id} was made {skew} ms from now (max {} ms); an agent event carries a fresh UUIDv7 id",
            MAX_SKEW.as_millis()
        ));
    }
    None
}

/// Decodes and verifies a submission; answers the event to append.
/// `sender`: the instance whose own subject the submission arrived on, if
/// it came on one.
///
/// Order matters: the size cap first (nothing is decoded from an oversized
/// submission), then the signature against the enrolled key, and only
/// then the checks whose refusals are recorded one by one.
pub(super) async fn admit(
    fleet: &Shared<FleetState>,
    s: &Submission,
    sender: Option<&str>,
) -> Result<Envelope, Rejected> {
    let bare = |refusal| Rejected {
        refusal,
        attributed: None,
        event: None,
    };
    limits::submission(s).map_err(bare)?;
    let bytes = hex::decode(&s.event)
        .map_err(|e| bare(refusal("malformed_event", format!("event is not hex: {e}"))))?;
    let event = Envelope::decode(&bytes).map_err(|e| {
        bare(refusal(
            "malformed_event",
            format!("event does not decode: {e}"),
        ))
    })?;
    let Actor::Agent { instance_id: actor } = &event.actor else {
        return Err(bare(refusal(
            "not_an_agent_event",
            format!("the event's actor is {}, not an agent", event.actor),
        )));
    };
    limits::id("actor.instance_id", actor).map_err(bare)?;
    let actor = actor.clone();
    let fleet = fleet.state.read().await;
    // Not verified yet: refusals are counted, not recorded.
    let unverified = |refusal, event| Rejected {
        refusal,
        attributed: None,
        event: Some(event),
    };
    let Some((home, _)) = fleet.find_instance(&actor) else {
        let msg = format!("no instance {actor}");
        return Err(unverified(refusal("unknown_instance", msg), event));
    };
    let home = home.clone();
    let Some(key) = fleet.agent_key_in(&home, &actor) else {
        let msg = format!("instance {actor} has no enrolled key (not enrolled, or terminated)");
        return Err(unverified(refusal("not_enrolled", msg), event));
    };
    let key = match ed25519_dalek::VerifyingKey::from_bytes(&key) {
        Ok(key) => key,
        Err(e) => {
            let msg = format!("enrolled key unusable: {e}");
            return Err(unverified(refusal("not_enrolled", msg), event));
        }
    };
    if let Err(e) = event.verify(&key) {
        let msg =
            format!("the signature does not verify with the key instance {actor} enrolled ({e})");
        return Err(unverified(refusal("bad_signature", msg), event));
    }
    // Signed by the instance's enrolled key: refusals are recorded.
    let reject = |refusal, event| Rejected {
        refusal,
        attributed: Some((home.clone(), actor.clone())),
        event: Some(event),
    };
    // Bounded before anything of it is echoed in a recorded refusal.
    if let Err(r) = limits::event(&event).and_then(|()| limits::secrets(s.secrets.as_ref())) {
        return Err(reject(r, event));
    }
    if event.account_id != home {
        let msg = format!("instance {actor} is not in account {}", event.account_id);
        return Err(reject(refusal("wrong_account", msg), event));
    }
    let Some(claimed) = reported_instance(&event.payload) else {
        let kind = event.kind();
        return Err(reject(
            refusal(
                "kind_not_allowed",
                format!("agents may report runtime.installing, handshake phases, their WireGuard key and upgrade outcomes, not {kind}"),
            ),
            event,
        ));
    };
    if claimed != actor {
        let msg = format!(
            "instance {actor} reported about instance {claimed}; an agent reports only for its own instance"
        );
        return Err(reject(refusal("identity_mismatch", msg), event));
    }
    if event.aggregate != event.payload.aggregate() {
        let msg = format!(
            "the event is filed under {} but its payload is about {}",
            event.aggregate,
            event.payload.aggregate()
        );
        return Err(reject(refusal("aggregate_mismatch", msg), event));
    }
    if let Some(sender) = sender.filter(|s| *s != actor) {
        let msg = format!(
            "an event of instance {actor} arrived on the subject of instance {sender}; an agent submits only on its own subject"
        );
        return Err(reject(refusal("subject_mismatch", msg), event));
    }
    let now = chrono::Utc::now();
    let skew = (now - event.occurred_at).num_milliseconds();
    if skew.unsigned_abs() > MAX_SKEW.as_millis() as u64 {
        let msg = format!(
            "event {} occurred {skew} ms from now (max {} ms): a replay, or a bad clock",
            event.id,
            MAX_SKEW.as_millis()
        );
        return Err(reject(refusal("stale_event", msg), event));
    }
    if let Some(msg) = event_id_problem(event.id, now) {
        return Err(reject(refusal("bad_event_id", msg), event));
    }
    Ok(event)
}

/// Verifies a detached signature (heartbeats).
pub(super) fn verify_detached(key: &[u8; 32], bytes: &[u8], sig_hex: &str) -> Result<(), Refusal> {
    use ed25519_dalek::Verifier;
    let key = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|e| refusal("not_enrolled", format!("enrolled key unusable: {e}")))?;
    let sig: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| refusal("bad_signature", "signature is not 64 bytes of hex"))?;
    key.verify(bytes, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| {
            refusal(
                "bad_signature",
                "the signature does not verify with the enrolled key",
            )
        })
}

/// Whether the instance may create a cluster: its template assigns
/// `k3s-server` without `target_cluster_id`, and it is not already in a
/// live cluster (a repeat of the same report is fine).
pub(super) fn may_bootstrap(fleet: &FleetState, event: &Envelope) -> Result<(), String> {
    let account = &event.account_id;
    let EventPayload::HandshakeBootstrap(p) = &event.payload else {
        unreachable!("only called for bootstrap reports")
    };
    let instance = fleet
        .instance(account, &p.instance_id)
        .ok_or_else(|| format!("unknown_instance: no instance {}", p.instance_id))?;
    let server = fleet
        .template(account, &instance.template_id)
        .and_then(|t| t.assignment_for(&p.instance_id, K3sModule::K3sServer));
    match server {
        None => {
            return Err(format!(
                "not_a_bootstrap_server: template {} does not assign k3s-server",
                instance.template_id
            ))
        }
        Some(a) if a.config.target_cluster_id.as_deref().is_some_and(|t| !t.is_empty()) => {
            return Err(format!(
                "not_a_bootstrap_server: the k3s-server assignment targets cluster {}; this server joins it instead",
                a.config.target_cluster_id.as_deref().unwrap_or_default()
            ))
        }
        Some(_) => {}
    }
    let this = powernode_events::ids::cluster_id_for_bootstrap(event.id);
    let live = |id: &str| {
        fleet
            .cluster(account, id)
            .is_some_and(|c| c.status != ClusterStatus::Decommissioned)
    };
    if let Some(b) = &instance.bootstrap {
        if b.cluster_id != this && live(&b.cluster_id) {
            return Err(format!(
                "already_bootstrapped: instance {} already created cluster {}",
                p.instance_id, b.cluster_id
            ));
        }
    }
    if let Some(c) = instance
        .cluster_id
        .as_deref()
        .filter(|c| *c != this && live(c))
    {
        return Err(format!(
            "already_in_cluster: instance {} is a member of cluster {c}",
            p.instance_id
        ));
    }
    Ok(())
}

/// The secrets a bootstrap report must carry, matching its fingerprints.
pub(super) fn bootstrap_secrets(
    event: &Envelope,
    secrets: Option<BootstrapSecrets>,
) -> Result<BootstrapSecrets, Refusal> {
    let EventPayload::HandshakeBootstrap(p) = &event.payload else {
        unreachable!("only called for bootstrap reports")
    };
    let s = secrets.ok_or_else(|| {
        refusal(
            "missing_secrets",
            "a bootstrap report carries the node token and kubeconfig",
        )
    })?;
    if fingerprint(s.node_token.as_bytes()) != p.node_token_fingerprint
        || fingerprint(s.kubeconfig.as_bytes()) != p.kubeconfig_fingerprint
    {
        return Err(refusal(
            "fingerprint_mismatch",
            "the secrets do not match the fingerprints in the signed report",
        ));
    }
    Ok(s)
}

/// Why a `ready` report cannot be accepted, if it cannot. Only an instance
/// that bootstrapped the cluster, or was issued a join token for it, may
/// report itself ready in it.
pub(super) fn ready_problem(
    fleet: &FleetState,
    account: &AccountId,
    instance_id: &str,
    cluster_id: &str,
    token_fp: Option<&str>,
) -> Option<String> {
    let Some(cluster) = fleet.cluster(account, cluster_id) else {
        return Some(format!("cluster_not_found: no cluster {cluster_id}"));
    };
    if cluster.status == ClusterStatus::Decommissioned {
        return Some(format!(
            "cluster_decommissioned: cluster {cluster_id} was decommissioned"
        ));
    }
    // `cluster_id` is set when the instance's bootstrap created the cluster,
    // when it was issued a join token, and when it became ready.
    let member = fleet.instance(account, instance_id).is_some_and(|i| {
        i.cluster_id.as_deref() == Some(cluster_id)
            || i.bootstrap
                .as_ref()
                .is_some_and(|b| b.cluster_id == cluster_id)
    });
    if !member {
        return Some(format!(
            "not_joined: instance {instance_id} neither bootstrapped cluster {cluster_id} nor was issued a join token for it"
        ));
    }
    match token_fp {
        Some(fp) if fp != cluster.join_token_fingerprint => Some(format!(
            "bad_token: the join token of cluster {cluster_id} was rotated since this one was issued; request a new one"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_uuidv7_ids_are_agent_ids() {
        let now = chrono::Utc::now();
        assert_eq!(event_id_problem(uuid::Uuid::now_v7(), now), None);
        let v5 = uuid::Uuid::new_v5(&uuid::Uuid::now_v7(), b"system.k3s.handshake.join_rejected");
        let why = event_id_problem(v5, now).expect("a v5 id is refused");
        assert!(
            why.contains(&v5.to_string()) && why.contains("version 5"),
            "{why}"
        );
        assert!(event_id_problem(uuid::Uuid::new_v4(), now).is_some());
        let hour_ago = (now - chrono::Duration::hours(1)).timestamp() as u64;
        let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, hour_ago, 0));
        let why = event_id_problem(old, now).expect("an hour-old v7 id is refused");
        assert!(why.contains("ms from now"), "{why}");
        let ahead = (now + chrono::Duration::hours(1)).timestamp() as u64;
        let future = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, ahead, 0));
        assert!(event_id_problem(future, now).is_some());
    }
}
