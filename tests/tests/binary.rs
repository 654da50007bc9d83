//! The `powernode` binary as a user runs it: `up` on the embedded default,
//! `up --nats`, `serve <service>`, Ctrl-C, and an unreachable log.

use anyhow::bail;
use powernode_tests::nats::NatsServer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use powernode_tests::bins::powernode_bin;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> anyhow::Result<Running> {
    Ok(Running(
        Command::new(powernode_bin()?)
            .args(args)
            .envs(powernode_tests::nats::child_env_for_args(args))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// Polls `GET /healthz` until it answers 200 or `within` passes.
async fn wait_healthy(port: u16, within: Duration) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    loop {
        if let Ok(body) = get_json(port, "/healthz").await {
            return Ok(body);
        }
        if start.elapsed() > within {
            bail!("/healthz did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` answered 200 with JSON.
async fn get_json(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    let a = powernode_tests::http::request(port, "GET", path, None, b"").await?;
    if a.status != 200 {
        bail!("not 200: {} {}", a.status, a.body);
    }
    Ok(a.body)
}

fn sigint_and_wait(
    mut child: Running,
    within: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let pid = child.0.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status()?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > within {
            bail!("powernode did not stop within {within:?} of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn up_on_a_fresh_data_dir_is_healthy_within_5s_and_stops_on_ctrl_c() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = powernode_bin()?; // build before timing
    let started = Instant::now();
    let child = Running(
        Command::new(bin)
            .args([
                "up",
                "--insecure-http",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let health = wait_healthy(port, Duration::from_secs(5)).await?;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["log"].as_str().unwrap_or("").contains("embedded"),
        "{health}"
    );
    eprintln!("healthy after {:?}", started.elapsed());
    assert!(
        data.join("log").is_dir(),
        "embedded log not in the data dir"
    );
    let status = sigint_and_wait(child, Duration::from_secs(10))?;
    assert!(status.success(), "exit status after Ctrl-C: {status}");
    Ok(())
}

#[tokio::test]
async fn up_on_nats_and_serve_one_service() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let url = nats.url();
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().to_str().unwrap().to_string();
    let up = spawn(&[
        "up",
        "--insecure-http",
        "--nats",
        &url,
        "--data-dir",
        &data,
        "--listen",
        &listen,
    ])?;
    let health = wait_healthy(port, Duration::from_secs(10)).await?;
    assert!(
        health["log"].as_str().unwrap_or("").contains("jetstream"),
        "{health}"
    );
    assert!(sigint_and_wait(up, Duration::from_secs(10))?.success());

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let api = spawn(&[
        "serve",
        "api",
        "--insecure-http",
        "--nats",
        &url,
        "--data-dir",
        &data,
        "--listen",
        &listen,
    ])?;
    wait_healthy(port, Duration::from_secs(10)).await?;
    assert!(sigint_and_wait(api, Duration::from_secs(10))?.success());
    Ok(())
}

#[tokio::test]
async fn unreachable_log_is_a_clear_error_naming_the_url() -> anyhow::Result<()> {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir()?;
    let bin = powernode_bin()?; // build before timing
    let start = Instant::now();
    let out = Command::new(bin)
        .args([
            "up",
            "--insecure-http",
            "--nats",
            &url,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "error does not name {url}: {stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn call_runs_actions_with_the_admin_token_from_the_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let port = free_port();
    let url = format!("127.0.0.1:{port}");
    let bin = powernode_bin()?;
    let up = spawn(&[
        "up",
        "--insecure-http",
        "--data-dir",
        data,
        "--listen",
        &url,
    ])?;
    wait_healthy(port, Duration::from_secs(10)).await?;
    // The admin token file appears once the API has recorded it.
    let token_file = std::path::Path::new(data).join("admin.token");
    let start = Instant::now();
    while !token_file.exists() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = Command::new(&bin)
        .args([
            "call",
            "system_create_account",
            r#"{"name":"prod"}"#,
            "--url",
            &url,
            "--data-dir",
            data,
        ])
        .output()?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&ok.stdout)?;
    assert!(
        answer["account"]["id"]
            .as_str()
            .unwrap_or("")
            .starts_with("acct-"),
        "{answer}"
    );

    let refused = Command::new(&bin)
        .args([
            "call",
            "system_create_template",
            r#"{"name": 7}"#,
            "--url",
            &url,
            "--data-dir",
            data,
        ])
        .output()?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("invalid_arguments") && stderr.contains("name"),
        "{stderr}"
    );
    assert!(sigint_and_wait(up, Duration::from_secs(10))?.success());
    Ok(())
}
