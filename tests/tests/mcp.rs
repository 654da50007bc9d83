//! The concierge's MCP server, driven by the official MCP Python SDK
//! (`tests/python/mcp_session.py`, `mcp==2.3.0`, installed by
//! `scripts/test`) against a real `powernode up --simulate-agents`, over
//! both transports: `powernode mcp` on stdio and `/mcp` (streamable HTTP,
//! bearer token). The script asserts, and its JSON summary is checked here:
//! * every action is listed as a tool, with the right annotations;
//! * the tutorial's reads (clusters, a cluster, its nodes, its VIP) and a
//!   write (a network) work;
//! * a decommission needs its confirmation: refused with an id for another
//!   object, an unknown one, an expired one, another principal's; done with
//!   a fresh one, which is single use;
//! * with a client that supports elicitation, a declined or mistyped name
//!   refuses and the right name decommissions;
//! * another account's token does not see this account's cluster;
//! * every call is a `system.mcp.tool_called` event, without arguments.
//!
//! Also checked here: `/mcp` without a token is 401.

use anyhow::{bail, Context};
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{
    admin_token, free_port, ok, one_server_cluster, powernode, text, Running,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The confirmation TTL both transports run with (the script waits it out).
const TTL_SECS: u64 = 3;

struct Platform {
    _dir: tempfile::TempDir,
    _up: Running,
    port: u16,
    url: String,
    token: String,
    other: String,
}

async fn token_for(
    port: u16,
    admin: &str,
    name: &str,
    permissions: Value,
) -> anyhow::Result<String> {
    let account = ok(
        port,
        admin,
        "system_create_account",
        json!({ "name": name }),
    )
    .await?;
    let t = ok(
        port,
        admin,
        "system_create_operator_token",
        json!({ "account_id": account["account"]["id"], "permissions": permissions }),
    )
    .await?;
    Ok(t["token"].as_str().context("no token")?.to_string())
}

async fn platform(bin: &Path) -> anyhow::Result<Platform> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let up = Running(
        powernode(bin)
            .args([
                "up",
                // The MCP session is the subject here; TLS has its own tests.
                "--insecure-http",
                "--simulate-agents",
                "--heartbeat-ms",
                "200",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("POWERNODE_MCP_CONFIRMATION_TTL_SECS", TTL_SECS.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;
    let token = token_for(
        port,
        &admin,
        "mcp",
        json!([
            "system.kubernetes_provision",
            "system.kubernetes_decommission"
        ]),
    )
    .await?;
    let other = token_for(
        port,
        &admin,
        "mcp-other",
        json!(["system.kubernetes_decommission"]),
    )
    .await?;
    Ok(Platform {
        _dir: dir,
        _up: up,
        port,
        url: format!("http://127.0.0.1:{port}"),
        token,
        other,
    })
}

impl Platform {
    /// A one-server cluster on a network of its own; answers its id once
    /// it is active.
    async fn cluster(&self, name: &str) -> anyhow::Result<String> {
        let c = one_server_cluster(self.port, &self.token, name, Duration::from_secs(90)).await?;
        Ok(c["id"].as_str().context("no cluster id")?.to_string())
    }

    /// Runs the Python session over `transport` with two clusters; answers
    /// its summary.
    fn session(&self, bin: &Path, transport: &str, clusters: [&str; 2]) -> anyhow::Result<Value> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mcp_session.py");
        let config = json!({
            "transport": transport,
            "bin": bin,
            "url": self.url,
            "token": self.token,
            "other_token": self.other,
            "clusters": clusters,
            "ttl_secs": TTL_SECS,
        });
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(config.to_string())
            .output()
            .context("cannot run python3 (scripts/test installs mcp==2.3.0)")?;
        if !out.status.success() {
            bail!(
                "{} over {transport} failed:\nstdout:\n{}\nstderr:\n{}",
                script.display(),
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        let stdout = text(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("no JSON summary: {stdout}"))
    }
}

fn check_summary(s: &Value, transport: &str, clusters: [&str; 2]) {
    assert_eq!(s["transport"], transport, "{s}");
    let tools: Vec<&str> = s["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut names = powernode_server::api::actions::ACTIONS.to_vec();
    names.sort_unstable();
    assert_eq!(tools, names, "every action is a tool, and nothing else");
    let a = &s["annotations"];
    assert_eq!(
        a["kubernetes_decommission_cluster"],
        json!({"read_only": false, "destructive": true})
    );
    assert_eq!(
        a["system_terminate_instance"],
        json!({"read_only": false, "destructive": true})
    );
    assert_eq!(
        a["system_sdwan_failover_virtual_ip"],
        json!({"read_only": false, "destructive": true})
    );
    assert_eq!(
        a["kubernetes_list_clusters"],
        json!({"read_only": true, "destructive": false})
    );
    assert_eq!(
        a["system_sdwan_create_network"],
        json!({"read_only": false, "destructive": false})
    );
    assert!(s["reads"]["nodes"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["network_id"].as_str().is_some_and(|n| !n.is_empty()),
        "{s}"
    );
    assert_eq!(s["decommissioned_by_confirmation"], clusters[0]);
    assert_eq!(s["decommissioned_by_elicitation"], clusters[1]);
    assert_eq!(s["elicitations"], 3, "declined, mistyped, typed: {s}");
    let outcomes = &s["audit_outcomes"];
    for o in [
        "ok",
        "confirmation_requested",
        "confirmation_for_another_object",
        "confirmation_unknown",
        "confirmation_expired",
        "confirmation_declined",
        "confirmation_mismatch",
    ] {
        assert!(
            outcomes.as_array().unwrap().iter().any(|x| x == o),
            "{transport}: no audit outcome {o}: {outcomes}"
        );
    }
}

#[tokio::test]
async fn mcp_over_stdio_and_http_with_the_python_sdk() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin).await?;

    // /mcp needs a token like every other route.
    let anonymous = powernode_client::request(
        &p.url,
        "POST",
        "/mcp",
        None,
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
    )
    .await?;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    assert_eq!(
        anonymous.body["error"]["code"], "unauthorized",
        "{:?}",
        anonymous.body
    );

    let clusters = [
        p.cluster("mcp-a").await?,
        p.cluster("mcp-b").await?,
        p.cluster("mcp-c").await?,
        p.cluster("mcp-d").await?,
    ];
    let stdio = [clusters[0].as_str(), clusters[1].as_str()];
    let s = p.session(&bin, "stdio", stdio)?;
    check_summary(&s, "stdio", stdio);
    assert_eq!(s["other_principal"], "confirmation_unknown");

    let http = [clusters[2].as_str(), clusters[3].as_str()];
    let s = p.session(&bin, "http", http)?;
    check_summary(&s, "http", http);
    assert_eq!(s["other_principal"], "confirmation_of_another_principal");

    // The audit events are the account's, attributed to its token.
    let events = ok(
        p.port,
        &p.token,
        "recent_events",
        json!({"kind_prefix": "system.mcp.tool_called", "limit": 1000}),
    )
    .await?;
    let events = events["events"].as_array().context("no events")?;
    assert!(events.len() > 20, "{}", events.len());
    for e in events {
        let token_id = e["payload"]["token_id"].as_str().context("no token_id")?;
        assert!(!token_id.is_empty(), "{e}");
        // Never a token, nor the arguments.
        assert!(!e.to_string().contains(&p.token), "{e}");
        assert!(e["payload"].get("arguments").is_none(), "{e}");
    }
    Ok(())
}
