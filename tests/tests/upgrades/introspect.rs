//! Scenario 8: `agent_introspect` of a node agent after an upgrade shows
//! the agent binary's package version, the simulated runtime, the module
//! on the version it was upgraded to (as the platform has it and as the
//! agent reports it), and nothing outdated.

use crate::world::*;
use anyhow::{ensure, Context as _};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_node_agent_shows_its_version_runtime_and_modules() -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w.cluster("intro", 2, 0, |_| AgentFlags::default()).await?;
    let before = w.introspect(&c.servers[1].instance_id).await?;
    ensure!(before["runtime"] == "simulated", "{before}");
    let args = World::upgrade_inputs(&c.server_template, "mod-k3s-server", SERVER_TO, 50, 1);
    let exec = w.execute(args).await?;
    let done = w
        .wait_finished(exec["id"].as_str().context("execution id")?)
        .await?;
    ensure!(done["status"] == "completed", "{done}");
    for s in &c.servers {
        assert_upgraded_node(&w, s, "k3s-server", SERVER_TO).await?;
    }
    Ok(())
}

/// `n` introspected after its `module` was upgraded to `version`.
pub async fn assert_upgraded_node(
    w: &World,
    n: &Node,
    module: &str,
    version: &str,
) -> anyhow::Result<()> {
    let node = w.wait_reported(n, module, version).await?;
    ensure!(
        node["agent_version"] == env!("CARGO_PKG_VERSION"),
        "the agent's package version {}: {node}",
        env!("CARGO_PKG_VERSION")
    );
    ensure!(node["runtime"] == "simulated", "{node}");
    ensure!(node["outdated"] == json!([]), "{node}");
    ensure!(node["instance_id"] == n.instance_id.as_str(), "{node}");
    let m = node["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["module_name"] == module);
    ensure!(
        m.is_some_and(|m| m["module_version_id"] == version
            && m["reported_version_id"] == version
            && m["k3s_version"] == "v1.31.0+k3s1"),
        "{module} on {version}, as the platform has it and as reported: {node}"
    );
    ensure!(
        node["upgrading"].is_null(),
        "no upgrade under way any more: {node}"
    );
    Ok(())
}
