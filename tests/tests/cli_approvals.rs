//! `powernode approvals …` and `powernode vip failover`, through the real
//! binary against `powernode up` with simulated agents:
//! * on a fresh platform `approvals list` is an empty table (`[]` with
//!   `-o json`); approving an unknown request is `not_found`; a rejection
//!   without `--reason` is refused before anything is sent; failing over an
//!   unknown VIP names it; without `system.sdwan_failover` it is forbidden;
//! * with a two-server cluster, `vip failover --dry-run` shows the holder,
//!   the generation and the scored candidates and changes nothing; without
//!   a terminal and without `--yes` it refuses; with `--yes` it promotes the
//!   candidate (generation 2) and `vip get` shows it;
//! * a holder whose agent stops (terminated instance) is found silent and
//!   its failover waits for approval: `approvals list` shows the request and
//!   its scored candidates, `vip get` the silence and the pending approval;
//!   `approvals approve` promotes and says so; `approvals reject --reason`
//!   leaves the VIP where it is.

use anyhow::{bail, Context};
use powernode_tests::bins::powernode_bin;
use powernode_tests::http::action;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};

/// `powernode up` with simulated agents, an account, and two operator
/// tokens: one that may fail over (`token`), one that may not (`weak`).
struct Platform {
    _dir: tempfile::TempDir,
    _up: Running,
    port: u16,
    url: String,
    token: String,
    weak: String,
}

async fn platform(bin: &Path, extra: &[&str]) -> anyhow::Result<Platform> {
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
        json!({"name": "cli-approvals"}),
    )
    .await?;
    let token_with = |permissions: Value| {
        let admin = admin.clone();
        let account_id = account["account"]["id"].clone();
        async move {
            let t = ok(
                port,
                &admin,
                "system_create_operator_token",
                json!({ "account_id": account_id, "permissions": permissions }),
            )
            .await?;
            anyhow::Ok(t["token"].as_str().context("no token")?.to_string())
        }
    };
    let token = token_with(json!([
        "system.kubernetes_provision",
        "system.sdwan_failover"
    ]))
    .await?;
    let weak = token_with(json!(["system.kubernetes_provision"])).await?;
    Ok(Platform {
        _dir: dir,
        _up: up,
        port,
        url,
        token,
        weak,
    })
}

impl Platform {
    fn cli_as(&self, bin: &Path, token: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(powernode(bin)
            .env("POWERNODE_URL", &self.url)
            .env("POWERNODE_TOKEN", token)
            .args(args)
            .output()?)
    }

    fn cli(&self, bin: &Path, args: &[&str]) -> anyhow::Result<Output> {
        self.cli_as(bin, &self.token, args)
    }

    /// A template, node, instance and SD-WAN peer; `k3s-server` assigned
    /// (joining `target` when given). Answers the instance id.
    async fn server(
        &self,
        network: &Value,
        hostname: &str,
        target: Option<&str>,
    ) -> anyhow::Result<String> {
        let (port, t) = (self.port, self.token.as_str());
        let tmpl = ok(port, t, "system_create_template", json!({"name": hostname})).await?;
        let node = ok(
            port,
            t,
            "system_create_node",
            json!({"hostname": hostname, "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
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
            json!({"network_id": network["network"]["id"], "node_instance_id": inst["id"]}),
        )
        .await?;
        let mut assign =
            json!({"template_id": tmpl["template"]["id"], "module_name": "k3s-server"});
        if let Some(c) = target {
            assign["config"] = json!({ "target_cluster_id": c });
        }
        ok(port, t, "system_assign_module_to_template", assign).await?;
        Ok(inst["id"].as_str().context("no instance id")?.to_string())
    }

    /// Polls `check` on `system_sdwan_get_virtual_ip({cluster_id})` until it
    /// holds; answers the VIP.
    async fn vip_until(
        &self,
        cluster: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            let a = action(
                self.port,
                Some(&self.token),
                "system_sdwan_get_virtual_ip",
                &json!({ "cluster_id": cluster }),
            )
            .await?;
            let v = &a.body["data"]["virtual_ip"];
            if a.status == 200 && check(v) {
                return Ok(v.clone());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{what}: not within 60s: {}", a.body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A cluster of `servers` k3s servers (the first bootstraps it), every
/// joining one a failover candidate. Answers the cluster, its VIP id and
/// the instances.
async fn ha_cluster(p: &Platform, servers: usize) -> anyhow::Result<(String, String, Vec<String>)> {
    let (port, t) = (p.port, p.token.as_str());
    let net = ok(port, t, "system_sdwan_create_network", json!({"name": "n"})).await?;
    let first = p.server(&net, "srv-1", None).await?;
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
    let mut instances = vec![first];
    for n in 2..=servers {
        instances.push(p.server(&net, &format!("srv-{n}"), Some(&cluster)).await?);
    }
    let vip = p
        .vip_until(&cluster, "every joining server as candidate", |v| {
            v["holders"][0] == instances[0].as_str()
                && instances[1..].iter().all(|i| {
                    v["failover_candidates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["instance_id"] == i.as_str())
                })
        })
        .await?;
    let vip_id = vip["id"].as_str().context("no VIP id")?.to_string();
    Ok((cluster, vip_id, instances))
}

fn failed_with(out: &Output, expected: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    for e in expected {
        assert!(stderr.contains(e), "missing {e:?} in stderr:\n{stderr}");
    }
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

#[tokio::test]
async fn approvals_commands_handle_arguments_and_the_empty_case() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin, &[]).await?;

    // Nothing waiting: a plain sentence, `[]` as JSON, for every filter.
    let out = p.cli(&bin, &["approvals", "list"])?;
    assert_eq!(succeeded(&out), "No approvals waiting for a decision.\n");
    let out = p.cli(&bin, &["approvals", "list", "-o", "json"])?;
    let data: Value = serde_json::from_str(&succeeded(&out))
        .with_context(|| format!("not JSON: {}", text(&out.stdout)))?;
    assert_eq!(data, json!({ "approvals": [] }));
    let out = p.cli(
        &bin,
        &["approvals", "-o", "json", "list", "--status", "all"],
    )?;
    let data: Value = serde_json::from_str(&succeeded(&out))?;
    assert_eq!(data["approvals"], json!([]));
    let out = p.cli(&bin, &["approvals", "list", "--status", "granted"])?;
    assert_eq!(succeeded(&out), "No approvals.\n");
    let out = p.cli(&bin, &["approvals", "list", "--status", "pending"])?;
    failed_with(&out, &["--status", "requested"]);

    // Unknown approval: the API's not_found, non-zero.
    let out = p.cli(&bin, &["approvals", "approve", "nope"])?;
    failed_with(&out, &["powernode: error: not_found (404)", "\"nope\""]);
    let out = p.cli(&bin, &["approvals", "reject", "nope", "--reason", "no"])?;
    failed_with(&out, &["not_found (404)", "\"nope\""]);
    // Without the permission: forbidden before anything is looked up.
    let out = p.cli_as(&bin, &p.weak, &["approvals", "approve", "nope"])?;
    failed_with(&out, &["forbidden", "system.sdwan_failover"]);

    // A rejection needs a reason: refused by the CLI, nothing sent.
    let out = p.cli(&bin, &["approvals", "reject", "x"])?;
    failed_with(&out, &["--reason"]);
    let out = p.cli(&bin, &["approvals", "reject", "x", "--reason", "  "])?;
    failed_with(&out, &["--reason", "a rejection needs a reason"]);

    // An unknown VIP is named, dry run or not.
    let out = p.cli(&bin, &["vip", "failover", "vip-nope", "--dry-run"])?;
    failed_with(&out, &["not_found (404)", "vip-nope"]);
    let out = p.cli(&bin, &["vip", "failover", "vip-nope", "--yes"])?;
    failed_with(&out, &["not_found (404)", "vip-nope"]);
    Ok(())
}

#[tokio::test]
async fn vip_failover_dry_runs_confirms_and_promotes() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin, &[]).await?;
    let (port, t) = (p.port, p.token.as_str());
    let net = ok(port, t, "system_sdwan_create_network", json!({"name": "n"})).await?;
    let first = p.server(&net, "srv-1", None).await?;
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
    let vip = p
        .vip_until(&cluster, "the VIP", |v| v["holders"][0] == first.as_str())
        .await?;
    let vip_id = vip["id"].as_str().context("no VIP id")?.to_string();
    let holder = vip["holder_peer_id"]
        .as_str()
        .context("no holder")?
        .to_string();

    // One server: the dry run has nobody to promote, a forced one refuses.
    let out = p.cli(&bin, &["vip", "failover", &vip_id, "--dry-run"])?;
    let plan = succeeded(&out);
    assert!(
        plan.starts_with(&format!("VIP {vip_id}: holder {holder}, generation 1\n")),
        "{plan}"
    );
    assert!(
        plan.contains("No candidates") && plan.contains("Would promote nobody"),
        "{plan}"
    );
    let out = p.cli(&bin, &["vip", "failover", &vip_id])?;
    failed_with(&out, &["no_candidate", &vip_id]);

    // A second server joins and becomes a candidate heard lately.
    let second = p.server(&net, "srv-2", Some(&cluster)).await?;
    p.vip_until(&cluster, "the second server as candidate", |v| {
        v["failover_candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["instance_id"] == second.as_str())
    })
    .await?;
    let start = Instant::now();
    let plan = loop {
        let out = p.cli(
            &bin,
            &["vip", "failover", &vip_id, "--dry-run", "-o", "json"],
        )?;
        let plan: Value = serde_json::from_str(&succeeded(&out))?;
        if plan["candidates"][0]["heard_within_threshold"] == true {
            break plan;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the candidate was not ready and heard within 60s: {plan}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["current_holder"], holder.as_str(), "{plan}");
    let peer = plan["candidates"][0]["peer"]
        .as_str()
        .context("no candidate peer")?
        .to_string();

    // The dry run's table: holder, generation, the candidate with score and reasons.
    let out = p.cli(&bin, &["vip", "failover", &vip_id, "--dry-run"])?;
    let table = succeeded(&out);
    for expected in [
        format!("VIP {vip_id}: holder {holder}, generation 1"),
        "PEER".to_string(),
        "SCORE".to_string(),
        "REASONS".to_string(),
        peer.clone(),
        second.clone(),
        "ready k3s-server".to_string(),
        format!("Would promote {peer} (instance {second}, score "),
        "to generation 2. Nothing changed (dry run).".to_string(),
    ] {
        assert!(
            table.contains(&expected),
            "missing {expected:?} in\n{table}"
        );
    }
    // `--to` a peer that is no candidate: refused, naming the candidates.
    let out = p.cli(
        &bin,
        &["vip", "failover", &vip_id, "--dry-run", "--to", &holder],
    )?;
    failed_with(&out, &["not_a_candidate", &holder, &peer]);

    // No terminal, no --yes: refused, nothing changed.
    let out = p.cli(&bin, &["vip", "failover", &vip_id])?;
    failed_with(&out, &["not a terminal", "--yes"]);
    let v = ok(
        port,
        t,
        "system_sdwan_get_virtual_ip",
        json!({"id": vip_id}),
    )
    .await?;
    assert_eq!(v["virtual_ip"]["generation"], 1, "{v}");
    // Without the permission: forbidden, nothing changed.
    let out = p.cli_as(&bin, &p.weak, &["vip", "failover", &vip_id, "--yes"])?;
    failed_with(&out, &["forbidden", "system.sdwan_failover"]);

    // --yes: promoted; the new holder and generation are printed.
    let out = p.cli(&bin, &["vip", "failover", &vip_id, "--to", &peer, "--yes"])?;
    let done = succeeded(&out);
    assert_eq!(
        done,
        format!(
            "VIP {vip_id} failed over: now held by {second} (peer {peer}) at generation 2 (was peer {holder} at generation 1)\n"
        )
    );

    // `vip get` shows the generation, the holder, the last promotion.
    let out = p.cli(&bin, &["vip", "get", "--id", &vip_id])?;
    let view = succeeded(&out);
    for expected in [
        "Generation:           2\n".to_string(),
        format!("Holder:               {second} (peer {peer}"),
        "Applied:".to_string(),
        "Pending approval:     -\n".to_string(),
        format!("Last promotion:       generation 2: {holder} -> {peer} (forced)"),
    ] {
        assert!(view.contains(&expected), "missing {expected:?} in\n{view}");
    }
    // A forced failover asks nobody: still nothing waiting.
    let out = p.cli(&bin, &["approvals", "list"])?;
    assert_eq!(succeeded(&out), "No approvals waiting for a decision.\n");
    Ok(())
}

/// The pending approval `approvals list -o json` shows, once there is one.
async fn pending(p: &Platform, bin: &Path) -> anyhow::Result<Value> {
    let start = Instant::now();
    loop {
        let out = p.cli(bin, &["approvals", "list", "-o", "json"])?;
        let data: Value = serde_json::from_str(&succeeded(&out))?;
        if let Some(a) = data["approvals"].as_array().and_then(|a| a.first()) {
            return Ok(a.clone());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no pending approval within 60s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pending_approvals_show_candidates_and_are_decided_from_the_cli() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let p = platform(&bin, &["--silence-threshold-ms", "1500"]).await?;
    let (port, t) = (p.port, p.token.as_str());
    let (_cluster, vip_id, servers) = ha_cluster(&p, 3).await?;

    // The holder's agent stops (terminated): the sensor finds it silent
    // and the failover service asks for approval.
    ok(
        port,
        t,
        "system_terminate_instance",
        json!({"id": servers[0]}),
    )
    .await?;
    let a = pending(&p, &bin).await?;
    let id = a["id"].as_str().context("no approval id")?.to_string();
    assert_eq!(a["virtual_ip_id"], vip_id.as_str(), "{a}");
    assert_eq!(a["generation"], 1, "{a}");
    let proposed = a["proposed_peer"]
        .as_str()
        .context("no proposed peer")?
        .to_string();
    let candidates = a["candidates"].as_array().context("no candidates")?;
    assert_eq!(candidates.len(), 2, "{a}");

    // The table: the request, then its candidates with scores and reasons.
    let out = p.cli(&bin, &["approvals", "list"])?;
    let table = succeeded(&out);
    let lines: Vec<&str> = table.lines().collect();
    for col in [
        "ID",
        "VIP",
        "HOLDER",
        "PROPOSED",
        "BEST-SCORE",
        "STATUS",
        "EXPIRES-IN",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert!(
        lines[1].starts_with(&id) && lines[1].contains(&vip_id) && lines[1].contains(&proposed),
        "{table}"
    );
    assert!(lines[1].contains("requested"), "{table}");
    // Default TTL 15 min: a countdown like `14m57s`.
    assert!(lines[1].ends_with('s') && lines[1].contains("m"), "{table}");
    assert!(
        table.contains(&format!("{id}: promote {proposed}")),
        "{table}"
    );
    for c in candidates {
        let peer = c["peer"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with("  ") && l.contains(peer))
            .with_context(|| format!("no candidate row for {peer} in\n{table}"))?;
        assert!(row.contains("ready k3s-server"), "{table}");
    }
    // `vip get` shows the silence and the pending approval.
    let out = p.cli(&bin, &["vip", "get", "--id", &vip_id])?;
    let view = succeeded(&out);
    assert!(view.contains("SILENT since"), "{view}");
    assert!(
        view.contains(&format!("Pending approval:     {id} (")),
        "{view}"
    );

    // Approve: the proposed candidate holds it at generation 2.
    let out = p.cli(&bin, &["approvals", "approve", &id])?;
    let said = succeeded(&out);
    assert!(
        said.starts_with(&format!("approved {id}: promote {proposed}")),
        "{said}"
    );
    assert!(said.contains("at generation 2\n"), "{said}");
    let v = ok(
        port,
        t,
        "system_sdwan_get_virtual_ip",
        json!({"id": vip_id}),
    )
    .await?;
    assert_eq!(v["virtual_ip"]["holder_peer_id"], proposed.as_str(), "{v}");
    // Decided once: a second decision is refused.
    let out = p.cli(&bin, &["approvals", "approve", &id])?;
    failed_with(&out, &["already_decided (409)"]);
    let out = p.cli(&bin, &["approvals", "list", "--status", "granted"])?;
    assert!(succeeded(&out).contains(&id));

    // The new holder stops too: a second request, rejected with a reason.
    let holder = v["virtual_ip"]["holders"][0]
        .as_str()
        .context("no holder")?;
    ok(port, t, "system_terminate_instance", json!({"id": holder})).await?;
    let b = pending(&p, &bin).await?;
    let second = b["id"].as_str().context("no approval id")?.to_string();
    assert_ne!(second, id);
    assert_eq!(b["generation"], 2, "{b}");
    let out = p.cli(&bin, &["approvals", "reject", &second])?;
    failed_with(&out, &["--reason"]);
    let out = p.cli(
        &bin,
        &["approvals", "reject", &second, "--reason", "planned outage"],
    )?;
    let said = succeeded(&out);
    assert_eq!(
        said,
        format!("rejected {second} (planned outage); VIP {vip_id} stays with {proposed} at generation 2\n")
    );
    let out = p.cli(
        &bin,
        &["approvals", "list", "--status", "rejected", "-o", "json"],
    )?;
    let data: Value = serde_json::from_str(&succeeded(&out))?;
    assert_eq!(data["approvals"][0]["id"], second.as_str(), "{data}");
    assert_eq!(data["approvals"][0]["reason"], "planned outage", "{data}");
    let out = p.cli(&bin, &["approvals", "list"])?;
    assert_eq!(succeeded(&out), "No approvals waiting for a decision.\n");
    let v = ok(
        port,
        t,
        "system_sdwan_get_virtual_ip",
        json!({"id": vip_id}),
    )
    .await?;
    assert_eq!(v["virtual_ip"]["generation"], 2, "{v}");
    Ok(())
}
