//! Day-2 operations on a simulated node: a pinned install records the
//! catalog version (saved with the node), each upgrade phase takes its
//! share of the node's upgrade time, and failures can be injected for
//! tests: `fail_upgrade_to` makes `wait_ready` fail on that catalog
//! version (a rollback to another one then succeeds), `fail_rollback`
//! makes the `wait_ready` after a failed one fail too. A join-token
//! rotation is recorded: the plans (and, on the bootstrap server, the node
//! token) carry the new token and `token_rotations` counts the rotations
//! this node ran.

use super::SimulatedRuntime;
use crate::driver::{ModuleVersionPin, Role, RuntimeError};
use std::time::Duration;

/// The phases of an upgrade a share of [`UpgradeBehaviour::node_upgrade`]
/// goes to (cordon, drain, upgrade, wait_ready, uncordon).
const PHASES: u32 = 5;

/// How a simulated node's upgrades behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeBehaviour {
    /// How long a whole upgrade takes (`--node-upgrade-ms`).
    pub node_upgrade: Duration,
    /// Upgrading to this catalog version never gets ready
    /// (`--fail-upgrade-to`).
    pub fail_upgrade_to: Option<String>,
    /// The rollback after a failed upgrade does not get ready either
    /// (`--fail-rollback`).
    pub fail_rollback: bool,
}

impl Default for UpgradeBehaviour {
    fn default() -> Self {
        Self {
            node_upgrade: Duration::from_millis(300),
            fail_upgrade_to: None,
            fail_rollback: false,
        }
    }
}

impl SimulatedRuntime {
    /// Upgrades behave as `behaviour` says.
    pub fn with_upgrade_behaviour(mut self, behaviour: UpgradeBehaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// The catalog version installed, when one was pinned.
    pub fn module_version_id(&self) -> Option<&str> {
        self.module_version_id.as_deref()
    }

    /// Whether the node is cordoned.
    pub fn is_cordoned(&self) -> bool {
        self.cordoned
    }

    /// How many times this node ran a join-token rotation.
    pub fn token_rotations(&self) -> u32 {
        self.token_rotations
    }

    /// Whether k3s is restarting: its simulated API (if it serves one)
    /// answers every request 503 meanwhile, like a real apiserver that is
    /// down for its upgrade.
    pub(super) fn restarting(&self, restarting: bool) {
        if let Some(api) = &self.api {
            api.update(|s| s.restarting = restarting);
        }
    }

    /// One phase's share of the upgrade time.
    pub(super) fn pace(&self) {
        let share = self.behaviour.node_upgrade / PHASES;
        if !share.is_zero() {
            std::thread::sleep(share);
        }
    }

    pub(super) fn install_pinned(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError> {
        self.version = pin.map_or_else(|| self.default_version.clone(), |p| p.k3s_version.clone());
        self.module_version_id = pin.map(|p| p.module_version_id.clone());
        if !self.installed.contains(&role) {
            self.installed.push(role);
        }
        self.persist()
    }

    pub(super) fn set_cordoned(&mut self, cordoned: bool) -> Result<(), RuntimeError> {
        self.pace();
        self.cordoned = cordoned;
        self.persist()
    }

    pub(super) fn restamp_flags(
        &mut self,
        role: Role,
        extra_flags: &[String],
    ) -> Result<(), RuntimeError> {
        self.pace();
        if role == Role::Agent {
            if self.agent.is_none() {
                return Err(RuntimeError::Unexpected(
                    "cannot re-stamp: no k3s agent was started on this node (simulated)".into(),
                ));
            }
            self.agent_flags = extra_flags.to_vec();
            return self.persist();
        }
        let Some(mut plan) = self.server.clone() else {
            return Err(RuntimeError::Unexpected(
                "cannot re-stamp: no k3s server was started on this node (simulated)".into(),
            ));
        };
        plan.extra_flags = extra_flags.to_vec();
        self.server = Some(plan);
        self.persist()
    }

    pub(super) fn check_ready(&mut self, timeout: Duration) -> Result<(), RuntimeError> {
        self.pace();
        let failing = self.module_version_id.is_some()
            && self.module_version_id == self.behaviour.fail_upgrade_to;
        let rollback_failing = self.failed_ready && self.behaviour.fail_rollback;
        if failing || rollback_failing {
            self.failed_ready = true;
            return Err(RuntimeError::Unexpected(format!(
                "node {} was not Ready within {timeout:?} on {} (simulated failure)",
                self.node_name, self.version
            )));
        }
        self.failed_ready = false;
        Ok(())
    }

    pub(super) fn take_token(
        &mut self,
        role: Role,
        old: &str,
        new: &str,
        rotate: bool,
    ) -> Result<(), RuntimeError> {
        if rotate {
            if role != Role::Server || self.server.is_none() {
                return Err(RuntimeError::Unexpected(
                    "only a started server can rotate the cluster's token (simulated)".into(),
                ));
            }
            self.token_rotations += 1;
        }
        let password = crate::driver::k3s::token_password(old);
        let mut held = self
            .artifacts
            .as_ref()
            .is_some_and(|a| a.node_token == old || a.node_token == new);
        if let Some(plan) = self.server.as_mut() {
            held |= plan.token == old || plan.token == password || plan.token == new;
            plan.token = new.to_owned();
        }
        if let Some(plan) = self.agent.as_mut() {
            held |= plan.token == old || plan.token == new;
            plan.token = new.to_owned();
        }
        if rotate {
            if let Some(artifacts) = self.artifacts.as_mut() {
                artifacts.node_token = new.to_owned();
            }
        }
        if !held {
            return Err(RuntimeError::Unexpected(
                "this node was not started with the cluster's old join token; nothing to \
                 rewrite (simulated)"
                    .into(),
            ));
        }
        self.persist()
    }
}
