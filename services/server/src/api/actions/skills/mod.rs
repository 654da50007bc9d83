//! Skill executions: `execute_skill` and the actions about one execution.
//!
//! * [`start`] — `execute_skill`: reads the inputs, plans
//!   ([`crate::skills`]), answers a dry run's plan or starts the execution
//!   (one at a time per scope);
//! * [`provision`] — `provision_cluster`'s own steps around the start
//!   (attach, bootstrap assignment, waiting for the cluster);
//! * [`control`] — get, list, pause, resume, cancel;
//! * [`view`] — executions as answers show them.

mod control;
mod provision;
mod start;
mod view;

use super::handlers;
use crate::api::error::{ApiError, ErrorCode};
use crate::skills::PlanError;

handlers! {
    ExecuteSkill => start::execute_skill,
    GetSkillExecution => control::get_execution,
    ListSkillExecutions => control::list_executions,
    PauseSkillExecution => control::pause_execution,
    ResumeSkillExecution => control::resume_execution,
    CancelSkillExecution => control::cancel_execution,
}

/// How often a guarded append is decided again after another append to
/// the same execution went first.
const GUARDED_ATTEMPTS: usize = 20;

/// A planner's refusal as the API answers it.
fn plan_error(e: PlanError) -> ApiError {
    match e {
        PlanError::NotFound { what, id } => ApiError::not_found(what, &id),
        PlanError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidArguments, m),
        e @ PlanError::VersionOfAnotherModule { .. } => {
            ApiError::new(ErrorCode::VersionOfAnotherModule, e.to_string())
        }
        PlanError::NothingToDo(m) => ApiError::new(ErrorCode::NothingToUpgrade, m),
        PlanError::NotEnoughInstances(m) => ApiError::new(ErrorCode::NotEnoughInstances, m),
    }
}
