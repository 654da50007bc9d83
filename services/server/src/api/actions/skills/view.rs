//! Executions as answers show them: a `fleet::Execution` (or a dry run's
//! plan) copied into `powernode_actions::skills::SkillExecution`.

use crate::skills::Plan;
use chrono::{DateTime, SecondsFormat, Utc};
use powernode_actions::skills::{ExecutionStatus, PhaseView, SkillExecution, StepStatus, StepView};
use powernode_events::payloads::skills::{PhaseReport, PlanStep};
use powernode_projections::fleet::{Execution, ExecutionState, ExecutionStep, StepState};

/// An execution's status.
pub fn status(s: ExecutionState) -> ExecutionStatus {
    match s {
        ExecutionState::Running => ExecutionStatus::Running,
        ExecutionState::Paused => ExecutionStatus::Paused,
        ExecutionState::Completed => ExecutionStatus::Completed,
        ExecutionState::Aborted => ExecutionStatus::Aborted,
    }
}

/// An execution as it is.
pub fn execution(e: &Execution) -> SkillExecution {
    let Execution {
        id,
        skill,
        inputs,
        scope,
        max_consecutive_failures,
        steps,
        state,
        consecutive_failures,
        started_at,
        started_seq: _,
        finished_at,
        reason,
        cluster_id,
        last_seq,
    } = e;
    let (succeeded, failed) = e.counts();
    let plan: Vec<&PlanStep> = steps.iter().map(|s| &s.plan).collect();
    SkillExecution {
        id: id.clone(),
        skill: *skill,
        status: status(*state),
        scope: scope.clone(),
        inputs: serde_json::to_value(inputs).unwrap_or_default(),
        max_consecutive_failures: *max_consecutive_failures,
        batches: batches(&plan),
        steps: steps
            .iter()
            .map(|s| step(s, *state == ExecutionState::Aborted))
            .collect(),
        consecutive_failures: *consecutive_failures,
        succeeded,
        failed,
        started_at: Some(time(started_at)),
        finished_at: finished_at.as_ref().map(time),
        reason: reason.clone(),
        cluster_id: cluster_id.clone(),
        last_seq: *last_seq,
    }
}

/// A dry run's plan: status `planned`, id `""`, nothing started.
pub fn planned(plan: &Plan) -> SkillExecution {
    let steps: Vec<&PlanStep> = plan.steps.iter().collect();
    SkillExecution {
        id: String::new(),
        skill: plan.skill,
        status: ExecutionStatus::Planned,
        scope: plan.scope.clone(),
        inputs: serde_json::to_value(&plan.inputs).unwrap_or_default(),
        max_consecutive_failures: plan.max_consecutive_failures,
        batches: batches(&steps),
        steps: plan
            .steps
            .iter()
            .map(|p| plan_step(p, StepStatus::Pending))
            .collect(),
        consecutive_failures: 0,
        succeeded: 0,
        failed: 0,
        started_at: None,
        finished_at: None,
        reason: None,
        cluster_id: None,
        last_seq: 0,
    }
}

/// The step numbers of each batch, in order.
fn batches(steps: &[&PlanStep]) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    for s in steps {
        let b = s.batch as usize;
        if out.len() <= b {
            out.resize_with(b + 1, Vec::new);
        }
        out[b].push(s.step);
    }
    out
}

fn plan_step(p: &PlanStep, status: StepStatus) -> StepView {
    StepView {
        step: p.step,
        batch: p.batch,
        action: p.action,
        instance_id: p.instance_id.clone(),
        node_name: p.node_name.clone(),
        role: p.role.as_str().to_string(),
        cluster_id: p.cluster_id.clone(),
        from_version_id: p.from_version_id.clone(),
        to_version_id: p.to_version_id.clone(),
        vip_moves: p.vip_moves.clone(),
        status,
        started_at: None,
        finished_at: None,
        reason: None,
        rolled_back: None,
        phases: Vec::new(),
    }
}

/// A step; a step never started of an aborted execution is `skipped`.
fn step(s: &ExecutionStep, aborted: bool) -> StepView {
    let ExecutionStep {
        plan,
        state,
        started_at,
        started_seq: _,
        finished_at,
        finished_seq: _,
        agent_report,
        reason,
        rolled_back,
    } = s;
    let status = match state {
        StepState::Pending if aborted => StepStatus::Skipped,
        StepState::Pending => StepStatus::Pending,
        StepState::Running => StepStatus::Running,
        StepState::Succeeded => StepStatus::Succeeded,
        StepState::Failed => StepStatus::Failed,
    };
    StepView {
        started_at: started_at.as_ref().map(time),
        finished_at: finished_at.as_ref().map(time),
        reason: reason.clone(),
        rolled_back: *rolled_back,
        phases: agent_report
            .as_ref()
            .map(|r| r.phases.iter().map(phase).collect())
            .unwrap_or_default(),
        ..plan_step(plan, status)
    }
}

fn phase(p: &PhaseReport) -> PhaseView {
    PhaseView {
        phase: p.phase,
        ok: p.ok,
        at: DateTime::<Utc>::from_timestamp_millis(p.at_ms)
            .map(|t| time(&t))
            .unwrap_or_else(|| p.at_ms.to_string()),
        detail: p.detail.clone(),
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
