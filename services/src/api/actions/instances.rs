//! Nodes and instances.

use super::{check_name, new_id, ActionContext};
use crate::api::auth::{fingerprint, new_token, KUBERNETES_PROVISION};
use crate::api::error::ApiError;
use powernode_events::payloads::fleet::{CniPlugin, InstanceProvisioned, NodeCreated};
use powernode_events::Envelope;
use serde::Deserialize;
use serde_json::{json, Value};

/// Nodes with at least this much memory are heavyweight (ovn-kubernetes).
pub const HEAVYWEIGHT_MB: u64 = 4096;

/// `system_create_node({hostname, node_template_id, memory_mb})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    hostname: String,
    node_template_id: String,
    memory_mb: u64,
}

pub async fn create_node(ctx: &ActionContext<'_>, a: CreateNode) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    check_name("hostname", &a.hostname)?;
    if a.memory_mb == 0 {
        return Err(ApiError::bad_request(
            "invalid_arguments",
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
    Ok(json!({ "node": node }))
}

/// `system_provision_instance({node_id, cni_plugin?})`: answers the instance
/// and, once, the credential its agent enrolls with (only its fingerprint is kept).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInstance {
    node_id: String,
    #[serde(default)]
    cni_plugin: Option<CniPlugin>,
}

pub async fn provision_instance(
    ctx: &ActionContext<'_>,
    a: ProvisionInstance,
) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    let (template_id, memory_mb) = {
        let fleet = ctx.fleet().await;
        let node = fleet
            .account(&ctx.operator.account)
            .and_then(|acc| acc.nodes.get(&a.node_id))
            .ok_or_else(|| ApiError::not_found("node", &a.node_id))?;
        (node.template_id.clone(), node.memory_mb)
    };
    if a.cni_plugin == Some(CniPlugin::OvnKubernetes) && memory_mb < HEAVYWEIGHT_MB {
        return Err(ApiError::bad_request(
            "CniProfileMismatchError",
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
    Ok(json!({ "instance": instance, "id": id, "enrollment_credential": credential }))
}
