//! Upgrade orders: one skill step (`execution_id`, `step`) run once, in
//! the background (heartbeats, VIP duties and the data plane go on), phase
//! by phase — cordon, drain, upgrade (install `to`, or re-stamp the server
//! flags), wait_ready (bounded), uncordon — with a rollback (install
//! `from`, wait ready, uncordon) when `upgrade` or `wait_ready` fails. A
//! failure in cordon or drain uncordons and changed nothing (`rolled_back`).
//!
//! The outcome is signed once (`system.k3s.module.upgraded` or
//! `…upgrade_failed`) and kept, with every phase, in `<state-dir>/upgrade.json`
//! before it is submitted: a restart neither runs a finished step again
//! nor forgets to submit its outcome, and a resubmission is the same event
//! (the platform answers it as a duplicate). Submission is retried until
//! the platform answers.

use super::calls::run_on;
use super::report::Diagnostics;
use super::{SharedInfo, SharedRuntime};
use crate::driver::{ModuleVersionPin, Role};
use crate::identity::Identity;
use crate::link::AgentLink;
use powernode_events::payloads::skills::{
    ModuleUpgradeFailed, ModuleUpgraded, PhaseReport, StepAction, UpgradePhase,
};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_protocol::{Submission, SubmitReply, UpgradeOrder};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// How long `wait_ready` waits unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest wait between two submissions of an outcome.
const SUBMIT_RETRY_MAX: Duration = Duration::from_secs(5);

/// One upgrade step as the agent keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// The order.
    pub order: UpgradeOrder,
    /// The phases run so far.
    pub phases: Vec<PhaseReport>,
    /// The signed outcome (hex of the encoded event), once there is one.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Whether the platform answered the outcome's submission.
    #[serde(default)]
    pub submitted: bool,
    /// The version the node runs after the step.
    #[serde(default)]
    pub running: Option<ModuleVersionPin>,
}

impl UpgradeRecord {
    /// Whether this is the record of (`execution_id`, `step`).
    pub fn is(&self, order: &UpgradeOrder) -> bool {
        self.order.execution_id == order.execution_id && self.order.step == order.step
    }
}

/// Where the record lives: `<state-dir>/upgrade.json`, or memory.
#[derive(Debug, Clone, Default)]
pub struct UpgradeStore {
    path: Option<PathBuf>,
    memory: Arc<Mutex<Option<UpgradeRecord>>>,
}

impl UpgradeStore {
    /// Keeps the record at `path` (none: memory only).
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            memory: Arc::default(),
        }
    }

    /// The last step's record.
    pub fn load(&self) -> Option<UpgradeRecord> {
        let Some(path) = &self.path else {
            return self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
        };
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unreadable upgrade record; ignored");
                None
            }
        }
    }

    /// A fresh install of `pin` supersedes what the last step left running.
    pub fn installed(&self, pin: Option<ModuleVersionPin>) {
        if let Some(mut record) = self.load() {
            record.running = pin;
            if let Err(e) = self.save(&record) {
                warn!(error = %e, "could not save the upgrade record");
            }
        }
    }

    /// Saves atomically.
    pub fn save(&self, record: &UpgradeRecord) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.clone());
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(record).expect("record serializes"),
        )?;
        std::fs::rename(&tmp, path)
    }
}

/// What a background upgrade needs of its agent.
#[derive(Clone)]
pub(super) struct UpgradeCtx {
    pub runtime: SharedRuntime,
    pub info: SharedInfo,
    pub link: Arc<dyn AgentLink>,
    pub identity: Arc<Identity>,
    pub account_id: String,
    pub instance_id: String,
    pub role: Role,
    pub store: UpgradeStore,
    pub diagnostics: Arc<Diagnostics>,
    pub ready_timeout: Duration,
    /// The catalog version running (shared with the agent's report).
    pub running: Arc<Mutex<Option<ModuleVersionPin>>>,
}

impl UpgradeCtx {
    async fn phase(
        &self,
        record: &mut UpgradeRecord,
        phase: UpgradePhase,
        f: impl FnOnce(&mut dyn crate::driver::Runtime) -> Result<(), crate::driver::RuntimeError>
            + Send
            + 'static,
    ) -> Result<(), String> {
        let label = serde_json::to_value(phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.diagnostics.set_upgrading(Some(format!(
            "{}/{}/{label}",
            record.order.execution_id, record.order.step
        )));
        let out = run_on(&self.runtime, &self.info, f).await;
        let detail = out.as_ref().err().map(ToString::to_string);
        if let Some(d) = &detail {
            self.diagnostics
                .error(format!("upgrade {label} failed: {d}"));
        }
        record.phases.push(PhaseReport {
            phase,
            ok: out.is_ok(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            detail: detail.clone(),
        });
        if let Err(e) = self.store.save(record) {
            warn!(error = %e, "could not save the upgrade record");
        }
        out.map_err(|e| e.to_string())
    }

    /// Runs the order's phases and signs the outcome into the record.
    async fn run_phases(&self, record: &mut UpgradeRecord) {
        let order = record.order.clone();
        let role = self.role;
        let (from, to) = (order.from.clone(), order.to.clone());
        let failed = |phase, reason: String, rolled_back, record: &UpgradeRecord| {
            (phase, reason, rolled_back, record.phases.clone())
        };
        let uncordon = move |rt: &mut dyn crate::driver::Runtime| rt.uncordon(role);
        let mut outcome = None;
        if let Err(e) = self
            .phase(record, UpgradePhase::Cordon, move |rt| rt.cordon(role))
            .await
        {
            let _ = self.phase(record, UpgradePhase::Uncordon, uncordon).await;
            outcome = Some(failed(UpgradePhase::Cordon, e, true, record));
        }
        if outcome.is_none() {
            if let Err(e) = self
                .phase(record, UpgradePhase::Drain, move |rt| {
                    rt.drain(role, DRAIN_TIMEOUT)
                })
                .await
            {
                let _ = self.phase(record, UpgradePhase::Uncordon, uncordon).await;
                outcome = Some(failed(UpgradePhase::Drain, e, true, record));
            }
        }
        if outcome.is_none() {
            let to_pin = to.clone();
            let flags = order.extra_flags.clone();
            let action = order.action;
            let timeout = self.ready_timeout;
            let upgraded = match self
                .phase(record, UpgradePhase::Upgrade, move |rt| match action {
                    StepAction::Restamp => rt.restamp(role, &flags),
                    _ => rt.upgrade(role, to_pin.as_ref()),
                })
                .await
            {
                Err(e) => Err((UpgradePhase::Upgrade, e)),
                Ok(()) => self
                    .phase(record, UpgradePhase::WaitReady, move |rt| {
                        rt.wait_ready(role, timeout)
                    })
                    .await
                    .map_err(|e| (UpgradePhase::WaitReady, e)),
            };
            outcome = match upgraded {
                Ok(()) => match self.phase(record, UpgradePhase::Uncordon, uncordon).await {
                    Ok(()) => None,
                    Err(e) => Some(failed(UpgradePhase::Uncordon, e, false, record)),
                },
                Err((phase, reason)) => {
                    let back = self.roll_back(record, action, from.clone()).await;
                    Some(failed(phase, reason, back, record))
                }
            };
            if outcome.is_none() {
                *self.running.lock().unwrap_or_else(|e| e.into_inner()) = to.clone();
            }
        }
        let k3s_version = self
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        let payload: EventPayload = match outcome {
            None => {
                record.running = to.clone();
                ModuleUpgraded {
                    execution_id: order.execution_id.clone(),
                    step: order.step,
                    instance_id: self.instance_id.clone(),
                    module_name: order.module_name,
                    from_version_id: from.as_ref().map(|p| p.module_version_id.clone()),
                    to_version_id: to.as_ref().map(|p| p.module_version_id.clone()),
                    k3s_version,
                    phases: record.phases.clone(),
                }
                .into()
            }
            Some((failed_phase, reason, rolled_back, phases)) => {
                let running = if rolled_back {
                    from.clone()
                } else {
                    to.clone()
                };
                record.running = running.clone();
                *self.running.lock().unwrap_or_else(|e| e.into_inner()) = running.clone();
                ModuleUpgradeFailed {
                    execution_id: order.execution_id.clone(),
                    step: order.step,
                    instance_id: self.instance_id.clone(),
                    module_name: order.module_name,
                    to_version_id: to.as_ref().map(|p| p.module_version_id.clone()),
                    failed_phase,
                    reason,
                    rolled_back,
                    running_version_id: running.map(|p| p.module_version_id),
                    k3s_version,
                    phases,
                }
                .into()
            }
        };
        self.diagnostics.set_upgrading(None);
        match self.sign(payload) {
            Ok(hex) => record.outcome = Some(hex),
            Err(e) => self
                .diagnostics
                .error(format!("cannot sign the upgrade outcome: {e}")),
        }
        if let Err(e) = self.store.save(record) {
            warn!(error = %e, "could not save the upgrade outcome");
        }
    }

    /// Puts `from` back: reinstall, wait ready, uncordon. Whether the node
    /// is back in service on it.
    async fn roll_back(
        &self,
        record: &mut UpgradeRecord,
        action: StepAction,
        from: Option<ModuleVersionPin>,
    ) -> bool {
        let role = self.role;
        let timeout = self.ready_timeout;
        let back = self
            .phase(record, UpgradePhase::Rollback, move |rt| {
                if action == StepAction::Restamp {
                    return Err(crate::driver::RuntimeError::Unexpected(
                        "a re-stamp is not rolled back: the previous flags are not kept".into(),
                    ));
                }
                rt.upgrade(role, from.as_ref())?;
                rt.wait_ready(role, timeout)
            })
            .await;
        if back.is_err() {
            return false;
        }
        self.phase(record, UpgradePhase::Uncordon, move |rt| rt.uncordon(role))
            .await
            .is_ok()
    }

    fn sign(&self, payload: EventPayload) -> Result<String, String> {
        let account = AccountId::new(self.account_id.clone()).map_err(|e| e.to_string())?;
        let mut event = Envelope::new(
            account,
            Actor::Agent {
                instance_id: self.instance_id.clone(),
            },
            payload,
        );
        self.identity.sign(&mut event).map_err(|e| e.to_string())?;
        event.encode().map(hex::encode).map_err(|e| e.to_string())
    }

    /// Submits the record's outcome until the platform answers.
    async fn submit(&self, record: &mut UpgradeRecord) {
        let Some(event) = record.outcome.clone() else {
            return;
        };
        let mut wait = Duration::from_millis(100);
        loop {
            match self
                .link
                .submit(Submission {
                    event: event.clone(),
                    secrets: None,
                })
                .await
            {
                Ok(reply) => {
                    if let SubmitReply::Rejected { reason } = &reply {
                        self.diagnostics
                            .error(format!("the upgrade outcome was refused: {reason}"));
                    }
                    info!(execution = %record.order.execution_id, step = record.order.step, ?reply, "upgrade outcome submitted");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "could not submit the upgrade outcome; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(SUBMIT_RETRY_MAX);
                }
            }
        }
        record.submitted = true;
        if let Err(e) = self.store.save(record) {
            warn!(error = %e, "could not save the upgrade record");
        }
    }
}

/// Runs `order` (or only submits its outcome, when a previous run signed
/// one), in the background. The returned handle ends when the outcome was
/// answered.
pub(super) fn spawn(ctx: UpgradeCtx, order: UpgradeOrder) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut record = match ctx.store.load() {
            Some(r) if r.is(&order) && r.outcome.is_some() => r,
            _ => UpgradeRecord {
                order,
                phases: Vec::new(),
                outcome: None,
                submitted: false,
                running: None,
            },
        };
        if record.outcome.is_none() {
            info!(execution = %record.order.execution_id, step = record.order.step, "running upgrade step");
            if let Err(e) = ctx.store.save(&record) {
                warn!(error = %e, "could not save the upgrade record");
            }
            ctx.run_phases(&mut record).await;
        }
        if !record.submitted {
            ctx.submit(&mut record).await;
        }
    })
}

/// What to do with an order, given the record of the last step: `true`
/// when it is to be run (or its outcome submitted) now.
pub(super) fn wanted(record: Option<&UpgradeRecord>, order: &UpgradeOrder) -> bool {
    match record {
        Some(r) if r.is(order) => !(r.outcome.is_some() && r.submitted),
        _ => true,
    }
}
