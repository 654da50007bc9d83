//! The kubectl-grade verbs through the real binary against `powernode up
//! --simulate-agents`:
//!
//! * the tutorial with `create`/`get`/`--wait` only (no `call`, no JSON,
//!   no copied ids), ending with an active cluster and its kubeconfig;
//! * `get -o yaml|name|wide`, `--no-headers`, `describe`;
//! * `apply -f`: a good file applied in order with references; one bad
//!   document → nothing applied and the error names its index;
//! * `delete cluster` needs the typed name or `--yes`;
//! * `wait --for` times out naming what it saw last;
//! * `completion bash`, `man --dir`;
//! * `clusters kubeconfig --write` refuses an existing file, `--force`
//!   overwrites it, `--merge` merges (read back by the real `kubectl`).
//!
//! `cargo test -p powernode-tests --test cli_verbs`

use anyhow::{ensure, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{free_port, powernode, text};

/// `powernode up` with simulated agents; the CLI talks to it with the
/// data dir's admin token.
struct Platform {
    dir: tempfile::TempDir,
    _up: powernode_tests::tls_support::Up,
    bin: PathBuf,
    url: String,
    data: PathBuf,
}

async fn platform() -> anyhow::Result<Platform> {
    platform_with(&[]).await
}

async fn platform_with(extra: &[&str]) -> anyhow::Result<Platform> {
    let bin = powernode_bin()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    // The real default: https with the CA `up` makes in its data dir
    // (the CLI finds it there for a loopback URL).
    let mut args = vec!["--simulate-agents", "--heartbeat-ms", "200"];
    args.extend_from_slice(extra);
    let up = powernode_tests::tls_support::Up::start(&data, port, &args).await?;
    Ok(Platform {
        dir,
        url: up.url(),
        _up: up,
        bin,
        data,
    })
}

impl Platform {
    /// Runs the CLI (global options after the subcommand, as users type them).
    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(powernode(&self.bin)
            .current_dir(self.dir.path())
            .args(args)
            .args([
                "--url",
                &self.url,
                "--data-dir",
                self.data.to_str().unwrap(),
            ])
            .output()?)
    }

    /// Runs the CLI and answers its stdout; fails naming both streams.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        ensure!(
            out.status.success(),
            "powernode {} failed\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        Ok(text(&out.stdout))
    }

    /// Runs the CLI expecting a refusal; answers stderr.
    fn fails(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        ensure!(
            !out.status.success(),
            "powernode {} succeeded:\n{}",
            args.join(" "),
            text(&out.stdout)
        );
        Ok(text(&out.stderr))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// One host of the tutorial: template, node, instance (enrolled), peer.
fn host(p: &Platform, template: &str, hostname: &str) -> anyhow::Result<()> {
    let out = p.ok(&["create", "template", template])?;
    ensure!(
        out.starts_with("template/tmpl-") && out.contains("created"),
        "{out}"
    );
    let out = p.ok(&[
        "create",
        "node",
        hostname,
        "--template",
        template,
        "--memory-mb",
        "2048",
    ])?;
    ensure!(out.starts_with("node/"), "{out}");
    let out = p.ok(&[
        "create",
        "instance",
        hostname,
        "--wait",
        "--wait-timeout",
        "60s",
    ])?;
    ensure!(out.contains("created (enrolled)"), "{out}");
    let out = p.ok(&["create", "peer", hostname, "--network", "tut", "-o", "name"])?;
    ensure!(out.trim().starts_with("peer/"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_with_create_get_and_wait() -> anyhow::Result<()> {
    let p = platform().await?;
    p.ok(&["create", "network", "tut"])?;
    host(&p, "k3s-prod-server", "prod-1")?;

    // The cluster: k3s-server assigned, waited active; named after its node.
    let out = p.ok(&[
        "create",
        "cluster",
        "prod-1",
        "--template",
        "k3s-prod-server",
        "--wait",
        "--wait-timeout",
        "90s",
        "-o",
        "name",
    ])?;
    let cluster = out.trim().to_string();
    ensure!(cluster.starts_with("cluster/"), "{out}");
    let table = p.ok(&["get", "clusters"])?;
    ensure!(
        table.lines().next().unwrap_or_default().starts_with("NAME")
            && table.contains("prod-1")
            && table.contains("active"),
        "{table}"
    );

    // A worker joins by the cluster's name.
    host(&p, "k3s-prod-worker", "prod-worker-1")?;
    let out = p.ok(&[
        "create",
        "worker",
        "--template",
        "k3s-prod-worker",
        "--cluster",
        "prod-1",
        "--wait",
        "--wait-timeout",
        "90s",
    ])?;
    ensure!(out.contains("ready nodes of"), "{out}");
    let described = p.ok(&["describe", "cluster", "prod-1"])?;
    for want in ["Nodes:", "control-plane", "worker", "VIP:", "Events:"] {
        ensure!(described.contains(want), "no {want:?} in\n{described}");
    }

    // The kubeconfig, by the cluster's name.
    let kc = p.path("prod.yaml");
    let kc_s = kc.to_str().unwrap();
    let out = p.ok(&["clusters", "kubeconfig", "prod-1", "--write", kc_s])?;
    ensure!(out.contains("wrote the kubeconfig"), "{out}");
    ensure!(std::fs::read_to_string(&kc)?.contains("k3s-prod-1"));

    // Formats.
    let yaml: Value = serde_norway::from_str(&p.ok(&["get", "clusters", "-o", "yaml"])?)?;
    ensure!(yaml["clusters"][0]["name"] == "prod-1", "{yaml}");
    let names = p.ok(&["get", "instances", "-o", "name"])?;
    ensure!(
        names.lines().count() == 2 && names.lines().all(|l| l.starts_with("instance/inst-")),
        "{names}"
    );
    let wide = p.ok(&["get", "cl", "-o", "wide"])?;
    ensure!(
        wide.contains("BOOTSTRAP") && wide.contains("NETWORK"),
        "{wide}"
    );
    let bare = p.ok(&["get", "templates", "--no-headers"])?;
    ensure!(
        !bare.contains("NAME") && bare.lines().count() == 2,
        "{bare}"
    );
    let one: Value = serde_json::from_str(&p.ok(&["get", "inst", "prod-1", "-o", "json"])?)?;
    ensure!(
        one["hostname"] == "prod-1" && one["status"] == "enrolled",
        "{one}"
    );
    let peers = p.ok(&["get", "peers"])?;
    ensure!(peers.contains("prod-worker-1"), "{peers}");
    let nodes = p.ok(&["get", "nodes", "-o", "name"])?;
    ensure!(nodes.lines().count() == 2, "{nodes}");
    // The friendly commands and `call` take -o too.
    let names = p.ok(&["clusters", "list", "-o", "name"])?;
    ensure!(names.trim() == cluster, "{names}");
    let called = p.ok(&["call", "system_list_templates", "-o", "yaml"])?;
    ensure!(called.contains("templates:"), "{called}");

    // wait: met, and timed out naming what it saw.
    p.ok(&["wait", &cluster, "--for", "status=active"])?;
    let err = p.fails(&[
        "wait",
        "cluster/prod-1",
        "--for",
        "status=decommissioned",
        "--wait-timeout",
        "1s",
    ])?;
    ensure!(
        err.contains("timed out after 1s") && err.contains("last seen: status=active"),
        "{err}"
    );

    // delete: refused without a terminal or --yes; done with --yes.
    let err = p.fails(&["delete", "cluster", "prod-1"])?;
    ensure!(err.contains("--yes"), "{err}");
    let out = p.ok(&["delete", "cluster", "prod-1", "--yes", "--wait"])?;
    ensure!(out.contains("decommissioned"), "{out}");
    let gone = p.ok(&["get", "clusters"])?;
    ensure!(gone.contains("No clusters found."), "{gone}");
    let all = p.ok(&["get", "clusters", "--all"])?;
    ensure!(all.contains("decommissioned"), "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_checks_everything_before_sending_anything() -> anyhow::Result<()> {
    let p = platform().await?;
    // One bad document (a string where memory_mb is a number): nothing applied.
    let bad = p.path("bad.yaml");
    std::fs::write(
        &bad,
        "- action: system_create_template\n  args: {name: applied-never}\n---\n- action: system_sdwan_create_network\n  args: {name: net-never}\n- action: system_create_node\n  args: {hostname: n1, node_template_id: '${0.template.id}', memory_mb: lots}\n",
    )?;
    let err = p.fails(&["apply", "-f", bad.to_str().unwrap()])?;
    ensure!(
        err.contains("document 2") && err.contains("memory_mb") && err.contains("nothing applied"),
        "{err}"
    );
    let templates = p.ok(&["get", "templates"])?;
    ensure!(templates.contains("No templates found."), "{templates}");
    let networks = p.ok(&["get", "networks", "-o", "name"])?;
    ensure!(networks.trim().is_empty(), "{networks}");
    let unknown = p.path("unknown.json");
    std::fs::write(
        &unknown,
        r#"[{"action": "system_list_templates"}, {"action": "system_reboot", "args": {}}]"#,
    )?;
    let err = p.fails(&["apply", "-f", unknown.to_str().unwrap()])?;
    ensure!(
        err.contains("document 1") && err.contains("system_reboot"),
        "{err}"
    );

    // A good file: in order, later documents use earlier answers.
    let good = p.path("good.yaml");
    std::fs::write(
        &good,
        "- action: system_create_template\n  name: web\n  args: {name: web}\n- action: system_create_node\n  args: {hostname: web-1, node_template_id: '${web.template.id}', memory_mb: 2048}\n---\naction: system_provision_instance\nargs: {node_id: '${1.node.id}'}\n",
    )?;
    let out = p.ok(&["apply", "-f", good.to_str().unwrap()])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.len() == 4
            && lines[0].starts_with("[0] system_create_template → tmpl-")
            && lines[1].starts_with("[1] system_create_node → node-")
            && lines[2].starts_with("[2] system_provision_instance → inst-")
            && lines[3] == "applied 3 action(s)",
        "{out}"
    );
    let inst: Value = serde_json::from_str(&p.ok(&["get", "instance", "web-1", "-o", "json"])?)?;
    let tmpl: Value = serde_json::from_str(&p.ok(&["get", "template", "web", "-o", "json"])?)?;
    ensure!(inst["template_id"] == tmpl["id"], "{inst} {tmpl}");

    // A refusal mid-way names what was applied.
    let midway = p.path("midway.yaml");
    std::fs::write(
        &midway,
        "- action: system_create_template\n  args: {name: second}\n- action: system_create_node\n  args: {hostname: x, node_template_id: tmpl-missing, memory_mb: 1}\n- action: system_create_template\n  args: {name: third}\n",
    )?;
    let err = p.fails(&["apply", "-f", midway.to_str().unwrap()])?;
    ensure!(
        err.contains("document 1") && err.contains("documents 0..=0 applied"),
        "{err}"
    );
    let names = p.ok(&["get", "templates", "--no-headers"])?;
    ensure!(
        names.contains("second") && !names.contains("third"),
        "{names}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeconfig_write_refuses_forces_and_merges() -> anyhow::Result<()> {
    let p = platform().await?;
    p.ok(&["create", "network", "tut"])?;
    host(&p, "a", "alpha")?;
    p.ok(&[
        "create",
        "cluster",
        "alpha",
        "--template",
        "a",
        "--wait",
        "--wait-timeout",
        "90s",
    ])?;
    host(&p, "b", "beta")?;
    p.ok(&[
        "create",
        "cluster",
        "beta",
        "--template",
        "b",
        "--wait",
        "--wait-timeout",
        "90s",
    ])?;

    let kc = p.path("kube.yaml");
    let kc_s = kc.to_str().unwrap();
    std::fs::write(&kc, "placeholder\n")?;
    let err = p.fails(&["clusters", "kubeconfig", "alpha", "--write", kc_s])?;
    ensure!(
        err.contains("exists") && err.contains("--force") && err.contains("--merge"),
        "{err}"
    );
    ensure!(std::fs::read_to_string(&kc)? == "placeholder\n");
    p.ok(&[
        "clusters",
        "kubeconfig",
        "alpha",
        "--write",
        kc_s,
        "--force",
    ])?;
    p.ok(&["clusters", "kubeconfig", "beta", "--write", kc_s, "--merge"])?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        ensure!(std::fs::metadata(&kc)?.permissions().mode() & 0o777 == 0o600);
    }
    let view = kubectl(p.dir.path(), kc_s, &["config", "view", "-o", "json"])?;
    let names = |list: &str| -> Vec<String> {
        view[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    };
    for list in ["clusters", "contexts", "users"] {
        ensure!(names(list) == ["k3s-alpha", "k3s-beta"], "{list}: {view}");
    }
    ensure!(view["current-context"] == "k3s-beta", "{view}");
    // Merging again replaces by name.
    p.ok(&[
        "clusters",
        "kubeconfig",
        "alpha",
        "--write",
        kc_s,
        "--merge",
    ])?;
    let view = kubectl(p.dir.path(), kc_s, &["config", "view", "-o", "json"])?;
    ensure!(
        view["clusters"].as_array().map(Vec::len) == Some(2),
        "{view}"
    );
    ensure!(view["current-context"] == "k3s-alpha", "{view}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_waits_until_the_new_holder_applied_the_vip() -> anyhow::Result<()> {
    let p = platform_with(&["--silence-threshold-ms", "1500"]).await?;
    p.ok(&["create", "network", "tut"])?;
    host(&p, "s1", "ha-1")?;
    p.ok(&[
        "create",
        "cluster",
        "ha-1",
        "--template",
        "s1",
        "--wait",
        "--wait-timeout",
        "90s",
    ])?;
    // Two more servers join by the cluster's name (a generic assignment).
    host(&p, "s2", "ha-2")?;
    p.ok(&[
        "create",
        "node",
        "ha-3",
        "--template",
        "s2",
        "--memory-mb",
        "2048",
    ])?;
    p.ok(&["create", "instance", "ha-3", "--wait"])?;
    p.ok(&["create", "peer", "ha-3", "--network", "tut"])?;
    p.ok(&[
        "create",
        "assignment",
        "s2",
        "--module-name",
        "k3s-server",
        "--config",
        "target_cluster_id=ha-1",
    ])?;
    for i in ["instance/ha-2", "instance/ha-3"] {
        p.ok(&[
            "wait",
            i,
            "--for",
            "k3s_phase=ready",
            "--wait-timeout",
            "60s",
        ])?;
    }
    // The holder goes silent: an approval is asked for.
    p.ok(&["delete", "instance", "ha-1", "--yes"])?;
    let start = std::time::Instant::now();
    let approval = loop {
        let names = p.ok(&["get", "approvals", "-o", "name"])?;
        if let Some(a) = names.lines().next() {
            break a.trim_start_matches("approval/").to_string();
        }
        ensure!(start.elapsed().as_secs() < 60, "no approval within 60s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let out = p.ok(&[
        "approvals",
        "approve",
        &approval,
        "--wait",
        "--wait-timeout",
        "30s",
    ])?;
    ensure!(
        out.contains("applied by its holder at generation 2"),
        "{out}"
    );
    Ok(())
}

/// `kubectl` with `KUBECONFIG=kubeconfig`; its JSON output.
fn kubectl(home: &Path, kubeconfig: &str, args: &[&str]) -> anyhow::Result<Value> {
    let kubectl = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .context("kubectl is not on PATH: scripts/test installs it")?;
    let out = std::process::Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl failed: {}",
        text(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn completion_and_man_pages() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let out = powernode(&bin).args(["completion", "bash"]).output()?;
    let script = text(&out.stdout);
    ensure!(
        out.status.success() && script.contains("_powernode") && script.contains("describe"),
        "{script}"
    );
    for shell in ["zsh", "fish"] {
        let out = powernode(&bin).args(["completion", shell]).output()?;
        ensure!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = powernode(&bin).arg("man").output()?;
    ensure!(
        out.status.success() && text(&out.stdout).contains(".TH powernode"),
        "{}",
        text(&out.stderr)
    );
    let dir = tempfile::tempdir()?;
    let out = powernode(&bin)
        .args(["man", "--dir", dir.path().to_str().unwrap()])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    for page in [
        "powernode.1",
        "powernode-get.1",
        "powernode-apply.1",
        "powernode-clusters-kubeconfig.1",
    ] {
        ensure!(dir.path().join(page).is_file(), "no {page}");
    }
    Ok(())
}
