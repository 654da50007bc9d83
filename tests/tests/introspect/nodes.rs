//! Node agents: the projection's fields and the last heartbeat; other
//! accounts' instances do not exist for the caller.

use super::introspect;
use anyhow::{anyhow, ensure};
use powernode_tests::lifecycle_support::{wait_until, Platform, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_shows_its_instance_and_last_heartbeat() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let template = p.template("edge").await?;
    p.assign(&template, "k3s-server", None).await?;
    let (instance_id, credential) = p.provision("edge-1", &template, 2048).await?;

    // Before any beat: the projection's view, no heartbeat.
    let before = introspect(&p, &instance_id).await?;
    ensure!(before["kind"] == "node", "{before}");
    let node = &before["node"];
    ensure!(node["instance_id"] == instance_id.as_str(), "{before}");
    ensure!(node["hostname"] == "edge-1", "{before}");
    ensure!(node["status"] == "provisioned", "{before}");
    ensure!(node["last_heartbeat_at"].is_null(), "{before}");
    ensure!(
        node["modules"][0]["module_name"] == "k3s-server",
        "the assigned module is listed: {before}"
    );

    let _agent = p.spawn_agent(&credential, &p.state_dir("edge-1"))?;
    let heard = wait_until(WAIT, "a heartbeat and a handshake phase", || async {
        let a = introspect(&p, &instance_id)
            .await
            .map_err(|e| e.to_string())?;
        let n = &a["node"];
        if n["last_heartbeat_at"].is_string()
            && n["status"] == "enrolled"
            && n["handshake_phase"].is_string()
            && n["cluster_id"].is_string()
        {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
    .await?;
    let n = &heard["node"];
    ensure!(n["heartbeat_age_ms"].as_u64().is_some(), "{heard}");
    ensure!(
        n["agent_version"].is_string(),
        "a heard agent has a version (or `unknown`): {heard}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_instance_is_not_found_and_leaks_nothing() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let template = p.template("edge").await?;
    let (instance_id, _) = p.provision("secret-host", &template, 2048).await?;
    let other = p.operator("other").await?;
    let err = introspect(&other, &instance_id)
        .await
        .err()
        .ok_or_else(|| anyhow!("another account's instance was answered"))?;
    ensure!(err.code() == "not_found", "{err}");
    ensure!(!err.to_string().contains("secret-host"), "{err}");
    Ok(())
}
