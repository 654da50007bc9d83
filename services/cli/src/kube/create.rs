//! `powernode create KIND [NAME] --flags…`: the flags are generated from
//! the creating action's argument schema (see [`super::flags`]); ids the
//! user would copy by hand (`--template web`) are resolved from names.

use super::flags::{add_flags, args_from, props, Prop};
use super::kinds::{self, is_live};
use super::wait;
use crate::output::{field, line, print_data, Format};
use crate::ApiArgs;
use anyhow::{anyhow, bail, Context};
use clap::{Arg, ArgAction, Command};
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// How one kind is created.
#[derive(Debug)]
pub struct CreateSpec {
    /// The kind, e.g. `template`.
    pub kind: &'static str,
    /// Other names.
    pub aliases: &'static [&'static str],
    /// The action it runs.
    pub action: ActionName,
    /// The property the positional NAME fills.
    pub positional: Option<&'static str>,
    /// Properties set by the kind itself (no flag).
    pub fixed: &'static [(&'static str, &'static str)],
    /// What it does.
    pub about: &'static str,
}

/// Every kind `create` makes.
pub const CREATES: &[CreateSpec] = &[
    CreateSpec { kind: "account", aliases: &["accounts", "acct"], action: ActionName::CreateAccount, positional: Some("name"), fixed: &[], about: "an account (admin only)" },
    CreateSpec { kind: "template", aliases: &["templates", "tmpl"], action: ActionName::CreateTemplate, positional: Some("name"), fixed: &[], about: "a node template" },
    CreateSpec { kind: "node", aliases: &["nodes", "no"], action: ActionName::CreateNode, positional: Some("hostname"), fixed: &[], about: "a node following a template (NAME is its hostname)" },
    CreateSpec { kind: "instance", aliases: &["instances", "inst"], action: ActionName::ProvisionInstance, positional: Some("node_id"), fixed: &[], about: "an instance on a node (NAME is the node); --wait: until its agent enrolled" },
    CreateSpec { kind: "network", aliases: &["networks", "net"], action: ActionName::CreateNetwork, positional: Some("name"), fixed: &[], about: "an SD-WAN network" },
    CreateSpec { kind: "peer", aliases: &["peers"], action: ActionName::AttachPeer, positional: Some("node_instance_id"), fixed: &[], about: "an instance attached to a network (NAME is the instance)" },
    CreateSpec { kind: "grant", aliases: &["grants", "accessgrant"], action: ActionName::CreateAccessGrant, positional: Some("name"), fixed: &[], about: "an operator access grant (prints its wg-quick file)" },
    CreateSpec { kind: "token", aliases: &["tokens"], action: ActionName::CreateOperatorToken, positional: Some("account_id"), fixed: &[], about: "an operator token for an account (NAME; printed this once)" },
    CreateSpec { kind: "moduleversion", aliases: &["module-version", "mv"], action: ActionName::CreateModuleVersion, positional: Some("module_name"), fixed: &[], about: "a catalog version of a module (NAME is the module)" },
    CreateSpec { kind: "assignment", aliases: &["assign"], action: ActionName::AssignModuleToTemplate, positional: Some("template_id"), fixed: &[], about: "a module assigned to a template (NAME is the template)" },
    CreateSpec { kind: "cluster", aliases: &["cl"], action: ActionName::AssignModuleToTemplate, positional: None, fixed: &[("module_name", "k3s-server")], about: "a K3s cluster: k3s-server assigned to --template, whose instance bootstraps it (the cluster takes that node's hostname, NAME); --network attaches the template's instances first; --wait: until it is active" },
    CreateSpec { kind: "worker", aliases: &["workers"], action: ActionName::AssignModuleToTemplate, positional: None, fixed: &[("module_name", "k3s-agent")], about: "k3s-agent assigned to --template with --cluster as its target; --wait: until its instances are ready nodes" },
];

/// The creating spec of `word`.
pub fn spec(word: &str) -> anyhow::Result<&'static CreateSpec> {
    let w = word.to_ascii_lowercase();
    CREATES
        .iter()
        .find(|s| s.kind == w || s.aliases.contains(&w.as_str()))
        .ok_or_else(|| {
            anyhow!(
                "cannot create {word:?}; kinds: {}",
                CREATES
                    .iter()
                    .map(|s| s.kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The kind whose id property `prop` names (`template_id` → template).
pub fn id_kind(prop: &str) -> Option<&'static str> {
    Some(match prop {
        "template_id" | "node_template_id" | "server_template_id" | "worker_template_id" => {
            "template"
        }
        "node_id" => "node",
        "network_id" => "network",
        "node_instance_id" | "instance_id" => "instance",
        "cluster_id" | "target_cluster_id" => "cluster",
        "grant_id" => "grant",
        "token_id" => "token",
        "approval_id" => "approval",
        "execution_id" => "execution",
        _ => return None,
    })
}

fn aliases_for(prop: &str, props: &[Prop]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(base) = prop.strip_suffix("_id") {
        out.push(base.replace('_', "-"));
        if let Some(k) = id_kind(prop) {
            out.push(k.to_string());
        }
    }
    out.sort();
    out.dedup();
    out.retain(|a| {
        !props.iter().any(|p| p.flag() == *a) && !crate::kube::GLOBAL_LONGS.contains(&a.as_str())
    });
    out
}

/// The command line of `create KIND`, generated from its action's schema.
pub fn command(spec: &CreateSpec) -> (Command, Vec<Prop>) {
    let props: Vec<Prop> = props(spec.action)
        .into_iter()
        .filter(|p| !spec.fixed.iter().any(|(f, _)| *f == p.name))
        .collect();
    let mut cmd = Command::new(format!("powernode create {}", spec.kind))
        .about(format!("Create {} ({}).", spec.about, spec.action))
        .disable_version_flag(true)
        .arg(
            Arg::new("__name")
                .value_name("NAME")
                .index(1)
                .help(match spec.positional {
                    Some(p) => format!("Sets --{}", p.replace('_', "-")),
                    None => {
                        "The cluster's name: the hostname of the template's node (checked)".into()
                    }
                }),
        );
    let mut flagged = props.clone();
    for p in &mut flagged {
        if spec.positional == Some(p.name.as_str()) {
            p.required = false;
        }
    }
    cmd = add_flags(cmd, &flagged, &|name| aliases_for(name, &props));
    if spec.kind == "cluster" {
        cmd = cmd.arg(
            Arg::new("__network")
                .long("network")
                .value_name("NETWORK")
                .help("Attach the template's instances to this network first (name or id)"),
        );
    }
    if spec.kind == "worker" {
        cmd = cmd.arg(
            Arg::new("__cluster")
                .long("cluster")
                .value_name("CLUSTER")
                .required(true)
                .help("The cluster to join (name or id): config target_cluster_id"),
        );
    }
    cmd = cmd
        .arg(
            Arg::new("__wait")
                .long("wait")
                .action(ArgAction::SetTrue)
                .help("Wait for the asynchronous effect"),
        )
        .arg(
            Arg::new("__wait_timeout")
                .long("wait-timeout")
                .value_name("DURATION")
                .value_parser(crate::api_args::parse_duration)
                .help("How long --wait waits (default: --timeout, else 2m)"),
        );
    let required: Vec<String> = flagged
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.clone())
        .collect();
    for r in required {
        cmd = cmd.mut_arg(r, |a| a.required(true));
    }
    let about = format!("Create {} ({}).", spec.about, spec.action);
    (crate::kube::with_globals(cmd).about(about), props)
}

/// Resolves every id-valued property of `args` given as a name.
pub async fn resolve_ids(api: &Api, args: &mut Map<String, Value>) -> anyhow::Result<()> {
    for (prop, v) in args.iter_mut() {
        if let (Some(k), Some(s)) = (id_kind(prop), v.as_str()) {
            let kind = kinds::kind(k)?;
            let obj = kind
                .resolve(api, s)
                .await
                .with_context(|| format!("--{}", prop.replace('_', "-")))?;
            *v = json!(kind.id_of(&obj));
        }
    }
    if let Some(Value::Object(config)) = args.get_mut("config") {
        if let Some(Value::String(c)) = config.get("target_cluster_id").cloned() {
            let kind = kinds::kind("cluster")?;
            config.insert(
                "target_cluster_id".into(),
                json!(kind.id_of(&kind.resolve(api, &c).await?)),
            );
        }
    }
    Ok(())
}

/// `powernode create KIND …`.
pub async fn run(global: &ApiArgs, kind: &str, rest: Vec<String>) -> anyhow::Result<()> {
    if matches!(kind, "-h" | "--help" | "help") {
        let mut cli = <crate::Cli as clap::CommandFactory>::command();
        if let Some(c) = cli.find_subcommand_mut("create") {
            c.print_long_help()?;
        }
        let mut kinds = String::from("\nKinds:\n");
        for s in CREATES {
            kinds.push_str(&format!("  {:<14} {} ({})\n", s.kind, s.about, s.action));
        }
        line(&kinds);
        return Ok(());
    }
    let spec = spec(kind)?;
    let (cmd, props) = command(spec);
    let m = match cmd
        .try_get_matches_from(std::iter::once(format!("create {}", spec.kind)).chain(rest))
    {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let api_args = crate::kube::merge_globals(global, &m)?;
    crate::output::set_no_headers(api_args.no_headers);
    let api = api_args.client()?;
    let mut args = args_from(&m, &props)?;
    for (k, v) in spec.fixed {
        args.insert(k.to_string(), json!(v));
    }
    let name = m.get_one::<String>("__name").cloned();
    if let (Some(p), Some(n)) = (spec.positional, &name) {
        if args.contains_key(p) {
            bail!("NAME and --{} both given; give one", p.replace('_', "-"));
        }
        args.insert(p.to_string(), json!(n));
    }
    if let Some(c) = m.try_get_one::<String>("__cluster").ok().flatten() {
        let config = args.entry("config").or_insert_with(|| json!({}));
        config["target_cluster_id"] = json!(c);
    }
    resolve_ids(&api, &mut args).await?;
    if spec.kind == "cluster" {
        prepare_cluster(
            &api,
            &args,
            name.as_deref(),
            m.try_get_one::<String>("__network").ok().flatten(),
        )
        .await?;
    }
    let data = api
        .call(spec.action.as_str(), &Value::Object(args.clone()))
        .await?;
    let wait_for = m.get_flag("__wait").then(|| {
        m.get_one::<Duration>("__wait_timeout")
            .copied()
            .or(api_args.timeout)
            .unwrap_or(wait::DEFAULT_WAIT)
    });
    report(&api, api_args.output, spec, &args, &data, wait_for).await
}

/// `create cluster`: NAME must be the hostname of one of the template's
/// nodes (the cluster takes it); `--network` attaches its instances.
async fn prepare_cluster(
    api: &Api,
    args: &Map<String, Value>,
    name: Option<&str>,
    network: Option<&String>,
) -> anyhow::Result<()> {
    let template = args["template_id"].as_str().unwrap_or_default();
    if let Some(n) = name {
        let nodes = kinds::kind("node")?.list(api, true).await?;
        let hostnames: Vec<String> = nodes
            .iter()
            .filter(|x| x["template_id"] == template)
            .map(|x| field(x, "hostname"))
            .collect();
        if !hostnames.iter().any(|h| h == n) {
            bail!(
                "a cluster takes the hostname of its bootstrap node, and template {template} has no node {n:?} (its nodes: {}); create one with `powernode create node {n} --template {template}`",
                if hostnames.is_empty() { "none".to_string() } else { hostnames.join(", ") }
            );
        }
    }
    if let Some(net) = network {
        let networks = kinds::kind("network")?;
        let network_id = networks.id_of(&networks.resolve(api, net).await?);
        let instances = kinds::kind("instance")?;
        for i in instances
            .list(api, true)
            .await?
            .iter()
            .filter(|i| i["template_id"] == template && is_live(i))
        {
            api.call(
                ActionName::AttachPeer.as_str(),
                &json!({ "network_id": network_id, "node_instance_id": instances.id_of(i) }),
            )
            .await?;
        }
    }
    Ok(())
}

/// The id of what `data` (an answer of `spec.action`) made.
pub fn made_id(data: &Value) -> String {
    for key in [
        "account",
        "template",
        "node",
        "instance",
        "network",
        "peer",
        "grant",
        "module_version",
        "cluster",
    ] {
        if let Some(id) = data[key]["id"].as_str() {
            return id.to_string();
        }
    }
    field(
        data,
        if data.get("token_id").is_some() {
            "token_id"
        } else {
            "id"
        },
    )
}

async fn report(
    api: &Api,
    format: Format,
    spec: &CreateSpec,
    args: &Map<String, Value>,
    data: &Value,
    wait_for: Option<Duration>,
) -> anyhow::Result<()> {
    let id = made_id(data);
    let template = args
        .get("template_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (shown, waited) = match (spec.kind, wait_for) {
        ("cluster", Some(t)) => {
            let c = wait::cluster_of_template(api, template, t).await?;
            (format!("cluster/{}", field(&c, "id")), Some(c))
        }
        ("worker", Some(t)) => {
            let cluster = args["config"]["target_cluster_id"]
                .as_str()
                .unwrap_or_default();
            let rows = wait::nodes_ready(api, template, cluster, t).await?;
            (
                format!("template/{template}"),
                Some(json!({ "nodes": rows })),
            )
        }
        ("instance", Some(t)) => {
            let k = kinds::kind("instance")?;
            let cond = wait::Condition::Field("status".into(), "enrolled".into());
            let i = wait::wait_for(api, k, &id, &cond, t).await?;
            (format!("instance/{id}"), Some(i))
        }
        ("cluster" | "worker" | "assignment", None) => (format!("template/{id}"), None),
        (kind, _) => (format!("{kind}/{id}"), None),
    };
    match format {
        f if f.is_data() => match &waited {
            Some(w) => print_data(f, &json!({ "created": data, "waited": w })),
            None => print_data(f, data),
        },
        Format::Name => line(&shown),
        _ => {
            match (spec.kind, &waited) {
                ("cluster", Some(c)) => line(&format!(
                    "{shown} active ({}, endpoint {}): k3s-server assigned to template/{template}",
                    field(c, "name"),
                    field(c, "api_endpoint")
                )),
                ("cluster", None) => line(&format!(
                    "template/{template} assigned k3s-server: its instance bootstraps the cluster (`powernode wait` or --wait for it)"
                )),
                ("worker", Some(_)) => line(&format!(
                    "template/{template} assigned k3s-agent: its instances are ready nodes of cluster/{}",
                    field(&args["config"], "target_cluster_id")
                )),
                ("worker", None) => line(&format!("template/{template} assigned k3s-agent")),
                ("instance", Some(_)) => line(&format!("{shown} created (enrolled)")),
                _ => line(&format!("{shown} created")),
            }
            // What the answer shows this once.
            if let Some(t) = data["token"].as_str() {
                line(&format!("token: {t}"));
            }
            if let Some(c) = data["enrollment_credential"].as_str() {
                line(&format!("enrollment credential (shown this once): {c}"));
            }
            if let Some(c) = data["wireguard_config"].as_str() {
                crate::output::emit(c);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_create_command_is_well_formed() {
        for s in CREATES {
            let (cmd, _) = command(s);
            cmd.debug_assert();
        }
        let (cmd, _) = command(spec("node").unwrap());
        let m = cmd
            .try_get_matches_from([
                "x",
                "web-1",
                "--template",
                "web",
                "--memory-mb",
                "2048",
                "-o",
                "name",
            ])
            .unwrap();
        assert_eq!(m.get_one::<String>("node_template_id").unwrap(), "web");
        assert_eq!(m.get_one::<String>("__name").unwrap(), "web-1");
        let _ = <crate::ApiArgs as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
    }
}
