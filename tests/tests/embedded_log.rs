//! The embedded (sled) event log: every conformance check on a fresh
//! directory, plus what only the embedded backend has (directory locking,
//! raw records, group commit under load, quick close-and-reopen, a second
//! process, a process killed while appending).

use anyhow::{ensure, Context};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use powernode_events::Envelope;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::{EventLog, Expect, Filter, LogError, SharedLog, StartAt};
use powernode_tests::conformance::{self, Opener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use uuid::Uuid;

/// A temporary log directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn open(&self) -> anyhow::Result<SharedLog> {
        Ok(EmbeddedLog::open_shared(&self.path())?)
    }

    fn opener(&self) -> Box<Opener> {
        let path = self.path();
        Box::new(move || {
            let path = path.clone();
            async move { Ok(EmbeddedLog::open_shared(&path)?) }.boxed()
        })
    }
}

#[tokio::test]
async fn append_and_read_back() -> anyhow::Result<()> {
    conformance::append_and_read_back(&Fixture::new().open()?).await
}

#[tokio::test]
async fn dedupe_resent_event() -> anyhow::Result<()> {
    conformance::dedupe_resent_event(&Fixture::new().open()?).await
}

#[tokio::test]
async fn guarded_append_conflict() -> anyhow::Result<()> {
    conformance::guarded_append_conflict(&Fixture::new().open()?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_from_seq_while_appending() -> anyhow::Result<()> {
    conformance::subscribe_from_seq_while_appending(&Fixture::new().open()?).await
}

#[tokio::test]
async fn subscribe_new_and_from_time() -> anyhow::Result<()> {
    conformance::subscribe_new_and_from_time(&Fixture::new().open()?).await
}

#[tokio::test]
async fn filter_by_account_and_kind_prefix() -> anyhow::Result<()> {
    conformance::filter_by_account_and_kind_prefix(&Fixture::new().open()?).await
}

#[tokio::test]
async fn durable_cursor_resumes() -> anyhow::Result<()> {
    let fx = Fixture::new();
    conformance::durable_cursor_resumes(&*fx.opener()).await
}

#[tokio::test]
async fn delete_durable_rewinds() -> anyhow::Result<()> {
    conformance::delete_durable_rewinds(&Fixture::new().open()?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_reopen() -> anyhow::Result<()> {
    let fx = Fixture::new();
    conformance::survives_reopen(&*fx.opener()).await
}

/// The checks do not need an empty log: all of them, one after another, on one directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_checks_on_one_log() -> anyhow::Result<()> {
    let fx = Fixture::new();
    conformance::run_all(&*fx.opener()).await
}

#[tokio::test]
async fn second_open_of_an_open_dir_fails_clearly() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let first = fx.open()?;
    let started = Instant::now();
    let err = match EmbeddedLog::open(&fx.path()) {
        Ok(_) => anyhow::bail!("a second open of {} succeeded", fx.path().display()),
        Err(e) => e,
    };
    let LogError::Storage(message) = &err else {
        anyhow::bail!("expected a storage error, got {err:?}");
    };
    let path = fx.path().display().to_string();
    ensure!(
        message.contains(&path),
        "the error does not name the path {path}: {message}"
    );
    ensure!(
        message.contains("locked"),
        "the error does not say the log is locked: {message}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "refusing took {:?}",
        started.elapsed()
    );

    // The first handle is unaffected; once it is gone the directory opens.
    let account = conformance::fresh_account("lock");
    first
        .append(&conformance::events(&account, 1)[0], Expect::Any)
        .await?;
    drop(first);
    let again = fx
        .open()
        .context("open after the first handle was dropped")?;
    ensure!(
        again.last_seq().await? == 1,
        "the record appended before reopening is missing"
    );
    Ok(())
}

#[tokio::test]
async fn quick_close_and_reopen_keeps_every_event() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let account = conformance::fresh_account("reopen");
    for round in 1..=20u64 {
        let log = fx
            .open()
            .with_context(|| format!("open in round {round}"))?;
        ensure!(
            log.last_seq().await? == round - 1,
            "round {round}: last_seq is not {}",
            round - 1
        );
        let a = log
            .append(&conformance::events(&account, 1)[0], Expect::Any)
            .await?;
        ensure!(a.seq == round, "round {round}: appended at {}", a.seq);
    }
    Ok(())
}

#[tokio::test]
async fn malformed_record_is_returned_not_fatal() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let log = EmbeddedLog::open(&fx.path())?;
    let account = conformance::fresh_account("malformed");
    let evs = conformance::events(&account, 2);
    let garbage = Bytes::from_static(b"\xff\x00 not an envelope");
    let subject = format!("pn.evt.{account}.cluster.cluster-x.system.k3s.cluster.activated");

    let mut sub = log.subscribe(StartAt::Beginning, Filter::all()).await?;
    let s1 = log.append(&evs[0], Expect::Any).await?.seq;
    let bad = log.append_raw_for_tests(&subject, garbage.clone()).await?;
    let junk = log
        .append_raw_for_tests("not-an-event-subject", Bytes::from_static(b"junk"))
        .await?;
    let s2 = log.append(&evs[1], Expect::Any).await?.seq;
    ensure!(
        [s1, bad, junk, s2] == [1, 2, 3, 4],
        "seqs {:?}",
        [s1, bad, junk, s2]
    );

    let records = log.read(1, 10, &Filter::all()).await?;
    ensure!(
        records.len() == 4,
        "read returned {} records",
        records.len()
    );
    ensure!(
        records[1].bytes == garbage && records[1].subject == subject,
        "the malformed record came back changed"
    );
    ensure!(
        Envelope::decode(&records[1].bytes).is_err(),
        "garbage decoded"
    );
    ensure!(
        records[1].kind() == "system.k3s.cluster.activated",
        "kind of the malformed record is not read from its subject"
    );
    ensure!(
        Envelope::decode(&records[3].bytes)? == evs[1],
        "the record after the malformed one is wrong"
    );

    for expected in 1..=4u64 {
        let r = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .context("subscription stalled")?
            .context("subscription ended")??;
        ensure!(
            r.seq == expected,
            "subscription delivered {} instead of {expected}",
            r.seq
        );
    }
    // An account filter keeps the malformed event-subject record, drops the non-event subject.
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: None,
    };
    let seqs: Vec<u64> = log
        .read(1, 10, &filter)
        .await?
        .iter()
        .map(|r| r.seq)
        .collect();
    ensure!(seqs == [1, 2, 4], "account-filtered read returned {seqs:?}");

    let mut cursor = log.durable("malformed", Filter::all(), 0).await?;
    let batch = cursor.next_batch(10, Duration::from_secs(1)).await?;
    ensure!(
        batch.len() == 4 && batch[1].bytes == garbage,
        "the durable cursor did not deliver the malformed record"
    );
    Ok(())
}

/// 64 concurrent appenders × 500 events: distinct, contiguous sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_many_concurrent_appenders() -> anyhow::Result<()> {
    const APPENDERS: usize = 64;
    const PER_APPENDER: usize = 500;
    let fx = Fixture::new();
    let log = fx.open()?;
    let account = conformance::fresh_account("group");
    let started = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|_| {
            let log = log.clone();
            let evs = conformance::events(&account, PER_APPENDER);
            tokio::spawn(async move {
                let mut seqs = Vec::with_capacity(evs.len());
                for ev in &evs {
                    let a = log.append(ev, Expect::Any).await?;
                    if a.duplicate {
                        return Err(LogError::Invalid(format!(
                            "{} reported as duplicate",
                            ev.id
                        )));
                    }
                    seqs.push(a.seq);
                }
                Ok(seqs)
            })
        })
        .collect();
    let mut seqs = Vec::with_capacity(APPENDERS * PER_APPENDER);
    for t in tasks {
        let mine = t.await??;
        ensure!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one appender's seqs are not increasing"
        );
        seqs.extend(mine);
    }
    let elapsed = started.elapsed();
    let total = (APPENDERS * PER_APPENDER) as u64;
    seqs.sort_unstable();
    ensure!(
        seqs == (1..=total).collect::<Vec<_>>(),
        "seqs are not exactly 1..={total}"
    );
    ensure!(log.last_seq().await? == total, "last_seq is not {total}");
    eprintln!(
        "group commit: {total} events from {APPENDERS} appenders in {elapsed:.2?} ({:.0} events/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn log_trees_are_reserved() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let log = Arc::new(EmbeddedLog::open(&fx.path())?);
    ensure!(
        matches!(log.open_tree("pn.log.events"), Err(LogError::Invalid(_))),
        "the events tree was handed out"
    );
    let secrets = log.open_tree("secrets")?;
    secrets
        .insert("k", "v")
        .context("insert into a side tree")?;
    ensure!(
        log.describe().contains(&fx.path().display().to_string()),
        "describe() does not name the path"
    );
    Ok(())
}

// ------------------------------------------------- other processes

/// Environment of the child process: what to do, and on which directory.
/// The `embedded_child` helper binary (`tests/src/bin/embedded_child.rs`).
fn spawn_child(mode: &str, dir: &Path) -> anyhow::Result<(Child, Lines<BufReader<ChildStdout>>)> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_embedded_child"))
        .arg(mode)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the child process")?;
    let stdout = child.stdout.take().context("child stdout")?;
    Ok((child, BufReader::new(stdout).lines()))
}

/// The next line of the child starting with `PN-`, or `None` at end of output.
async fn child_line(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<Option<String>> {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the child process went silent")??;
        match line {
            None => return Ok(None),
            Some(l) => {
                if let Some(at) = l.find("PN-") {
                    return Ok(Some(l[at..].to_string()));
                }
            }
        }
    }
}

#[tokio::test]
async fn open_of_a_dir_held_by_another_process_fails_clearly() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let (mut child, mut lines) = spawn_child("hold", &fx.path())?;
    ensure!(
        child_line(&mut lines).await?.as_deref() == Some("PN-READY"),
        "the child did not open the log"
    );
    let err = match EmbeddedLog::open(&fx.path()) {
        Ok(_) => anyhow::bail!("opened a log another process holds"),
        Err(e) => e,
    };
    let path = fx.path().display().to_string();
    ensure!(
        matches!(&err, LogError::Storage(m) if m.contains(&path) && m.contains("locked")),
        "expected a storage error naming {path} as locked, got {err:?}"
    );
    child.kill().await?;
    fx.open().context("open after the other process exited")?;
    Ok(())
}

/// SIGKILL the process while 16 tasks append, three times on one directory:
/// every append it acknowledged is in the log afterwards, at the seq it was
/// acknowledged with, and the log is gap-free and readable (so appends
/// continue correctly after a crash, too).
#[tokio::test]
async fn killed_process_loses_no_acknowledged_event() -> anyhow::Result<()> {
    let fx = Fixture::new();
    let mut acked: Vec<(u64, Uuid)> = Vec::new();
    for round in 1..=3 {
        let (mut child, mut lines) = spawn_child("append", &fx.path())?;
        let target = acked.len() + 1000 * round;
        while acked.len() < target {
            let line = child_line(&mut lines)
                .await?
                .context("the child stopped early")?;
            ensure!(
                !line.starts_with("PN-ERR"),
                "the child failed to append: {line}"
            );
            acked.extend(parse_ack(&line));
        }
        child.start_kill()?;
        // Acknowledgements printed before the kill count too (a cut line is ignored).
        while let Some(line) = child_line(&mut lines).await? {
            acked.extend(parse_ack(&line));
        }
        child.wait().await?;

        let log = fx
            .open()
            .with_context(|| format!("reopening after kill {round}"))?;
        let last = log.last_seq().await?;
        let records = log.read(1, usize::MAX, &Filter::all()).await?;
        ensure!(
            records.len() as u64 == last,
            "{} records but last_seq {last}",
            records.len()
        );
        let mut by_seq = std::collections::HashMap::new();
        for (i, r) in records.iter().enumerate() {
            ensure!(r.seq == i as u64 + 1, "gap in the log at {}", i + 1);
            by_seq.insert(r.seq, Envelope::decode(&r.bytes)?.id);
        }
        for (seq, id) in &acked {
            ensure!(
                by_seq.get(seq) == Some(id),
                "kill {round}: acknowledged event {id} (seq {seq}) is missing"
            );
        }
        eprintln!(
            "kill {round}: {} acknowledged so far, {last} records stored",
            acked.len()
        );
    }
    Ok(())
}

fn parse_ack(line: &str) -> Option<(u64, Uuid)> {
    let mut it = line.strip_prefix("PN-ACK ")?.split(' ');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}
