//! `powernode events export` and `powernode events import`, through the
//! real binary: a realistic JetStream run exported, imported into another
//! nats-server and into an embedded data dir, record for record and with
//! the same replayed state hash; no secret in the file; damaged exports
//! refused with the offset where they broke and nothing imported; export
//! through the API of a running `powernode up`, scoped to the token's
//! account.
//!
//! `cargo nextest run -p powernode-tests --test events_export`

use anyhow::{ensure, Context as _};
use futures::TryStreamExt;
use powernode_archive::{Bound, SourceArgs};
use powernode_cli::ApiArgs;
use powernode_events::payloads::fleet::AccountCreated;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{EventLog, Expect, Filter, SharedLog};
use powernode_tests::cli_support::{admin_token, free_port, ok, powernode, Running};
use powernode_tests::export_support::*;
use powernode_tests::lifecycle_support::{str_at, Platform, AGENT};
use powernode_tests::nats::NatsServer;
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

/// The value after `key: ` in a kubeconfig.
fn yaml_value<'a>(text: &'a str, key: &str) -> anyhow::Result<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
        .with_context(|| format!("no {key} in {text}"))
}

async fn jetstream(url: &str, stream: &str) -> anyhow::Result<SharedLog> {
    let mut config = powernode_tests::nats::log_config(url);
    config.stream = stream.to_string();
    Ok(Arc::new(JetStreamLog::connect(config).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_and_replay_give_the_same_state() -> anyhow::Result<()> {
    let cli = Cli::new()?;
    // A realistic run: a cluster bootstrapped, a worker joined (join tokens
    // delivered), a kubeconfig retrieved.
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let (server, cluster) = p.bootstrap(&p.op, "k3s-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    let worker = p
        .start_member(
            &p.op,
            "k3s-worker-1",
            AGENT,
            Some(&cluster_id),
            Some(&net),
            2048,
        )
        .await?;
    p.wait_node_ready(&cluster_id, &worker.instance_id).await?;
    let kc = p
        .ok(
            "kubernetes_get_kubeconfig",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    let kubeconfig = str_at(&kc, "/kubeconfig")?;
    let server_token = str_at(&server.agent.wait_phase("ready").await?, "/token")?;
    let worker_token = str_at(&worker.agent.wait_phase("ready").await?, "/token")?;
    let last = p.settle().await?;
    let url = p.nats_url();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("prod.pnx");
    let f = file.to_str().context("path")?;

    let s = cli
        .json(&[
            "events",
            "export",
            "--nats",
            &url,
            "--until",
            &last.to_string(),
            "--out",
            f,
        ])
        .await?;
    ensure!(
        s["events"] == last && s["first_seq"] == 1 && s["last_seq"] == last,
        "{s}"
    );
    ensure!(s["renumbered_on_import"] == false, "{s}");
    let bytes = std::fs::read(&file)?;
    ensure!(s["bytes"] == bytes.len(), "{s} vs {} bytes", bytes.len());

    // No secret in the file.
    let password = server_token
        .rsplit_once(':')
        .map_or(server_token.as_str(), |(_, pw)| pw);
    for (what, secret) in [
        ("the server's join token", server_token.as_str()),
        ("the token's password", password),
        ("the worker's join token", worker_token.as_str()),
        (
            "the kubeconfig's client key",
            yaml_value(&kubeconfig, "client-key-data")?,
        ),
        (
            "the kubeconfig's client certificate",
            yaml_value(&kubeconfig, "client-certificate-data")?,
        ),
        ("the kubeconfig", kubeconfig.as_str()),
    ] {
        ensure!(secret.len() >= 16, "{what} too short to scan for");
        ensure!(
            !contains(&bytes, secret.as_bytes()),
            "{what} is in the export"
        );
    }

    // Into a fresh stream on another nats-server, and into an embedded data dir.
    let other = NatsServer::start()?;
    let into_js = cli
        .json(&[
            "events",
            "import",
            f,
            "--nats",
            &other.url(),
            "--stream",
            "PN_COPY",
        ])
        .await?;
    ensure!(
        into_js["events"] == last && into_js["renumbered"] == false,
        "{into_js}"
    );
    let data = dir.path().join("laptop");
    let d = data.to_str().context("path")?;
    let into_embedded = cli.json(&["events", "import", f, "--data-dir", d]).await?;
    ensure!(into_embedded["events"] == last, "{into_embedded}");

    // Record for record: sequence, subject and bytes.
    let original = log_records(&p.log, Some(last)).await?;
    ensure!(original.len() as u64 == last, "{} records", original.len());
    let copy = log_records(&jetstream(&other.url(), "PN_COPY").await?, None).await?;
    ensure!(copy == original, "the JetStream copy differs");
    let laptop = embedded_records(&data).await?;
    ensure!(laptop == original, "the embedded copy differs");
    let exported: Vec<Stored> = export_records(&bytes)?
        .into_iter()
        .map(|r| (r.seq, r.subject, r.bytes))
        .collect();
    ensure!(exported == original, "the export differs from the log");

    // The same state, replayed from each of them.
    let until = last.to_string();
    let want = cli.state_hash(&["--nats", &url, "--until", &until]).await?;
    ensure!(want.1 == last, "{want:?}");
    for source in [
        vec!["--nats", other.url().as_str(), "--stream", "PN_COPY"],
        vec!["--data-dir", d],
        vec!["--file", f],
    ] {
        let got = cli.state_hash(&source).await?;
        ensure!(got == want, "replay {source:?}: {got:?}, want {want:?}");
    }

    // A second import into a log that is no longer empty is refused.
    let err = cli
        .refused(&["events", "import", f, "--data-dir", d])
        .await?;
    ensure!(
        err.contains("already holds") && err.contains("empty"),
        "{err}"
    );
    Ok(())
}

/// An embedded log with `n` generated events in `<dir>/log`, closed again.
async fn generated_log(dir: &Path, n: usize) -> anyhow::Result<()> {
    let log = EmbeddedLog::open(&dir.join("log"))?;
    let events: Vec<Envelope> = (0..n)
        .map(|i| {
            Ok(Envelope::new(
                AccountId::new(format!("acct-{i}"))?,
                Actor::Operator {
                    token_id: "tok-test".into(),
                },
                AccountCreated {
                    account_id: format!("acct-{i}"),
                    name: format!("account number {i}"),
                },
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    // Appended a few hundred at a time: the writer commits them together.
    for group in events.chunks(500) {
        let appends = group.iter().map(|e| log.append(e, Expect::Any));
        for appended in futures::future::join_all(appends).await {
            appended?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_exports_are_refused_with_the_offset_and_import_nothing() -> anyhow::Result<()> {
    let cli = Cli::new()?;
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source");
    generated_log(&source, 40).await?;
    let good = dir.path().join("good.pnx");
    cli.ok(&[
        "events",
        "export",
        "--data-dir",
        source.to_str().context("path")?,
        "--out",
        good.to_str().context("path")?,
    ])
    .await?;
    let bytes = std::fs::read(&good)?;
    let frames = frame_offsets(&bytes)?;
    ensure!(frames.len() == 41, "40 records and a trailer: {frames:?}");
    let at = |i: usize| frames[i] as usize;

    let mut flipped = bytes.clone();
    flipped[at(10) + 30] ^= 0x20;
    let mut future = bytes.clone();
    future[8..10].copy_from_slice(&2u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, usize, &str)> = vec![
        (
            "truncated mid-record",
            bytes[..at(20) + 11].to_vec(),
            at(20),
            "cut short",
        ),
        (
            "truncated at a record boundary",
            bytes[..at(20)].to_vec(),
            at(20),
            "without its trailer",
        ),
        (
            "truncated inside the trailer",
            bytes[..bytes.len() - 2].to_vec(),
            at(40),
            "cut short",
        ),
        ("one flipped byte", flipped, at(10), "checksum mismatch"),
        (
            "an unknown format version",
            future,
            8,
            "unknown export format version 2",
        ),
    ];
    let nats = NatsServer::start()?;
    for (i, (what, damaged, offset, reason)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("damaged-{i}.pnx"));
        std::fs::write(&file, &damaged)?;
        let f = file.to_str().context("path")?;
        let expected = format!("at byte offset {offset}: ");

        let target = dir.path().join(format!("target-{i}"));
        let err = cli
            .refused(&[
                "events",
                "import",
                f,
                "--data-dir",
                target.to_str().context("path")?,
            ])
            .await?;
        ensure!(
            err.contains(&expected) && err.contains(reason),
            "{what}: want {expected:?} and {reason:?} in:\n{err}"
        );
        ensure!(
            !target.join("log").exists() || embedded_records(&target).await?.is_empty(),
            "{what}: something was imported into the embedded log"
        );

        // One stream for every case: two streams on one server cannot
        // both capture the event subjects.
        let stream = "PN_DAMAGED";
        let err = cli
            .refused(&[
                "events",
                "import",
                f,
                "--nats",
                &nats.url(),
                "--stream",
                stream,
            ])
            .await?;
        ensure!(err.contains(&expected), "{what} (JetStream): {err}");
        let log = jetstream(&nats.url(), stream).await?;
        ensure!(
            log.last_seq().await? == 0,
            "{what}: something was imported into JetStream"
        );

        // Reading it for a replay is refused the same way.
        let err = cli.refused(&["replay", "--file", f, "--hash"]).await?;
        ensure!(err.contains(&expected), "{what} (replay): {err}");
    }

    // The intact file imports, all of it.
    let fine = dir.path().join("fine");
    let s = cli
        .json(&[
            "events",
            "import",
            good.to_str().context("path")?,
            "--data-dir",
            fine.to_str().context("path")?,
        ])
        .await?;
    ensure!(s["events"] == 40, "{s}");
    ensure!(
        embedded_records(&fine).await? == embedded_records(&source).await?,
        "the import differs from the source"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_through_the_api_of_a_running_node_is_account_scoped() -> anyhow::Result<()> {
    let cli = Cli::new()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let d = data.to_str().context("path")?;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let up = Running(
        powernode(&powernode_tests::bins::powernode_bin()?)
            .args([
                "up",
                "--insecure-http",
                "--data-dir",
                d,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let admin = admin_token(port, &data).await?;
    let mut tokens = Vec::new();
    for name in ["alpha", "beta"] {
        let a = ok(
            port,
            &admin,
            "system_create_account",
            json!({ "name": name }),
        )
        .await?;
        let account = str_at(&a, "/account/id")?;
        let t = ok(
            port,
            &admin,
            "system_create_operator_token",
            json!({"account_id": account, "permissions": ["system.kubernetes_provision"]}),
        )
        .await?;
        tokens.push((account, str_at(&t, "/token")?));
    }
    let ((alpha, alpha_token), (beta, _)) = (&tokens[0], &tokens[1]);
    for (i, (_, token)) in tokens.iter().enumerate() {
        for n in 0..=i {
            ok(
                port,
                token,
                "system_create_template",
                json!({ "name": format!("t-{n}") }),
            )
            .await?;
        }
    }
    let empty = dir.path().join("elsewhere");
    let client = cli.with_env("POWERNODE_URL", &url);

    // The admin, through the running node (its log is locked: the API is used).
    let all_file = dir.path().join("all.pnx");
    let s = client
        .json(&[
            "events",
            "export",
            "--data-dir",
            d,
            "--out",
            all_file.to_str().context("path")?,
        ])
        .await?;
    ensure!(
        s["source"].as_str().unwrap_or_default().contains("API"),
        "{s}"
    );
    let all = export_records(&std::fs::read(&all_file)?)?;
    ensure!(
        all.len() as u64 == s["events"].as_u64().unwrap_or_default()
            && all.first().map(|r| r.seq) == Some(1)
            && all.last().map(|r| r.seq) == Some(all.len() as u64),
        "the admin exports the whole log: {s}"
    );

    // What `replay` and `events explain` use: the running node's log
    // through the API, as a temporary export file.
    let opened = powernode_inspect::open_source(
        &SourceArgs {
            file: None,
            nats: None,
            nats_auth: Default::default(),
            stream: "PN_EVENTS".into(),
        },
        &data,
        || ApiArgs::for_url(&url, &data).client(),
    )
    .await?;
    let downloaded: Vec<_> = opened
        .records(1, Bound::End, Filter::all())
        .await?
        .try_collect()
        .await?;
    ensure!(
        downloaded.len() >= all.len() && downloaded[..all.len()] == all[..],
        "open_with_api: {} records ({})",
        downloaded.len(),
        opened.describe()
    );
    drop(opened);

    // A token of one account: only that account's events.
    let alpha_file = dir.path().join("alpha.pnx");
    let s = client
        .with_env("POWERNODE_TOKEN", alpha_token)
        .json(&[
            "events",
            "export",
            "--data-dir",
            empty.to_str().context("path")?,
            "--out",
            alpha_file.to_str().context("path")?,
        ])
        .await?;
    let mine = export_records(&std::fs::read(&alpha_file)?)?;
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.account() == alpha.as_str())
        .cloned()
        .collect();
    ensure!(
        !mine.is_empty() && mine == want,
        "alpha's export: {} records, want {}",
        mine.len(),
        want.len()
    );
    ensure!(s["renumbered_on_import"] == true, "{s}");
    let err = client
        .with_env("POWERNODE_TOKEN", alpha_token)
        .refused(&[
            "events",
            "export",
            "--api",
            "--account",
            beta,
            "--out",
            dir.path().join("beta.pnx").to_str().context("path")?,
        ])
        .await?;
    ensure!(err.contains("forbidden"), "{err}");

    // Filters travel to the API: a kind prefix and a start.
    let since = all[2].seq.to_string();
    let filtered_file = dir.path().join("templates.pnx");
    client
        .ok(&[
            "events",
            "export",
            "--api",
            "--data-dir",
            d,
            "--kind-prefix",
            "system.template",
            "--since",
            &since,
            "--out",
            filtered_file.to_str().context("path")?,
        ])
        .await?;
    let filtered = export_records(&std::fs::read(&filtered_file)?)?;
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.kind().starts_with("system.template") && r.seq >= all[2].seq)
        .cloned()
        .collect();
    ensure!(filtered.len() == 3 && filtered == want, "{filtered:?}");

    // Imported, a filtered export is renumbered and says so.
    let laptop = dir.path().join("laptop");
    let out = cli
        .ok(&[
            "events",
            "import",
            alpha_file.to_str().context("path")?,
            "--data-dir",
            laptop.to_str().context("path")?,
        ])
        .await?;
    ensure!(
        out.contains(&format!("imported {} events", mine.len()))
            && out.contains("new, contiguous sequences"),
        "{out}"
    );

    // Stopped, the node's embedded log is read directly, with the same records.
    drop(up);
    let local_file = dir.path().join("local.pnx");
    let s = cli
        .json(&[
            "events",
            "export",
            "--data-dir",
            d,
            "--until",
            &all.len().to_string(),
            "--out",
            local_file.to_str().context("path")?,
        ])
        .await?;
    ensure!(
        s["source"]
            .as_str()
            .unwrap_or_default()
            .contains("embedded"),
        "{s}"
    );
    let local = export_records(&std::fs::read(&local_file)?)?;
    ensure!(local == all, "the local export differs from the API's");
    Ok(())
}
