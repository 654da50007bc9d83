//! Join-token rotation reaching the nodes: a heartbeat whose report names
//! another join-token fingerprint than the cluster's current one is
//! answered with the current token ([`JoinTokenUpdate`]), read from the
//! secret store like a join grant's. Exactly one server of the cluster is
//! told to `rotate` (run `k3s token rotate` from its old token): the
//! bootstrap server while it is a member, else the ready server with the
//! lowest instance id. Every other node only rewrites its stored token.
//! Only ready nodes are answered: one still joining is refused at `ready`
//! and joins again with the current token.
//!
//! The reply goes only to the agent's own reply subject (heartbeats are
//! refused on another instance's subject), and the token never appears in
//! a log line.

use super::Intake;
use crate::secrets::SecretKey;
use powernode_events::payloads::k3s::NodeRole;
use powernode_projections::fleet::{ClusterStatus, InstanceStatus, K8sNodeStatus};
use powernode_projections::FleetState;
use powernode_protocol::{fingerprint, Heartbeat, JoinTokenUpdate};
use tracing::warn;

/// Where a node stands with its cluster's join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StaleToken {
    account: powernode_events::AccountId,
    cluster_id: String,
    fingerprint: String,
    rotate: bool,
}

/// The update `hb`'s node needs, if its reported fingerprint is not its
/// cluster's current one (`None` too when it reports none: it has not
/// joined, and a join grant hands it the current token).
pub(super) fn stale_token(fleet: &FleetState, hb: &Heartbeat) -> Option<StaleToken> {
    let held = hb.report.as_ref()?.join_token_fingerprint.as_deref()?;
    let (account, instance) = fleet.find_instance(&hb.instance_id)?;
    if instance.status == InstanceStatus::Terminated {
        return None;
    }
    let cluster = fleet.cluster(account, instance.cluster_id.as_deref()?)?;
    if cluster.status == ClusterStatus::Decommissioned
        || cluster.join_token_fingerprint.is_empty()
        || cluster.join_token_fingerprint == held
    {
        return None;
    }
    let nodes = fleet.cluster_nodes(account, &cluster.id);
    // A node still joining is refused at `ready` with a stale token and
    // joins again with the current one.
    if !nodes
        .iter()
        .any(|n| n.instance_id == hb.instance_id && n.status == K8sNodeStatus::Ready)
    {
        return None;
    }
    let live = |id: &str| {
        fleet
            .instance(account, id)
            .is_some_and(|i| i.status != InstanceStatus::Terminated)
    };
    let bootstrap_member = nodes.iter().any(|n| {
        n.instance_id == cluster.bootstrap_instance_id
            && n.role == NodeRole::ControlPlane
            && live(&n.instance_id)
    });
    let rotator = if bootstrap_member {
        Some(cluster.bootstrap_instance_id.clone())
    } else {
        nodes
            .iter()
            .filter(|n| {
                n.role == NodeRole::ControlPlane
                    && n.status == K8sNodeStatus::Ready
                    && live(&n.instance_id)
            })
            .map(|n| n.instance_id.clone())
            .min()
    };
    Some(StaleToken {
        account: account.clone(),
        cluster_id: cluster.id.clone(),
        fingerprint: cluster.join_token_fingerprint.clone(),
        rotate: rotator.as_deref() == Some(hb.instance_id.as_str()),
    })
}

impl Intake {
    /// The join token to hand `hb`'s node in its reply, if its token is
    /// stale: the stored token, only when it is the one the log vouches for
    /// (a rotation in flight answers nothing until its event is applied).
    /// `stale` is [`stale_token`] of the beat, decided under the lock the
    /// heartbeat answer already holds.
    pub(super) async fn join_token_update(&self, stale: StaleToken) -> Option<JoinTokenUpdate> {
        let key = SecretKey::join_token(&stale.account, &stale.cluster_id);
        let token = match self.get_secret(key).await {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok()?,
            Ok(None) => {
                warn!(cluster = %stale.cluster_id, "the cluster's join token is missing from the secret store; nodes keep their old token");
                return None;
            }
            Err(e) => {
                warn!(cluster = %stale.cluster_id, error = %e.message, "could not read the cluster's join token; the next heartbeat retries");
                return None;
            }
        };
        let fp = fingerprint(token.as_bytes());
        if fp != stale.fingerprint {
            return None;
        }
        Some(JoinTokenUpdate {
            fingerprint: fp,
            token,
            rotate: stale.rotate,
        })
    }
}
