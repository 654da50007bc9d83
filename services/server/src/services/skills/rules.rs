//! The executor's rules: what one execution needs next, given the fleet.
//! Pure — no I/O, no clock (`now` is passed in) — so the consumer, the
//! timer and the tests all decide alike.
//!
//! The rules are level-triggered: they look at the whole execution, not at
//! the event that woke them, and decide everything that is due at once on a
//! working copy (a step's outcome, then the next batch's starts, then the
//! completion), so one pass goes from "a node finished" to "the next node
//! started". Every decision's event id is derived from the execution and
//! the decision (`step/3/started`), so deciding again — after a crash, on
//! a timer tick, on another replica — is a duplicate, never a second fact.

use super::config::SkillsConfig;
use super::vip::Gate;
use crate::services::failover::promote::PendingPromotion;
use chrono::{DateTime, Utc};
use powernode_events::payloads::k3s::{ModuleAssigned, ModuleConfig};
use powernode_events::payloads::skills::*;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_projections::fleet::{
    AccountState, Execution, ExecutionState, InstanceStatus, K3sPhase, StepState,
};
use powernode_projections::FleetState;
use powernode_runtime::derived_event_id;
use uuid::Uuid;

/// The service's name (actor of its events).
pub const SERVICE: &str = "skills";

/// Namespace of the ids of execution-derived decisions.
const EXECUTION_NAMESPACE: Uuid = Uuid::from_u128(0x5c1d_0e7e_0000_4000_8000_736b_696c_6c73);

/// The namespace an execution's decisions derive their ids from.
pub fn execution_namespace(execution_id: &str) -> Uuid {
    Uuid::new_v5(&EXECUTION_NAMESPACE, execution_id.as_bytes())
}

/// The id of decision `tag` (`step/3/started`, `completed`) of an execution.
pub fn decision_id(execution_id: &str, tag: &str) -> Uuid {
    derived_event_id(execution_namespace(execution_id), tag)
}

/// What to append for one execution: `events` in order, the first guarded
/// on the execution's last sequence as decided on (`seen_last_seq`), each
/// next one on the sequence the one before it landed at (events of other
/// aggregates — a joiner's assignment — go unguarded). Then the agents of
/// `nudge` are told to beat.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The account.
    pub account: AccountId,
    /// The execution.
    pub execution_id: String,
    /// The execution's last sequence in the state decided on.
    pub seen_last_seq: u64,
    /// The sequence the state decided on had applied.
    pub seen_seq: u64,
    /// The events, in order.
    pub events: Vec<Envelope>,
    /// Instances whose steps start (their agents beat at once).
    pub nudge: Vec<String>,
}

/// Everything decided about one execution.
#[derive(Debug, Default)]
pub struct Decided {
    /// Appends on the execution (none: nothing due).
    pub execution: Option<Decision>,
    /// VIPs to move off a node before its step (fenced promotions).
    pub promotions: Vec<PendingPromotion>,
}

/// What the rules look at besides the execution.
pub struct Context<'a> {
    /// The fleet.
    pub state: &'a FleetState,
    /// The execution's account.
    pub account: &'a AccountId,
    /// The sequence the state has applied (promotions are guarded on it).
    pub seen_seq: u64,
    /// Now.
    pub now: DateTime<Utc>,
    /// The event being decided about (`None`: the timer).
    pub cause: Option<&'a Envelope>,
    /// Timeouts.
    pub config: &'a SkillsConfig,
}

impl Context<'_> {
    /// A decision of execution `execution_id`, its id derived from `tag`.
    pub(super) fn event(
        &self,
        execution_id: &str,
        tag: &str,
        payload: impl Into<EventPayload>,
    ) -> Envelope {
        let mut e = Envelope::new(self.account.clone(), Actor::service(SERVICE), payload);
        match self.cause {
            Some(cause) => e = e.caused_by(cause),
            None => e.correlation_id = execution_namespace(execution_id),
        }
        e.id = decision_id(execution_id, tag);
        e.occurred_at = self.now;
        e
    }
}

/// A step's outcome, decided.
enum Outcome {
    Succeeded(Option<String>),
    Failed {
        reason: String,
        rolled_back: bool,
        running: Option<String>,
    },
}

/// Decisions under way on a working copy of the execution.
pub(super) struct Work<'c, 'a> {
    pub(super) ctx: &'c Context<'a>,
    pub(super) acct: &'c AccountState,
    pub(super) w: Execution,
    events: Vec<Envelope>,
    nudge: Vec<String>,
    promotions: Vec<PendingPromotion>,
}

/// What the execution needs next (see the module doc).
pub fn decide_execution(ctx: &Context<'_>, exec: &Execution) -> Decided {
    let Some(acct) = ctx.state.account(ctx.account) else {
        return Decided::default();
    };
    let mut work = Work {
        ctx,
        acct,
        w: exec.clone(),
        events: Vec::new(),
        nudge: Vec::new(),
        promotions: Vec::new(),
    };
    work.outcomes();
    if work.w.state == ExecutionState::Running {
        work.advance();
    }
    work.repair_assignments(exec);
    let execution = (!work.events.is_empty()).then(|| Decision {
        account: ctx.account.clone(),
        execution_id: exec.id.clone(),
        seen_last_seq: exec.last_seq,
        seen_seq: ctx.seen_seq,
        events: work.events,
        nudge: work.nudge,
    });
    Decided {
        execution,
        promotions: work.promotions,
    }
}

fn finished(s: StepState) -> bool {
    matches!(s, StepState::Succeeded | StepState::Failed)
}

impl Work<'_, '_> {
    fn timed_out(&self, started: Option<DateTime<Utc>>) -> bool {
        let timeout = chrono::Duration::from_std(self.ctx.config.step_timeout())
            .unwrap_or(chrono::Duration::MAX);
        started.is_some_and(|t| self.ctx.now - t >= timeout)
    }

    /// The cluster a provision_cluster execution made: its bootstrap
    /// server's (batch 0).
    fn provision_cluster(&self) -> Option<String> {
        let first = self.w.steps.iter().find(|s| s.plan.batch == 0)?;
        self.acct
            .instances
            .get(&first.plan.instance_id)?
            .cluster_id
            .clone()
    }

    /// The outcome of running step `i`, if it has one now.
    fn outcome(&self, i: usize) -> Option<Outcome> {
        let step = &self.w.steps[i];
        let timeout = self.ctx.config.step_timeout_words();
        match step.plan.action {
            StepAction::Upgrade | StepAction::Restamp => match &step.agent_report {
                Some(r) if r.ok => Some(Outcome::Succeeded(r.running_version_id.clone())),
                Some(r) => Some(Outcome::Failed {
                    reason: r
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the agent reported a failure".into()),
                    rolled_back: r.rolled_back,
                    running: r.running_version_id.clone(),
                }),
                None if self.timed_out(step.started_at) => Some(Outcome::Failed {
                    reason: format!("no report from the agent within {timeout}"),
                    rolled_back: false,
                    running: None,
                }),
                None => None,
            },
            StepAction::Provision => {
                let target = match step.plan.batch {
                    0 => None,
                    _ => self.provision_cluster(),
                };
                let Some(inst) = self.acct.instances.get(&step.plan.instance_id) else {
                    return Some(Outcome::Failed {
                        reason: format!("instance {} is gone", step.plan.instance_id),
                        rolled_back: false,
                        running: None,
                    });
                };
                let since_start = inst.phase_seq > step.started_seq.unwrap_or(0);
                match inst.k3s_phase {
                    Some(K3sPhase::Ready)
                        if inst.cluster_id.is_some()
                            && (target.is_none() || inst.cluster_id == target) =>
                    {
                        let running = step.plan.to_version_id.clone().or_else(|| {
                            self.acct
                                .instance_module_version(&inst.id, step.plan.role)
                                .map(|v| v.id.clone())
                        });
                        return Some(Outcome::Succeeded(running));
                    }
                    Some(K3sPhase::JoinRejected) if since_start => {
                        return Some(Outcome::Failed {
                            reason: format!(
                                "join rejected: {}",
                                inst.last_join_rejection
                                    .as_deref()
                                    .unwrap_or("no reason given")
                            ),
                            rolled_back: false,
                            running: None,
                        })
                    }
                    Some(K3sPhase::BootstrapRejected) if since_start => {
                        return Some(Outcome::Failed {
                            reason: format!(
                                "bootstrap rejected: {}",
                                inst.last_bootstrap_rejection
                                    .as_deref()
                                    .unwrap_or("no reason given")
                            ),
                            rolled_back: false,
                            running: None,
                        })
                    }
                    _ => {}
                }
                if inst.status == InstanceStatus::Terminated {
                    return Some(Outcome::Failed {
                        reason: format!("instance {} was terminated", inst.id),
                        rolled_back: false,
                        running: None,
                    });
                }
                self.timed_out(step.started_at).then(|| Outcome::Failed {
                    reason: format!(
                        "{} was not ready in {} within {timeout}",
                        step.plan.node_name,
                        target.as_deref().unwrap_or("a new cluster")
                    ),
                    rolled_back: false,
                    running: None,
                })
            }
        }
    }

    /// Turns what happened to running steps into their outcomes, in the
    /// order the agents reported.
    fn outcomes(&mut self) {
        let mut due: Vec<(u64, usize, Outcome)> = (0..self.w.steps.len())
            .filter(|i| self.w.steps[*i].state == StepState::Running)
            .filter_map(|i| {
                let order = self.w.steps[i]
                    .agent_report
                    .as_ref()
                    .map_or(u64::MAX, |r| r.seq);
                self.outcome(i).map(|o| (order, i, o))
            })
            .collect();
        due.sort_by_key(|(order, i, _)| (*order, *i));
        for (_, i, outcome) in due {
            match outcome {
                Outcome::Succeeded(running) => self.succeed(i, running),
                Outcome::Failed {
                    reason,
                    rolled_back,
                    running,
                } => self.fail(i, reason, rolled_back, running),
            }
        }
    }

    fn succeed(&mut self, i: usize, running: Option<String>) {
        let id = self.w.id.clone();
        let step = &mut self.w.steps[i];
        step.state = StepState::Succeeded;
        step.finished_seq = Some(u64::MAX);
        self.w.consecutive_failures = 0;
        let payload = SkillStepSucceeded {
            execution_id: id.clone(),
            step: step.plan.step,
            instance_id: step.plan.instance_id.clone(),
            running_version_id: running,
        };
        let tag = format!("step/{}/succeeded", step.plan.step);
        self.events.push(self.ctx.event(&id, &tag, payload));
    }

    fn fail(&mut self, i: usize, reason: String, rolled_back: bool, running: Option<String>) {
        let id = self.w.id.clone();
        self.w.consecutive_failures += 1;
        let consecutive = self.w.consecutive_failures;
        let step = &mut self.w.steps[i];
        step.state = StepState::Failed;
        step.finished_seq = Some(u64::MAX);
        step.reason = Some(reason.clone());
        let payload = SkillStepFailed {
            execution_id: id.clone(),
            step: step.plan.step,
            instance_id: step.plan.instance_id.clone(),
            reason,
            rolled_back,
            running_version_id: running,
            consecutive_failures: consecutive,
        };
        let tag = format!("step/{}/failed", step.plan.step);
        self.events.push(self.ctx.event(&id, &tag, payload));
    }

    /// Aborts, completes, or starts the current batch's steps.
    fn advance(&mut self) {
        loop {
            let limit = self.w.max_consecutive_failures.max(1);
            if self.w.consecutive_failures >= limit {
                self.abort();
                return;
            }
            let batch = self
                .w
                .steps
                .iter()
                .filter(|s| !finished(s.state))
                .map(|s| s.plan.batch)
                .min();
            let Some(batch) = batch else {
                self.complete();
                return;
            };
            let pending: Vec<usize> = (0..self.w.steps.len())
                .filter(|i| {
                    let s = &self.w.steps[*i];
                    s.plan.batch == batch && s.state == StepState::Pending
                })
                .collect();
            let mut failed_now = false;
            for i in pending {
                match self.vip_gate(i) {
                    Gate::Open => self.start(i),
                    Gate::Wait(promotions) => self.promotions.extend(promotions),
                    Gate::Blocked(reason) => {
                        self.fail(i, reason, false, None);
                        failed_now = true;
                        if self.w.consecutive_failures >= limit {
                            break;
                        }
                    }
                }
            }
            if !failed_now {
                return;
            }
        }
    }

    fn abort(&mut self) {
        let mut failed: Vec<&powernode_projections::fleet::ExecutionStep> = self
            .w
            .steps
            .iter()
            .filter(|s| s.state == StepState::Failed)
            .collect();
        failed.sort_by_key(|s| s.finished_seq.unwrap_or(0));
        let n = self.w.consecutive_failures as usize;
        let last: Vec<String> = failed
            .iter()
            .rev()
            .take(n)
            .rev()
            .map(|s| {
                format!(
                    "{}: {}",
                    s.plan.node_name,
                    s.reason.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        let detail = format!(
            "{n} failure(s) in a row: {}; no further node touched",
            last.join("; ")
        );
        let id = self.w.id.clone();
        self.w.state = ExecutionState::Aborted;
        let payload = SkillExecutionAborted {
            execution_id: id.clone(),
            reason: "max_consecutive_failures".into(),
            detail,
        };
        self.events.push(self.ctx.event(&id, "aborted", payload));
    }

    fn complete(&mut self) {
        let (succeeded, failed) = self.w.counts();
        let id = self.w.id.clone();
        let cluster_id = match self.w.skill {
            SkillName::ProvisionCluster => self.provision_cluster(),
            SkillName::RollingModuleUpgrade | SkillName::PodSubnetRestamp => None,
        };
        self.w.state = ExecutionState::Completed;
        let payload = SkillExecutionCompleted {
            execution_id: id.clone(),
            succeeded,
            failed,
            cluster_id,
        };
        self.events.push(self.ctx.event(&id, "completed", payload));
    }

    /// Starts step `i` (and, for a joiner of a new cluster, assigns it the
    /// cluster).
    fn start(&mut self, i: usize) {
        let plan = self.w.steps[i].plan.clone();
        let assignment = match (plan.action, plan.batch) {
            (StepAction::Provision, b) if b > 0 => match self.provision_cluster() {
                Some(cluster) => self.assignment(&plan, &cluster),
                None => {
                    let reason = "no cluster to join: the bootstrap server's step made none".into();
                    self.fail(i, reason, false, None);
                    return;
                }
            },
            _ => None,
        };
        let id = self.w.id.clone();
        let step = &mut self.w.steps[i];
        step.state = StepState::Running;
        step.started_at = Some(self.ctx.now);
        let payload = SkillStepStarted {
            execution_id: id.clone(),
            step: plan.step,
            instance_id: plan.instance_id.clone(),
        };
        let tag = format!("step/{}/started", plan.step);
        self.events.push(self.ctx.event(&id, &tag, payload));
        self.events.extend(assignment);
        if !self.nudge.contains(&plan.instance_id) {
            self.nudge.push(plan.instance_id);
        }
    }

    /// The per-instance assignment that has a provisioned joiner join
    /// `cluster` (`None` when its instance is unknown).
    fn assignment(&self, plan: &PlanStep, cluster: &str) -> Option<Envelope> {
        let inst = self.acct.instances.get(&plan.instance_id)?;
        let extra = self
            .acct
            .templates
            .get(&inst.template_id)
            .and_then(|t| t.assignment(plan.role))
            .map(|a| a.config.extra.clone())
            .unwrap_or_default();
        let version = plan.to_version_id.clone().or_else(|| {
            self.acct
                .newest_module_version(plan.role)
                .map(|v| v.id.clone())
        });
        let payload = ModuleAssigned {
            assignment_id: format!("asg-{}-{}", self.w.id, plan.instance_id),
            template_id: inst.template_id.clone(),
            module_name: plan.role,
            config: ModuleConfig {
                target_cluster_id: Some(cluster.to_string()),
                extra,
            },
            module_version_id: version,
            instance_id: Some(plan.instance_id.clone()),
        };
        let tag = format!("step/{}/assigned", plan.step);
        Some(self.ctx.event(&self.w.id, &tag, payload))
    }

    /// Joiners whose step started earlier but whose assignment is not in
    /// the state (a crash between the two appends): assigned again (same id).
    fn repair_assignments(&mut self, before: &Execution) {
        let Some(cluster) = self.provision_cluster() else {
            return;
        };
        for (i, step) in before.steps.iter().enumerate() {
            let plan = &step.plan;
            if step.state != StepState::Running
                || plan.action != StepAction::Provision
                || plan.batch == 0
                || self.w.steps[i].state != StepState::Running
            {
                continue;
            }
            let Some(inst) = self.acct.instances.get(&plan.instance_id) else {
                continue;
            };
            let assigned = self
                .acct
                .templates
                .get(&inst.template_id)
                .and_then(|t| t.instance_assignments.get(&plan.instance_id))
                .is_some_and(|own| {
                    own.iter().any(|a| {
                        a.module_name == plan.role
                            && a.config.target_cluster_id.as_deref() == Some(cluster.as_str())
                    })
                });
            if !assigned {
                let plan = plan.clone();
                if let Some(e) = self.assignment(&plan, &cluster) {
                    self.events.push(e);
                }
            }
        }
    }
}
