//! `/metrics` on real nodes (issue 17 item 4): `powernode up` on a real
//! nats-server with simulated agents and a scrape token, and a
//! `powernode serve sensor --metrics-listen` beside it. The scrapes are
//! parsed with a Prometheus text parser (`prometheus-parse`).

use anyhow::{bail, Context};
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, text, Running};
use powernode_tests::http::action;
use powernode_tests::nats::{child_env, NatsServer};
use prometheus_parse::{Sample, Scrape, Value as PValue};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "metrics-s3cret";

/// `GET /metrics` on `127.0.0.1:port`: status and body.
async fn get_metrics(port: u16, bearer: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((status, body.to_string()))
}

fn parse(body: &str) -> anyhow::Result<Scrape> {
    Ok(Scrape::parse(body.lines().map(|l| Ok(l.to_string())))?)
}

fn samples<'a>(scrape: &'a Scrape, metric: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| s.metric == metric)
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels.get(name)
}

fn number(s: &Sample) -> f64 {
    match &s.value {
        PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
        PValue::Histogram(_) | PValue::Summary(_) => f64::NAN,
    }
}

/// The histogram series of `action` answered with `code`: asserts its
/// buckets (ending in +Inf), sum and count; answers the count.
fn action_histogram(scrape: &Scrape, action: &str, code: &str) -> anyhow::Result<f64> {
    let s = samples(scrape, "powernode_action_duration_seconds")
        .find(|s| label(s, "action") == Some(action) && label(s, "code") == Some(code))
        .with_context(|| format!("no latency histogram for {action}/{code}"))?;
    let PValue::Histogram(buckets) = &s.value else {
        bail!(
            "powernode_action_duration_seconds is not a histogram: {:?}",
            s.value
        );
    };
    anyhow::ensure!(buckets.len() > 5, "too few buckets: {buckets:?}");
    let last = buckets.last().context("no buckets")?;
    anyhow::ensure!(last.less_than.is_infinite(), "no +Inf bucket: {buckets:?}");
    let sum = samples(scrape, "powernode_action_duration_seconds_sum")
        .find(|s| label(s, "action") == Some(action) && label(s, "code") == Some(code))
        .map(number)
        .context("no _sum")?;
    let count = samples(scrape, "powernode_action_duration_seconds_count")
        .find(|s| label(s, "action") == Some(action) && label(s, "code") == Some(code))
        .map(number)
        .context("no _count")?;
    anyhow::ensure!(
        count >= 1.0 && last.count == count,
        "count {count}, +Inf {}",
        last.count
    );
    anyhow::ensure!(sum > 0.0, "sum {sum}");
    Ok(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_metrics_a_prometheus_parser_reads() -> anyhow::Result<()> {
    let bin = powernode_bin()?;
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("up");
    let port = free_port();
    let up_log = std::fs::File::create(dir.path().join("up.log"))?;
    let _up = Running(
        powernode(&bin)
            .arg("up")
            .args(nats.nats_args())
            .envs(child_env(&nats.url()))
            // Plain http on loopback: the scrape is the subject here.
            .args([
                "--insecure-http",
                "--simulate-agents",
                "--heartbeat-ms",
                "200",
                "--data-dir",
            ])
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("POWERNODE_METRICS_TOKEN", TOKEN)
            .stdout(up_log.try_clone()?)
            .stderr(up_log)
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;

    // Actions: some answered ok, one refused.
    let account = ok(port, &admin, "system_create_account", json!({"name": "m"})).await?;
    let refused = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": 5}),
    )
    .await?;
    anyhow::ensure!(
        refused.status >= 400,
        "a numeric name was accepted: {:?}",
        refused.body
    );
    let refusal_code = refused.body["error"]["code"]
        .as_str()
        .context("no error code")?
        .to_string();
    let token = ok(
        port,
        &admin,
        "system_create_operator_token",
        json!({"account_id": account["account"]["id"], "permissions": ["system.kubernetes_provision"]}),
    )
    .await?["token"]
        .as_str()
        .context("no token")?
        .to_string();
    // A provision: its simulated agent enrolls and beats.
    let tmpl = ok(port, &token, "system_create_template", json!({"name": "t"})).await?;
    let node = ok(
        port,
        &token,
        "system_create_node",
        json!({"hostname": "n-1", "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
    )
    .await?;
    ok(
        port,
        &token,
        "system_provision_instance",
        json!({"node_id": node["node"]["id"]}),
    )
    .await?;
    // A malformed heartbeat over NATS: refused by the intake.
    let client = nats.client().await?;
    let reply = client
        .request("pn.agent.heartbeat", "not a heartbeat".into())
        .await
        .context("the intake did not answer a malformed heartbeat")?;
    let reply = String::from_utf8_lossy(&reply.payload).to_string();
    anyhow::ensure!(
        reply.contains("malformed_request"),
        "intake answered {reply}"
    );

    // Without the token: 401 with a body saying why; with it: 200.
    let (status, body) = get_metrics(port, None).await?;
    anyhow::ensure!(status == 401 && body.contains("Bearer"), "{status}: {body}");
    let (status, body) = get_metrics(port, Some("wrong")).await?;
    anyhow::ensure!(status == 401, "a wrong token got {status}: {body}");
    let (status, _) = get_metrics(port, Some(&admin)).await?;
    anyhow::ensure!(
        status == 401,
        "the operator token opened /metrics: {status}"
    );

    let start = Instant::now();
    let scrape = loop {
        let (status, body) = get_metrics(port, Some(TOKEN)).await?;
        anyhow::ensure!(status == 200, "{status}: {body}");
        let scrape = parse(&body)?;
        let beats = samples(&scrape, "powernode_heartbeats_total")
            .map(number)
            .sum::<f64>();
        if beats >= 2.0 {
            break scrape;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no heartbeats counted within 60 s:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    action_histogram(&scrape, "system_create_account", "ok")?;
    action_histogram(&scrape, "system_create_account", &refusal_code)?;
    action_histogram(&scrape, "system_provision_instance", "ok")?;

    let refusals: f64 = samples(&scrape, "powernode_intake_refusals_total")
        .filter(|s| label(s, "reason") == Some("malformed_request"))
        .map(number)
        .sum();
    anyhow::ensure!(refusals >= 1.0, "malformed heartbeat not counted");

    for service in [
        "api",
        "provisioner",
        "sdwan",
        "sensor",
        "failover",
        "skills",
    ] {
        let lag = samples(&scrape, "powernode_consumer_lag_events")
            .find(|s| label(s, "service") == Some(service))
            .with_context(|| format!("no lag for {service}"))?;
        anyhow::ensure!(number(lag) >= 0.0);
    }
    let provisioned = samples(&scrape, "powernode_events_appended_total")
        .find(|s| label(s, "kind") == Some("system.instance.provisioned"))
        .map(number);
    anyhow::ensure!(
        provisioned >= Some(1.0),
        "instance.provisioned appends: {provisioned:?}"
    );

    // build_info carries the revision `--version` prints.
    let version = powernode(&bin).arg("--version").output()?;
    let version = text(&version.stdout);
    let rev = version
        .split("(rev ")
        .nth(1)
        .and_then(|r| r.strip_suffix(")\n").or(r.strip_suffix(')')))
        .with_context(|| format!("--version has no revision: {version:?}"))?;
    anyhow::ensure!(rev != "unknown" && rev.len() >= 12, "revision {rev:?}");
    let info = samples(&scrape, "powernode_build_info")
        .next()
        .context("no powernode_build_info")?;
    anyhow::ensure!(label(info, "revision") == Some(rev), "{info:?} vs {rev}");
    anyhow::ensure!(number(info) == 1.0);

    // A node without the API serves /metrics on --metrics-listen (open:
    // no token given to it).
    let mport = free_port();
    let sensor_log = std::fs::File::create(dir.path().join("sensor.log"))?;
    let _sensor = Running(
        powernode(&bin)
            .args(["serve", "sensor", "--replica", "m"])
            .args(nats.nats_args())
            .envs(child_env(&nats.url()))
            .arg("--data-dir")
            .arg(dir.path().join("sensor"))
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .stdin(Stdio::null())
            .stdout(sensor_log.try_clone()?)
            .stderr(sensor_log)
            .spawn()?,
    );
    let start = Instant::now();
    let body = loop {
        match get_metrics(mport, None).await {
            Ok((200, body)) if body.contains("service=\"sensor\"") => break body,
            Ok((status, body)) if status != 200 => bail!("sensor /metrics: {status}: {body}"),
            _ if start.elapsed() > Duration::from_secs(30) => {
                let log = std::fs::read_to_string(dir.path().join("sensor.log"))?;
                bail!("serve sensor --metrics-listen did not answer within 30 s:\n{log}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let scrape = parse(&body)?;
    anyhow::ensure!(
        samples(&scrape, "powernode_consumer_lag_events")
            .any(|s| label(s, "service") == Some("sensor") && label(s, "replica").is_some()),
        "no sensor lag:\n{body}"
    );
    anyhow::ensure!(samples(&scrape, "powernode_build_info").count() == 1);
    Ok(())
}
