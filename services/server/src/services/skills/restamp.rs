//! Setting a network's `pod_subnet_prefix` under running flannel clusters
//! re-stamps them: for each active flannel cluster on the network that was
//! bootstrapped without a pod CIDR, the skills service starts a
//! `system-pod-subnet-restamp` execution. Its nodes reinstall k3s with the
//! flannel-over-SD-WAN flags batch by batch (quorum and VIP-holder-last
//! rules as for upgrades), so the pod-network outage of a reinstall is
//! bounded to one batch, never the whole cluster at once.
//!
//! Idempotent: the start's event id is derived from the prefix event and
//! the cluster, and its execution id from the cluster's execution count at
//! that point of the log, so deciding again after a crash is a duplicate.

use crate::services::provisioner::stamp;
use crate::skills::{cluster_scope, next_execution_id, restamp};
use chrono::{DateTime, Utc};
use powernode_events::payloads::fleet::CniPlugin;
use powernode_events::payloads::sdwan::PodSubnetPrefixSet;
use powernode_events::{Actor, Envelope};
use powernode_projections::fleet::ClusterStatus;
use powernode_projections::FleetState;
use powernode_runtime::derived_event_id;
use tracing::{info, warn};

/// Nodes per batch of a re-stamp, in percent of the cluster's nodes.
pub const RESTAMP_BATCH_PCT: u32 = 25;

/// The executions that re-stamp the flannel clusters of the network
/// `event` (a `pod_subnet_prefix_set`, folded into `state`) set a prefix on.
pub fn starts(
    state: &FleetState,
    event: &Envelope,
    p: &PodSubnetPrefixSet,
    now: DateTime<Utc>,
) -> Vec<Envelope> {
    let account = &event.account_id;
    let Some(acct) = state.account(account) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cluster in acct.clusters.values().filter(|c| {
        c.status == ClusterStatus::Active
            && c.cni_plugin == CniPlugin::Flannel
            && c.pod_cidr.is_none()
            && c.network_id.as_deref() == Some(p.network_id.as_str())
    }) {
        let scope = cluster_scope(&cluster.id);
        if let Some(running) = acct.running_execution(&scope) {
            warn!(cluster_id = %cluster.id, execution_id = %running.id,
                "pod_subnet_prefix set under a running execution on the cluster; re-stamp not started (run it with execute_skill system-pod-subnet-restamp once that one finished)");
            continue;
        }
        let flags = stamp(
            state,
            account,
            &cluster.bootstrap_instance_id,
            Some(&p.network_id),
        )
        .server_flags;
        if flags.is_empty() {
            continue;
        }
        match restamp(
            state,
            account,
            &p.network_id,
            &cluster.id,
            &flags,
            RESTAMP_BATCH_PCT,
        ) {
            Ok(plan) => {
                let execution_id = next_execution_id(state, account, &scope);
                let mut start = Envelope::new(
                    account.clone(),
                    Actor::service("skills"),
                    plan.started(&execution_id),
                );
                start.id = derived_event_id(event.id, &format!("restamp/{}", cluster.id));
                start.correlation_id = event.correlation_id;
                start.causation_id = Some(event.id);
                start.occurred_at = now;
                info!(cluster_id = %cluster.id, %execution_id, "re-stamping a flannel cluster with the network's pod subnet prefix");
                out.push(start);
            }
            Err(e) => {
                warn!(cluster_id = %cluster.id, error = ?e, "cannot plan the re-stamp of a flannel cluster")
            }
        }
    }
    out
}
