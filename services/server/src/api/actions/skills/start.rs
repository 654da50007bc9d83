//! `execute_skill({skill, inputs, dry_run?})`.
//!
//! Two executions on one scope (`template/<id>`, `cluster/<id>`) never
//! both start: the execution id is derived from the account, the scope and
//! how many executions the scope has had
//! ([`crate::skills::next_execution_id`]), and the start
//! is appended under `Expect::NoEvents` on that execution's aggregate. Of
//! two concurrent starts one wins; the other decides again on a projection
//! that has seen the winner and is refused with `execution_in_progress`
//! naming it.

use super::super::{sdwan, ActionContext};
use super::{plan_error, provision, view, GUARDED_ATTEMPTS};
use crate::api::error::{ApiError, ErrorCode};
use crate::services::provisioner;
use crate::skills::{self, inputs, Plan, PlanError, SkillRequest};
use powernode_actions::skills::{ExecuteSkillAnswer, ExecuteSkillArgs};
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet::Execution;
use powernode_projections::FleetState;

/// `execute_skill`: a dry run answers the plan and appends nothing; a run
/// answers the started execution (`provision_cluster`: once the cluster is
/// there, see [`provision::run`]).
pub async fn execute_skill(
    ctx: &ActionContext<'_>,
    a: ExecuteSkillArgs,
) -> Result<ExecuteSkillAnswer, ApiError> {
    let request = inputs::parse(&a.skill, &a.inputs).map_err(|e| match e {
        inputs::InputError::UnknownSkill(_) => {
            ApiError::new(ErrorCode::UnknownSkill, e.to_string())
        }
        inputs::InputError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidArguments, m),
    })?;
    let account = ctx.operator.account.clone();
    if a.dry_run {
        let fleet = ctx.fleet().await;
        let plan = plan_for(&fleet, &account, &request).map_err(plan_error)?;
        return Ok(ExecuteSkillAnswer {
            execution: view::planned(&plan),
            cluster: None,
        });
    }
    if let SkillRequest::Provision(p) = &request {
        return provision::run(ctx, p).await;
    }
    let (id, _) = start(ctx, &request.scope(), |fleet| {
        plan_for(fleet, &account, &request)
    })
    .await?;
    let fleet = ctx.fleet().await;
    let execution = find(&fleet, &account, &id)?;
    Ok(ExecuteSkillAnswer {
        execution: view::execution(execution),
        cluster: None,
    })
}

/// The plan of `request` on `state`.
pub(super) fn plan_for(
    state: &FleetState,
    account: &AccountId,
    request: &SkillRequest,
) -> Result<Plan, PlanError> {
    match request {
        SkillRequest::RollingUpgrade(i) => skills::rolling_upgrade(state, account, i),
        SkillRequest::Provision(i) => skills::provision(state, account, i),
        SkillRequest::Restamp(i) => {
            let cluster =
                state
                    .cluster(account, &i.cluster_id)
                    .ok_or_else(|| PlanError::NotFound {
                        what: "cluster",
                        id: i.cluster_id.clone(),
                    })?;
            let stamp = provisioner::stamp(
                state,
                account,
                &cluster.bootstrap_instance_id,
                Some(&i.network_id),
            );
            if stamp.server_flags.is_empty() {
                return Err(PlanError::NothingToDo(format!(
                    "cluster {} gets no flannel flags from network {} (no pod_subnet_prefix, or not flannel); nothing to re-stamp",
                    cluster.id, i.network_id
                )));
            }
            skills::restamp_with(state, account, i, &stamp.server_flags)
        }
    }
}

/// The refusal of a start while `running` works on the same scope.
fn in_progress(running: &Execution) -> ApiError {
    ApiError::new(
        ErrorCode::ExecutionInProgress,
        format!(
            "execution {} ({}) is {} on {}; wait for it to finish, or cancel it",
            running.id,
            running.skill.as_str(),
            view::status(running.state).as_str(),
            running.scope
        ),
    )
}

/// Plans with `decide` and appends the start, one execution per `scope`
/// (the plan's) at a time; answers the execution id and its plan. An
/// execution running on the scope is named before anything is planned.
pub(super) async fn start(
    ctx: &ActionContext<'_>,
    scope: &str,
    decide: impl Fn(&FleetState) -> Result<Plan, PlanError>,
) -> Result<(String, Plan), ApiError> {
    let account = ctx.operator.account.clone();
    for attempt in 0..GUARDED_ATTEMPTS {
        let (plan, id) = {
            let fleet = ctx.fleet().await;
            let acct = fleet.account(&account);
            if let Some(running) = acct.and_then(|a| a.running_execution(scope)) {
                return Err(in_progress(running));
            }
            let plan = decide(&fleet).map_err(plan_error)?;
            debug_assert_eq!(plan.scope, scope, "a request's scope is its plan's");
            let id = skills::next_execution_id(&fleet, &account, scope);
            (plan, id)
        };
        let event = Envelope::new(account.clone(), ctx.actor(), plan.started(&id));
        match ctx.append_guarded(&event, Expect::NoEvents).await {
            Ok(_) => return Ok((id, plan)),
            Err(ApiError {
                code: ErrorCode::Conflict | ErrorCode::IdTaken,
                ..
            }) => {
                // Another start took this id: decide again once the
                // projection has seen it.
                let aggregate = AggregateRef::new(AggregateType::SkillExecution, id.as_str());
                let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
                ctx.wait_for(last.unwrap_or(0)).await?;
                sdwan::conflict_backoff(attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::unavailable(
        "too many executions started at once on this scope; retry",
    ))
}

/// The caller's execution `id`.
pub(super) fn find<'a>(
    fleet: &'a FleetState,
    account: &AccountId,
    id: &str,
) -> Result<&'a Execution, ApiError> {
    fleet
        .account(account)
        .and_then(|a| a.executions.get(id))
        .ok_or_else(|| ApiError::not_found("skill execution", id))
}
