//! Running the `powernode` binary in CLI tests: a clean client
//! environment, a free port, a child killed on drop.

use crate::http::action;
use anyhow::bail;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary with a clean client environment and stdin closed (no TTY):
/// none of the client's or server's variables, and a config file that does
/// not exist (so no operator's contexts leak in; a test that needs one sets
/// `POWERNODE_CONFIG` again).
pub fn powernode(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for var in [
        "POWERNODE_URL",
        "POWERNODE_TOKEN",
        "POWERNODE_CONTEXT",
        "POWERNODE_CA_CERT",
        "POWERNODE_TIMEOUT",
        "POWERNODE_DATA_DIR",
        "POWERNODE_LISTEN",
        "POWERNODE_INSECURE_HTTP",
        "POWERNODE_TLS_CERT",
        "POWERNODE_TLS_KEY",
        "POWERNODE_TLS_SAN",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.env(
        "POWERNODE_CONFIG",
        std::env::temp_dir().join("powernode-tests-no-config/config.yaml"),
    );
    c.stdin(Stdio::null());
    c
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs action `name`; its `data`, or an error naming the status and body.
pub async fn ok(port: u16, token: &str, name: &str, args: Value) -> anyhow::Result<Value> {
    let a = action(port, Some(token), name, &args).await?;
    if a.status != 200 {
        bail!("{name} answered {}: {}", a.status, a.body);
    }
    Ok(a.body["data"].clone())
}

/// A one-server cluster of `token`'s account on a network of its own (the
/// network, template and host all named `name`), through the API: network,
/// template, node, instance, peer, `k3s-server` assignment. Answers the
/// cluster (as `kubernetes_list_clusters` lists it) once it is active, or
/// fails after `within`. Needs simulated (or real) agents on the platform.
pub async fn one_server_cluster(
    port: u16,
    token: &str,
    name: &str,
    within: Duration,
) -> anyhow::Result<Value> {
    let t = token;
    let net = ok(
        port,
        t,
        "system_sdwan_create_network",
        json!({ "name": name }),
    )
    .await?;
    let tmpl = ok(port, t, "system_create_template", json!({ "name": name })).await?;
    let node = ok(
        port,
        t,
        "system_create_node",
        json!({"hostname": name, "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
    )
    .await?;
    let inst = ok(
        port,
        t,
        "system_provision_instance",
        json!({"node_id": node["node"]["id"]}),
    )
    .await?;
    ok(
        port,
        t,
        "system_sdwan_attach_peer",
        json!({"network_id": net["network"]["id"], "node_instance_id": inst["id"]}),
    )
    .await?;
    ok(
        port,
        t,
        "system_assign_module_to_template",
        json!({"template_id": tmpl["template"]["id"], "module_name": "k3s-server"}),
    )
    .await?;
    let network_id = net["network"]["id"].clone();
    let start = Instant::now();
    loop {
        let list = ok(port, t, "kubernetes_list_clusters", json!({})).await?;
        if let Some(c) = list["clusters"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["status"] == "active" && c["network_id"] == network_id)
        }) {
            return Ok(c.clone());
        }
        if start.elapsed() > within {
            bail!("no active cluster on {network_id} within {within:?}: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the `powernode up` on `port` wrote its admin token into
/// `data_dir` and answers with it; the token.
pub async fn admin_token(port: u16, data_dir: &Path) -> anyhow::Result<String> {
    let token_file = data_dir.join("admin.token");
    let start = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(&token_file) {
            let t = t.trim().to_string();
            if !t.is_empty()
                && action(port, Some(&t), "recent_events", &json!({}))
                    .await
                    .is_ok()
            {
                return Ok(t);
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("powernode up did not answer within 30s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
