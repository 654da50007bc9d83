//! The JetStream event log across nats-server restarts: acknowledged events
//! survive, re-sent events stay duplicates, subscriptions and durable cursors
//! carry on.

use anyhow::{ensure, Context as _};
use futures::StreamExt;
use powernode_events::Envelope;
use powernode_log::{EventLog, Expect, Filter, LogError, StartAt};
use powernode_tests::conformance::{events, fresh_account};
use powernode_tests::jetstream_support::*;
use powernode_tests::nats::{NatsOptions, NatsServer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Kill the server in the middle of concurrent appends, restart it: every
/// acknowledged event is there exactly once at its acknowledged seq, retries
/// of unanswered appends (same id) never store a second copy, and appends
/// succeed again on the same log handle once the client has reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_survive_a_server_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = Arc::new(connect(&server.url()).await?);
    let account = fresh_account("restart");
    const WRITERS: usize = 8;
    // Enough that the two thirds left cannot all land while the server is
    // being stopped (pipelined appends are fast).
    const PER_WRITER: usize = 250;
    let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (log, evs, acked_count) = (
                log.clone(),
                events(&account, PER_WRITER),
                acked_count.clone(),
            );
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut retried = 0;
                for ev in evs {
                    let (seq, _dup, retries) = append_retrying(&log, &ev, deadline).await?;
                    retried += retries;
                    acked_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    acked.push((ev.id, seq));
                }
                Ok::<_, LogError>((acked, retried))
            })
        })
        .collect();

    // Let a good part of the appends through, then crash the server.
    while acked_count.load(std::sync::atomic::Ordering::SeqCst) < WRITERS * PER_WRITER / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_before_kill = acked_count.load(std::sync::atomic::Ordering::SeqCst);
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| server.restart())?;

    let mut acked: Vec<(Uuid, u64)> = Vec::new();
    let mut retried = 0;
    for w in writers {
        let (a, r) = w.await??;
        acked.extend(a);
        retried += r;
    }
    ensure!(
        acked.len() == WRITERS * PER_WRITER,
        "not every append finished"
    );
    ensure!(
        retried > 0,
        "no append saw the restart (acked before kill: {acked_before_kill})"
    );

    let records = read_everything(log.as_ref(), &Filter::all()).await?;
    let mut by_id: HashMap<Uuid, Vec<u64>> = HashMap::new();
    for r in &records {
        let env = Envelope::decode(&r.bytes)?;
        by_id.entry(env.id).or_default().push(r.seq);
    }
    for (id, seq) in &acked {
        let copies = by_id.get(id).cloned().unwrap_or_default();
        ensure!(
            copies == [*seq],
            "event {id} acked at {seq} is stored at {copies:?}"
        );
    }
    ensure!(
        records.len() == acked.len(),
        "{} records stored for {} events",
        records.len(),
        acked.len()
    );
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    ensure!(
        seqs == (1..=records.len() as u64).collect::<Vec<_>>(),
        "sequences have gaps"
    );

    // The same handle keeps working.
    let more = log
        .append(&events(&account, 1).remove(0), Expect::Any)
        .await?;
    ensure!(
        more.seq == records.len() as u64 + 1 && !more.duplicate,
        "append after restart answered {more:?}"
    );
    println!("restart: {acked_before_kill} acked before the kill, {retried} retries");
    Ok(())
}

/// After a restart the dedupe window still knows the event ids: a re-send
/// answers the original seq, on the old handle and on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_event_after_restart_is_still_a_duplicate() -> anyhow::Result<()> {
    let mut server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("resend");
    let evs = events(&account, 5);
    let mut seqs = Vec::new();
    for ev in &evs {
        seqs.push(log.append(ev, Expect::Any).await?.seq);
    }
    let guarded = cluster_event(&account, "cluster-resend");
    let guarded_seq = log.append(&guarded, Expect::NoEvents).await?.seq;

    tokio::task::block_in_place(|| server.restart())?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let (seq, dup, _) = append_retrying(&log, &evs[2], deadline).await?;
    ensure!(
        seq == seqs[2] && dup,
        "old handle: re-send answered seq {seq} duplicate {dup}"
    );
    let fresh = connect(&server.url()).await?;
    for (ev, seq) in evs.iter().zip(&seqs) {
        let a = fresh.append(ev, Expect::Any).await?;
        ensure!(
            a.seq == *seq && a.duplicate,
            "new handle: re-send of seq {seq} answered {a:?}"
        );
    }
    // A guarded re-send: the server checks the guard before the id, the log
    // still answers "duplicate".
    let a = fresh.append(&guarded, Expect::NoEvents).await?;
    ensure!(
        a.seq == guarded_seq && a.duplicate,
        "guarded re-send answered {a:?}"
    );
    ensure!(
        fresh.last_seq().await? == guarded_seq,
        "a re-send stored something"
    );
    Ok(())
}

/// A live subscription and a durable cursor carry on across a server
/// restart: nothing is lost, nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_and_cursor_survive_a_server_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("live");
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: None,
    };
    let mut seqs = Vec::new();
    for ev in events(&account, 5) {
        seqs.push(log.append(&ev, Expect::Any).await?.seq);
    }
    let mut sub = log.subscribe(StartAt::Beginning, filter.clone()).await?;
    let mut cursor = log.durable("restart-cursor", filter, 0).await?;
    let mut from_sub = Vec::new();
    for _ in 0..5 {
        from_sub.push(
            tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await?
                .context("ended")??
                .seq,
        );
    }
    // A batch holds what has arrived so far: take three, however many calls that is.
    let mut from_cursor: Vec<u64> = Vec::new();
    while from_cursor.len() < 3 {
        let batch = cursor
            .next_batch(3 - from_cursor.len(), Duration::from_secs(5))
            .await?;
        ensure!(!batch.is_empty(), "the cursor delivered nothing in 5 s");
        from_cursor.extend(batch.iter().map(|r| r.seq));
    }
    cursor.ack_through(from_cursor[2]).await?;

    tokio::task::block_in_place(|| server.restart())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for ev in events(&account, 5) {
        seqs.push(append_retrying(&log, &ev, deadline).await?.0);
    }
    while from_sub.len() < seqs.len() {
        let r = tokio::time::timeout(Duration::from_secs(45), sub.next())
            .await?
            .context("ended")??;
        from_sub.push(r.seq);
    }
    ensure!(
        from_sub == seqs,
        "subscription delivered {from_sub:?}, expected {seqs:?}"
    );
    // The server persists a consumer's ack floor shortly after the ack, not
    // with it: records acknowledged just before a crash may come again (a
    // consumer skips what it has applied). Anything else arrives once, in order.
    let acked_through = from_cursor[2];
    let mut redelivered = Vec::new();
    while from_cursor.len() < seqs.len() && Instant::now() < deadline {
        match cursor.next_batch(10, Duration::from_secs(1)).await {
            Ok(batch) => {
                for r in batch {
                    if from_cursor.last().is_some_and(|&l| r.seq <= l) {
                        redelivered.push(r.seq);
                    } else {
                        from_cursor.push(r.seq);
                    }
                }
            }
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(
        from_cursor == seqs,
        "cursor delivered {from_cursor:?}, expected {seqs:?}"
    );
    ensure!(
        redelivered.iter().all(|&s| s <= acked_through),
        "records after the acknowledged {acked_through} came twice: {redelivered:?}"
    );
    Ok(())
}
