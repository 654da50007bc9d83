//! `powernode modules …` and `powernode skills …`, through the real binary
//! against `powernode up` with simulated agents (upgrades take 100 ms):
//! * `modules add-version` fills the catalog; a cluster of one server and
//!   three workers is pinned to 1.30.5; `modules list` shows who is behind;
//! * `skills run … --dry-run` prints the plan (two batches for three
//!   workers at batch_pct 50, every worker named) and appends nothing;
//! * `skills run` follows the execution to its end, a bar per batch and a
//!   line per node, and exits zero; `skills get -o json` shows every step
//!   succeeded on the target; `modules list` shows the workers on it;
//! * bad input is refused with its code and nothing runs (batch_pct 0,
//!   upgrading to the version already running, an unknown skill);
//!   `skills cancel` of a finished execution says so, with or without `--yes`;
//! * with upgrades to 1.31.0 made to fail, the run is aborted after one
//!   failure: the command exits non-zero saying why, the failed node is
//!   back on 1.30.5, and no later node was touched.

use anyhow::{bail, Context};
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// `powernode up` with simulated agents, an account and an operator token.
struct Platform {
    _dir: tempfile::TempDir,
    _up: Running,
    port: u16,
    url: String,
    token: String,
}

async fn platform(bin: &Path, extra: &[&str]) -> anyhow::Result<Platform> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let up = Running(
        powernode(bin)
            .args([
                "up",
                "--insecure-http",
                "--simulate-agents",
                "--heartbeat-ms",
                "100",
                "--node-upgrade-ms",
                "100",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;
    let account = ok(
        port,
        &admin,
        "system_create_account",
        json!({"name": "cli-skills"}),
    )
    .await?;
    let token = ok(
        port,
        &admin,
        "system_create_operator_token",
        json!({ "account_id": account["account"]["id"], "permissions": ["system.kubernetes_provision"] }),
    )
    .await?;
    Ok(Platform {
        _dir: dir,
        _up: up,
        port,
        url: format!("http://127.0.0.1:{port}"),
        token: token["token"].as_str().context("no token")?.to_string(),
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

    async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        ok(self.port, &self.token, name, args).await
    }

    /// A template with `module` assigned (pinned to `version`, joining
    /// `target` when given); its id.
    async fn template(
        &self,
        name: &str,
        module: &str,
        version: &str,
        target: Option<&str>,
    ) -> anyhow::Result<String> {
        let t = self
            .ok("system_create_template", json!({ "name": name }))
            .await?;
        let id = t["template"]["id"]
            .as_str()
            .context("no template id")?
            .to_string();
        let mut assign =
            json!({"template_id": id, "module_name": module, "module_version_id": version});
        if let Some(c) = target {
            assign["config"] = json!({ "target_cluster_id": c });
        }
        self.ok("system_assign_module_to_template", assign).await?;
        Ok(id)
    }

    /// A node, instance and SD-WAN peer on `template`; the instance id.
    async fn instance(&self, net: &str, template: &str, hostname: &str) -> anyhow::Result<String> {
        let node = self
            .ok(
                "system_create_node",
                json!({"hostname": hostname, "node_template_id": template, "memory_mb": 2048}),
            )
            .await?;
        let inst = self
            .ok(
                "system_provision_instance",
                json!({"node_id": node["node"]["id"]}),
            )
            .await?;
        let id = inst["id"].as_str().context("no instance id")?.to_string();
        self.ok(
            "system_sdwan_attach_peer",
            json!({"network_id": net, "node_instance_id": id}),
        )
        .await?;
        Ok(id)
    }

    /// Polls `kubernetes_list_nodes` until `n` nodes of `cluster` are ready.
    async fn ready_nodes(&self, cluster: &str, n: usize) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let nodes = self
                .ok("kubernetes_list_nodes", json!({ "cluster_id": cluster }))
                .await?;
            let ready = nodes["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["status"] == "ready")
                .count();
            if ready == n {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{n} ready nodes not within 60s: {nodes}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The catalog (through the CLI) and a cluster of one server and three
/// workers pinned to 1.30.5; answers the worker template and the workers.
async fn fleet(p: &Platform, bin: &Path) -> anyhow::Result<(String, Vec<String>)> {
    for (module, version, k3s) in [
        ("k3s-server", "1.30.5", "v1.30.5+k3s1"),
        ("k3s-agent", "1.30.5", "v1.30.5+k3s1"),
        ("mod-k3s-agent", "1.31.0", "v1.31.0+k3s1"),
    ] {
        let out = p.cli(
            bin,
            &["modules", "add-version", module, version, "--k3s", k3s],
        )?;
        let said = succeeded(&out);
        assert!(said.starts_with("added v-k3s-"), "{said}");
    }
    let net = p
        .ok("system_sdwan_create_network", json!({"name": "n"}))
        .await?;
    let net = net["network"]["id"]
        .as_str()
        .context("no network id")?
        .to_string();
    let server_t = p
        .template("srv", "k3s-server", "v-k3s-1.30.5", None)
        .await?;
    let server = p.instance(&net, &server_t, "srv-1").await?;
    let start = Instant::now();
    let cluster = loop {
        let list = p.ok("kubernetes_list_clusters", json!({})).await?;
        if let Some(c) = list["clusters"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["status"] == "active" && c["bootstrap_instance_id"] == server.as_str())
        }) {
            break c["id"].as_str().context("no cluster id")?.to_string();
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no active cluster within 60s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let worker_t = p
        .template("wrk", "k3s-agent", "v-k3s-agent-1.30.5", Some(&cluster))
        .await?;
    let mut workers = Vec::new();
    for n in 1..=3 {
        workers.push(p.instance(&net, &worker_t, &format!("wrk-{n}")).await?);
    }
    p.ready_nodes(&cluster, 4).await?;
    Ok((worker_t, workers))
}

fn upgrade_args<'a>(template: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "skills",
        "run",
        "system-rolling-module-upgrade",
        "--template",
        template,
        "--module",
        "mod-k3s-agent",
        "--to",
        "v-k3s-agent-1.31.0",
        "--batch-pct",
        "50",
        "--max-failures",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed; stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn failed_with(out: &Output, expected: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    for e in expected {
        assert!(stderr.contains(e), "missing {e:?} in stderr:\n{stderr}");
    }
    text(&out.stdout)
}

#[tokio::test]
async fn skills_run_plans_follows_and_reports_a_rolling_upgrade() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin, &[]).await?;
    let (worker_t, workers) = fleet(&p, &bin).await?;

    let out = p.cli(&bin, &["modules", "list"])?;
    let listed = succeeded(&out);
    for w in &workers {
        let row = listed
            .lines()
            .find(|l| l.starts_with(w.as_str()))
            .unwrap_or_default();
        assert!(
            row.contains("v-k3s-agent-1.30.5")
                && row.contains("behind (newest v-k3s-agent-1.31.0)"),
            "{listed}"
        );
    }

    // The plan: two batches (ceil(50% of 3) = 2, then 1), every worker once.
    let out = p.cli(&bin, &upgrade_args(&worker_t, &["--dry-run"]))?;
    let plan = succeeded(&out);
    assert!(plan.contains("3 nodes in 2 batch(es)"), "{plan}");
    assert!(
        plan.contains("batch 1/2 (2 nodes)") && plan.contains("batch 2/2 (1 node)"),
        "{plan}"
    );
    for w in &workers {
        assert_eq!(plan.matches(w.as_str()).count(), 1, "{plan}");
    }
    assert!(
        plan.contains("v-k3s-agent-1.30.5 → v-k3s-agent-1.31.0"),
        "{plan}"
    );
    assert!(plan.contains("nothing was appended"), "{plan}");
    let out = p.cli(&bin, &["skills", "list", "-o", "json"])?;
    let list: Value = serde_json::from_str(&succeeded(&out))?;
    assert_eq!(
        list["executions"],
        json!([]),
        "a dry run appended an execution"
    );

    // Bad input: refused with its code, nothing runs.
    let mut zero = upgrade_args(&worker_t, &[]);
    zero[10] = "0";
    assert_eq!(zero[9], "--batch-pct");
    let out = p.cli(&bin, &zero)?;
    failed_with(&out, &["batch_pct"]);
    let out = p.cli(&bin, &["skills", "run", "no-such-skill", "--input", "x=1"])?;
    failed_with(&out, &["unknown_skill"]);

    // The run, followed to its end.
    let out = p.cli(&bin, &upgrade_args(&worker_t, &[]))?;
    let run = succeeded(&out);
    assert!(run.starts_with("started execution exec-"), "{run}");
    assert!(
        run.contains("batch 1/2 [████████████████████████] 2/2 done"),
        "{run}"
    );
    assert!(
        run.contains("batch 2/2 [████████████████████████] 1/1 done"),
        "{run}"
    );
    for w in &workers {
        assert!(
            run.lines().any(|l| l.contains("✓ wrk-")
                && l.contains(w.as_str())
                && l.contains("succeeded, runs v-k3s-agent-1.31.0")),
            "no success line for {w}:\n{run}"
        );
    }
    let id = run
        .split_whitespace()
        .nth(2)
        .context("no execution id")?
        .to_string();
    let out = p.cli(&bin, &["skills", "get", &id, "-o", "json"])?;
    let got: Value = serde_json::from_str(&succeeded(&out))?;
    let e = &got["execution"];
    assert_eq!(e["status"], "completed", "{got}");
    assert_eq!(e["succeeded"], 3, "{got}");
    assert_eq!(e["batches"].as_array().map(Vec::len), Some(2), "{got}");
    for s in e["steps"].as_array().context("no steps")? {
        assert_eq!(s["status"], "succeeded", "{got}");
        assert_eq!(s["to_version_id"], "v-k3s-agent-1.31.0", "{got}");
    }
    let out = p.cli(&bin, &["skills", "list"])?;
    let listed = succeeded(&out);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("completed")),
        "{listed}"
    );

    // Nothing left to do, said so; a finished execution cannot be cancelled.
    let out = p.cli(&bin, &upgrade_args(&worker_t, &[]))?;
    failed_with(&out, &["nothing_to_upgrade"]);
    let out = p.cli(&bin, &["skills", "cancel", &id])?;
    failed_with(&out, &["is already completed; nothing to cancel"]);
    let out = p.cli(&bin, &["skills", "cancel", &id, "--yes"])?;
    failed_with(&out, &["execution_finished"]);

    let out = p.cli(&bin, &["modules", "list"])?;
    let listed = succeeded(&out);
    for w in &workers {
        let row = listed
            .lines()
            .find(|l| l.starts_with(w.as_str()))
            .unwrap_or_default();
        assert!(
            row.contains("v-k3s-agent-1.31.0") && row.ends_with("newest"),
            "{listed}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_node_aborts_the_run_and_the_command_says_why() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin, &["--fail-upgrade-to", "v-k3s-agent-1.31.0"]).await?;
    let (worker_t, _) = fleet(&p, &bin).await?;

    let out = p.cli(&bin, &upgrade_args(&worker_t, &[]))?;
    let shown = failed_with(&out, &["was aborted", "max_consecutive_failures"]);
    assert!(shown.contains("FAILED"), "{shown}");
    assert!(
        shown.contains("back in service on v-k3s-agent-1.30.5"),
        "{shown}"
    );
    let id = shown
        .split_whitespace()
        .nth(2)
        .context("no execution id")?
        .to_string();
    let got = p
        .ok("system_get_skill_execution", json!({ "execution_id": id }))
        .await?;
    let steps = got["execution"]["steps"]
        .as_array()
        .context("no steps")?
        .clone();
    // Batch 2 never started: no node after the failure was touched.
    let batch2: Vec<&Value> = steps.iter().filter(|s| s["batch"] == 1).collect();
    assert!(!batch2.is_empty(), "{got}");
    for s in batch2 {
        assert!(
            matches!(s["status"].as_str(), Some("pending" | "skipped")),
            "{got}"
        );
        assert_eq!(s["started_at"], Value::Null, "{got}");
    }
    Ok(())
}
