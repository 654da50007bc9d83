//! `powernode instances …`, `powernode networks list|peer-config` (the
//! grant commands are in [`super::grants`]) and `powernode vip get`
//! (`vip failover` lives in [`super::approvals`]).

use super::confirm::confirm_terminate;
use super::output::{cell, field, key_values, Ctx, Table};
use crate::ApiArgs;
use powernode_actions::ActionName;
use serde_json::{json, Value};

/// `powernode instances`.
#[derive(Debug, clap::Args)]
pub struct InstancesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: InstancesCommand,
}

/// Subcommands of `powernode instances`.
#[derive(Debug, clap::Subcommand)]
pub enum InstancesCommand {
    /// List the account's node instances (system_list_instances).
    List,
    /// Drain an instance for planned maintenance (system_drain_instance).
    Drain {
        /// Instance id.
        id: String,
    },
    /// Terminate an instance; its agent stops (system_terminate_instance).
    Terminate {
        /// Instance id.
        id: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `powernode networks`.
#[derive(Debug, clap::Args)]
pub struct NetworksArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NetworksCommand,
}

/// Subcommands of `powernode networks`.
#[derive(Debug, clap::Subcommand)]
pub enum NetworksCommand {
    /// List the account's SD-WAN networks (system_sdwan_list_networks).
    List,
    /// Give this machine a WireGuard tunnel into a network: makes the key
    /// pair here, sends only the public key and writes a wg-quick file
    /// (system_sdwan_create_access_grant).
    Grant(super::grants::GrantArgs),
    /// List access grants, all or one network's
    /// (system_sdwan_list_access_grants).
    Grants {
        /// Network id.
        network: Option<String>,
    },
    /// Revoke an access grant (system_sdwan_revoke_access_grant).
    RevokeGrant {
        /// Grant id.
        grant: String,
    },
    /// Show one peer's WireGuard config, desired and applied
    /// (system_sdwan_get_peer_config).
    PeerConfig {
        /// Peer id.
        peer: String,
    },
}

/// `powernode vip`.
#[derive(Debug, clap::Args)]
pub struct VipArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VipCommand,
}

/// Subcommands of `powernode vip`.
#[derive(Debug, clap::Subcommand)]
pub enum VipCommand {
    /// Show one virtual IP, its holder and failover candidates
    /// (system_sdwan_get_virtual_ip).
    Get(VipSelector),
    /// Move a VIP to another server: `--dry-run` shows the scored
    /// candidates; otherwise promotes the best one or `--to`
    /// (system_sdwan_failover_virtual_ip; permission system.sdwan_failover).
    Failover(super::approvals::FailoverArgs),
}

/// Which VIP: exactly one of `--cluster`, `--id`, `--name`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct VipSelector {
    /// The VIP of this cluster.
    #[arg(long, value_name = "CLUSTER_ID")]
    pub cluster: Option<String>,
    /// The VIP with this id.
    #[arg(long)]
    pub id: Option<String>,
    /// The only live VIP with this purpose, e.g. `k3s_api_endpoint`.
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `powernode instances …`.
pub async fn run_instances(api: &ApiArgs, args: InstancesArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        InstancesCommand::List => {
            let data = ctx
                .api
                .call(ActionName::ListInstances.as_str(), &json!({}))
                .await?;
            ctx.show(&data, |d| render_instances(d, 0));
        }
        InstancesCommand::Drain { id } => {
            let data = ctx
                .api
                .call(ActionName::DrainInstance.as_str(), &json!({ "id": id }))
                .await?;
            ctx.show(&data, |d| changed_line(d, "drained"));
        }
        InstancesCommand::Terminate { id, yes } => {
            if !yes {
                let list = ctx
                    .api
                    .call(ActionName::ListInstances.as_str(), &json!({}))
                    .await?;
                let found = list["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| i["id"] == id.as_str())
                    .cloned();
                let Some(i) = found else {
                    anyhow::bail!(powernode_client::Refusal {
                        status: 404,
                        code: "not_found".into(),
                        message: format!("no instance {id:?} in this account"),
                    });
                };
                if i["status"] == "terminated" {
                    super::output::line(&format!(
                        "instance {id} is already terminated; nothing to do"
                    ));
                    return Ok(());
                }
                confirm_terminate(&id, &i, yes)?;
            }
            let data = ctx
                .api
                .call(ActionName::TerminateInstance.as_str(), &json!({ "id": id }))
                .await?;
            ctx.show(&data, |d| changed_line(d, "terminated"));
        }
    }
    Ok(())
}

fn changed_line(d: &Value, done: &str) -> String {
    let i = &d["instance"];
    if d["changed"] == true {
        format!(
            "instance {} ({}) {done}\n",
            field(i, "id"),
            field(i, "hostname")
        )
    } else {
        format!(
            "instance {} ({}) is already {}; nothing to do\n",
            field(i, "id"),
            field(i, "hostname"),
            field(i, "status")
        )
    }
}

/// `{instances:[…]}` as a table.
pub fn render_instances(data: &Value, indent: usize) -> String {
    let mut t = Table::new(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "K3S-PHASE",
        "CLUSTER",
        "LAST-REJECTION",
    ]);
    for i in data["instances"].as_array().into_iter().flatten() {
        let rejection = i
            .get("last_join_rejection")
            .filter(|v| !v.is_null())
            .or_else(|| i.get("last_bootstrap_rejection"))
            .unwrap_or(&Value::Null);
        t.row(vec![
            field(i, "id"),
            field(i, "hostname"),
            field(i, "status"),
            field(i, "k3s_phase"),
            field(i, "cluster_id"),
            cell(rejection),
        ]);
    }
    t.render_indented(indent, "No instances found.")
}

/// Runs `powernode networks …`.
pub async fn run_networks(api: &ApiArgs, args: NetworksArgs) -> anyhow::Result<()> {
    match args.command {
        NetworksCommand::List => list_networks(&Ctx::new(api)?).await,
        NetworksCommand::Grant(a) => super::grants::grant(api, a).await,
        NetworksCommand::Grants { network } => super::grants::list(api, network).await,
        NetworksCommand::RevokeGrant { grant } => super::grants::revoke(api, grant).await,
        NetworksCommand::PeerConfig { peer } => {
            super::peer_config::run(&Ctx::new(api)?, &peer).await
        }
    }
}

/// `powernode networks list`.
async fn list_networks(ctx: &Ctx) -> anyhow::Result<()> {
    let data = ctx
        .api
        .call(ActionName::ListNetworks.as_str(), &json!({}))
        .await?;
    ctx.show(&data, |d| {
        let mut t = Table::new(&[
            "ID",
            "NAME",
            "HANDLE",
            "OVERLAY",
            "VIP-RANGE",
            "POD-SUBNET",
            "ROUTING",
            "PEERS",
        ]);
        for n in d["networks"].as_array().into_iter().flatten() {
            t.row(vec![
                field(n, "id"),
                field(n, "name"),
                field(n, "handle"),
                field(n, "overlay_prefix"),
                field(n, "vip_range"),
                field(n, "pod_subnet_prefix"),
                field(n, "routing_mode"),
                field(n, "peer_count"),
            ]);
        }
        t.render("No networks found.")
    });
    Ok(())
}

/// Runs `powernode vip …`.
pub async fn run_vip(api: &ApiArgs, args: VipArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        VipCommand::Get(sel) => {
            let query = match (sel.cluster, sel.id, sel.name) {
                (Some(c), _, _) => json!({ "cluster_id": c }),
                (_, Some(id), _) => json!({ "id": id }),
                (_, _, Some(name)) => json!({ "name": name }),
                _ => unreachable!("clap requires one selector"),
            };
            let data = ctx
                .api
                .call(ActionName::GetVirtualIp.as_str(), &query)
                .await?;
            ctx.show(&data, |d| render_vip(&d["virtual_ip"]));
        }
        VipCommand::Failover(a) => super::approvals::failover(&ctx, a).await?,
    }
    Ok(())
}

/// One VIP as `Label: value` lines: holder (and whether it is silent),
/// generation, what each member's agent reports holding (a split when more
/// than one does), failover candidates, a pending approval, the last
/// promotion.
pub fn render_vip(v: &Value) -> String {
    let candidates: Vec<String> = v["failover_candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} (peer {})", field(c, "instance_id"), field(c, "peer_id")))
        .collect();
    let silent = if v["holder_silent"] == true {
        let what = match v["silence_reason"].as_str() {
            Some("data_path") => "SILENT (data path: its VIP does not answer)",
            _ => "SILENT",
        };
        match v.get("silent_since").filter(|s| !s.is_null()) {
            Some(since) => format!(", {what} since {}", cell(since)),
            None => format!(", {what}"),
        }
    } else {
        String::new()
    };
    let applied: Vec<(String, String)> = v["applied_generations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(peer, g)| (peer.clone(), cell(g)))
        .collect();
    let generation = v["generation"].as_u64();
    let holder = v["holder_peer_id"].as_str().unwrap_or_default();
    let applied_text = if applied.is_empty() {
        "no agent reports holding it".to_string()
    } else {
        let mut list: Vec<String> = applied
            .iter()
            .map(|(peer, g)| {
                let stale = g
                    .parse::<u64>()
                    .ok()
                    .zip(generation)
                    .is_some_and(|(g, current)| g < current);
                format!(
                    "{peer} at generation {g}{}",
                    if stale { " (stale)" } else { "" }
                )
            })
            .collect();
        if v["status"] == "allocated" && !applied.iter().any(|(peer, _)| peer == holder) {
            list.push(format!("not yet the holder {holder}"));
        }
        let split = if v["split"] == true {
            " — SPLIT: two agents report holding it at the same generation".to_string()
        } else if applied.len() > 1 {
            format!(
                " — fenced: {} peers report holding it; only the newest generation serves (the older releases when its agent hears the newer one)",
                applied.len()
            )
        } else {
            String::new()
        };
        format!("{}{split}", list.join(", "))
    };
    let pending = match v.get("pending_approval").filter(|p| !p.is_null()) {
        Some(p) => format!(
            "{} (powernode approvals list; approve or reject it)",
            cell(p)
        ),
        None => "-".into(),
    };
    let last_promotion = match v.get("last_promotion").filter(|p| !p.is_null()) {
        Some(p) => format!(
            "generation {}: {} -> {} ({}) at {}",
            field(p, "generation"),
            field(p, "from_peer_id"),
            field(p, "to_peer_id"),
            field(p, "reason"),
            field(p, "at")
        ),
        None => "-".into(),
    };
    let data_path = match v.get("reachable").filter(|r| !r.is_null()) {
        Some(r) if v["reachable_now"] == true => format!(
            "reached holder {} at generation {} (probed by {} at {})",
            field(r, "holder_peer_id"),
            field(r, "generation"),
            field(r, "probed_by_peer_id"),
            field(r, "probed_at")
        ),
        Some(r) => format!(
            "not reached at generation {} yet (last reached: {} at generation {}, {})",
            field(v, "generation"),
            field(r, "holder_peer_id"),
            field(r, "generation"),
            field(r, "probed_at")
        ),
        None => "not checked yet (no probe through the VIP has reached a holder)".into(),
    };
    key_values(&[
        ("ID", field(v, "id")),
        ("VIP", field(v, "vip")),
        ("API endpoint", field(v, "api_endpoint")),
        ("Purpose", field(v, "purpose")),
        ("Cluster", field(v, "cluster_id")),
        ("Network", field(v, "network_id")),
        ("Status", field(v, "status")),
        ("Generation", field(v, "generation")),
        (
            "Holder",
            format!(
                "{} (peer {}{silent})",
                field(v, "holders"),
                field(v, "holder_peer_id"),
            ),
        ),
        ("Applied", applied_text),
        ("Data path", data_path),
        (
            "Failover candidates",
            if candidates.is_empty() {
                "none (a single server: failover has nowhere to go)".into()
            } else {
                format!(
                    "{} (scores: powernode vip failover {} --dry-run)",
                    candidates.join(", "),
                    field(v, "id")
                )
            },
        ),
        ("Pending approval", pending),
        ("Last promotion", last_promotion),
        ("Release reason", field(v, "release_reason")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vip_shows_its_failover_state() {
        let v = json!({
            "id": "vip-1", "vip": "fd00::100", "status": "allocated", "generation": 4,
            "holders": ["inst-b"], "holder_peer_id": "peer-b", "holder_silent": true,
            "silent_since": "2024-05-01T10:00:00Z",
            "applied_generations": {"peer-a": 3, "peer-b": 4}, "split": false,
            "failover_candidates": [{"peer_id": "peer-a", "instance_id": "inst-a"}],
            "pending_approval": "appr-1",
            "last_promotion": {"generation": 4, "from_peer_id": "peer-a",
                               "to_peer_id": "peer-b", "reason": "forced", "at": "t"},
        });
        let text = render_vip(&v);
        for expected in [
            "Generation:           4\n",
            "Holder:               inst-b (peer peer-b, SILENT since 2024-05-01T10:00:00Z)\n",
            "Applied:              peer-a at generation 3 (stale), peer-b at generation 4 — fenced: 2 peers",
            "Failover candidates:  inst-a (peer peer-a) (scores: powernode vip failover vip-1 --dry-run)\n",
            "Pending approval:     appr-1 (",
            "Last promotion:       generation 4: peer-a -> peer-b (forced) at t\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            text.contains("Data path:            not checked yet"),
            "{text}"
        );
        let zombie = render_vip(&json!({
            "status": "allocated", "generation": 2, "holders": ["inst-b"],
            "holder_peer_id": "peer-b", "holder_silent": true, "silence_reason": "data_path",
            "reachable": {"generation": 1, "holder_peer_id": "peer-a",
                          "probed_by_peer_id": "peer-c", "probed_at": "t1"},
            "reachable_now": false,
        }));
        assert!(
            zombie.contains("SILENT (data path: its VIP does not answer)"),
            "{zombie}"
        );
        assert!(
            zombie.contains(
                "not reached at generation 2 yet (last reached: peer-a at generation 1, t1)"
            ),
            "{zombie}"
        );
        let quiet = render_vip(&json!({
            "status": "allocated", "generation": 1,
            "holders": ["inst-a"], "holder_peer_id": "peer-a", "holder_silent": false,
            "applied_generations": {"peer-a": 1}, "split": false,
        }));
        assert!(quiet.contains("(peer peer-a)\n"), "{quiet}");
        assert!(quiet.contains("peer-a at generation 1\n"), "{quiet}");
        assert!(
            !quiet.contains("SPLIT") && !quiet.contains("not yet"),
            "{quiet}"
        );
        // Promoted, the old holder's agent gone: its holding is stale and
        // the new holder has not reported yet.
        let moved = render_vip(&json!({
            "status": "allocated", "generation": 2, "holder_peer_id": "peer-b",
            "applied_generations": {"peer-a": 1},
        }));
        assert!(
            moved.contains(
                "Applied:              peer-a at generation 1 (stale), not yet the holder peer-b\n"
            ),
            "{moved}"
        );
    }
}
