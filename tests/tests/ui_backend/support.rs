//! HTTP by hand, sign-in, and the fixture's accounts and cluster.

use anyhow::{bail, Context};
use futures::StreamExt;
use powernode_server::ui::Refusal;
use powernode_tests::cli_support::{ok, one_server_cluster};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain HTTP/1.1 exchange: status, head and body.
pub(crate) async fn http(
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
pub(crate) async fn last_seq(port: u16) -> anyhow::Result<u64> {
    let (_, _, body) = http(port, "GET", "/healthz", None, None).await?;
    let v: Value = serde_json::from_str(&body)?;
    v["last_seq"].as_u64().context("no last_seq")
}

/// An account and a token of it.
pub(crate) async fn account(
    port: u16,
    admin: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
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
pub(crate) async fn cluster(port: u16, t: &str) -> anyhow::Result<(String, String)> {
    let c = one_server_cluster(port, t, "srv", Duration::from_secs(60)).await?;
    let id = c["id"].as_str().context("no cluster id")?.to_string();
    let name = c["name"].as_str().context("no cluster name")?.to_string();
    Ok((id, name))
}

pub(crate) fn refused(r: Result<Value, Refusal>) -> Refusal {
    match r {
        Ok(v) => panic!("expected a refusal, got {v}"),
        Err(e) => e,
    }
}

pub(crate) fn networks(v: &Value) -> Vec<String> {
    v["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect()
}

/// The first `n` items of a feed (within 10 s).
pub(crate) async fn take(
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
pub(crate) async fn sign_in(port: u16, token: &str) -> anyhow::Result<(String, String)> {
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
pub(crate) fn session_cookie(head: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.trim().split(';').next())
        .find(|c| c.starts_with("pn_ui_session=") && c.len() > "pn_ui_session=".len())
        .map(str::to_string)
}

/// The value of a page's hidden `csrf` input.
pub(crate) fn csrf_of(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf""#)?;
    let rest = &html[at..];
    let v = rest.split_once(r#"value=""#)?.1;
    Some(v.split('"').next()?.to_string())
}

/// The error code a refusal page shows.
pub(crate) fn code_of(html: &str) -> Option<&str> {
    html.split_once(r#"data-code=""#)?.1.split('"').next()
}
