//! `agent_introspect`: a platform service's replicas or a node agent.

use super::{handlers, ActionContext};
use crate::api::error::ApiError;
use powernode_actions::introspect::{AgentIntrospectAnswer, AgentIntrospectArgs};

handlers! {
    AgentIntrospect => agent_introspect,
}

async fn agent_introspect(
    _ctx: &ActionContext<'_>,
    _a: AgentIntrospectArgs,
) -> Result<AgentIntrospectAnswer, ApiError> {
    Err(ApiError::unavailable("agent_introspect: not built yet"))
}
