//! Upgrade steps, agent side of the executor: the order a heartbeat
//! answer carries (the running upgrade or re-stamp step of this instance,
//! until its outcome is in), the version pins of its assignments, and the
//! agent's signed report of how the step went
//! (`system.k3s.module.upgraded` / `…upgrade_failed`).
//!
//! A report is admitted like every agent event (signed by the instance it
//! is about, fresh UUIDv7 id, bounded fields), then checked here against
//! the execution: it exists in the signer's account, the step exists, is
//! the signer's, and is running. A second report for a step that has one
//! is answered with the first one's sequence, and nothing is appended. The
//! report is appended on the instance's aggregate, guarded on its last
//! sequence (decided on a projection that has it), so one step gets one
//! report; it does not race the executor's decisions, which are guarded
//! on the execution's aggregate (a report that lands after its step timed
//! out is kept as what the node did, and changes no outcome).

use super::{log_refusal, refusal, Intake, Refusal};
use powernode_events::payloads::skills::StepAction;
use powernode_events::{AccountId, Envelope, EventPayload};
use powernode_log::{Expect, LogError};
use powernode_projections::fleet::{AccountState, ModuleVersion, StepState};
use powernode_projections::FleetState;
use powernode_protocol::{ModuleVersionPin, SubmitReply, UpgradeOrder};

/// How often a report is checked again after losing a race on the
/// execution (another event of it landed first).
const ATTEMPTS: usize = 5;

/// A catalog version as an agent needs it.
pub(super) fn pin(v: &ModuleVersion) -> ModuleVersionPin {
    ModuleVersionPin {
        module_version_id: v.id.clone(),
        version: v.version.clone(),
        k3s_version: v.k3s_version.clone(),
    }
}

/// The step `instance_id` is to run now: a running upgrade or re-stamp
/// step of an execution not finished, whose report is not in yet.
pub(super) fn order_for(acct: &AccountState, instance_id: &str) -> Option<UpgradeOrder> {
    let version = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| acct.module_versions.get(id))
            .map(pin)
    };
    acct.executions_at_work()
        .filter(|e| !e.state.is_finished())
        .find_map(|e| {
            let s = e.steps.iter().find(|s| {
                s.plan.instance_id == instance_id
                    && s.state == StepState::Running
                    && s.agent_report.is_none()
                    && matches!(s.plan.action, StepAction::Upgrade | StepAction::Restamp)
            })?;
            Some(UpgradeOrder {
                execution_id: e.id.clone(),
                step: s.plan.step,
                action: s.plan.action,
                module_name: s.plan.role,
                from: version(&s.plan.from_version_id),
                to: version(&s.plan.to_version_id),
                extra_flags: s.plan.extra_flags.clone(),
            })
        })
}

/// What the projection says about a report.
enum Verdict {
    /// The step has a report already (at this sequence).
    Duplicate(u64),
    /// Refused, and why.
    Refused(Refusal),
    /// Append it.
    Append,
}

/// What the projection says about the report `event` in `account`.
fn verdict(fleet: &FleetState, account: &AccountId, event: &Envelope) -> Verdict {
    let (execution_id, step_no, instance_id, module) = match &event.payload {
        EventPayload::ModuleUpgraded(p) => (&p.execution_id, p.step, &p.instance_id, p.module_name),
        EventPayload::ModuleUpgradeFailed(p) => {
            (&p.execution_id, p.step, &p.instance_id, p.module_name)
        }
        _ => unreachable!("only called for upgrade reports"),
    };
    let refused = |code: &str, msg: String| Verdict::Refused(refusal(code, msg));
    let Some(exec) = fleet
        .account(account)
        .and_then(|a| a.executions.get(execution_id))
    else {
        return refused(
            "unknown_execution",
            format!("no execution {execution_id} in account {account}"),
        );
    };
    let Some(step) = exec.step(step_no) else {
        return refused(
            "unknown_step",
            format!(
                "execution {execution_id} has no step {step_no} (it has {})",
                exec.steps.len()
            ),
        );
    };
    if step.plan.instance_id != *instance_id {
        return refused(
            "not_your_step",
            format!(
                "step {step_no} of execution {execution_id} is instance {}'s, not {instance_id}'s",
                step.plan.instance_id
            ),
        );
    }
    if let Some(r) = &step.agent_report {
        return Verdict::Duplicate(r.seq);
    }
    if !matches!(step.plan.action, StepAction::Upgrade | StepAction::Restamp) {
        return refused(
            "not_an_upgrade_step",
            format!("step {step_no} of execution {execution_id} provisions a node; there is nothing to report"),
        );
    }
    if step.state != StepState::Running {
        let state = match step.state {
            StepState::Pending => "not started",
            StepState::Running => "running",
            StepState::Succeeded => "already succeeded",
            StepState::Failed => "already failed",
        };
        let why = step
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        return refused(
            "step_not_running",
            format!("step {step_no} of execution {execution_id} is {state}{why}; a report is taken only while it runs"),
        );
    }
    if module != step.plan.role {
        return refused(
            "wrong_module",
            format!(
                "step {step_no} of execution {execution_id} works on {}, not {}",
                step.plan.role.as_str(),
                module.as_str()
            ),
        );
    }
    Verdict::Append
}

impl Intake {
    /// An agent's report on its upgrade step (see the module doc).
    pub(super) async fn upgrade_report(&self, event: &Envelope) -> Result<SubmitReply, Refusal> {
        let account = &event.account_id;
        let instance_id = match &event.actor {
            powernode_events::Actor::Agent { instance_id } => instance_id.clone(),
            _ => unreachable!("validate::admit takes agent events only"),
        };
        for _ in 0..ATTEMPTS {
            // Decided on a projection that has everything the guard names.
            let guard = self
                .log
                .aggregate_last_seq(account, &event.aggregate)
                .await
                .map_err(super::unavailable)?;
            if let Some(g) = guard {
                self.caught_up(g).await?;
            }
            let verdict = verdict(&*self.fleet.state.read().await, account, event);
            match verdict {
                Verdict::Duplicate(seq) => return Ok(SubmitReply::Accepted { seq }),
                Verdict::Refused(refused) => {
                    let reason = format!("{}: {}", refused.code, refused.message);
                    self.record_rejection(account, &instance_id, Some(event), &reason)
                        .await;
                    return Err(refused);
                }
                Verdict::Append => {}
            }
            let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
            match self.log.append(event, expect).await {
                Ok(a) => {
                    self.caught_up(a.seq).await?;
                    return Ok(SubmitReply::Accepted { seq: a.seq });
                }
                Err(LogError::Conflict { .. }) => continue,
                Err(e) => return Err(log_refusal(e)),
            }
        }
        Err(refusal(
            "conflict",
            format!(
                "instance {} changed {ATTEMPTS} times while recording the report; retry",
                event.aggregate.id
            ),
        ))
    }
}
