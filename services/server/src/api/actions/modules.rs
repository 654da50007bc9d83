//! The module catalog: `system_create_module_version`, `system_list_modules`.

use super::{handlers, ActionContext};
use crate::api::error::ApiError;
use powernode_actions::modules::{
    CreateModuleVersionAnswer, CreateModuleVersionArgs, ListModulesAnswer, ListModulesArgs,
};

handlers! {
    CreateModuleVersion => create_module_version,
    ListModules => list_modules,
}

async fn create_module_version(
    _ctx: &ActionContext<'_>,
    _a: CreateModuleVersionArgs,
) -> Result<CreateModuleVersionAnswer, ApiError> {
    Err(ApiError::unavailable(
        "system_create_module_version: not built yet",
    ))
}

async fn list_modules(
    _ctx: &ActionContext<'_>,
    _a: ListModulesArgs,
) -> Result<ListModulesAnswer, ApiError> {
    Err(ApiError::unavailable("system_list_modules: not built yet"))
}
