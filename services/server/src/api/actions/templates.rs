//! Node templates.

use super::{check_name, handlers, new_id, views, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::templates::{
    AssignModuleArgs, CreateTemplateArgs, GetTemplateArgs, ListTemplatesAnswer, ListTemplatesArgs,
    TemplateAnswer,
};
use powernode_events::payloads::fleet::TemplateCreated;
use powernode_events::payloads::k3s::{K3sModule, ModuleAssigned, ModuleConfig};
use powernode_events::Envelope;

handlers! {
    CreateTemplate => create_template,
    GetTemplate => get_template,
    AssignModuleToTemplate => assign_module,
    ListTemplates => list_templates,
}

/// `system_list_templates({})` → `{templates: [...]}`, oldest first.
pub async fn list_templates(
    ctx: &ActionContext<'_>,
    _: ListTemplatesArgs,
) -> Result<ListTemplatesAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let mut all: Vec<_> = fleet
        .account(&ctx.operator.account)
        .map(|a| a.templates.values().collect())
        .unwrap_or_default();
    all.sort_by_key(|t| t.created_seq);
    Ok(ListTemplatesAnswer {
        templates: all.into_iter().map(views::template).collect(),
    })
}

/// `system_create_template({name})`.
pub async fn create_template(
    ctx: &ActionContext<'_>,
    a: CreateTemplateArgs,
) -> Result<TemplateAnswer, ApiError> {
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
    get_template(ctx, GetTemplateArgs { id }).await
}

/// `system_get_template({id})` → `{template: {id, name, module_assignments}}`.
pub async fn get_template(
    ctx: &ActionContext<'_>,
    a: GetTemplateArgs,
) -> Result<TemplateAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let template = fleet
        .template(&ctx.operator.account, &a.id)
        .ok_or_else(|| ApiError::not_found("template", &a.id))?;
    Ok(TemplateAnswer {
        template: views::template(template),
    })
}

/// `system_assign_module_to_template({template_id, module_name, config?,
/// module_version_id?})`. The assignment pins `module_version_id` (a
/// version of that module), else the module's newest version (unpinned
/// while the catalog has none).
/// `config.target_cluster_id` is checked when the agent asks to join, as the
/// runbook says; other config keys are kept verbatim (strings only).
pub async fn assign_module(
    ctx: &ActionContext<'_>,
    a: AssignModuleArgs,
) -> Result<TemplateAnswer, ApiError> {
    let module: K3sModule = super::modules::parse_module(&a.module_name)?;
    let module_version_id = {
        let fleet = ctx.fleet().await;
        let account = &ctx.operator.account;
        if fleet.template(account, &a.template_id).is_none() {
            return Err(ApiError::not_found("template", &a.template_id));
        }
        pinned_version(
            fleet.account(account),
            module,
            a.module_version_id.as_deref(),
        )?
    };
    let mut extra = a.config;
    let target_cluster_id = extra.remove("target_cluster_id").filter(|t| !t.is_empty());
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        ModuleAssigned {
            assignment_id: new_id("asg"),
            template_id: a.template_id.clone(),
            module_name: module,
            config: ModuleConfig {
                target_cluster_id,
                extra,
            },
            module_version_id,
            instance_id: None,
        },
    );
    ctx.append(&[event]).await?;
    get_template(ctx, GetTemplateArgs { id: a.template_id }).await
}

/// The version an assignment of `module` pins: `asked` when it is a version
/// of that module, else the newest (`None` while the catalog is empty).
fn pinned_version(
    account: Option<&powernode_projections::fleet::AccountState>,
    module: K3sModule,
    asked: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(id) = asked else {
        return Ok(account
            .and_then(|a| a.newest_module_version(module))
            .map(|v| v.id.clone()));
    };
    let version = account
        .and_then(|a| a.module_versions.get(id))
        .ok_or_else(|| ApiError::not_found("module version", id))?;
    if version.module_name != module {
        return Err(ApiError::new(
            ErrorCode::VersionOfAnotherModule,
            format!(
                "{id} is a version of {}, not of {}",
                version.module_name.module_id(),
                module.module_id()
            ),
        ));
    }
    Ok(Some(version.id.clone()))
}
