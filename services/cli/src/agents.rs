//! `powernode agents introspect <id>`: what a platform service's replicas
//! or a node's agent report about themselves (agent_introspect).

use super::output::{cell, field, Ctx, Table};
use crate::ApiArgs;
use powernode_actions::introspect::AgentIntrospectArgs;
use powernode_actions::AgentIntrospect;
use serde_json::Value;

/// `powernode agents`.
#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AgentsCommand,
}

/// Subcommands of `powernode agents`.
#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// A service's replicas (`sdwan_manager_agent`, `sdwan`, `provisioner`,
    /// `sensor`, `failover`, `skills`, `api`) or a node agent by instance
    /// id: status, lag, errors, versions (agent_introspect).
    Introspect {
        /// Service name or instance id.
        agent_id: String,
    },
}

/// Runs `powernode agents …`.
pub async fn run(api: &ApiArgs, args: AgentsArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        AgentsCommand::Introspect { agent_id } => {
            let answer = ctx
                .api
                .act::<AgentIntrospect>(&AgentIntrospectArgs { agent_id })
                .await?;
            let data = serde_json::to_value(&answer)?;
            ctx.show(&data, render);
        }
    }
    Ok(())
}

/// The table for an answer.
pub fn render(d: &Value) -> String {
    match d["kind"].as_str() {
        Some("node") => render_node(&d["node"]),
        _ => render_service(d),
    }
}

fn render_service(d: &Value) -> String {
    let mut t = Table::new(&[
        "REPLICA",
        "STATUS",
        "APPLIED",
        "HEAD",
        "LAG",
        "LAST ERROR",
        "CHECKPOINT AGE",
        "UPTIME",
        "HOST",
    ]);
    for r in d["replicas"].as_array().into_iter().flatten() {
        t.row(vec![
            field(r, "replica"),
            field(r, "status"),
            field(r, "applied_seq"),
            field(r, "log_head_seq"),
            field(r, "lag"),
            field(r, "last_error"),
            secs(&r["checkpoint_age_secs"]),
            secs(&r["uptime_secs"]),
            field(r, "host"),
        ]);
    }
    let empty = format!(
        "No replica of {} has reported (is the service running?).",
        field(d, "agent_id")
    );
    t.render(&empty)
}

fn render_node(n: &Value) -> String {
    let list = |key: &str| {
        let items: Vec<String> = n[key].as_array().into_iter().flatten().map(cell).collect();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut out = String::new();
    let mut kv = Table::new(&["FIELD", "VALUE"]);
    for (label, value) in [
        ("instance", field(n, "instance_id")),
        ("hostname", field(n, "hostname")),
        ("status", field(n, "status")),
        ("agent version", field(n, "agent_version")),
        ("runtime", field(n, "runtime")),
        ("capabilities", list("capabilities")),
        ("handshake phase", field(n, "handshake_phase")),
        ("cluster", field(n, "cluster_id")),
        ("last heartbeat", field(n, "last_heartbeat_at")),
        ("heartbeat age", ms(&n["heartbeat_age_ms"])),
        ("upgrading", field(n, "upgrading")),
        ("outdated (missing)", list("outdated")),
        ("recent errors", list("recent_errors")),
    ] {
        kv.row(vec![label.to_string(), value]);
    }
    out.push_str(&kv.render(""));
    let mut modules = Table::new(&["MODULE", "PLATFORM VERSION", "REPORTED VERSION", "K3S"]);
    for m in n["modules"].as_array().into_iter().flatten() {
        modules.row(vec![
            field(m, "module_name"),
            field(m, "module_version_id"),
            field(m, "reported_version_id"),
            field(m, "k3s_version"),
        ]);
    }
    if !modules.is_empty() {
        out.push('\n');
        out.push_str(&modules.render(""));
    }
    let mut wg = Table::new(&["NETWORK", "WG DESIRED", "WG APPLIED"]);
    for w in n["wireguard"].as_array().into_iter().flatten() {
        wg.row(vec![
            field(w, "network_id"),
            field(w, "desired"),
            field(w, "applied"),
        ]);
    }
    if !wg.is_empty() {
        out.push('\n');
        out.push_str(&wg.render(""));
    }
    out
}

/// Seconds as `12.3s` (or `-`).
fn secs(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"))
}

/// Milliseconds as `850ms` (or `-`).
fn ms(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_string(), |m| format!("{m}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_answer_is_one_row_per_replica() {
        let text = render(&json!({
            "agent_id": "sdwan_manager_agent", "kind": "service",
            "replicas": [{
                "service": "sdwan", "replica": "sdwan-b", "status": "stale",
                "applied_seq": 10, "log_head_seq": 25, "lag": 15, "last_error": null,
                "checkpoint_age_secs": 3.25, "uptime_secs": 60.0,
                "reported_at": "2026-01-01T00:00:00Z", "host": "h pid 1"
            }]
        }));
        assert!(text.contains("sdwan-b"), "{text}");
        assert!(text.contains("stale"), "{text}");
        assert!(text.contains("15"), "{text}");
        assert!(text.contains("3.2s") || text.contains("3.3s"), "{text}");
    }

    #[test]
    fn a_node_answer_lists_its_fields() {
        let text = render(&json!({
            "agent_id": "i-1", "kind": "node",
            "node": {
                "instance_id": "i-1", "hostname": "edge-1", "status": "enrolled",
                "agent_version": "unknown", "runtime": null, "capabilities": [],
                "modules": [{"module_name": "k3s-server", "module_version_id": "v-k3s-1.31.0",
                             "reported_version_id": null, "k3s_version": null}],
                "handshake_phase": "ready", "cluster_id": "c-1",
                "last_heartbeat_at": "2026-01-01T00:00:00Z", "heartbeat_age_ms": 850,
                "wireguard": [], "upgrading": null, "recent_errors": [],
                "outdated": ["module_versions"]
            }
        }));
        for want in [
            "edge-1",
            "unknown",
            "850ms",
            "module_versions",
            "v-k3s-1.31.0",
            "c-1",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
    }

    #[test]
    fn no_replica_says_so() {
        let text = render(&json!({"agent_id": "skills", "kind": "service"}));
        assert!(text.contains("No replica of skills"), "{text}");
    }
}
