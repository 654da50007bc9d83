//! Outdated agents: an agent binary older than a field its instance's
//! config needs ignores that field. The platform compares what the config
//! needs with what the agent's last report says it understands, and
//! records a change of the missing set once (`system.agent.outdated`).
//!
//! What needs what:
//! * a pinned module version (`ModuleAssignment::module_version_id`) needs
//!   `module_versions`;
//! * a cluster stamped with SD-WAN flannel flags (`--flannel-iface…` in
//!   `Cluster::server_flags`) needs `flannel_sdwan`;
//! * a registered WireGuard key needs `wireguard`.
//!
//! A beat without a report is an old agent (version `unknown`, no
//! capabilities). The check runs beside the intake ([`run_outdated`]), fed
//! by [`Liveness`], never on a heartbeat's path.

use super::{LastBeat, Liveness, SharedLiveness};
use powernode_events::payloads::skills::AgentOutdated;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::SharedLog;
use powernode_projections::fleet::{AccountState, Instance};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Shared};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// The version shown for an agent that sends no report.
pub const UNKNOWN_VERSION: &str = "unknown";

/// How often every heard instance is checked again (its config may have
/// changed without its report changing).
const SWEEP: Duration = Duration::from_secs(5);

/// Namespace of `system.agent.outdated` event ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x0a7d_a7ed_0000_4000_8000_706e_6f75_7464);

/// The capabilities `instance`'s config needs, sorted.
pub fn required_capabilities(account: &AccountState, instance: &Instance) -> Vec<String> {
    let mut needs = Vec::new();
    let pinned = account
        .templates
        .get(&instance.template_id)
        .is_some_and(|t| {
            t.assignments_for(&instance.id)
                .iter()
                .any(|a| a.module_version_id.is_some())
        });
    if pinned {
        needs.push("module_versions");
    }
    let flannel_sdwan = instance
        .cluster_id
        .as_ref()
        .and_then(|c| account.clusters.get(c))
        .is_some_and(|c| {
            c.server_flags
                .iter()
                .any(|f| f.starts_with("--flannel-iface"))
        });
    if flannel_sdwan {
        needs.push("flannel_sdwan");
    }
    if account.wireguard_keys.contains_key(&instance.id) {
        needs.push("wireguard");
    }
    let mut needs: Vec<String> = needs.into_iter().map(String::from).collect();
    needs.sort();
    needs
}

/// What `instance`'s config needs that the agent of `beat` lacks, sorted.
pub fn missing_capabilities(
    account: &AccountState,
    instance: &Instance,
    beat: &LastBeat,
) -> Vec<String> {
    let has: &[String] = beat
        .report
        .as_ref()
        .map_or(&[], |r| r.capabilities.as_slice());
    required_capabilities(account, instance)
        .into_iter()
        .filter(|c| !has.contains(c))
        .collect()
}

/// `system.agent.outdated` for `instance` when its missing set differs
/// from the one the log has; its id is derived from the instance and both
/// sets, so every process that sees the same change records it once.
pub fn outdated_event(
    account_id: &AccountId,
    account: &AccountState,
    instance: &Instance,
    beat: &LastBeat,
) -> Option<Envelope> {
    let missing = missing_capabilities(account, instance, beat);
    let mut known = instance.outdated_capabilities.clone();
    known.sort();
    if missing == known {
        return None;
    }
    let tag = format!("{}|{}|{}", instance.id, known.join(","), missing.join(","));
    let agent_version = beat
        .report
        .as_ref()
        .map_or_else(|| UNKNOWN_VERSION.to_string(), |r| r.agent_version.clone());
    let mut event = Envelope::new(
        account_id.clone(),
        Actor::service("api"),
        AgentOutdated {
            instance_id: instance.id.clone(),
            agent_version,
            missing_capabilities: missing,
        },
    );
    event.id = derived_event_id(NAMESPACE, &tag);
    event.correlation_id = event.id;
    Some(event)
}

/// The events due for `instances` (those heard here) in `fleet`.
fn due(fleet: &FleetState, liveness: &Liveness, instances: &[String]) -> Vec<Envelope> {
    instances
        .iter()
        .filter_map(|id| {
            let beat = liveness.last_beat(id)?;
            let (account_id, instance) = fleet.find_instance(id)?;
            let account = fleet.account(account_id)?;
            outdated_event(account_id, account, instance, &beat)
        })
        .collect()
}

/// Checks the instances whose report changed (and, every few seconds,
/// every instance heard) and appends `system.agent.outdated` where the
/// missing set changed, until `shutdown`.
pub async fn run_outdated(
    log: SharedLog,
    fleet: Shared<FleetState>,
    liveness: SharedLiveness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    info!("checking agents' capabilities against their configs");
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        let instances: Vec<String> = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            reported = liveness.take_reported() => reported.into_iter().collect(),
            _ = sweep.tick() => liveness.heard_instances(),
        };
        let events = {
            let state = fleet.state.read().await;
            due(&state, &liveness, &instances)
        };
        for event in events {
            match log.append(&event, powernode_log::Expect::Any).await {
                Ok(_) => debug!(event_id = %event.id, "agent outdated recorded"),
                // Another process recorded the same change; or the log is
                // away, and the next sweep tries again.
                Err(e) => warn!(error = %e, "cannot record an outdated agent; retried later"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use powernode_protocol::AgentReport;

    fn instance() -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": "i1", "node_id": "n1", "template_id": "t1", "cni_plugin": null,
            "enrollment_fingerprint": "sha256:00", "public_key": null, "status": "enrolled",
            "k3s_phase": null, "k3s_version": null, "cluster_id": null, "node_name": null,
            "last_join_rejection": null, "last_bootstrap_rejection": null, "bootstrap": null,
            "phase_seq": 0, "provisioned_seq": 1
        }))
        .expect("an instance")
    }

    fn beat(capabilities: Option<&[&str]>) -> LastBeat {
        LastBeat {
            at: Utc::now(),
            report: capabilities.map(|c| AgentReport {
                agent_version: "0.9.0".into(),
                runtime: "simulated".into(),
                capabilities: c.iter().map(|s| s.to_string()).collect(),
                modules: vec![],
                recent_errors: vec![],
                upgrading: None,
                join_token_fingerprint: None,
            }),
        }
    }

    fn with_wireguard_key(account: &mut AccountState) {
        account.wireguard_keys.insert(
            "i1".into(),
            powernode_projections::fleet::WireguardKey {
                public_key: "k".into(),
                endpoint: "192.0.2.1:51820".into(),
                registered_seq: 3,
            },
        );
    }

    #[test]
    fn a_config_without_new_fields_needs_nothing() {
        let account = AccountState::default();
        assert!(required_capabilities(&account, &instance()).is_empty());
        assert!(outdated_event(
            &AccountId::new("a").unwrap(),
            &account,
            &instance(),
            &beat(None)
        )
        .is_none());
    }

    #[test]
    fn a_registered_wireguard_key_needs_wireguard_and_a_silent_agent_lacks_it() {
        let mut account = AccountState::default();
        with_wireguard_key(&mut account);
        assert_eq!(required_capabilities(&account, &instance()), ["wireguard"]);
        let old = beat(None);
        assert_eq!(
            missing_capabilities(&account, &instance(), &old),
            ["wireguard"]
        );
        let event = outdated_event(&AccountId::new("a").unwrap(), &account, &instance(), &old)
            .expect("an outdated event");
        let again = outdated_event(&AccountId::new("a").unwrap(), &account, &instance(), &old)
            .expect("the same event");
        assert_eq!(event.id, again.id, "ids are derived");
        let EventPayloadRef(p) = EventPayloadRef::of(&event);
        assert_eq!(p.agent_version, UNKNOWN_VERSION);
        assert_eq!(p.missing_capabilities, ["wireguard"]);
        let current = beat(Some(&["wireguard", "module_versions"]));
        assert!(missing_capabilities(&account, &instance(), &current).is_empty());
    }

    #[test]
    fn a_known_missing_set_is_not_recorded_again_and_a_cleared_one_is() {
        let mut account = AccountState::default();
        with_wireguard_key(&mut account);
        let mut i = instance();
        i.outdated_capabilities = vec!["wireguard".into()];
        let a = AccountId::new("a").unwrap();
        assert!(outdated_event(&a, &account, &i, &beat(Some(&[]))).is_none());
        let cleared = outdated_event(&a, &account, &i, &beat(Some(&["wireguard"])))
            .expect("the missing set changed to empty");
        assert!(EventPayloadRef::of(&cleared)
            .0
            .missing_capabilities
            .is_empty());
    }

    #[test]
    fn flannel_sdwan_flags_need_flannel_sdwan() {
        let mut account = AccountState::default();
        let cluster: powernode_projections::fleet::Cluster =
            serde_json::from_value(serde_json::json!({
                "id": "c1", "name": "c1", "flavor": "k3s", "status": "active",
                "api_endpoint": "https://[fd00::1]:6443", "network_id": "n1",
                "cni_plugin": "flannel", "pod_cidr": null,
                "server_flags": ["--flannel-iface=wg-n1"],
                "join_token_fingerprint": "sha256:00", "bootstrap_instance_id": "i1",
                "k3s_version": null, "created_seq": 2, "activated_seq": null,
                "decommissioned_seq": null
            }))
            .unwrap_or_else(|e| panic!("cluster json: {e}"));
        account.clusters.insert("c1".into(), cluster);
        let mut i = instance();
        i.cluster_id = Some("c1".into());
        assert_eq!(required_capabilities(&account, &i), ["flannel_sdwan"]);
    }

    /// The `AgentOutdated` payload of an event.
    struct EventPayloadRef<'a>(&'a AgentOutdated);

    impl<'a> EventPayloadRef<'a> {
        fn of(e: &'a Envelope) -> Self {
            match &e.payload {
                powernode_events::EventPayload::AgentOutdated(p) => Self(p),
                other => panic!("not an outdated event: {other:?}"),
            }
        }
    }
}
