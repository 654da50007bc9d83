//! Day-2 skills, decided without I/O: the typed inputs of each skill
//! ([`inputs`]) and its plan ([`plan`]: which node each step touches, in
//! which batch, from which version to which), made from the fleet state
//! alone so that a dry run and the execution that follows it plan the
//! same. Batching rules (batch size, etcd quorum, the VIP holder last)
//! live in [`batch`].
//!
//! The API's `execute_skill` plans here and appends the plan; the skills
//! service runs it, and plans the pod-subnet re-stamp here too.

pub mod batch;
pub mod inputs;
pub mod plan;

pub use inputs::{
    ProvisionInputs, RestampInputs, SkillRequest, UpgradeInputs, DEFAULT_TIMEOUT_SECS,
};
pub use plan::{
    cluster_scope, execution_id, module_of_id, next_execution_id, provision, restamp, restamp_with,
    rolling_upgrade, template_scope, Plan, PlanError,
};

#[cfg(test)]
mod tests;
