//! The friendly CLI and `powernode demo`, through the real binary: the demo
//! plays its tour and exits 0; `clusters list -o json` is JSON;
//! `clusters decommission` refuses without a terminal and without --yes,
//! and is idempotent with --yes.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use powernode_tests::bins::powernode_bin;

use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};

#[test]
fn demo_plays_the_tour_and_exits_zero() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let out = powernode(&bin)
        .args(["demo", "--timeout-secs", "90"])
        .output()?;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "[1] Setup",
        "Tutorial step 2",
        "system.k3s.cluster.bootstrapped",
        "is active; its api_endpoint is the VIP https://[",
        "joined",
        "Runbook Phase 2",
        "Runbook Phase 4",
        "failover_candidates: inst-",
        "system.k3s.handshake.join_rejected",
        "reason: cluster_not_found",
        "system.k3s.cluster.decommissioned",
        "decommissioned",
        "already_decommissioned",
        "powernode clusters list",
        "Day-2 · rolling upgrade, dry run",
        "moves first",
        "(no skill execution appended: a dry run appends nothing)",
        "system.skill.execution.completed",
        "succeeded, runs v-k3s-1.31.0",
        "system.sdwan.virtual_ip.promoted",
        "sdwan_manager_agent",
        "✓ it runs v-k3s-1.31.0",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // The temporary data dir is gone.
    let deleted = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Deleting "))
        .and_then(|l| l.strip_suffix('.'))
        .context("the demo did not say which directory it deleted")?;
    assert!(!Path::new(deleted).exists(), "{deleted} still exists");
    Ok(())
}

/// `powernode up` with simulated agents, and an operator with one active cluster.
struct Platform {
    _dir: tempfile::TempDir,
    _up: Running,
    port: u16,
    url: String,
    token: String,
    cluster: String,
    peer: String,
}

async fn platform(bin: &Path) -> anyhow::Result<Platform> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let up = Running(
        powernode(bin)
            .args([
                "up",
                "--insecure-http",
                "--simulate-agents",
                "--heartbeat-ms",
                "200",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;
    let account = ok(
        port,
        &admin,
        "system_create_account",
        json!({"name": "cli"}),
    )
    .await?;
    let token = ok(
        port,
        &admin,
        "system_create_operator_token",
        json!({
            "account_id": account["account"]["id"],
            "permissions": ["system.kubernetes_provision", "system.kubernetes_decommission", "system.kubernetes_kubeconfig"],
        }),
    )
    .await?["token"]
        .as_str()
        .context("no token")?
        .to_string();
    let t = &token;
    let net = ok(port, t, "system_sdwan_create_network", json!({"name": "n"})).await?;
    let tmpl = ok(port, t, "system_create_template", json!({"name": "srv"})).await?;
    let node = ok(
        port,
        t,
        "system_create_node",
        json!({"hostname": "srv-1", "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
    )
    .await?;
    let inst = ok(
        port,
        t,
        "system_provision_instance",
        json!({"node_id": node["node"]["id"]}),
    )
    .await?;
    let peer = ok(
        port,
        t,
        "system_sdwan_attach_peer",
        json!({"network_id": net["network"]["id"], "node_instance_id": inst["id"]}),
    )
    .await?["peer"]["id"]
        .as_str()
        .context("no peer id")?
        .to_string();
    ok(
        port,
        t,
        "system_assign_module_to_template",
        json!({"template_id": tmpl["template"]["id"], "module_name": "k3s-server"}),
    )
    .await?;
    let start = Instant::now();
    let cluster = loop {
        let list = ok(port, t, "kubernetes_list_clusters", json!({})).await?;
        if let Some(c) = list["clusters"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["status"] == "active"))
        {
            break c["id"].as_str().context("no cluster id")?.to_string();
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no active cluster within 60s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(Platform {
        _dir: dir,
        _up: up,
        port,
        url,
        token,
        cluster,
        peer,
    })
}

impl Platform {
    fn cli(&self, bin: &Path, args: &[&str]) -> anyhow::Result<Output> {
        Ok(powernode(bin)
            .env("POWERNODE_URL", &self.url)
            .env("POWERNODE_TOKEN", &self.token)
            .args(args)
            .output()?)
    }

    async fn status(&self) -> anyhow::Result<Value> {
        let c = ok(
            self.port,
            &self.token,
            "kubernetes_get_cluster",
            json!({"id": self.cluster}),
        )
        .await?;
        Ok(c["cluster"]["status"].clone())
    }
}

#[tokio::test]
async fn clusters_commands_list_as_json_and_decommission_safely() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin).await?;
    let id = p.cluster.as_str();

    // -o json: the action's data, parseable.
    let out = p.cli(&bin, &["clusters", "list", "-o", "json"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("not JSON: {}", text(&out.stdout)))?;
    assert_eq!(data["clusters"][0]["id"], id, "{data}");

    // The table.
    let out = p.cli(&bin, &["clusters", "list"])?;
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.starts_with("ID "), "{table}");
    for col in ["NAME", "STATUS", "ENDPOINT", "NODES", "CNI", "VERSION"] {
        assert!(table.lines().next().unwrap().contains(col), "{table}");
    }
    assert!(table.contains(id) && table.contains("active"), "{table}");

    // Errors: `powernode: error: <code> (<status>): <message>`, non-zero.
    let out = p.cli(&bin, &["clusters", "get", "cluster-nope"])?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("powernode: error: not_found (404): "),
        "{}",
        text(&out.stderr)
    );

    // No TTY, no --yes: refused, nothing changed.
    let out = p.cli(&bin, &["clusters", "decommission", id])?;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not a terminal") && stderr.contains("--yes"),
        "{stderr}"
    );
    assert_eq!(p.status().await?, "active");

    // --yes: decommissioned; again: nothing to do, still exit 0.
    let out = p.cli(&bin, &["clusters", "decommission", id, "--yes"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("decommissioned"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(p.status().await?, "decommissioned");
    let out = p.cli(&bin, &["clusters", "decommission", id, "--yes"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("already decommissioned; nothing to do"),
        "{}",
        text(&out.stdout)
    );
    // Without --yes too: nothing to confirm when nothing changes.
    let out = p.cli(&bin, &["clusters", "decommission", id])?;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // --all lists it; the default hides it.
    let out = p.cli(&bin, &["clusters", "list", "--all"])?;
    assert!(text(&out.stdout).contains("decommissioned"));
    let out = p.cli(&bin, &["clusters", "list", "-o", "json"])?;
    let data: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(data["clusters"], json!([]));
    Ok(())
}

#[tokio::test]
async fn peer_config_and_the_vips_data_path_are_shown() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin).await?;

    // -o json: the action's answer.
    let out = p.cli(&bin, &["networks", "peer-config", &p.peer, "-o", "json"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("not JSON: {}", text(&out.stdout)))?;
    assert_eq!(data["peer_id"], p.peer.as_str(), "{data}");
    assert!(data.get("in_sync").is_some(), "{data}");

    // The table names the peer and whether a key is registered.
    let out = p.cli(&bin, &["networks", "peer-config", &p.peer])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains(&p.peer) && table.contains("Public key:"),
        "{table}"
    );
    assert!(table.contains("In sync:"), "{table}");

    // An unknown peer: not found, non-zero.
    let out = p.cli(&bin, &["networks", "peer-config", "peer-nope"])?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("powernode: error: not_found (404): "),
        "{}",
        text(&out.stderr)
    );

    // vip get has a data-path line.
    let out = p.cli(&bin, &["vip", "get", "--cluster", &p.cluster])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Data path:"),
        "{}",
        text(&out.stdout)
    );
    Ok(())
}
