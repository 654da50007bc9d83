//! Nodes and instances.

use super::sdwan::{conflict_backoff, GUARDED_ATTEMPTS};
use super::{check_name, handlers, new_id, views, ActionContext};
use crate::api::auth::{fingerprint, new_token, Permission};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::instances::{
    CreateNodeAnswer, CreateNodeArgs, InstanceIdArgs, InstanceStatusAnswer, InstanceView,
    ListInstancesAnswer, ListInstancesArgs, ListSystemNodesAnswer, ListSystemNodesArgs,
    ProvisionInstanceAnswer, ProvisionInstanceArgs,
};
use powernode_events::payloads::fleet::{
    CniPlugin, InstanceDrained, InstanceProvisioned, InstanceTerminated, NodeCreated,
};
use powernode_events::{AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet::{InstanceStatus, VipStatus};

use crate::services::provisioner::HEAVYWEIGHT_MB;

handlers! {
    CreateNode => create_node,
    ProvisionInstance => provision_instance,
    ListInstances => list_instances,
    DrainInstance => drain_instance,
    TerminateInstance => terminate_instance,
    ListSystemNodes => list_nodes,
}

/// `system_list_nodes({template_id?})` → `{nodes: [...]}`, oldest first.
pub async fn list_nodes(
    ctx: &ActionContext<'_>,
    a: ListSystemNodesArgs,
) -> Result<ListSystemNodesAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    if let Some(t) = &a.template_id {
        if fleet.template(&ctx.operator.account, t).is_none() {
            return Err(ApiError::not_found("template", t));
        }
    }
    let mut all: Vec<_> = fleet
        .account(&ctx.operator.account)
        .map(|acc| {
            acc.nodes
                .values()
                .filter(|n| a.template_id.as_ref().is_none_or(|t| *t == n.template_id))
                .collect()
        })
        .unwrap_or_default();
    all.sort_by_key(|n| n.created_seq);
    Ok(ListSystemNodesAnswer {
        nodes: all.into_iter().map(views::node).collect(),
    })
}

/// `system_create_node({hostname, node_template_id, memory_mb})`.
pub async fn create_node(
    ctx: &ActionContext<'_>,
    a: CreateNodeArgs,
) -> Result<CreateNodeAnswer, ApiError> {
    check_name("hostname", &a.hostname)?;
    if a.memory_mb == 0 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            "memory_mb must be positive",
        ));
    }
    if ctx
        .fleet()
        .await
        .template(&ctx.operator.account, &a.node_template_id)
        .is_none()
    {
        return Err(ApiError::not_found("template", &a.node_template_id));
    }
    let id = new_id("node");
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        NodeCreated {
            node_id: id.clone(),
            hostname: a.hostname,
            template_id: a.node_template_id,
            memory_mb: a.memory_mb,
        },
    );
    ctx.append(&[event]).await?;
    let fleet = ctx.fleet().await;
    let node = fleet
        .account(&ctx.operator.account)
        .and_then(|acc| acc.nodes.get(&id));
    Ok(CreateNodeAnswer {
        node: node.map(views::node),
    })
}

/// `system_provision_instance({node_id, cni_plugin?})`: answers the instance
/// and, once, the credential its agent enrolls with (only its fingerprint is kept).
pub async fn provision_instance(
    ctx: &ActionContext<'_>,
    a: ProvisionInstanceArgs,
) -> Result<ProvisionInstanceAnswer, ApiError> {
    let (template_id, memory_mb, hostname) = {
        let fleet = ctx.fleet().await;
        let node = fleet
            .account(&ctx.operator.account)
            .and_then(|acc| acc.nodes.get(&a.node_id))
            .ok_or_else(|| ApiError::not_found("node", &a.node_id))?;
        (
            node.template_id.clone(),
            node.memory_mb,
            node.hostname.clone(),
        )
    };
    if a.cni_plugin == Some(CniPlugin::OvnKubernetes) && memory_mb < HEAVYWEIGHT_MB {
        return Err(ApiError::bad_request(
            ErrorCode::CniProfileMismatch,
            format!(
                "ovn_kubernetes needs a heavyweight node (>= {HEAVYWEIGHT_MB} MiB); node {} has {memory_mb} MiB — use flannel or omit cni_plugin",
                a.node_id
            ),
        ));
    }
    let id = new_id("inst");
    let credential = new_token();
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        InstanceProvisioned {
            instance_id: id.clone(),
            node_id: a.node_id,
            template_id,
            cni_plugin: a.cni_plugin,
            enrollment_fingerprint: fingerprint(&credential),
        },
    );
    ctx.append(&[event]).await?;
    let fleet = ctx.fleet().await;
    let instance = fleet.instance(&ctx.operator.account, &id);
    if let Some(hook) = ctx.on_provision() {
        let _ = hook.send(crate::api::Provisioned {
            instance_id: id.clone(),
            hostname: hostname.clone(),
            credential: credential.clone(),
        });
    }
    Ok(ProvisionInstanceAnswer {
        instance: instance.map(views::instance),
        id,
        hostname,
        enrollment_credential: credential,
    })
}

/// An instance's public view (no credential), with its node's hostname.
fn instance_view(
    fleet: &powernode_projections::FleetState,
    account: &powernode_events::AccountId,
    i: &powernode_projections::fleet::Instance,
) -> InstanceView {
    InstanceView {
        instance: views::instance(i),
        hostname: fleet
            .account(account)
            .and_then(|a| a.nodes.get(&i.node_id))
            .map(|n| n.hostname.clone()),
    }
}

/// `system_list_instances({})` → `{instances: [...]}`, oldest first.
pub async fn list_instances(
    ctx: &ActionContext<'_>,
    _: ListInstancesArgs,
) -> Result<ListInstancesAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let mut all: Vec<_> = fleet
        .account(account)
        .map(|a| a.instances.values().collect())
        .unwrap_or_default();
    all.sort_by_key(|i| i.provisioned_seq);
    let out: Vec<InstanceView> = all
        .into_iter()
        .map(|i| instance_view(&fleet, account, i))
        .collect();
    Ok(ListInstancesAnswer { instances: out })
}

/// `system_drain_instance({id})`.
async fn drain_instance(
    ctx: &ActionContext<'_>,
    a: InstanceIdArgs,
) -> Result<InstanceStatusAnswer, ApiError> {
    set_instance_status(ctx, a, false).await
}

/// `system_terminate_instance({id})`.
async fn terminate_instance(
    ctx: &ActionContext<'_>,
    a: InstanceIdArgs,
) -> Result<InstanceStatusAnswer, ApiError> {
    set_instance_status(ctx, a, true).await
}

/// Drains (planned maintenance) or terminates an instance.
///
/// The decision is made on a projection that has applied the instance's
/// last event and appended under that guard, so concurrent calls append one
/// event: the others see it when they decide again and answer
/// `changed: false`. Draining an instance that holds a VIP moves the VIP
/// (the failover service hands it to the best candidate), so it needs
/// `system.sdwan_failover` too.
pub async fn set_instance_status(
    ctx: &ActionContext<'_>,
    a: InstanceIdArgs,
    terminate: bool,
) -> Result<InstanceStatusAnswer, ApiError> {
    let account = &ctx.operator.account;
    let aggregate = AggregateRef::new(AggregateType::Instance, a.id.clone());
    let mut changed = false;
    for attempt in 0..GUARDED_ATTEMPTS {
        let last = ctx.log().aggregate_last_seq(account, &aggregate).await?;
        ctx.wait_for(last.unwrap_or(0)).await?;
        let event = {
            let fleet = ctx.fleet().await;
            let instance = fleet
                .instance(account, &a.id)
                .ok_or_else(|| ApiError::not_found("instance", &a.id))?;
            let already = match instance.status {
                InstanceStatus::Terminated => true,
                InstanceStatus::Drained => !terminate,
                _ => false,
            };
            if already {
                None
            } else if terminate {
                Some(Envelope::new(
                    account.clone(),
                    ctx.actor(),
                    InstanceTerminated {
                        instance_id: a.id.clone(),
                    },
                ))
            } else {
                require_failover_for_held_vips(ctx, &fleet, &a.id)?;
                Some(Envelope::new(
                    account.clone(),
                    ctx.actor(),
                    InstanceDrained {
                        instance_id: a.id.clone(),
                    },
                ))
            }
        };
        let Some(event) = event else { break };
        match ctx
            .append_guarded(&event, last.map_or(Expect::NoEvents, Expect::LastSeq))
            .await
        {
            Ok(_) => {
                changed = true;
                break;
            }
            Err(ApiError {
                code: ErrorCode::Conflict,
                ..
            }) if attempt + 1 < GUARDED_ATTEMPTS => conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    let fleet = ctx.fleet().await;
    let i = fleet
        .instance(account, &a.id)
        .expect("the instance was just seen");
    Ok(InstanceStatusAnswer {
        instance: instance_view(&fleet, account, i),
        changed,
    })
}

/// Refuses to drain an instance holding a VIP without `system.sdwan_failover`:
/// the drain hands the VIP to another member.
fn require_failover_for_held_vips(
    ctx: &ActionContext<'_>,
    fleet: &powernode_projections::FleetState,
    instance_id: &str,
) -> Result<(), ApiError> {
    if ctx.operator.require(Permission::SdwanFailover).is_ok() {
        return Ok(());
    }
    let Some(acc) = fleet.account(&ctx.operator.account) else {
        return Ok(());
    };
    let held: Vec<String> = acc
        .virtual_ips
        .values()
        .filter(|v| {
            v.status == VipStatus::Allocated
                && acc
                    .peers
                    .get(&v.holder_peer_id)
                    .is_some_and(|p| p.instance_id == instance_id)
        })
        .map(|v| format!("{} ({})", v.id, v.vip))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "instance {instance_id} holds virtual IP(s) {}; draining it moves them to another member, which needs the permission {} (this token lacks it)",
            held.join(", "),
            Permission::SdwanFailover
        ),
    ))
}
