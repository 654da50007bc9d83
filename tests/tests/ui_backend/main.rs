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

mod backends;
mod pages;
mod support;

use anyhow::Context;
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};
use serde_json::json;
use std::process::Stdio;

use backends::{live, offline};
use pages::{offline_binary, pages};
use support::*;

/// What the test built on the node.
pub(crate) struct Built {
    pub(crate) a: String,
    pub(crate) token_a: String,
    pub(crate) b: String,
    pub(crate) token_b: String,
    pub(crate) cluster_b: String,
    pub(crate) name_b: String,
    /// The head once A had its first network, before its second.
    pub(crate) early: u64,
    pub(crate) net_a: String,
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
