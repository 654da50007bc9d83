//! `powernode clusters …`: list, inspect, fetch kubeconfigs, rotate join
//! tokens and decommission K3s clusters.

use super::confirm::confirm_decommission;
use super::output::{cell, field, key_values, line, print_json, Ctx, Table};
use crate::ApiArgs;
use anyhow::Context;
use powernode_actions::ActionName;
use serde_json::{json, Value};
use std::path::PathBuf;

/// `powernode clusters`.
#[derive(Debug, clap::Args)]
pub struct ClustersArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClustersCommand,
}

/// Subcommands of `powernode clusters`.
#[derive(Debug, clap::Subcommand)]
pub enum ClustersCommand {
    /// List the account's clusters (kubernetes_list_clusters).
    List {
        /// Include decommissioned clusters.
        #[arg(long)]
        all: bool,
    },
    /// Show one cluster (kubernetes_get_cluster).
    Get {
        /// Cluster name or id.
        id: String,
    },
    /// List a cluster's Kubernetes nodes (kubernetes_list_nodes).
    Nodes {
        /// Cluster name or id.
        id: String,
    },
    /// Print a cluster's kubeconfig (kubernetes_get_kubeconfig; audited).
    Kubeconfig {
        /// Cluster name or id.
        id: String,
        /// Write it to this file (mode 0600) instead of printing it; an
        /// existing file is refused without --force or --merge.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Overwrite an existing --write file.
        #[arg(long, requires = "write", conflicts_with = "merge")]
        force: bool,
        /// Merge into an existing --write file: clusters, contexts and
        /// users by name, its current-context set to this cluster's.
        #[arg(long, requires = "write")]
        merge: bool,
    },
    /// Decommission a cluster: its node rows go, its VIP is released, its
    /// instances are kept (kubernetes_decommission_cluster). Idempotent.
    Decommission {
        /// Cluster name or id.
        id: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Issue a new join token; agents holding the old one ask again
    /// (kubernetes_rotate_join_token).
    RotateToken {
        /// Cluster name or id.
        id: String,
    },
}

/// Runs `powernode clusters …`.
pub async fn run(api: &ApiArgs, args: ClustersArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    let mut command = args.command;
    match &mut command {
        ClustersCommand::List { .. } => {}
        ClustersCommand::Get { id }
        | ClustersCommand::Nodes { id }
        | ClustersCommand::Kubeconfig { id, .. }
        | ClustersCommand::Decommission { id, .. }
        | ClustersCommand::RotateToken { id } => *id = cluster_id(&ctx, id).await?,
    }
    match command {
        ClustersCommand::List { all } => {
            let data = ctx
                .api
                .call(
                    ActionName::ListClusters.as_str(),
                    &json!({ "include_decommissioned": all }),
                )
                .await?;
            ctx.show(&data, |d| render_list(d, 0));
            let empty = data["clusters"].as_array().is_none_or(Vec::is_empty);
            if empty && !ctx.json() {
                // The token may be why: say which accounts hold clusters.
                if let Some(hint) = crate::hint::empty_list_hint(&ctx.api, "clusters").await {
                    eprintln!("{hint}");
                }
            }
        }
        ClustersCommand::Get { id } => {
            let data = ctx
                .api
                .call(ActionName::GetCluster.as_str(), &json!({ "id": id }))
                .await?;
            ctx.show(&data, |d| render_cluster(&d["cluster"]));
        }
        ClustersCommand::Nodes { id } => {
            let data = ctx
                .api
                .call(ActionName::ListNodes.as_str(), &json!({ "cluster_id": id }))
                .await?;
            ctx.show(&data, |d| render_nodes(d, 0));
        }
        ClustersCommand::Kubeconfig {
            id,
            write,
            force,
            merge,
        } => {
            let mode = match (force, merge) {
                (_, true) => WriteMode::Merge,
                (true, _) => WriteMode::Force,
                _ => WriteMode::New,
            };
            kubeconfig(&ctx, &id, write, mode).await?
        }
        ClustersCommand::Decommission { id, yes } => decommission(&ctx, &id, yes).await?,
        ClustersCommand::RotateToken { id } => {
            let data = ctx
                .api
                .call(
                    ActionName::RotateJoinToken.as_str(),
                    &json!({ "cluster_id": id }),
                )
                .await?;
            ctx.show(&data, |d| {
                format!(
                    "rotated the join token of cluster {}; new token fingerprint {}\nagents holding the old token are refused (bad_token) and ask again\n",
                    field(d, "cluster_id"),
                    field(d, "token_fingerprint")
                )
            });
        }
    }
    Ok(())
}

/// The id of the cluster named (or with id) `given`; an unknown one is
/// passed on as it is (the server names it in its refusal).
async fn cluster_id(ctx: &Ctx, given: &str) -> anyhow::Result<String> {
    let kind = crate::kube::kinds::kind("cluster")?;
    let all = kind.list(&ctx.api, true).await?;
    match kind.pick(&all, given) {
        Ok(c) => Ok(kind.id_of(&c)),
        Err(e) if e.to_string().contains("ambiguous") => Err(e),
        Err(_) => Ok(given.to_string()),
    }
}

/// `{clusters:[…]}` as a table: ID NAME STATUS ENDPOINT NODES CNI VERSION.
pub fn render_list(data: &Value, indent: usize) -> String {
    let mut t = Table::new(&[
        "ID", "NAME", "STATUS", "ENDPOINT", "NODES", "CNI", "VERSION",
    ]);
    for c in data["clusters"].as_array().into_iter().flatten() {
        t.row(vec![
            field(c, "id"),
            field(c, "name"),
            field(c, "status"),
            field(c, "api_endpoint"),
            field(c, "node_count"),
            field(c, "cni_plugin"),
            field(c, "version"),
        ]);
    }
    t.render_indented(indent, "No clusters found.")
}

/// `{nodes:[…]}` as a table: INSTANCE ROLE STATUS VERSION NODE-NAME.
pub fn render_nodes(data: &Value, indent: usize) -> String {
    let mut t = Table::new(&["INSTANCE", "ROLE", "STATUS", "VERSION", "NODE-NAME"]);
    for n in data["nodes"].as_array().into_iter().flatten() {
        t.row(vec![
            field(n, "instance_id"),
            field(n, "role"),
            field(n, "status"),
            field(n, "version"),
            field(n, "node_name"),
        ]);
    }
    t.render_indented(indent, "No nodes.")
}

/// One cluster as `Label: value` lines.
pub fn render_cluster(c: &Value) -> String {
    let cni = match c.get("pod_cidr").filter(|p| !p.is_null()) {
        Some(p) => format!("{} (pod CIDR {})", field(c, "cni_plugin"), cell(p)),
        None => field(c, "cni_plugin"),
    };
    let flags = c["server_flags"]
        .as_array()
        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into());
    key_values(&[
        ("ID", field(c, "id")),
        ("Name", field(c, "name")),
        ("Flavor", field(c, "flavor")),
        ("Status", field(c, "status")),
        ("API endpoint", field(c, "api_endpoint")),
        ("Nodes", field(c, "node_count")),
        ("CNI", cni),
        ("Network", field(c, "network_id")),
        ("Version", field(c, "version")),
        ("Bootstrap instance", field(c, "bootstrap_instance_id")),
        ("Server flags", flags),
        ("Join token", field(c, "join_token_fingerprint")),
    ])
}

async fn kubeconfig(
    ctx: &Ctx,
    id: &str,
    write: Option<PathBuf>,
    mode: WriteMode,
) -> anyhow::Result<()> {
    if let (Some(path), WriteMode::New) = (&write, mode) {
        if path.exists() {
            anyhow::bail!(
                "{} exists; pass --force to overwrite it or --merge to merge into it",
                path.display()
            );
        }
    }
    let data = ctx
        .api
        .call(
            ActionName::GetKubeconfig.as_str(),
            &json!({ "cluster_id": id }),
        )
        .await?;
    let text = data["kubeconfig"].as_str().unwrap_or_default();
    match write {
        Some(path) => {
            let text = match mode {
                WriteMode::Merge if path.exists() => {
                    let old = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    crate::kube::kubeconfig::merge(&old, text)
                        .with_context(|| format!("cannot merge into {}", path.display()))?
                }
                _ => text.to_string(),
            };
            write_private(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if ctx.json() {
                print_json(&json!({
                    "written": path.display().to_string(),
                    "api_endpoint": data["api_endpoint"],
                }));
            } else {
                line(&format!(
                    "wrote the kubeconfig of cluster {id} to {} (mode 0600; server {})",
                    path.display(),
                    field(&data, "api_endpoint")
                ));
            }
        }
        None if ctx.json() => print_json(&data),
        None => super::output::emit(text),
    }
    Ok(())
}

/// How `clusters kubeconfig --write` treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// Refuse it.
    New,
    /// Overwrite it (`--force`).
    Force,
    /// Merge into it (`--merge`).
    Merge,
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(path)?;
        // An existing file keeps its mode on open; tighten it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(text.as_bytes())
    }
}

async fn decommission(ctx: &Ctx, id: &str, yes: bool) -> anyhow::Result<()> {
    let nothing_to_do = |ctx: &Ctx| {
        if ctx.json() {
            print_json(&json!({ "cluster_id": id, "changed": false }));
        } else {
            line(&format!(
                "cluster {id} is already decommissioned; nothing to do"
            ));
        }
    };
    if !yes {
        let data = ctx
            .api
            .call(ActionName::GetCluster.as_str(), &json!({ "id": id }))
            .await?;
        let c = &data["cluster"];
        if c["status"] == "decommissioned" {
            nothing_to_do(ctx);
            return Ok(());
        }
        confirm_decommission(id, c, yes)?;
    }
    match ctx
        .api
        .call(
            ActionName::DecommissionCluster.as_str(),
            &json!({ "cluster_id": id }),
        )
        .await
    {
        Ok(data) => {
            ctx.show(&data, |d| {
                format!(
                    "cluster {id} ({}) decommissioned: {} node row(s) removed, VIP {} released, instances kept: {}\n",
                    field(&d["cluster"], "name"),
                    field(d, "removed_nodes"),
                    field(d, "released_virtual_ip_id"),
                    field(d, "instances_kept"),
                )
            });
            Ok(())
        }
        Err(e) if e.has_code("already_decommissioned") => {
            nothing_to_do(ctx);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
