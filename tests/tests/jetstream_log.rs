//! The JetStream event log against a real nats-server: the shared
//! conformance suite (one test per check, each with its own server) and the
//! backend's own behaviour (restarts, group commit, raw records, connect
//! failures, stream set-up).
//!
//! `cargo test -p powernode-tests --test jetstream_log`. Throughput is
//! measured by `powernode bench log`, not here.

use anyhow::{bail, ensure, Context as _};
use async_nats::jetstream;
use futures::future::BoxFuture;
use futures::StreamExt;
use powernode_events::Envelope;
use powernode_log::jetstream::{GroupCommit, JetStreamConfig, JetStreamLog, DEFAULT_STREAM};
use powernode_log::{EventLog, Expect, Filter, LogError, SharedLog, StartAt};
use powernode_tests::conformance::{self, event, events, fresh_account, Opener};
use powernode_tests::jetstream_support::*;
use powernode_tests::nats::{NatsCluster, NatsOptions, NatsServer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

// ------------------------------------------------------ conformance suite

macro_rules! conformance_with_log {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> anyhow::Result<()> {
            let server = NatsServer::start()?;
            let log = open(&server).await?;
            conformance::$name(&log).await
        }
    )*};
}

macro_rules! conformance_with_opener {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> anyhow::Result<()> {
            let server = NatsServer::start()?;
            conformance::$name(&opener(server.url())).await
        }
    )*};
}

conformance_with_log!(
    append_and_read_back,
    dedupe_resent_event,
    guarded_append_conflict,
    subscribe_from_seq_while_appending,
    subscribe_new_and_from_time,
    filter_by_account_and_kind_prefix,
    delete_durable_rewinds,
);

conformance_with_opener!(durable_cursor_resumes, survives_reopen);

/// The whole suite once more against a replicated stream (`replicas: 3`)
/// on a 3-node cluster, where some server answers differ (10164 conflicts,
/// ack floors, consumers not answering right after creation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_three_node_cluster() -> anyhow::Result<()> {
    let cluster = NatsCluster::start_with(
        3,
        NatsOptions {
            sync_always: true,
            ..NatsOptions::default()
        },
    )?;
    let url = cluster.url();
    let open: Box<Opener> = Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            init_tracing();
            let config = JetStreamConfig {
                replicas: 3,
                ..powernode_tests::nats::log_config(url)
            };
            Ok(Arc::new(JetStreamLog::connect(config).await?) as SharedLog)
        }) as BoxFuture<'static, anyhow::Result<SharedLog>>
    });
    conformance::run_all(&open).await
}

// ------------------------------------------------------ backend-specific

/// Many concurrent guarded appends on one aggregate, mixed with unguarded
/// traffic on other aggregates (so they share batches): exactly one guarded
/// append wins, the others get `Conflict`, the unguarded ones all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guarded_appends_exactly_one_wins() -> anyhow::Result<()> {
    let server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = Arc::new(connect(&server.url()).await?);
    let account = fresh_account("race");
    for round in 0..3 {
        let cluster = format!("cluster-race-{round}");
        let mut tasks = Vec::new();
        for i in 0..64 {
            let log = log.clone();
            let (ev, expect) = if i % 2 == 0 {
                (cluster_event(&account, &cluster), Expect::NoEvents)
            } else {
                (
                    cluster_event(&account, &format!("other-{round}-{i}")),
                    Expect::Any,
                )
            };
            tasks.push(tokio::spawn(async move {
                (expect, log.append(&ev, expect).await)
            }));
        }
        let (mut won, mut conflicts, mut unguarded) = (0, 0, 0);
        for t in tasks {
            match t.await? {
                (Expect::NoEvents, Ok(a)) if !a.duplicate => won += 1,
                (Expect::NoEvents, Err(LogError::Conflict { .. })) => conflicts += 1,
                (Expect::Any, Ok(a)) if !a.duplicate => unguarded += 1,
                (expect, other) => bail!("{expect:?} append answered {other:?}"),
            }
        }
        ensure!(
            won == 1 && conflicts == 31 && unguarded == 32,
            "round {round}: {won} won, {conflicts} conflicts, {unguarded} unguarded"
        );
        let aggregate = cluster_event(&account, &cluster).aggregate;
        let on_aggregate = read_everything(log.as_ref(), &Filter::all())
            .await?
            .iter()
            .filter(|r| {
                Envelope::decode(&r.bytes)
                    .map(|e| e.aggregate == aggregate)
                    .unwrap_or(false)
            })
            .count();
        ensure!(
            on_aggregate == 1,
            "round {round}: {on_aggregate} events stored on the raced aggregate"
        );
    }
    Ok(())
}

/// The group-commit writer (forced to atomic batches) answers every one of
/// many concurrent callers with the sequence its own event was stored at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batcher_gives_each_caller_its_sequence() -> anyhow::Result<()> {
    let server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    init_tracing();
    let log = Arc::new(
        JetStreamLog::connect(JetStreamConfig {
            group_commit: GroupCommit::Atomic,
            ..powernode_tests::nats::log_config(server.url())
        })
        .await?,
    );
    let account = fresh_account("batch");
    const CALLERS: usize = 300;
    let tasks: Vec<_> = events(&account, CALLERS)
        .into_iter()
        .map(|ev| {
            let log = log.clone();
            tokio::spawn(async move {
                let a = log.append(&ev, Expect::Any).await?;
                Ok::<_, LogError>((ev.id, a))
            })
        })
        .collect();
    let mut answered: BTreeMap<u64, Uuid> = BTreeMap::new();
    for t in tasks {
        let (id, a) = t.await??;
        ensure!(!a.duplicate, "fresh event {id} answered as duplicate");
        ensure!(
            answered.insert(a.seq, id).is_none(),
            "two callers were given seq {}",
            a.seq
        );
    }
    ensure!(
        answered.keys().copied().eq(1..=CALLERS as u64),
        "answered seqs are not 1..={CALLERS}"
    );
    let stats = log.writer_stats();
    ensure!(
        stats.atomic_batches > 0 && stats.batched_appends > stats.atomic_batches,
        "no batching happened: {stats:?}"
    );
    for r in log.read(1, CALLERS + 10, &Filter::all()).await? {
        let id = Envelope::decode(&r.bytes)?.id;
        ensure!(
            answered.get(&r.seq) == Some(&id),
            "seq {} holds {id}, its caller was told {:?}",
            r.seq,
            answered.get(&r.seq)
        );
    }
    Ok(())
}

/// The adaptive writer (the default) on a real server: appenders that
/// each append in turn make waves of every size, sent both ways as the
/// model tries each; every append, and every re-send of an already stored
/// event, is answered with the sequence its event is stored at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_writer_answers_every_append_with_its_sequence() -> anyhow::Result<()> {
    let server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let config = powernode_tests::nats::log_config(server.url());
    ensure!(
        config.group_commit == GroupCommit::Adaptive,
        "adaptive is not the default: {:?}",
        config.group_commit
    );
    let log = Arc::new(connect(&server.url()).await?);
    let account = fresh_account("adaptive");
    const APPENDERS: usize = 100;
    const EACH: usize = 12;
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|_| {
            let log = log.clone();
            let evs = events(&account, EACH);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for ev in &evs {
                    let a = log.append(ev, Expect::Any).await?;
                    answers.push((ev.id, a));
                }
                // The first event once more: a duplicate, at its first seq.
                let again = log.append(&evs[0], Expect::Any).await?;
                Ok::<_, LogError>((answers, again))
            })
        })
        .collect();
    let mut answered: BTreeMap<u64, Uuid> = BTreeMap::new();
    for t in tasks {
        let (answers, again) = t.await??;
        for (id, a) in &answers {
            ensure!(!a.duplicate, "fresh event {id} answered as duplicate");
            ensure!(
                answered.insert(a.seq, *id).is_none(),
                "two callers were given seq {}",
                a.seq
            );
        }
        let (first_id, first) = answers[0];
        ensure!(
            again.duplicate && again.seq == first.seq,
            "re-send of {first_id} (stored at {}) answered {again:?}",
            first.seq
        );
    }
    let total = (APPENDERS * EACH) as u64;
    ensure!(
        answered.keys().copied().eq(1..=total),
        "answered seqs are not 1..={total}"
    );
    ensure!(log.last_seq().await? == total, "re-sends stored something");
    for r in read_everything(log.as_ref(), &Filter::all()).await? {
        let id = Envelope::decode(&r.bytes)?.id;
        ensure!(
            answered.get(&r.seq) == Some(&id),
            "seq {} holds {id}, its caller was told {:?}",
            r.seq,
            answered.get(&r.seq)
        );
    }
    let stats = log.writer_stats();
    ensure!(
        stats.atomic_batches > 0 && stats.pipelined_waves > 0 && stats.explored_waves >= 2,
        "the adaptive writer did not try both ways: {stats:?}"
    );
    Ok(())
}

/// Re-sent events mixed into batches with fresh ones: the server refuses a
/// batch holding an already stored id as a whole, the writer falls back to
/// one-by-one publishes, and every caller still gets its precise answer
/// (fresh: a new seq; re-sent: duplicate with the original seq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_fall_back_to_precise_answers() -> anyhow::Result<()> {
    let server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = Arc::new(connect(&server.url()).await?);
    let account = fresh_account("fallback");
    let old = events(&account, 60);
    let mut original = HashMap::new();
    for ev in &old {
        original.insert(ev.id, log.append(ev, Expect::Any).await?.seq);
    }
    let stored_before = log.last_seq().await?;
    let fresh = events(&account, 60);
    let mut tasks = Vec::new();
    for (a, b) in old.iter().cloned().zip(fresh.iter().cloned()) {
        for ev in [a, b] {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let r = log.append(&ev, Expect::Any).await;
                (ev.id, r)
            }));
        }
    }
    let mut new_seqs = Vec::new();
    for t in tasks {
        let (id, r) = t.await?;
        let a = r?;
        match original.get(&id) {
            Some(seq) => ensure!(
                a.duplicate && a.seq == *seq,
                "re-send of {id} answered {a:?}, stored at {seq}"
            ),
            None => {
                ensure!(
                    !a.duplicate && a.seq > stored_before,
                    "fresh {id} answered {a:?}"
                );
                new_seqs.push(a.seq);
            }
        }
    }
    new_seqs.sort_unstable();
    ensure!(
        new_seqs == (stored_before + 1..=stored_before + fresh.len() as u64).collect::<Vec<_>>(),
        "fresh events got seqs {new_seqs:?}"
    );
    ensure!(
        log.last_seq().await? == stored_before + fresh.len() as u64,
        "re-sends stored something"
    );
    let stats = log.writer_stats();
    ensure!(
        stats.refused_batches > 0,
        "no batch held a re-sent event: {stats:?}"
    );
    Ok(())
}

/// A record published straight to an event subject by a plain NATS client,
/// bypassing the log, comes back from `read` and `subscribe` as it is:
/// decoding is the reader's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_raw_message_is_returned_as_a_record() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("raw");
    let good = log
        .append(&events(&account, 1).remove(0), Expect::Any)
        .await?
        .seq;

    let client = powernode_tests::nats::connect(server.url()).await?;
    let js = jetstream::new(client);
    let subject = format!("pn.evt.{account}.cluster.c-raw.system.k3s.cluster.activated");
    let garbage = bytes::Bytes::from_static(b"\xff\x00 definitely not CBOR");
    let raw = js
        .publish(subject.clone(), garbage.clone())
        .await?
        .await?
        .sequence;
    let odd = js
        .publish("pn.evt.short", "x".into())
        .await?
        .await?
        .sequence;

    let records = log.read(good, 10, &Filter::all()).await?;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    ensure!(seqs == [good, raw, odd], "read returned seqs {seqs:?}");
    ensure!(
        records[1].subject == subject && records[1].bytes == garbage,
        "raw record changed: {:?}",
        records[1]
    );
    ensure!(
        Envelope::decode(&records[1].bytes).is_err(),
        "garbage decoded"
    );
    ensure!(
        records[2].subject == "pn.evt.short",
        "odd subject record: {:?}",
        records[2]
    );

    // Filtered by account it is still there; an unparsable subject is not.
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: None,
    };
    let by_account: Vec<u64> = log
        .read(1, 10, &filter)
        .await?
        .iter()
        .map(|r| r.seq)
        .collect();
    ensure!(
        by_account == [good, raw],
        "account-filtered read returned {by_account:?}"
    );
    let mut sub = log.subscribe(StartAt::Seq(raw), Filter::all()).await?;
    let r = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await?
        .context("ended")??;
    ensure!(
        r.seq == raw && r.bytes == garbage,
        "subscription delivered {r:?}"
    );
    Ok(())
}

/// Connecting where no server listens fails fast with `Unavailable` naming the URL.
#[tokio::test]
async fn connecting_to_a_dead_port_fails_fast() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let config = JetStreamConfig {
        connect_timeout: Duration::from_secs(2),
        ..powernode_tests::nats::log_config(url.clone())
    };
    let started = Instant::now();
    let err = JetStreamLog::connect(config)
        .await
        .err()
        .context("connect to a dead port succeeded")?;
    ensure!(
        started.elapsed() < Duration::from_secs(4),
        "connect took {:?}",
        started.elapsed()
    );
    match &err {
        LogError::Unavailable(m) if m.contains(&url) => Ok(()),
        other => bail!("expected Unavailable naming {url}, got {other:?}"),
    }
}

/// The stream is created once with the wanted settings; connecting again is
/// harmless, and a changed setting (duplicate window) is applied in place.
#[tokio::test]
async fn stream_is_created_idempotently_and_updated() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let first = connect(&server.url()).await?;
    let account = fresh_account("setup");
    first
        .append(&events(&account, 1).remove(0), Expect::Any)
        .await?;
    let again = connect(&server.url()).await?;
    ensure!(
        again.last_seq().await? == 1,
        "second connect changed the stream"
    );

    let js = jetstream::new(powernode_tests::nats::connect(server.url()).await?);
    let info = js.get_stream(DEFAULT_STREAM).await?.cached_info().clone();
    let c = &info.config;
    ensure!(c.subjects == ["pn.evt.>"], "subjects {:?}", c.subjects);
    ensure!(
        c.allow_atomic_publish && c.allow_direct,
        "atomic publish / direct get not allowed"
    );
    ensure!(
        c.duplicate_window == Duration::from_secs(3600),
        "duplicate window {:?}",
        c.duplicate_window
    );
    ensure!(
        c.storage == jetstream::stream::StorageType::File,
        "storage {:?}",
        c.storage
    );

    let config = JetStreamConfig {
        duplicate_window: Duration::from_secs(7200),
        ..powernode_tests::nats::log_config(server.url())
    };
    let updated = JetStreamLog::connect(config).await?;
    let info = js.get_stream(DEFAULT_STREAM).await?.cached_info().clone();
    ensure!(
        info.config.duplicate_window == Duration::from_secs(7200),
        "window not updated"
    );
    ensure!(updated.last_seq().await? == 1, "update lost events");
    Ok(())
}

/// A cursor whose kind prefix ends inside a token (`…handshake.join`) gets
/// more from the server than it returns (`…handshake.ready`); acking the
/// last record it returned also acknowledges the skipped ones right after
/// it, so the consumer's ack floor does not lag behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_cursor_with_kind_prefix_acks_past_skipped_records() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = connect(&server.url()).await?;
    let account = fresh_account("prefix");
    let ready = powernode_events::examples::example_payloads()
        .into_iter()
        .find(|p| p.kind() == "system.k3s.handshake.ready")
        .context("an example handshake.ready")?;
    let mut evs = events(&account, 40);
    evs.push(event(&account, ready));
    let mut kinds = Vec::new();
    for ev in &evs {
        let seq = log.append(ev, Expect::Any).await?.seq;
        kinds.push((seq, ev.kind()));
    }
    let prefix = "system.k3s.handshake.join";
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: Some(prefix.into()),
    };
    let expected: Vec<u64> = kinds
        .iter()
        .filter(|(_, k)| k.starts_with(prefix))
        .map(|(s, _)| *s)
        .collect();
    let mut cursor = log.durable("prefix.cursor", filter, 0).await?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.len() < expected.len() && Instant::now() < deadline {
        got.extend(
            cursor
                .next_batch(3, Duration::from_secs(1))
                .await?
                .iter()
                .map(|r| r.seq),
        );
    }
    ensure!(
        got == expected,
        "cursor delivered {got:?}, expected {expected:?}"
    );
    // The trailing `handshake.ready` is delivered by the server and skipped.
    let rest = cursor.next_batch(10, Duration::from_millis(300)).await?;
    ensure!(rest.is_empty(), "non-matching records returned: {rest:?}");
    let last = *expected.last().context("some join kinds")?;
    cursor.ack_through(last).await?;
    let floor = cursor.acked().await?;
    let ready_seq = kinds.last().context("appended")?.0;
    ensure!(
        floor == ready_seq,
        "ack floor {floor}: expected the skipped record {ready_seq} after {last} acked too"
    );
    Ok(())
}

/// Guarded appends queued together go out together (pipelined, each
/// checked on its own): appends guarded on different aggregates all land,
/// once each; the same guards again all conflict, and nothing more is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_appends_of_different_aggregates_land_together() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = open(&server).await?;
    let account = fresh_account("guards");
    let evs: Vec<Envelope> = (0..60)
        .map(|i| cluster_event(&account, &format!("c-{i}")))
        .collect();
    let results =
        futures::future::join_all(evs.iter().map(|e| log.append(e, Expect::NoEvents))).await;
    let mut seqs = Vec::new();
    for r in results {
        let a = r?;
        ensure!(!a.duplicate, "a first append answered duplicate");
        seqs.push(a.seq);
    }
    seqs.sort_unstable();
    ensure!(
        seqs == (1..=evs.len() as u64).collect::<Vec<_>>(),
        "stored at {seqs:?}"
    );
    let retries: Vec<Envelope> = evs
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.id = Uuid::new_v4();
            e
        })
        .collect();
    let results =
        futures::future::join_all(retries.iter().map(|e| log.append(e, Expect::NoEvents))).await;
    for r in results {
        match r {
            Err(LogError::Conflict { .. }) => {}
            other => bail!("a second event guarded on an aggregate with events answered {other:?}"),
        }
    }
    ensure!(
        log.last_seq().await? == evs.len() as u64,
        "a refused append was stored"
    );
    Ok(())
}

// ------------------------------------------------------------ throughput
