//! Node templates.

use super::{check_name, new_id, ActionContext};
use crate::api::auth::KUBERNETES_PROVISION;
use crate::api::error::ApiError;
use powernode_events::payloads::fleet::TemplateCreated;
use powernode_events::Envelope;
use serde::Deserialize;
use serde_json::{json, Value};

/// `system_create_template({name})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    name: String,
}

pub async fn create_template(
    ctx: &ActionContext<'_>,
    a: CreateTemplate,
) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    check_name("name", &a.name)?;
    let id = new_id("tmpl");
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        TemplateCreated {
            template_id: id.clone(),
            name: a.name,
        },
    );
    ctx.append(&[event]).await?;
    get_template(ctx, GetTemplate { id }).await
}

/// `system_get_template({id})` → `{template: {id, name, module_assignments}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetTemplate {
    id: String,
}

pub async fn get_template(ctx: &ActionContext<'_>, a: GetTemplate) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let template = fleet
        .template(&ctx.operator.account, &a.id)
        .ok_or_else(|| ApiError::not_found("template", &a.id))?;
    Ok(json!({"template": template}))
}
