//! [`FleetState`]: the fold of the whole fleet, account by account.
//!
//! Everything that belongs to an account lives in that account's
//! [`AccountState`], so one account's objects are never seen through another
//! (look-ups always name the account). Each area keeps its record types and
//! fold steps in its own file; this file dispatches events to them, and
//! `queries.rs` holds the read helpers the API needs.
//!
//! The fold records facts and never decides. Creation events for an id that
//! already exists change nothing (the first one wins); events about objects
//! the state does not know are ignored.

mod accounts;
mod approvals;
mod clusters;
mod dataplane;
mod entries;
mod instances;
mod queries;
mod sdwan;
mod skills;
mod wireguard;

pub use accounts::OperatorToken;
pub use approvals::{Approval, ApprovalStatus};
pub use clusters::{Cluster, ClusterStatus, K8sNode, K8sNodeStatus, FLAVOR_K3S};
pub use dataplane::{AccessGrant, Reachability, WireguardKey};
pub use instances::{
    BootstrapReport, Instance, InstanceStatus, K3sPhase, ModuleAssignment, Node, Template,
};
pub use sdwan::{Network, Peer, Promotion, Proposal, VipStatus, VirtualIp, PROMOTIONS_KEPT};
pub use skills::{
    version_numbers, AgentStepReport, Execution, ExecutionState, ExecutionStep, InstanceVersions,
    ModuleVersion, StepState,
};

use crate::snapshot::{self, SnapshotError, SnapshotFormat};
use crate::tracked::Tracked;
use crate::Projection;
use instances::record_phase;
use powernode_events::ids::cluster_id_for_bootstrap;
use powernode_events::{AccountId, Envelope, EventPayload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fleet snapshot format (bump `version` when the state's shape changes).
const FORMAT: SnapshotFormat = SnapshotFormat {
    projection: "fleet",
    magic: *b"PNfl",
    version: 6,
};

/// Everything one account owns. All maps are keyed by object id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    /// Name from `system.account.created`; `None` while only other facts
    /// about the account were seen.
    pub name: Option<String>,
    /// Sequence of `system.account.created`.
    pub created_seq: Option<u64>,
    /// Operator tokens by token id.
    pub tokens: Tracked<String, OperatorToken>,
    /// Templates by template id.
    pub templates: Tracked<String, Template>,
    /// Nodes by node id.
    pub nodes: Tracked<String, Node>,
    /// Instances by instance id.
    pub instances: Tracked<String, Instance>,
    /// SD-WAN networks by network id.
    pub networks: Tracked<String, Network>,
    /// SD-WAN peers by peer id.
    pub peers: Tracked<String, Peer>,
    /// Virtual IPs by virtual IP id.
    pub virtual_ips: Tracked<String, VirtualIp>,
    /// Clusters by cluster id (decommissioned ones included).
    pub clusters: Tracked<String, Cluster>,
    /// Kubernetes node rows: cluster id → instance id → row.
    pub k8s_nodes: Tracked<String, BTreeMap<String, K8sNode>>,
    /// Approvals by approval id.
    pub approvals: Tracked<String, Approval>,
    /// Index: instance id → the peers it is attached as.
    #[serde(default)]
    pub instance_peers: Tracked<String, Vec<String>>,
    /// Index: cluster id → its most recently allocated virtual IP.
    #[serde(default)]
    pub cluster_vips: Tracked<String, String>,
    /// Index: peer id → the virtual IPs its agent reports holding.
    #[serde(default)]
    pub peer_holdings: Tracked<String, std::collections::BTreeSet<String>>,
    /// WireGuard identities by instance id.
    #[serde(default)]
    pub wireguard_keys: Tracked<String, WireguardKey>,
    /// Access grants by grant id (ended ones included).
    #[serde(default)]
    pub grants: Tracked<String, AccessGrant>,
    /// The module catalog: versions by version id.
    #[serde(default)]
    pub module_versions: Tracked<String, ModuleVersion>,
    /// Skill executions by execution id (finished ones included).
    #[serde(default)]
    pub executions: Tracked<String, Execution>,
    /// Index: the ids of the executions [`Execution::at_work`].
    #[serde(default)]
    pub executions_at_work: std::collections::BTreeSet<String>,
    /// The version an upgrade put each instance's module on (before any,
    /// its assignment's pin counts: see
    /// [`AccountState::instance_module_version`]).
    #[serde(default)]
    pub instance_versions: InstanceVersions,
}

/// The fleet as the log describes it: every account's objects, plus the
/// position in the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    accounts: Tracked<AccountId, AccountState>,
    /// Instance id → the account it was first provisioned in (agent keys).
    instance_accounts: Tracked<String, AccountId>,
    /// Operator-token fingerprint → (account, token id) (bearer auth).
    token_fingerprints: Tracked<String, (AccountId, String)>,
    /// WireGuard public key → (account, instance id) of the instance that
    /// registered it: a key names one instance, fleet-wide.
    #[serde(default)]
    wireguard_key_owners: Tracked<String, (AccountId, String)>,
    last_seq: u64,
    applied: u64,
}

impl FleetState {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequence of the last applied event (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// How many events were applied (duplicates and replays skipped).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The account's state, created empty on first mention.
    fn account_mut(&mut self, id: &AccountId) -> &mut AccountState {
        self.accounts.entry(id.clone()).or_default()
    }

    /// Applies `event`'s payload; the match names every kind, including the
    /// ones the fleet does not keep, so a new kind forces a decision here.
    fn dispatch(&mut self, seq: u64, event: &Envelope) {
        let acct = &event.account_id;
        match &event.payload {
            // accounts and tokens
            EventPayload::AccountCreated(p) => accounts::account_created(self, seq, acct, p),
            EventPayload::OperatorTokenIssued(p) => accounts::token_issued(self, seq, acct, p),
            EventPayload::OperatorTokenRevoked(p) => {
                self.update(acct, |a| accounts::token_revoked(a, seq, p))
            }
            // templates, nodes, instances
            EventPayload::TemplateCreated(p) => {
                instances::template_created(self.account_mut(acct), seq, p)
            }
            EventPayload::NodeCreated(p) => instances::node_created(self.account_mut(acct), seq, p),
            EventPayload::InstanceProvisioned(p) => {
                if instances::instance_provisioned(self.account_mut(acct), seq, p) {
                    self.instance_accounts
                        .entry(p.instance_id.clone())
                        .or_insert_with(|| acct.clone());
                }
            }
            EventPayload::AgentEnrolled(p) => {
                self.update(acct, |a| instances::agent_enrolled(a, p))
            }
            EventPayload::InstanceDrained(p) => {
                self.update(acct, |a| instances::instance_drained(a, p))
            }
            EventPayload::InstanceTerminated(p) => self.update(acct, |a| {
                instances::instance_terminated(a, p);
                dataplane::touch_instance(a, &p.instance_id, seq);
            }),
            EventPayload::ModuleAssigned(p) => {
                self.update(acct, |a| instances::module_assigned(a, seq, p))
            }
            // k3s handshake, as seen on the instance
            EventPayload::RuntimeInstalling(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::Installing, |i| {
                    i.k3s_version = Some(p.version.clone())
                })
            }),
            EventPayload::HandshakeBootstrap(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::Bootstrap, |i| {
                    i.k3s_version = Some(p.k3s_version.clone());
                    i.bootstrap = Some(BootstrapReport {
                        cluster_id: cluster_id_for_bootstrap(event.id),
                        node_token_fingerprint: p.node_token_fingerprint.clone(),
                        seq,
                    });
                })
            }),
            EventPayload::BootstrapRejected(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::BootstrapRejected, |i| {
                    i.last_bootstrap_rejection = Some(p.reason.clone())
                })
            }),
            EventPayload::JoinTokenRotated(p) => {
                self.update(acct, |a| clusters::join_token_rotated(a, p))
            }
            EventPayload::HandshakeJoinRequest(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::JoinRequest, |_| {})
            }),
            EventPayload::JoinTokenIssued(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::JoinTokenIssued, |i| {
                    i.cluster_id = Some(p.cluster_id.clone())
                })
            }),
            EventPayload::JoinRejected(p) => self.update(acct, |a| {
                record_phase(a, seq, &p.instance_id, K3sPhase::JoinRejected, |i| {
                    i.last_join_rejection = Some(p.reason.clone())
                })
            }),
            EventPayload::HandshakeReady(p) => self.update(acct, |a| {
                clusters::handshake_ready(a, seq, p);
                clusters::stamp_new_rows(a, &p.cluster_id, seq, event.occurred_at);
                dataplane::assign_pod_subnet(a, &p.instance_id, seq);
            }),
            // clusters
            EventPayload::ClusterBootstrapped(p) => {
                let a = self.account_mut(acct);
                clusters::cluster_bootstrapped(a, seq, p);
                clusters::stamp_new_rows(a, &p.cluster_id, seq, event.occurred_at);
            }
            EventPayload::ClusterActivated(p) => {
                self.update(acct, |a| clusters::cluster_activated(a, seq, p))
            }
            EventPayload::NodeRegistered(p) => self.update(acct, |a| {
                clusters::node_registered(a, seq, p);
                clusters::stamp_new_rows(a, &p.cluster_id, seq, event.occurred_at);
                dataplane::assign_pod_subnet(a, &p.instance_id, seq);
            }),
            EventPayload::ClusterDecommissioned(p) => self.update(acct, |a| {
                let members: Vec<String> = a
                    .k8s_nodes
                    .get(&p.cluster_id)
                    .map(|rows| rows.keys().cloned().collect())
                    .unwrap_or_default();
                clusters::cluster_decommissioned(a, seq, p);
                for m in members {
                    dataplane::touch_instance(a, &m, seq);
                }
            }),
            // sdwan
            EventPayload::NetworkCreated(p) => {
                sdwan::network_created(self.account_mut(acct), seq, p)
            }
            EventPayload::PodSubnetPrefixSet(p) => self.update(acct, |a| {
                sdwan::pod_subnet_prefix_set(a, p);
                dataplane::touch(a, &p.network_id, seq);
                let mut peers: Vec<(u64, String)> = a
                    .peers
                    .values()
                    .filter(|x| x.network_id == p.network_id)
                    .map(|x| (x.attached_seq, x.instance_id.clone()))
                    .collect();
                peers.sort();
                for (_, instance) in peers {
                    dataplane::assign_pod_subnet(a, &instance, seq);
                }
            }),
            EventPayload::PeerAttached(p) => {
                let a = self.account_mut(acct);
                sdwan::peer_attached(a, seq, p);
                dataplane::touch(a, &p.network_id, seq);
                dataplane::assign_pod_subnet(a, &p.instance_id, seq);
            }
            EventPayload::VirtualIpAllocated(p) => {
                let a = self.account_mut(acct);
                sdwan::vip_allocated(a, seq, p);
                dataplane::touch(a, &p.network_id, seq);
            }
            EventPayload::VirtualIpCandidateAdded(p) => {
                self.update(acct, |a| sdwan::vip_candidate_added(a, p))
            }
            EventPayload::VirtualIpPromoted(p) => self.update(acct, |a| {
                let before = a
                    .virtual_ips
                    .get(&p.virtual_ip_id)
                    .map(|v| v.route_holder().to_string());
                sdwan::vip_promoted(a, event.occurred_at, p);
                sdwan::route_moved(a, &p.virtual_ip_id, before, seq);
                if let Some(n) = a
                    .virtual_ips
                    .get(&p.virtual_ip_id)
                    .map(|v| v.network_id.clone())
                {
                    dataplane::touch(a, &n, seq);
                }
            }),
            EventPayload::VirtualIpApplied(p) => {
                self.update(acct, |a| sdwan::vip_applied(a, seq, p))
            }
            EventPayload::FailoverProposed(p) => {
                self.update(acct, |a| sdwan::failover_proposed(a, seq, p))
            }
            EventPayload::VirtualIpReleased(p) => self.update(acct, |a| {
                sdwan::vip_released_event(a, p);
                if let Some(n) = a
                    .virtual_ips
                    .get(&p.virtual_ip_id)
                    .map(|v| v.network_id.clone())
                {
                    dataplane::touch(a, &n, seq);
                }
            }),
            EventPayload::VirtualIpReachable(p) => {
                self.update(acct, |a| dataplane::vip_reachable(a, seq, p))
            }
            EventPayload::WireguardKeyRegistered(p) => {
                if let Some(a) = self.accounts.get_mut(acct) {
                    let known = a.instances.contains_key(&p.instance_id);
                    let replaced = dataplane::key_registered(a, seq, p);
                    if known {
                        if let Some(old) = replaced {
                            self.wireguard_key_owners.remove(&old);
                        }
                        self.wireguard_key_owners
                            .insert(p.public_key.clone(), (acct.clone(), p.instance_id.clone()));
                    }
                }
            }
            EventPayload::AccessGrantCreated(p) => {
                self.update(acct, |a| dataplane::grant_created(a, seq, p))
            }
            EventPayload::AccessGrantRevoked(p) => {
                self.update(acct, |a| dataplane::grant_revoked(a, seq, p))
            }
            EventPayload::VipHolderSilent(p) => {
                self.update(acct, |a| sdwan::vip_holder_silent(a, p))
            }
            EventPayload::VipHolderRecovered(p) => {
                self.update(acct, |a| sdwan::vip_holder_recovered(a, p))
            }
            // approvals
            EventPayload::ApprovalRequested(p) => {
                approvals::requested(self.account_mut(acct), seq, p)
            }
            EventPayload::ApprovalGranted(p) => {
                self.update(acct, |a| approvals::granted(a, seq, &event.actor, p))
            }
            EventPayload::ApprovalRejected(p) => {
                self.update(acct, |a| approvals::rejected(a, seq, &event.actor, p))
            }
            EventPayload::ApprovalExpired(p) => {
                self.update(acct, |a| approvals::expired(a, seq, &event.actor, p))
            }
            EventPayload::ApprovalSuperseded(p) => {
                self.update(acct, |a| approvals::superseded(a, seq, &event.actor, p))
            }
            // day-2: the catalog, executions, agents' upgrade reports
            EventPayload::ModuleVersionCreated(p) => {
                self.update(acct, |a| skills::version_created(a, seq, p))
            }
            EventPayload::SkillExecutionStarted(p) => {
                self.update(acct, |a| skills::started(a, seq, event.occurred_at, p))
            }
            EventPayload::SkillStepStarted(p) => {
                self.update(acct, |a| skills::step_started(a, seq, event.occurred_at, p))
            }
            EventPayload::SkillStepSucceeded(p) => self.update(acct, |a| {
                skills::step_succeeded(a, seq, event.occurred_at, p)
            }),
            EventPayload::SkillStepFailed(p) => {
                self.update(acct, |a| skills::step_failed(a, seq, event.occurred_at, p))
            }
            EventPayload::SkillExecutionPaused(p) => {
                self.update(acct, |a| skills::paused(a, seq, p))
            }
            EventPayload::SkillExecutionResumed(p) => {
                self.update(acct, |a| skills::resumed(a, seq, p))
            }
            EventPayload::SkillExecutionCompleted(p) => {
                self.update(acct, |a| skills::completed(a, seq, event.occurred_at, p))
            }
            EventPayload::SkillExecutionAborted(p) => {
                self.update(acct, |a| skills::aborted(a, seq, event.occurred_at, p))
            }
            EventPayload::ModuleUpgraded(p) => {
                self.update(acct, |a| skills::module_upgraded(a, seq, p))
            }
            EventPayload::ModuleUpgradeFailed(p) => {
                self.update(acct, |a| skills::module_upgrade_failed(a, seq, p))
            }
            EventPayload::AgentOutdated(p) => self.update(acct, |a| skills::agent_outdated(a, p)),
            // Facts the fleet state does not keep:
            // * the endpoint fallback is already in `cluster.bootstrapped`'s `api_endpoint`;
            // * the ignored-prefix warning, kubeconfig and MCP audits are read from the log;
            // * failover outcomes without a promotion are read from the log;
            // * rejected records are about the log, not the fleet.
            EventPayload::VirtualIpAllocationFailed(_)
            | EventPayload::FailoverNoCandidate(_)
            | EventPayload::FailoverSuppressed(_)
            | EventPayload::PodSubnetPrefixIgnored(_)
            | EventPayload::KubeconfigRetrieved(_)
            | EventPayload::McpToolCalled(_)
            | EventPayload::RecordRejected(_)
            | EventPayload::LogSealed(_)
            | EventPayload::AgentSubmissionRejected(_)
            | EventPayload::AgentSubmissionsRejectedSummary(_) => {}
        }
    }

    /// Runs `f` on an account that already exists; facts about unknown
    /// accounts' existing objects are ignored.
    fn update(&mut self, id: &AccountId, f: impl FnOnce(&mut AccountState)) {
        if let Some(account) = self.accounts.get_mut(id) {
            f(account);
        }
    }
}

impl Projection for FleetState {
    /// Folds one event. An event at or below the last applied sequence is a
    /// redelivery and is skipped.
    fn apply(&mut self, seq: u64, event: &Envelope) {
        if self.applied > 0 && seq <= self.last_seq {
            return;
        }
        self.dispatch(seq, event);
        self.last_seq = seq;
        self.applied += 1;
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(FORMAT, self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        snapshot::decode(FORMAT, bytes)
    }

    fn take_changes(&mut self) -> crate::PendingChanges {
        self.changed_entries()
    }

    fn all_entries(&mut self) -> Result<Vec<crate::Entry>, SnapshotError> {
        self.every_entry()
    }

    fn restore_entries(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, SnapshotError> {
        FleetState::from_entries(entries)
    }

    /// The key of the instance's latest enrollment, looked up in the account
    /// the instance id was first provisioned in. `None` for unknown,
    /// unenrolled or terminated instances, or a key that does not parse.
    fn agent_key(&self, instance_id: &str) -> Option<[u8; 32]> {
        let account = self.instance_accounts.get(instance_id)?;
        self.agent_key_in(account, instance_id)
    }
}
