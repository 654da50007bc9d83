//! Skill executions: `execute_skill` and the actions about one execution.

use super::{handlers, ActionContext};
use crate::api::error::ApiError;
use powernode_actions::skills::{
    ExecuteSkillAnswer, ExecuteSkillArgs, ExecutionAnswer, ExecutionIdArgs, ListExecutionsAnswer,
    ListExecutionsArgs,
};

handlers! {
    ExecuteSkill => execute_skill,
    GetSkillExecution => get_execution,
    ListSkillExecutions => list_executions,
    PauseSkillExecution => pause_execution,
    ResumeSkillExecution => resume_execution,
    CancelSkillExecution => cancel_execution,
}

async fn execute_skill(
    _ctx: &ActionContext<'_>,
    _a: ExecuteSkillArgs,
) -> Result<ExecuteSkillAnswer, ApiError> {
    Err(ApiError::unavailable("execute_skill: not built yet"))
}

async fn get_execution(
    _ctx: &ActionContext<'_>,
    _a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    Err(ApiError::unavailable("not built yet"))
}

async fn list_executions(
    _ctx: &ActionContext<'_>,
    _a: ListExecutionsArgs,
) -> Result<ListExecutionsAnswer, ApiError> {
    Err(ApiError::unavailable("not built yet"))
}

async fn pause_execution(
    _ctx: &ActionContext<'_>,
    _a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    Err(ApiError::unavailable("not built yet"))
}

async fn resume_execution(
    _ctx: &ActionContext<'_>,
    _a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    Err(ApiError::unavailable("not built yet"))
}

async fn cancel_execution(
    _ctx: &ActionContext<'_>,
    _a: ExecutionIdArgs,
) -> Result<ExecutionAnswer, ApiError> {
    Err(ApiError::unavailable("not built yet"))
}
