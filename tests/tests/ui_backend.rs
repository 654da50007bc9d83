//! The dashboard's backends (issue 18) against the real binary:
//! * `powernode up` logs the dashboard's URL; signing in at `/ui/login`
//!   with an operator token starts a session (`pn_ui_session`), a bad
//!   token does not;
//! * over the stopped node's log, the live backend answers only for the
//!   token's account: time travel at an early sequence shows the earlier
//!   fleet, a sequence beyond the head is refused naming the head, a write
//!   at a past sequence is `read_only`, another account's cluster cannot
//!   be decommissioned (nothing appended), another account's event and
//!   object are `not_found`, "what changed" and the feed hold only the
//!   account's events;
//! * over an export (`powernode events export`), the offline backend
//!   serves the same reads and refuses every action with `read_only`
//!   (kubeconfig included); `powernode ui --file` prints its URL, serves
//!   the pages, and listens on loopback only.

use anyhow::{bail, Context};
use futures::StreamExt;
use powernode_actions::ActionName;
use powernode_server::api::ApiState;
use powernode_server::ui::live::LiveBackend;
use powernode_server::ui::offline::{NoSecrets, OfflineBackend};
use powernode_server::ui::{At, Backend, EventQuery, Principal, Refusal};
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain HTTP/1.1 exchange: status, head and body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> anyhow::Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// The node's last sequence (`/healthz`).
async fn last_seq(port: u16) -> anyhow::Result<u64> {
    let (_, _, body) = http(port, "GET", "/healthz", None, None).await?;
    let v: Value = serde_json::from_str(&body)?;
    v["last_seq"].as_u64().context("no last_seq")
}

/// An account and a token of it.
async fn account(port: u16, admin: &str, name: &str) -> anyhow::Result<(String, String)> {
    let a = ok(
        port,
        admin,
        "system_create_account",
        json!({ "name": name }),
    )
    .await?;
    let id = a["account"]["id"].as_str().context("no id")?.to_string();
    let t = ok(
        port,
        admin,
        "system_create_operator_token",
        json!({ "account_id": id, "permissions": ["system.kubernetes_provision", "system.kubernetes_decommission"] }),
    )
    .await?;
    Ok((id, t["token"].as_str().context("no token")?.to_string()))
}

/// A one-server cluster of the token's account, active; its id and name.
async fn cluster(port: u16, t: &str) -> anyhow::Result<(String, String)> {
    let net = ok(
        port,
        t,
        "system_sdwan_create_network",
        json!({"name": "nb"}),
    )
    .await?;
    let tmpl = ok(port, t, "system_create_template", json!({"name": "srv"})).await?;
    let node = ok(
        port,
        t,
        "system_create_node",
        json!({"hostname": "srv", "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
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
    let start = Instant::now();
    loop {
        let list = ok(port, t, "kubernetes_list_clusters", json!({})).await?;
        if let Some(c) = list["clusters"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["status"] == "active"))
        {
            let id = c["id"].as_str().context("no cluster id")?.to_string();
            let name = c["name"].as_str().context("no cluster name")?.to_string();
            return Ok((id, name));
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no active cluster within 60s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn refused(r: Result<Value, Refusal>) -> Refusal {
    match r {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e,
    }
}

fn networks(v: &Value) -> Vec<String> {
    v["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect()
}

/// The first `n` items of a feed (within 10 s).
async fn take(
    mut feed: futures::stream::BoxStream<'static, Value>,
    n: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
            Ok(Some(v)) => out.push(v),
            Ok(None) => break,
            Err(_) => bail!("the feed stalled after {} items", out.len()),
        }
    }
    Ok(out)
}

/// Signs in with `token`: the session cookie and the session's CSRF token.
async fn sign_in(port: u16, token: &str) -> anyhow::Result<(String, String)> {
    let (status, head, _) = http(
        port,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={token}")),
    )
    .await?;
    if !(300..400).contains(&status) {
        bail!("sign-in answered {status}: {head}");
    }
    let cookie = session_cookie(&head).context("no session cookie")?;
    let (_, _, body) = http(port, "GET", "/ui/fleet", Some(&cookie), None).await?;
    Ok((
        cookie,
        csrf_of(&body).context("no CSRF field on the fleet page")?,
    ))
}

/// The `pn_ui_session=…` pair a response sets.
fn session_cookie(head: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.trim().split(';').next())
        .find(|c| c.starts_with("pn_ui_session=") && c.len() > "pn_ui_session=".len())
        .map(str::to_string)
}

/// The value of a page's hidden `csrf` input.
fn csrf_of(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf""#)?;
    let rest = &html[at..];
    let v = rest.split_once(r#"value=""#)?.1;
    Some(v.split('"').next()?.to_string())
}

/// The error code a refusal page shows.
fn code_of(html: &str) -> Option<&str> {
    html.split_once(r#"data-code=""#)?.1.split('"').next()
}

/// The dashboard's pages over the live node: time travel, a seq beyond the
/// head, an unknown id, and posts that must append nothing.
async fn pages(
    port: u16,
    token_a: &str,
    token_b: &str,
    cluster_b: &str,
    name_b: &str,
    early: u64,
) -> anyhow::Result<()> {
    let (cookie_a, csrf_a) = sign_in(port, token_a).await?;
    let (cookie_b, csrf_b) = sign_in(port, token_b).await?;
    assert_ne!(csrf_a, csrf_b);
    let row = format!(r#"data-cluster-id="{cluster_b}""#);
    let (status, _, now) = http(port, "GET", "/ui/fleet", Some(&cookie_b), None).await?;
    assert_eq!(status, 200);
    assert!(now.contains(&row), "the fleet lists B's cluster:\n{now}");
    let (status, _, then) = http(
        port,
        "GET",
        &format!("/ui/fleet?at={early}"),
        Some(&cookie_b),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert!(
        !then.contains(&row),
        "before it was made, no cluster:\n{then}"
    );
    assert!(then.contains(r#"id="as-of""#), "{then}");
    let (_, _, other) = http(port, "GET", "/ui/fleet", Some(&cookie_a), None).await?;
    assert!(!other.contains(&row), "A does not see B's cluster");

    let head = last_seq(port).await?;
    let (status, _, body) = http(
        port,
        "GET",
        &format!("/ui/fleet?at={}", head + 1000),
        Some(&cookie_b),
        None,
    )
    .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(code_of(&body), Some("invalid_arguments"));
    assert!(
        body.contains(&format!("seq {} is beyond the head", head + 1000)),
        "{body}"
    );
    let (status, _, body) = http(
        port,
        "GET",
        "/ui/explain?id=cluster-nope",
        Some(&cookie_b),
        None,
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(code_of(&body), Some("not_found"));
    let (status, _, body) = http(
        port,
        "GET",
        &format!("/ui/explain?id={cluster_b}"),
        Some(&cookie_a),
        None,
    )
    .await?;
    assert_eq!(status, 404, "another account's id: {body}");

    // Posts that must append nothing.
    let path = format!("/ui/clusters/{cluster_b}/decommission");
    let before = last_seq(port).await?;
    let (status, _, body) = http(
        port,
        "POST",
        &path,
        Some(&cookie_b),
        Some(&format!("confirm_name={name_b}")),
    )
    .await?;
    assert_eq!(
        (status, code_of(&body)),
        (403, Some("csrf_failed")),
        "no CSRF token"
    );
    let (status, _, body) = http(
        port,
        "POST",
        &path,
        Some(&cookie_b),
        Some(&format!("csrf={csrf_a}&confirm_name={name_b}")),
    )
    .await?;
    assert_eq!(
        (status, code_of(&body)),
        (403, Some("csrf_failed")),
        "another session's token"
    );
    let (status, _, body) = http(
        port,
        "POST",
        &path,
        Some(&cookie_a),
        Some(&format!("csrf={csrf_a}&confirm_name={name_b}")),
    )
    .await?;
    assert_eq!(
        (status, code_of(&body)),
        (404, Some("not_found")),
        "another account's cluster: {body}"
    );
    assert_eq!(last_seq(port).await?, before, "nothing was appended");
    let (_, _, now) = http(port, "GET", "/ui/fleet", Some(&cookie_b), None).await?;
    assert!(now.contains(&row));
    Ok(())
}

/// What the test built on the node.
struct Built {
    a: String,
    token_a: String,
    b: String,
    token_b: String,
    cluster_b: String,
    name_b: String,
    /// The head once A had its first network, before its second.
    early: u64,
    net_a: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_backends_are_scoped_and_read_only_where_they_must_be() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let log_file = std::fs::File::create(dir.path().join("up.log"))?;
    let up = Running(
        powernode(&bin)
            .args([
                "up",
                "--insecure-http",
                "--simulate-agents",
                "--heartbeat-ms",
                "200",
                "--data-dir",
                data.to_str().context("path")?,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;
    let logged = std::fs::read_to_string(dir.path().join("up.log"))?;
    assert!(
        logged.contains(&format!(
            "Dashboard: http://127.0.0.1:{port}/ui/ (sign in with an operator token, e.g. {}",
            data.join("admin.token").display()
        )),
        "up logs the dashboard's URL:\n{logged}"
    );

    // Sign-in: a session cookie for a good token, none for a bad one.
    let (status, head, _) = http(
        port,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={admin}")),
    )
    .await?;
    assert!((300..400).contains(&status), "{status} {head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?
        .to_string();
    assert!(cookie.starts_with("pn_ui_session="), "{cookie}");
    assert!(
        !head.contains(&admin),
        "the token is never sent back: {head}"
    );
    let (status, _, _) = http(port, "GET", "/ui/fleet", Some(&cookie), None).await?;
    assert_eq!(status, 200);
    let (_, head, _) = http(port, "POST", "/ui/login", None, Some("token=pn_nope")).await?;
    assert!(
        !head.to_lowercase().contains("set-cookie: pn_ui_session"),
        "{head}"
    );

    let (a, token_a) = account(port, &admin, "ui-a").await?;
    let (b, token_b) = account(port, &admin, "ui-b").await?;
    let net = ok(
        port,
        &token_a,
        "system_sdwan_create_network",
        json!({"name": "first"}),
    )
    .await?;
    let net_a = net["network"]["id"].as_str().context("no id")?.to_string();
    let early = last_seq(port).await?;
    ok(
        port,
        &token_a,
        "system_sdwan_create_network",
        json!({"name": "second"}),
    )
    .await?;
    let (cluster_b, name_b) = cluster(port, &token_b).await?;
    pages(port, &token_a, &token_b, &cluster_b, &name_b, early).await?;
    let built = Built {
        a,
        token_a,
        b,
        token_b,
        cluster_b,
        name_b,
        early,
        net_a,
    };
    drop(up);

    live(&data, &built).await?;

    // The export, then the offline dashboard over it.
    let export = dir.path().join("export.pnx");
    let out = powernode(&bin)
        .args(["events", "export", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&export)
        .output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    offline(&export, &built).await?;
    offline_binary(&bin, &export, &built).await?;
    Ok(())
}

/// The live backend over the stopped node's log and projection.
async fn live(data: &Path, built: &Built) -> anyhow::Result<()> {
    let log = powernode_log::embedded::EmbeddedLog::open_shared(&data.join("log"))?;
    let source = powernode_archive::Source::Log(log.clone());
    let folded =
        powernode_inspect::replay::fold(&source, powernode_archive::Bound::End, true, false)
            .await?;
    let fleet: powernode_runtime::Shared<powernode_projections::FleetState> = Default::default();
    *fleet.state.write().await = folded.state;
    let api = ApiState {
        log: log.clone(),
        fleet,
        secrets: Arc::new(NoSecrets),
        on_provision: None,
        liveness: Arc::default(),
        failover: Default::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        status: powernode_server::status::StatusBoard::shared(),
        https: false,
        read_only: None,
    };
    let ui = LiveBackend::new(api.clone(), false);
    let head = log.last_seq().await?;
    let who_a = Principal::Token(built.token_a.clone());
    let who_b = Principal::Token(built.token_b.clone());

    let e = refused(
        ui.call(
            &Principal::Token("pn_nope".into()),
            At::Head,
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert!(e.needs_login(), "{e}");
    assert_eq!(ui.head(&who_a).await?.last_seq, head);

    // Time travel.
    let now = ui
        .call(&who_a, At::Head, ActionName::ListNetworks, json!({}))
        .await?;
    assert_eq!(networks(&now), ["first", "second"], "{now}");
    let then = ui
        .call(
            &who_a,
            At::Seq(built.early),
            ActionName::ListNetworks,
            json!({}),
        )
        .await?;
    assert_eq!(networks(&then), ["first"], "{then}");
    let e = refused(
        ui.call(
            &who_a,
            At::Seq(head + 5),
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_arguments"));
    assert_eq!(
        e.message,
        format!("seq {} is beyond the head {head}", head + 5)
    );
    let e = refused(
        ui.call(
            &who_a,
            At::Seq(built.early),
            ActionName::CreateNetwork,
            json!({"name": "late"}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (409, "read_only"), "{e}");
    assert!(e.message.contains("system_sdwan_create_network"), "{e}");

    // Another account's cluster: not found, nothing appended.
    let e = refused(
        ui.call(
            &who_a,
            At::Head,
            ActionName::DecommissionCluster,
            json!({"cluster_id": built.cluster_b}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{e}");
    assert_eq!(log.last_seq().await?, head, "nothing was appended");

    // One event: the account's only.
    let mut mine = None;
    let mut theirs = None;
    for seq in 1..=head {
        match ui.event(&who_b, seq).await {
            Ok(v) if theirs.is_none() => theirs = Some((seq, v)),
            _ => {}
        }
        if mine.is_none() {
            if let Ok(v) = ui.event(&who_a, seq).await {
                mine = Some((seq, v));
            }
        }
    }
    let (seq_b, ev_b) = theirs.context("B has events")?;
    assert_eq!(ev_b["seq"], seq_b);
    assert_eq!(ev_b["account_id"], built.b.as_str(), "{ev_b}");
    let e = refused(ui.event(&who_a, seq_b).await);
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));
    let e = refused(ui.event(&who_a, head + 1).await);
    assert_eq!(e.status, 404);
    assert!(mine.is_some());

    // Explain: the account's objects only.
    let x = ui.explain(&who_a, &built.net_a).await?;
    assert_eq!(x["object"]["id"], built.net_a.as_str(), "{x}");
    let steps = x["events"].as_array().context("steps")?;
    assert!(!steps.is_empty());
    assert!(
        steps.iter().all(|s| s["account_id"] == built.a.as_str()),
        "{x}"
    );
    assert!(x["why"]["answer"].is_string());
    for id in [built.cluster_b.as_str(), "cluster-nope"] {
        let e = refused(ui.explain(&who_a, id).await);
        assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{id}: {e}");
        assert!(e.message.contains("in this account"), "{e}");
    }
    let x = ui.explain(&who_b, &built.cluster_b).await?;
    assert_eq!(x["object"]["type"], "cluster", "{x}");

    // What changed: A's events only, the early one's network among them.
    let d = ui.diff(&who_a, 0, head).await?;
    let events = d["events"].as_array().context("events")?;
    assert!(
        events.iter().all(|e| e["account"] == built.a.as_str()),
        "{d}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "system.sdwan.network.created"
                || e["kind"].as_str().is_some_and(|k| k.contains("network"))),
        "{d}"
    );
    let e = refused(ui.diff(&who_a, 0, head + 1).await);
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_arguments"));
    let e = refused(ui.diff(&who_a, 5, 4).await);
    assert_eq!(e.status, 422);

    // The feed: catch-up from the start, A's events only, and it stays
    // open (nothing more comes).
    let d_total = events.len();
    let feed = ui
        .events(
            &who_a,
            EventQuery {
                after: Some(0),
                ..Default::default()
            },
        )
        .await?;
    let items = take(feed, d_total).await?;
    assert_eq!(items.len(), d_total);
    assert!(items.iter().all(|i| i["account_id"] == built.a.as_str()));
    let filtered = ui
        .events(
            &who_a,
            EventQuery {
                after: Some(0),
                kind_prefix: Some("system.sdwan".into()),
                ..Default::default()
            },
        )
        .await?;
    let items = take(filtered, 2).await?;
    assert!(items.iter().all(|i| i["kind"]
        .as_str()
        .is_some_and(|k| k.starts_with("system.sdwan"))));
    Ok(())
}

/// The offline backend over the export.
async fn offline(export: &Path, built: &Built) -> anyhow::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let (ui, loaded) = OfflineBackend::open(export, Some(&built.a), stop).await?;
    assert!(!loaded.renumbered);
    assert_eq!(ui.accounts()[0], built.a);
    assert!(ui.accounts().contains(&built.b));
    let who = Principal::Offline {
        account: built.a.clone(),
    };
    let now = ui
        .call(&who, At::Head, ActionName::ListNetworks, json!({}))
        .await?;
    assert_eq!(networks(&now), ["first", "second"], "{now}");
    let then = ui
        .call(
            &who,
            At::Seq(built.early),
            ActionName::ListNetworks,
            json!({}),
        )
        .await?;
    assert_eq!(networks(&then), ["first"]);
    let who_b = Principal::Offline {
        account: built.b.clone(),
    };
    for (action, args) in [
        (ActionName::CreateNetwork, json!({"name": "x"})),
        (
            ActionName::DecommissionCluster,
            json!({"cluster_id": built.cluster_b}),
        ),
        (ActionName::Approve, json!({"approval_id": "appr-1"})),
        (
            ActionName::GetKubeconfig,
            json!({"cluster_id": built.cluster_b}),
        ),
    ] {
        let e = refused(ui.call(&who_b, At::Head, action, args).await);
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "read_only"),
            "{action}: {e}"
        );
        assert!(e.message.contains("export.pnx read-only"), "{e}");
        assert!(e.message.contains(action.as_str()), "{e}");
    }
    let e = refused(
        ui.call(
            &Principal::Token("t".into()),
            At::Head,
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert_eq!(e.status, 401);
    let x = ui.explain(&who_b, &built.cluster_b).await?;
    assert_eq!(x["object"]["id"], built.cluster_b.as_str());
    assert_eq!(
        refused(ui.explain(&who, &built.cluster_b).await).status,
        404
    );
    // The feed ends at the export's last record.
    let feed = ui
        .events(
            &who,
            EventQuery {
                after: Some(0),
                ..Default::default()
            },
        )
        .await?;
    let items = tokio::time::timeout(Duration::from_secs(10), feed.collect::<Vec<_>>()).await?;
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i["account_id"] == built.a.as_str()));
    Ok(())
}

/// `powernode ui --file`: the URL, the pages, loopback only.
async fn offline_binary(bin: &Path, export: &Path, built: &Built) -> anyhow::Result<()> {
    let out = powernode(bin)
        .args(["ui", "--listen", "0.0.0.0:0", "--file"])
        .arg(export)
        .output()?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );

    let port = free_port();
    let mut child = powernode(bin)
        .args(["ui", "--listen", &format!("127.0.0.1:{port}"), "--file"])
        .arg(export)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let _running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await??;
    assert_eq!(
        line.trim(),
        format!(
            "Dashboard (read-only, {}): http://127.0.0.1:{port}/ui/",
            export.display()
        )
    );
    for path in [
        "/ui/fleet",
        "/ui/approvals",
        "/ui/events",
        "/ui/travel",
        "/ui/explain",
    ] {
        let (status, _, _) = http(
            port,
            "GET",
            &format!("{path}?account={}", built.a),
            None,
            None,
        )
        .await?;
        assert_eq!(status, 200, "{path}");
    }
    let (_, _, body) = http(
        port,
        "GET",
        &format!("/ui/fleet?account={}", built.b),
        None,
        None,
    )
    .await?;
    assert!(
        body.contains(&format!(r#"data-cluster-id="{}""#, built.cluster_b)),
        "{body}"
    );
    let page = format!("/ui/clusters/{}?account={}", built.cluster_b, built.b);
    let (status, _, body) = http(port, "GET", &page, None, None).await?;
    assert_eq!(status, 200, "{body}");
    let csrf = csrf_of(&body).context("no CSRF field on the cluster page offline")?;
    let posts = [
        (
            format!(
                "/ui/clusters/{}/decommission?account={}",
                built.cluster_b, built.b
            ),
            format!("csrf={csrf}&confirm_name={}", built.name_b),
        ),
        (
            format!("/ui/approvals/appr-nope/approve?account={}", built.b),
            format!("csrf={csrf}"),
        ),
    ];
    for (path, form) in posts {
        let (status, _, body) = http(port, "POST", &path, None, Some(&form)).await?;
        assert_eq!(
            (status, code_of(&body)),
            (409, Some("read_only")),
            "{path}: {body}"
        );
    }
    let (status, _, body) = http(
        port,
        "GET",
        &format!(
            "/ui/clusters/{}/kubeconfig?account={}",
            built.cluster_b, built.b
        ),
        None,
        None,
    )
    .await?;
    assert_eq!(
        (status, code_of(&body)),
        (409, Some("read_only")),
        "kubeconfig offline: {body}"
    );
    Ok(())
}
