//! `provision_cluster`: one call bootstraps a cluster of N servers and M
//! workers from idle instances of the given templates.
//!
//! 1. The plan is started like any execution (one per server template at
//!    a time): the bootstrap server in batch 0, the other servers in batch
//!    1, the workers in the next batch.
//! 2. Every chosen instance is attached to the network when it is not a
//!    peer of it yet.
//! 3. The bootstrap server is assigned `k3s-server` for itself alone, with
//!    no target: it bootstraps. The skills service assigns the joiners
//!    once the cluster exists and completes the execution with its
//!    cluster.
//! 4. The call waits (up to `timeout_secs`) until the execution completes
//!    or is aborted and answers it with the cluster; after the timeout it
//!    answers the execution still running (`status: running`, no
//!    cluster): it goes on, and `system_get_skill_execution` follows it.
//!
//! When step 2 or 3 fails, the execution is aborted (`provision_failed`)
//! and the failure answered.

use super::super::{new_id, sdwan, views, ActionContext};
use super::start::{find, start};
use super::view;
use crate::api::error::ApiError;
use crate::skills::{self, Plan, ProvisionInputs};
use powernode_actions::sdwan::AttachPeerArgs;
use powernode_actions::skills::ExecuteSkillAnswer;
use powernode_events::payloads::k3s::{K3sModule, ModuleAssigned, ModuleConfig};
use powernode_events::payloads::skills::SkillExecutionAborted;
use powernode_events::Envelope;
use std::time::{Duration, Instant};

/// How often the call looks whether the execution has finished.
const POLL: Duration = Duration::from_millis(200);

/// Starts `provision_cluster` and waits for its cluster.
pub async fn run(
    ctx: &ActionContext<'_>,
    inputs: &ProvisionInputs,
) -> Result<ExecuteSkillAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let scope = skills::template_scope(&inputs.server_template_id);
    let (id, plan) = start(ctx, &scope, |fleet| {
        skills::provision(fleet, &account, inputs)
    })
    .await?;
    if let Err(e) = prepare(ctx, inputs, &plan).await {
        let abort = Envelope::new(
            account.clone(),
            ctx.actor(),
            SkillExecutionAborted {
                execution_id: id.clone(),
                reason: "provision_failed".into(),
                detail: format!("preparing the nodes failed: {}", e.message),
            },
        );
        if let Err(a) = ctx.append(&[abort]).await {
            tracing::warn!(execution_id = %id, error = %a.message, "could not abort the execution");
        }
        return Err(e);
    }
    let deadline = Instant::now() + Duration::from_secs(inputs.timeout_secs);
    loop {
        {
            let fleet = ctx.fleet().await;
            let e = find(&fleet, &account, &id)?;
            if e.state.is_finished() || Instant::now() >= deadline {
                let cluster = e
                    .cluster_id
                    .as_deref()
                    .and_then(|c| fleet.cluster(&account, c))
                    .map(views::cluster);
                return Ok(ExecuteSkillAnswer {
                    execution: view::execution(e),
                    cluster,
                });
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Attaches the plan's instances to the network and assigns the bootstrap
/// server its module.
async fn prepare(
    ctx: &ActionContext<'_>,
    inputs: &ProvisionInputs,
    plan: &Plan,
) -> Result<(), ApiError> {
    for step in &plan.steps {
        sdwan::attach_peer(
            ctx,
            AttachPeerArgs {
                network_id: inputs.network_id.clone(),
                node_instance_id: step.instance_id.clone(),
                lan_subnets: Vec::new(),
            },
        )
        .await?;
    }
    let Some(bootstrap) = plan.steps.first() else {
        return Ok(());
    };
    let assign = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        ModuleAssigned {
            assignment_id: new_id("asg"),
            template_id: inputs.server_template_id.clone(),
            module_name: K3sModule::K3sServer,
            config: ModuleConfig {
                target_cluster_id: None,
                extra: Default::default(),
            },
            module_version_id: bootstrap.to_version_id.clone(),
            instance_id: Some(bootstrap.instance_id.clone()),
        },
    );
    ctx.append(&[assign]).await?;
    Ok(())
}
