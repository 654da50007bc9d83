//! The module catalog: `system_create_module_version`, `system_list_modules`.
//!
//! A version is appended on its module's aggregate (`module/<module id>`)
//! under that aggregate's guard, decided on a projection that has applied
//! the aggregate's last event: two concurrent creations of one version
//! never both win (the second decides again and answers the first, or is
//! refused when its k3s release differs).

use super::{handlers, sdwan, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::modules::{
    CreateModuleVersionAnswer, CreateModuleVersionArgs, ListModulesAnswer, ListModulesArgs,
    ModuleInfo, ModuleInstance, ModuleVersion,
};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::skills::ModuleVersionCreated;
use powernode_events::{AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet::{self, AccountState, InstanceStatus};
use serde_json::Value;

handlers! {
    CreateModuleVersion => create_module_version,
    ListModules => list_modules,
}

/// Decisions made again when a concurrent creation went first.
const ATTEMPTS: usize = 20;

/// `system_create_module_version({module_name, version, k3s_version})`.
async fn create_module_version(
    ctx: &ActionContext<'_>,
    a: CreateModuleVersionArgs,
) -> Result<CreateModuleVersionAnswer, ApiError> {
    let module = parse_module(&a.module_name)?;
    check_version(&a.version)?;
    check_k3s_version(&a.k3s_version)?;
    let account = ctx.operator.account.clone();
    let id = module.version_id(&a.version);
    let aggregate = AggregateRef::new(AggregateType::Module, module.module_id());
    for attempt in 0..ATTEMPTS {
        let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
        ctx.wait_for(last.unwrap_or(0)).await?;
        if let Some(existing) = ctx
            .fleet()
            .await
            .account(&account)
            .and_then(|acc| acc.module_versions.get(&id))
        {
            if existing.k3s_version == a.k3s_version && existing.module_name == module {
                return Ok(CreateModuleVersionAnswer {
                    module_version: version_view(existing),
                });
            }
            return Err(ApiError::new(
                ErrorCode::ModuleVersionExists,
                format!(
                    "{id} already exists and installs k3s {}, not {}",
                    existing.k3s_version, a.k3s_version
                ),
            ));
        }
        let event = Envelope::new(
            account.clone(),
            ctx.actor(),
            ModuleVersionCreated {
                module_version_id: id.clone(),
                module_id: module.module_id().to_string(),
                module_name: module,
                version: a.version.clone(),
                k3s_version: a.k3s_version.clone(),
            },
        );
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match ctx.append_guarded(&event, expect).await {
            Ok(_) => break,
            Err(ApiError {
                code: ErrorCode::Conflict,
                ..
            }) if attempt + 1 < ATTEMPTS => sdwan::conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    let fleet = ctx.fleet().await;
    let created = fleet
        .account(&account)
        .and_then(|acc| acc.module_versions.get(&id))
        .ok_or_else(|| {
            ApiError::unavailable(format!("{id} was stored but is not readable yet; retry"))
        })?;
    Ok(CreateModuleVersionAnswer {
        module_version: version_view(created),
    })
}

/// `system_list_modules`: both modules, their versions (oldest first), and
/// what every instance whose template has the module runs.
async fn list_modules(
    ctx: &ActionContext<'_>,
    _a: ListModulesArgs,
) -> Result<ListModulesAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let empty = AccountState::default();
    let acc = fleet.account(&ctx.operator.account).unwrap_or(&empty);
    Ok(ListModulesAnswer {
        modules: K3sModule::ALL
            .into_iter()
            .map(|m| module_info(acc, m))
            .collect(),
    })
}

fn module_info(acc: &AccountState, module: K3sModule) -> ModuleInfo {
    let mut instances: Vec<ModuleInstance> = acc
        .instances
        .values()
        .filter(|i| i.status != InstanceStatus::Terminated)
        .filter(|i| {
            acc.templates
                .get(&i.template_id)
                .is_some_and(|t| t.assignment_for(&i.id, module).is_some())
        })
        .map(|i| ModuleInstance {
            instance_id: i.id.clone(),
            hostname: acc
                .nodes
                .get(&i.node_id)
                .map(|n| n.hostname.clone())
                .unwrap_or_default(),
            template_id: i.template_id.clone(),
            module_version_id: acc
                .instance_module_version(&i.id, module)
                .map(|v| v.id.clone()),
            k3s_version: i.k3s_version.clone(),
        })
        .collect();
    instances.sort_by(|a, b| (&a.hostname, &a.instance_id).cmp(&(&b.hostname, &b.instance_id)));
    ModuleInfo {
        id: module.module_id().to_string(),
        name: module,
        versions: acc
            .module_versions_of(module)
            .into_iter()
            .map(version_view)
            .collect(),
        newest_version_id: acc.newest_module_version(module).map(|v| v.id.clone()),
        instances,
    }
}

/// A catalog version as answers show it.
pub fn version_view(v: &fleet::ModuleVersion) -> ModuleVersion {
    let fleet::ModuleVersion {
        id,
        module_name,
        version,
        k3s_version,
        created_seq,
    } = v;
    ModuleVersion {
        id: id.clone(),
        module_id: module_name.module_id().to_string(),
        module_name: *module_name,
        version: version.clone(),
        k3s_version: k3s_version.clone(),
        created_seq: *created_seq,
    }
}

/// `k3s-server` or `k3s-agent`, else `invalid_arguments`.
pub fn parse_module(name: &str) -> Result<K3sModule, ApiError> {
    serde_json::from_value(Value::String(name.to_string())).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("unknown module_name {name:?}; known: k3s-server, k3s-agent"),
        )
    })
}

/// Whether `s` is 2 to 4 dot-separated numbers of at most 6 digits (`1.31.0`).
fn dotted_numbers(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn check_version(version: &str) -> Result<(), ApiError> {
    if dotted_numbers(version) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidArguments,
        format!(
            "version: {:?} is not dotted numbers such as 1.31.0",
            version.chars().take(64).collect::<String>()
        ),
    ))
}

/// A k3s release: `v<dotted numbers>`, then optional `-<pre-release>` and
/// `+<build>` of letters, digits and dots (`v1.31.0+k3s1`, `v1.32.0-rc1+k3s1`).
fn check_k3s_version(k3s: &str) -> Result<(), ApiError> {
    let ok = (|| {
        let rest = k3s.strip_prefix('v')?;
        let (core, build) = match rest.split_once('+') {
            Some((c, b)) => (c, Some(b)),
            None => (rest, None),
        };
        let (numbers, pre) = match core.split_once('-') {
            Some((n, p)) => (n, Some(p)),
            None => (core, None),
        };
        let tag = |t: &str| {
            !t.is_empty()
                && t.len() <= 32
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        };
        (dotted_numbers(numbers) && pre.is_none_or(tag) && build.is_none_or(tag)).then_some(())
    })()
    .is_some();
    if ok {
        return Ok(());
    }
    Err(ApiError::bad_request(
        ErrorCode::InvalidArguments,
        format!(
            "k3s_version: {:?} is not a k3s release such as v1.31.0+k3s1",
            k3s.chars().take(64).collect::<String>()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_releases_are_checked() {
        for good in ["1.31", "1.31.0", "1.31.0.1"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1",
            "v1.31.0",
            "1..0",
            "1.31.0-rc1",
            "1.a.0",
            "1.2.3.4.5",
        ] {
            let e = check_version(bad).expect_err(bad);
            assert!(e.message.starts_with("version: "), "{}", e.message);
        }
        for good in ["v1.31.0+k3s1", "v1.31.0", "v1.32.0-rc1+k3s1"] {
            assert!(check_k3s_version(good).is_ok(), "{good}");
        }
        for bad in [
            "1.31.0+k3s1",
            "v1.31.0+",
            "v1.31.0+k3s 1",
            "latest",
            "v1+k3s1",
        ] {
            let e = check_k3s_version(bad).expect_err(bad);
            assert!(e.message.starts_with("k3s_version: "), "{}", e.message);
        }
        assert!(parse_module("k3s-server").is_ok());
        let e = parse_module("etcd").expect_err("unknown");
        assert_eq!(e.code, ErrorCode::InvalidArguments);
    }
}
