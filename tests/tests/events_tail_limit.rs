//! `powernode events tail --since … -n N` (issue 17 item 7): the first N
//! events from that point, and with `--follow` the stream carries on after
//! the last one printed. Against a real nats-server and `serve api`.

use anyhow::{ensure, Context};
use powernode_log::jetstream::JetStreamLog;
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{powernode, text};
use powernode_tests::nats::NatsServer;
use powernode_tests::tail_support::{
    append_retrying, exactly, system_account, template_event, ApiProcess, TailProcess,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const PREFIX: &str = "system.template";

async fn append(log: &JetStreamLog, n: usize) -> anyhow::Result<Vec<u64>> {
    let account = system_account();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seqs = Vec::new();
    for i in 0..n {
        let ev = template_event(&account, &format!("lim{i}"));
        seqs.push(append_retrying(log, &ev, deadline).await?);
    }
    Ok(seqs)
}

/// `events tail <args> -o json`: the sequences printed.
fn tail_once(api: &ApiProcess, args: &[&str]) -> anyhow::Result<Vec<u64>> {
    let out = powernode(&powernode_bin()?)
        .args(["events", "tail", "--kind-prefix", PREFIX])
        .args(args)
        .args(["-o", "json", "--url", &api.url, "--token", &api.token])
        .output()?;
    ensure!(
        out.status.success(),
        "events tail {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("not JSON: {l}"))?;
            v["seq"].as_u64().with_context(|| format!("no seq: {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_with_n_prints_the_first_n_and_follow_carries_on() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let api = ApiProcess::start(&nats.url(), &dir.path().join("api")).await?;
    let log = JetStreamLog::connect(nats.log_config()).await?;
    let seqs = append(&log, 10).await?;

    // A time back from now, as in the issue: exactly 3, the oldest ones.
    let got = tail_once(&api, &["--since", "10m", "-n", "3"])?;
    exactly(&got, &seqs[..3])?;
    // From a sequence in the middle: the 3 from there.
    let from = seqs[4].to_string();
    let got = tail_once(&api, &["--since", &from, "-n", "3"])?;
    exactly(&got, &seqs[4..7])?;
    // More than there are: all of them; without -n: every one too.
    exactly(&tail_once(&api, &["--since", "1", "-n", "50"])?, &seqs)?;
    exactly(&tail_once(&api, &["--since", "1"])?, &seqs)?;
    // -n without --since: the newest.
    exactly(&tail_once(&api, &["-n", "2"])?, &seqs[8..])?;

    // With --follow: the first 3, then everything after them, live ones too.
    let mut tail = TailProcess::spawn(
        &api,
        &[
            "--since",
            "1",
            "-n",
            "3",
            "--follow",
            "--kind-prefix",
            PREFIX,
        ],
        dir.path(),
    )?;
    let later = append(&log, 2).await?;
    let mut want = seqs.clone();
    want.extend(&later);
    tail.wait_for_seq(*want.last().context("no seqs")?, Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    exactly(&tail.seqs(), &want)?;
    Ok(())
}
