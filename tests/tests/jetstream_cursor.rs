//! Durable cursors against a real nats-server when deliveries are lost on
//! their way (a consumer leader dying with records in flight, a dropped
//! pull): the cursor must notice and take the lost records again, in order,
//! long before the server's `ack_wait` redelivery — and never skip them.
//!
//! The loss is made real by a second puller on the same durable consumer
//! that takes records and never acknowledges them: for the server they are
//! delivered, exactly as when the messages die in flight.
//!
//! `cargo test -p powernode-tests --test jetstream_cursor`.

use anyhow::{ensure, Context as _};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use powernode_log::jetstream::{durable_name, DEFAULT_STREAM, DURABLE_ACK_WAIT};
use powernode_log::{DurableCursor, EventLog, Expect, Filter};
use powernode_tests::conformance::{events, fresh_account};
use powernode_tests::jetstream_support::connect;
use powernode_tests::nats::NatsServer;
use std::time::{Duration, Instant};

/// Well under `ack_wait`: recovery must not wait for the server's redelivery.
const RECOVER_WITHIN: Duration = Duration::from_secs(15);

/// Takes `n` records of cursor `name` without acknowledging them, as a
/// delivery lost in flight would.
async fn steal(url: &str, name: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let client = powernode_tests::nats::connect(url).await?;
    let js = jetstream::new(client);
    let consumer = js
        .get_stream(DEFAULT_STREAM)
        .await?
        .get_consumer::<pull::Config>(&durable_name(name))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut seqs = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| anyhow::anyhow!(e))?;
        seqs.push(m.info().map_err(|e| anyhow::anyhow!(e))?.stream_sequence);
    }
    ensure!(seqs.len() == n, "stole {seqs:?}, wanted {n}");
    Ok(seqs)
}

/// Reads the cursor until `want` records came or time is up.
async fn read(cursor: &mut dyn DurableCursor, want: usize) -> anyhow::Result<Vec<u64>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + RECOVER_WITHIN;
    while got.len() < want && Instant::now() < deadline {
        let batch = cursor.next_batch(100, Duration::from_millis(300)).await?;
        got.extend(batch.iter().map(|r| r.seq));
    }
    Ok(got)
}

/// Records delivered before the ones the cursor receives, but lost: the
/// cursor sees the jump in delivery sequence and takes them again first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_lost_before_later_ones_are_taken_again_in_order() -> anyhow::Result<()> {
    assert!(DURABLE_ACK_WAIT > RECOVER_WITHIN * 2);
    let server = NatsServer::start()?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("lost");
    let mut seqs = Vec::new();
    for ev in events(&account, 20) {
        seqs.push(log.append(&ev, Expect::Any).await?.seq);
    }
    let mut cursor = log.durable("lost-middle", Filter::all(), 0).await?;
    let stolen = steal(&server.url(), "lost-middle", 3).await?;
    ensure!(stolen == seqs[..3], "stole {stolen:?}");

    let got = read(cursor.as_mut(), seqs.len()).await?;
    ensure!(
        got == seqs,
        "cursor returned {got:?}; expected every record once, in order: {seqs:?}"
    );
    // Acking the last one acknowledges them all, and nothing comes again.
    cursor
        .ack_through(*seqs.last().context("appended")?)
        .await?;
    ensure!(cursor.acked().await? == *seqs.last().context("appended")?);
    let more = cursor.next_batch(100, Duration::from_millis(500)).await?;
    ensure!(more.is_empty(), "records returned twice: {more:?}");
    Ok(())
}

/// The newest records lost with nothing after them: no later delivery shows
/// the jump, so the idle cursor asks the server what it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_deliveries_lost_are_noticed_while_idle() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("tail");
    let mut evs = events(&account, 8).into_iter();
    let mut first = Vec::new();
    for ev in evs.by_ref().take(5) {
        first.push(log.append(&ev, Expect::Any).await?.seq);
    }
    {
        let mut cursor = log.durable("lost-tail", Filter::all(), 0).await?;
        let got = read(cursor.as_mut(), first.len()).await?;
        ensure!(got == first, "first read {got:?}");
        cursor
            .ack_through(*first.last().context("appended")?)
            .await?;
    }
    let mut rest = Vec::new();
    for ev in evs {
        rest.push(log.append(&ev, Expect::Any).await?.seq);
    }
    // Reopened (reset to its ack floor), then the newest records go astray.
    let mut cursor = log.durable("lost-tail", Filter::all(), 0).await?;
    let stolen = steal(&server.url(), "lost-tail", rest.len()).await?;
    ensure!(stolen == rest, "stole {stolen:?}");

    let started = Instant::now();
    let got = read(cursor.as_mut(), rest.len()).await?;
    ensure!(
        got == rest,
        "cursor returned {got:?} after {:?}; expected {rest:?}",
        started.elapsed()
    );
    Ok(())
}

/// A cursor with a filter: the delivery sequence counts only what the
/// consumer delivers, so records of other accounts in between are no jump,
/// and lost ones of its own are still taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_cursor_takes_lost_deliveries_again() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = connect(&server.url()).await?;
    let mine = fresh_account("mine");
    let other = fresh_account("other");
    let mut expected = Vec::new();
    for (a, b) in events(&mine, 10).into_iter().zip(events(&other, 10)) {
        expected.push(log.append(&a, Expect::Any).await?.seq);
        log.append(&b, Expect::Any).await?;
    }
    let filter = Filter {
        account: Some(mine.clone()),
        kind_prefix: None,
    };
    let mut cursor = log.durable("lost-filtered", filter, 0).await?;
    let stolen = steal(&server.url(), "lost-filtered", 2).await?;
    ensure!(stolen == expected[..2], "stole {stolen:?}");
    let got = read(cursor.as_mut(), expected.len()).await?;
    ensure!(
        got == expected,
        "cursor returned {got:?}; expected {expected:?}"
    );
    Ok(())
}
