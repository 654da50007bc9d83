//! The pages over the live node and over `powernode ui --file`.

use anyhow::Context;
use powernode_tests::cli_support::{free_port, powernode, text, Running};
use std::path::Path;
use std::process::Stdio;

use super::support::*;
use super::Built;

/// The dashboard's pages over the live node: time travel, a seq beyond the
/// head, an unknown id, and posts that must append nothing.
pub(crate) async fn pages(
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

/// `powernode ui --file`: the URL, the pages, loopback only.
pub(crate) async fn offline_binary(bin: &Path, export: &Path, built: &Built) -> anyhow::Result<()> {
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
    // The reader is kept: its end of the pipe stays open while the server runs.
    let (line, _stdout) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        std::io::BufRead::read_line(&mut reader, &mut line).map(|_| (line, reader))
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
