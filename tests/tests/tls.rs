//! https by default (issue 17 items 1, 2 and 7): `powernode up` serves
//! https with a CA made in its data dir and the CLI reaches it with no
//! flags but the URL; `--insecure-http` is refused off loopback; a wrong
//! CA, an expired certificate and a name mismatch are refused in words
//! naming them; a path-prefix URL works through a TLS-terminating proxy;
//! an answer that is not JSON is an error naming its status.

use powernode_tests::tls_support::{cli, port, proxy, stderr, stdout, TestCa, Up};
use std::time::Duration;

#[tokio::test]
async fn up_serves_https_by_default_and_the_cli_needs_no_flags() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let up = Up::start(&data, port(), &[]).await?;
    let log = up.log_text();
    assert!(
        log.contains(&format!(
            "API listening on https://127.0.0.1:{} (CA sha256:",
            up.port
        )),
        "{log}"
    );
    #[cfg(unix)]
    for key in ["ca.key", "server.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("tls").join(key))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // No --ca-cert, no token: the data dir's CA and admin token.
    let config = dir.path().join("config.yaml");
    let out = cli(&config, &data, &["--url", &up.url(), "clusters", "list"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(
        &config,
        &data,
        &[
            "--url",
            &up.url(),
            "call",
            "system_whoami",
            "{}",
            "-o",
            "json",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"account_id\": \"system\""),
        "{}",
        stdout(&out)
    );
    // Plain http is not served.
    let plain = powernode_tests::http::request(up.port, "GET", "/healthz", None, b"").await;
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    // The restart reuses the CA and certificate.
    let ca = std::fs::read(up.ca())?;
    let server = std::fs::read(data.join("tls").join("server.pem"))?;
    let port = up.port;
    drop(up);
    let up = Up::start(&data, port, &[]).await?;
    assert_eq!(std::fs::read(up.ca())?, ca);
    assert_eq!(std::fs::read(data.join("tls").join("server.pem"))?, server);
    Ok(())
}

#[tokio::test]
async fn insecure_http_is_refused_off_loopback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = powernode_tests::cli_support::powernode(&powernode_tests::bins::powernode_bin()?)
        .args([
            "up",
            "--insecure-http",
            "--listen",
            &format!("0.0.0.0:{}", port()),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("--insecure-http refused") && e.contains("loopback"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_an_expired_certificate_and_another_name_are_refused_in_words(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("config.yaml");
    let up = Up::start(&data, port(), &[]).await?;
    let other = TestCa::new("other")?;
    let wrong = other.write(dir.path(), "wrong-ca.pem")?;
    let out = cli(
        &config,
        &data,
        &[
            "--url",
            &up.url(),
            "--ca-cert",
            wrong.to_str().unwrap(),
            "clusters",
            "list",
        ],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("not signed by the CA in --ca-cert") && e.contains("presented sha256:"),
        "{e}"
    );
    // Without any CA for a remote-looking name: not trusted, with the way out.
    let out = cli(
        &config,
        &data,
        &[
            "--url",
            &format!("https://localhost:{}", up.port),
            "--data-dir",
            "/nonexistent",
            "--token",
            "t",
            "clusters",
            "list",
        ],
    )?;
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains("not trusted") || e.contains("not signed"), "{e}");
    drop(up);

    // An expired certificate, signed by the CA the client trusts.
    let ca = TestCa::new("expiry")?;
    let ca_file = ca.write(dir.path(), "ca.pem")?;
    let (cert, key) = ca.server(dir.path(), "expired", &["127.0.0.1", "localhost"], true)?;
    let data2 = dir.path().join("data2");
    let up = Up::start(
        &data2,
        port(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await?;
    let out = cli(
        &config,
        &data2,
        &[
            "--url",
            &up.url(),
            "--ca-cert",
            ca_file.to_str().unwrap(),
            "--token",
            "t",
            "--timeout",
            "10s",
            "clusters",
            "list",
        ],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("the API's certificate expired at 2020-01-01T00:00:00Z"),
        "{e}"
    );
    drop(up);

    // A certificate for another name.
    let (cert, key) = ca.server(dir.path(), "elsewhere", &["api.elsewhere.example"], false)?;
    let data3 = dir.path().join("data3");
    let up = Up::start(
        &data3,
        port(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await?;
    let out = cli(
        &config,
        &data3,
        &[
            "--url",
            &up.url(),
            "--ca-cert",
            ca_file.to_str().unwrap(),
            "--token",
            "t",
            "clusters",
            "list",
        ],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("not valid for 127.0.0.1") && e.contains("api.elsewhere.example"),
        "{e}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_path_prefix_works_through_a_proxy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("config.yaml");
    let up = Up::start(&data, port(), &["--insecure-http"]).await?;
    let (url, ca) = proxy::start(
        &dir.path().join("proxy"),
        "powernode",
        &format!("127.0.0.1:{}", up.port),
    )
    .await?;
    assert!(url.ends_with("/powernode"), "{url}");
    let ca = ca.to_str().unwrap().to_string();
    let out = cli(
        &config,
        &data,
        &[
            "--url",
            &url,
            "--ca-cert",
            &ca,
            "call",
            "system_create_account",
            r#"{"name":"behind-proxy"}"#,
            "-o",
            "json",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("acct-"), "{}", stdout(&out));
    let out = cli(
        &config,
        &data,
        &["--url", &url, "--ca-cert", &ca, "clusters", "list"],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    // Without the prefix the proxy answers its own 404 text: named, not dumped.
    let bare = url.trim_end_matches("/powernode");
    let out = cli(
        &config,
        &data,
        &["--url", bare, "--ca-cert", &ca, "clusters", "list"],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("HTTP 404") && e.contains("not under the prefix"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_an_error_naming_its_status() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let page = format!(
        "<html><body><h1>502 Bad Gateway</h1>{}</body></html>",
        "filler ".repeat(800)
    );
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move {
            (
                axum::http::StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                page,
            )
        }
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &dir.path().join("config.yaml"),
            dir.path(),
            &[
                "--url",
                &format!("http://{addr}"),
                "--token",
                "t",
                "--timeout",
                "5s",
                "call",
                "system_whoami",
                "{}",
            ],
        )
    })
    .await??;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("HTTP 502") && e.contains("begins: <html><body><h1>502 Bad Gateway"),
        "{e}"
    );
    assert!(
        e.len() < 1000,
        "the page was dumped ({} bytes): {e}",
        e.len()
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}
