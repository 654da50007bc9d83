//! One execution: `system_get_skill_execution`,
//! `system_list_skill_executions`, and pause, resume and cancel — each
//! decided on a projection that has applied the execution's last event and
//! appended under `Expect::LastSeq` of it (the skills service appends
//! there too: when it went first, the action decides again).

use super::super::{sdwan, ActionContext};
use super::start::find;
use super::{view, GUARDED_ATTEMPTS};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::skills::{
    ExecutionAnswer, ExecutionIdArgs, ListExecutionsAnswer, ListExecutionsArgs,
};
use powernode_events::payloads::skills::{
    SkillExecutionAborted, SkillExecutionPaused, SkillExecutionResumed, SkillName,
};
use powernode_events::{AggregateRef, AggregateType, Envelope, EventPayload};
use powernode_log::Expect;
use powernode_projections::fleet::{Execution, ExecutionState};

/// `system_get_skill_execution({execution_id})`.
pub async fn get_execution(
    ctx: &ActionContext<'_>,
    a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let e = find(&fleet, &ctx.operator.account, &a.execution_id)?;
    Ok(ExecutionAnswer {
        execution: view::execution(e),
    })
}

/// `system_list_skill_executions({skill?, status?})`, oldest first.
pub async fn list_executions(
    ctx: &ActionContext<'_>,
    a: ListExecutionsArgs,
) -> Result<ListExecutionsAnswer, ApiError> {
    let skill = match &a.skill {
        None => None,
        Some(s) => Some(SkillName::parse(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownSkill,
                format!(
                    "unknown skill {s:?}; known skills: {}",
                    crate::skills::inputs::known_skills()
                ),
            )
        })?),
    };
    let fleet = ctx.fleet().await;
    let mut all: Vec<&Execution> = fleet
        .account(&ctx.operator.account)
        .map(|acc| acc.executions.values().collect())
        .unwrap_or_default();
    all.sort_by_key(|e| e.started_seq);
    Ok(ListExecutionsAnswer {
        executions: all
            .into_iter()
            .filter(|e| skill.is_none_or(|s| e.skill == s))
            .map(view::execution)
            .filter(|v| a.status.is_none_or(|s| v.status == s))
            .collect(),
    })
}

/// `system_pause_skill_execution({execution_id, reason?})`: steps under
/// way finish, none starts. Pausing a paused execution answers it as is.
pub async fn pause_execution(
    ctx: &ActionContext<'_>,
    a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    let reason = match &a.reason {
        Some(r) => format!("paused by {}: {r}", ctx.actor()),
        None => format!("paused by {}", ctx.actor()),
    };
    change(ctx, &a.execution_id, |e| match e.state {
        ExecutionState::Running => Ok(Some(
            SkillExecutionPaused {
                execution_id: e.id.clone(),
                reason: reason.clone(),
            }
            .into(),
        )),
        ExecutionState::Paused => Ok(None),
        ExecutionState::Completed | ExecutionState::Aborted => Err(finished(e, "paused")),
    })
    .await
}

/// `system_resume_skill_execution({execution_id})`: a paused execution
/// goes on where it was. Resuming a running one answers it as is.
pub async fn resume_execution(
    ctx: &ActionContext<'_>,
    a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    change(ctx, &a.execution_id, |e| match e.state {
        ExecutionState::Paused => Ok(Some(
            SkillExecutionResumed {
                execution_id: e.id.clone(),
            }
            .into(),
        )),
        ExecutionState::Running => Ok(None),
        ExecutionState::Completed | ExecutionState::Aborted => Err(finished(e, "resumed")),
    })
    .await
}

/// `system_cancel_skill_execution({execution_id, reason?})`: aborts the
/// execution (steps under way finish; no further node is touched).
pub async fn cancel_execution(
    ctx: &ActionContext<'_>,
    a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    let detail = format!(
        "cancelled by {}: {}",
        ctx.actor(),
        a.reason.as_deref().unwrap_or("no reason given")
    );
    change(ctx, &a.execution_id, |e| match e.state {
        ExecutionState::Running | ExecutionState::Paused => Ok(Some(
            SkillExecutionAborted {
                execution_id: e.id.clone(),
                reason: "cancelled".into(),
                detail: detail.clone(),
            }
            .into(),
        )),
        ExecutionState::Completed | ExecutionState::Aborted => Err(finished(e, "cancelled")),
    })
    .await
}

/// The refusal to change a finished execution.
fn finished(e: &Execution, verb: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ExecutionFinished,
        format!(
            "execution {} has {}; it cannot be {verb}",
            e.id,
            match e.state {
                ExecutionState::Aborted => "been aborted",
                ExecutionState::Completed | ExecutionState::Running | ExecutionState::Paused =>
                    "completed",
            }
        ),
    )
}

/// Decides with `decide` on execution `id` as of its last event and
/// appends what it answers under that guard (nothing: the execution is
/// answered as it is).
async fn change(
    ctx: &ActionContext<'_>,
    id: &str,
    decide: impl Fn(&Execution) -> Result<Option<EventPayload>, ApiError>,
) -> Result<ExecutionAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let aggregate = AggregateRef::new(AggregateType::SkillExecution, id);
    for attempt in 0..GUARDED_ATTEMPTS {
        let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
        ctx.wait_for(last.unwrap_or(0)).await?;
        let decided = {
            let fleet = ctx.fleet().await;
            decide(find(&fleet, &account, id)?)?
        };
        let Some(payload) = decided else {
            break;
        };
        let event = Envelope::new(account.clone(), ctx.actor(), payload);
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match ctx.append_guarded(&event, expect).await {
            Ok(_) => break,
            Err(ApiError {
                code: ErrorCode::Conflict,
                ..
            }) if attempt + 1 < GUARDED_ATTEMPTS => sdwan::conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    get_execution(
        ctx,
        ExecutionIdArgs {
            execution_id: id.to_string(),
            reason: None,
        },
    )
    .await
}
