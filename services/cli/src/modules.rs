//! `powernode modules …`: the module catalog (k3s releases by version) and
//! which instance runs what.

use super::output::{line, print_json, Ctx, Table};
use crate::ApiArgs;
use anyhow::{bail, Context};
use powernode_actions::modules::{
    CreateModuleVersionAnswer, CreateModuleVersionArgs, ListModulesAnswer, ModuleInfo,
};
use powernode_actions::ActionName;
use serde_json::json;

/// `powernode modules`.
#[derive(Debug, clap::Args)]
pub struct ModulesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModulesCommand,
}

/// Subcommands of `powernode modules`.
#[derive(Debug, clap::Subcommand)]
pub enum ModulesCommand {
    /// The modules, their versions (newest marked), and what each instance
    /// runs (system_list_modules).
    List,
    /// Add a version to a module's catalog (system_create_module_version):
    /// `powernode modules add-version k3s-server 1.31.0 --k3s v1.31.0+k3s1`.
    AddVersion {
        /// `k3s-server` or `k3s-agent` (`mod-k3s-server` works too).
        module: String,
        /// Dotted numbers, e.g. `1.31.0`.
        version: String,
        /// The k3s release it installs (`INSTALL_K3S_VERSION`), e.g. `v1.31.0+k3s1`.
        #[arg(long = "k3s", value_name = "RELEASE")]
        k3s_version: String,
    },
}

/// Runs `powernode modules …`.
pub async fn run(api: &ApiArgs, args: ModulesArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        ModulesCommand::List => {
            let data = ctx
                .api
                .call(ActionName::ListModules.as_str(), &json!({}))
                .await?;
            if ctx.json() {
                print_json(&data);
            } else {
                let answer: ListModulesAnswer = serde_json::from_value(data)
                    .context("system_list_modules answered something unexpected")?;
                super::output::emit(&render_modules(&answer));
            }
        }
        ModulesCommand::AddVersion {
            module,
            version,
            k3s_version,
        } => {
            let args = CreateModuleVersionArgs {
                module_name: module_name(&module)?,
                version,
                k3s_version,
            };
            let data = ctx
                .api
                .call(
                    ActionName::CreateModuleVersion.as_str(),
                    &serde_json::to_value(&args)?,
                )
                .await?;
            if ctx.json() {
                print_json(&data);
            } else {
                let answer: CreateModuleVersionAnswer = serde_json::from_value(data)
                    .context("system_create_module_version answered something unexpected")?;
                let v = &answer.module_version;
                line(&format!(
                    "added {} to {}: version {}, installs k3s {}",
                    v.id, v.module_id, v.version, v.k3s_version
                ));
            }
        }
    }
    Ok(())
}

/// `k3s-server`, `mod-k3s-server` → `k3s-server`; anything else is refused
/// before a call is made.
pub fn module_name(given: &str) -> anyhow::Result<String> {
    let name = given.strip_prefix("mod-").unwrap_or(given);
    match name {
        "k3s-server" | "k3s-agent" => Ok(name.to_string()),
        _ => bail!("unknown module {given:?}: the modules are k3s-server and k3s-agent"),
    }
}

/// The catalog (one row per version, the newest marked) then the instances
/// and the version each is on.
pub fn render_modules(answer: &ListModulesAnswer) -> String {
    let mut versions = Table::new(&["MODULE", "VERSION-ID", "VERSION", "K3S", "NEWEST"]);
    for m in &answer.modules {
        if m.versions.is_empty() {
            versions.row(vec![
                m.id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "(no versions: unpinned installs use the runtime's default)".into(),
            ]);
        }
        for v in &m.versions {
            let newest = m.newest_version_id.as_deref() == Some(v.id.as_str());
            versions.row(vec![
                m.id.clone(),
                v.id.clone(),
                v.version.clone(),
                v.k3s_version.clone(),
                if newest { "*".into() } else { String::new() },
            ]);
        }
    }
    let mut out = versions.render("No modules.");
    let mut instances = Table::new(&[
        "INSTANCE", "HOSTNAME", "TEMPLATE", "MODULE", "VERSION", "K3S", "STATE",
    ]);
    for m in &answer.modules {
        for i in &m.instances {
            instances.row(vec![
                i.instance_id.clone(),
                i.hostname.clone(),
                i.template_id.clone(),
                m.id.clone(),
                i.module_version_id.clone().unwrap_or_else(|| "-".into()),
                i.k3s_version.clone().unwrap_or_else(|| "-".into()),
                instance_state(m, i.module_version_id.as_deref()),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&instances.render("No instance runs a module."));
    out
}

/// `newest`, `behind (newest v-…)` or `unpinned`.
fn instance_state(m: &ModuleInfo, on: Option<&str>) -> String {
    match (on, m.newest_version_id.as_deref()) {
        (None, _) => "unpinned".into(),
        (Some(v), Some(newest)) if v == newest => "newest".into(),
        (Some(_), Some(newest)) => format!("behind (newest {newest})"),
        (Some(_), None) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canned() -> ListModulesAnswer {
        serde_json::from_value(json!({
            "modules": [
                {
                    "id": "mod-k3s-server",
                    "name": "k3s-server",
                    "versions": [
                        {"id": "v-k3s-1.30.5", "module_id": "mod-k3s-server", "module_name": "k3s-server",
                         "version": "1.30.5", "k3s_version": "v1.30.5+k3s1", "created_seq": 10},
                        {"id": "v-k3s-1.31.0", "module_id": "mod-k3s-server", "module_name": "k3s-server",
                         "version": "1.31.0", "k3s_version": "v1.31.0+k3s1", "created_seq": 11}
                    ],
                    "newest_version_id": "v-k3s-1.31.0",
                    "instances": [
                        {"instance_id": "inst-a", "hostname": "s-1", "template_id": "tmpl-s",
                         "module_version_id": "v-k3s-1.30.5", "k3s_version": "v1.30.5+k3s1"},
                        {"instance_id": "inst-b", "hostname": "s-2", "template_id": "tmpl-s",
                         "module_version_id": "v-k3s-1.31.0", "k3s_version": "v1.31.0+k3s1"}
                    ]
                },
                {
                    "id": "mod-k3s-agent",
                    "name": "k3s-agent",
                    "versions": [],
                    "newest_version_id": null,
                    "instances": [
                        {"instance_id": "inst-w", "hostname": "w-1", "template_id": "tmpl-w",
                         "module_version_id": null, "k3s_version": null}
                    ]
                }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn the_catalog_marks_the_newest_and_who_is_behind() {
        let text = render_modules(&canned());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("MODULE"), "{text}");
        let newest = lines.iter().find(|l| l.contains("v-k3s-1.31.0")).unwrap();
        assert!(newest.trim_end().ends_with('*'), "{text}");
        let older = lines.iter().find(|l| l.contains("v-k3s-1.30.5")).unwrap();
        assert!(!older.trim_end().ends_with('*'), "{text}");
        let agent = lines
            .iter()
            .find(|l| l.starts_with("mod-k3s-agent"))
            .unwrap();
        assert!(agent.contains("(no versions"), "{text}");
        let a = lines.iter().find(|l| l.starts_with("inst-a")).unwrap();
        assert!(a.contains("behind (newest v-k3s-1.31.0)"), "{text}");
        let b = lines.iter().find(|l| l.starts_with("inst-b")).unwrap();
        assert!(b.ends_with("newest"), "{text}");
        let w = lines.iter().find(|l| l.starts_with("inst-w")).unwrap();
        assert!(w.ends_with("unpinned"), "{text}");
    }

    #[test]
    fn module_names_accept_ids_and_refuse_the_rest() {
        assert_eq!(module_name("k3s-server").unwrap(), "k3s-server");
        assert_eq!(module_name("mod-k3s-agent").unwrap(), "k3s-agent");
        let e = module_name("nginx").unwrap_err().to_string();
        assert!(e.contains("nginx") && e.contains("k3s-server"), "{e}");
    }
}
