//! The event-log conformance suite: the behaviour every [`EventLog`] backend
//! must have, written once and run against each backend
//! (`tests/tests/embedded_log.rs`, `tests/tests/jetstream_log.rs`).
//!
//! Each check is an `async fn` returning `anyhow::Result<()>` whose error says
//! what went wrong; backend test files call them as separate `#[tokio::test]`s.
//! Checks use fresh accounts and fresh event ids, so the log need not be empty,
//! but each check expects to be the only writer while it runs (it verifies
//! that sequences are gap-free). Checks that drop and reopen the log take an
//! [`Opener`] that opens the *same* log again.
//!
//! What a check cannot do generically — putting a malformed record in the log —
//! is left to the backend test files.

use anyhow::{anyhow, bail, ensure, Context};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use powernode_events::examples::example_payloads;
use powernode_events::payloads::k3s::ClusterActivated;
use powernode_events::subject::event_subject;
use powernode_events::{AccountId, Actor, AggregateRef, Envelope, EventPayload};
use powernode_services::log::{Appended, Expect, Filter, LogError, Record, SharedLog, StartAt, Subscription};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Opens the log under test (the same log every time it is called).
pub type Opener = dyn Fn() -> BoxFuture<'static, anyhow::Result<SharedLog>>;

/// How long any single expected delivery may take before the check fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to watch for an unexpected extra delivery.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------- helpers

/// A fresh, subject-safe account id: `<tag>-<12 hex>`.
pub fn fresh_account(tag: &str) -> AccountId {
    let suffix = Uuid::new_v4().simple().to_string();
    AccountId::new(format!("{tag}-{}", &suffix[..12])).expect("tag and hex are subject-safe")
}

/// A fresh event (new UUIDv7 id) in `account` with this payload.
pub fn event(account: &AccountId, payload: impl Into<EventPayload>) -> Envelope {
    Envelope::new(account.clone(), Actor::service("conformance"), payload)
}

/// `n` realistic events in `account`, cycling through every example kind.
pub fn events(account: &AccountId, n: usize) -> Vec<Envelope> {
    example_payloads()
        .into_iter()
        .cycle()
        .take(n)
        .map(|p| event(account, p))
        .collect()
}

/// A `system.k3s.cluster.activated` event on cluster `cluster_id` (one aggregate per id).
fn cluster_event(account: &AccountId, cluster_id: &str) -> Envelope {
    event(
        account,
        ClusterActivated {
            cluster_id: cluster_id.to_string(),
        },
    )
}

fn account_filter(account: &AccountId) -> Filter {
    Filter {
        account: Some(account.clone()),
        kind_prefix: None,
    }
}

/// Appends in order with no guard; each must be new. Returns the seqs.
async fn append_all(log: &SharedLog, evs: &[Envelope]) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(evs.len());
    for ev in evs {
        let a = log
            .append(ev, Expect::Any)
            .await
            .with_context(|| format!("append of {} ({}) failed", ev.id, ev.kind()))?;
        ensure!(!a.duplicate, "fresh event {} was reported as a duplicate", ev.id);
        seqs.push(a.seq);
    }
    Ok(seqs)
}

/// The next record of a subscription, failing after [`DELIVERY_TIMEOUT`].
async fn next_record(sub: &mut Subscription, what: &str) -> anyhow::Result<Record> {
    match tokio::time::timeout(DELIVERY_TIMEOUT, sub.next()).await {
        Err(_) => bail!("{what}: nothing delivered within {DELIVERY_TIMEOUT:?}"),
        Ok(None) => bail!("{what}: the subscription ended"),
        Ok(Some(Err(e))) => bail!("{what}: the subscription failed: {e}"),
        Ok(Some(Ok(r))) => Ok(r),
    }
}

/// Fails if the subscription delivers anything within [`QUIET_PERIOD`].
async fn expect_quiet(sub: &mut Subscription, what: &str) -> anyhow::Result<()> {
    match tokio::time::timeout(QUIET_PERIOD, sub.next()).await {
        Err(_) => Ok(()),
        Ok(None) => bail!("{what}: the subscription ended"),
        Ok(Some(r)) => bail!("{what}: unexpected extra delivery {:?}", r.map(|r| (r.seq, r.subject))),
    }
}

/// Receives `n` records and returns their seqs.
async fn receive_seqs(sub: &mut Subscription, n: usize, what: &str) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        seqs.push(next_record(sub, &format!("{what} (record {} of {n})", i + 1)).await?.seq);
    }
    Ok(seqs)
}

fn decode(record: &Record) -> anyhow::Result<Envelope> {
    Envelope::decode(&record.bytes).map_err(|e| anyhow!("record {} does not decode: {e}", record.seq))
}

fn is_conflict(r: &Result<Appended, LogError>) -> bool {
    matches!(r, Err(LogError::Conflict { .. }))
}

/// Every record from `from` matching `filter`, read in pages.
async fn read_all(log: &SharedLog, from: u64, filter: &Filter) -> anyhow::Result<Vec<Record>> {
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    loop {
        let page = log.read(next, 500, filter).await.context("read failed")?;
        let Some(last) = page.last() else { return Ok(out) };
        next = last.seq + 1;
        out.extend(page);
    }
}

// ----------------------------------------------------------------- checks

/// Appends one event of every kind (and a few more) and reads them back:
/// sequences contiguous from the previous last, subjects and bytes canonical,
/// envelopes decode to what was appended, stored time is the append time,
/// `aggregate_last_seq` tracks each aggregate.
pub async fn append_and_read_back(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-read");
    let evs = events(&account, example_payloads().len() + 3);
    let base = log.last_seq().await?;
    let before = Utc::now();
    let seqs = append_all(log, &evs).await?;
    let after = Utc::now();
    let expected: Vec<u64> = (base + 1..=base + evs.len() as u64).collect();
    ensure!(seqs == expected, "appends got seqs {seqs:?}, expected {expected:?}");
    ensure!(
        log.last_seq().await? == base + evs.len() as u64,
        "last_seq is not the last appended seq"
    );

    let records = log.read(base + 1, 1000, &Filter::all()).await?;
    ensure!(records.len() == evs.len(), "read back {} records, appended {}", records.len(), evs.len());
    let slack = chrono::Duration::seconds(5);
    for ((rec, ev), seq) in records.iter().zip(&evs).zip(&seqs) {
        ensure!(rec.seq == *seq, "record at position of seq {seq} has seq {}", rec.seq);
        let subject = event_subject(&account, &ev.aggregate, ev.kind())?;
        ensure!(rec.subject == subject, "seq {seq}: subject {:?}, expected {subject:?}", rec.subject);
        ensure!(rec.kind() == ev.kind() && rec.account() == account.as_str(), "seq {seq}: kind/account mismatch");
        ensure!(rec.bytes.as_ref() == ev.encode()?.as_slice(), "seq {seq}: bytes are not the canonical encoding");
        ensure!(decode(rec)? == *ev, "seq {seq}: decoded envelope differs from the appended one");
        ensure!(
            rec.stored_at >= before - slack && rec.stored_at <= after + slack,
            "seq {seq}: stored_at {} is not the time of the append ({before} .. {after})",
            rec.stored_at
        );
    }

    let page = log.read(base + 3, 5, &Filter::all()).await?;
    let page_seqs: Vec<u64> = page.iter().map(|r| r.seq).collect();
    ensure!(page_seqs == (base + 3..base + 8).collect::<Vec<_>>(), "read(from, 5) returned seqs {page_seqs:?}");
    let past_end = log.read(base + evs.len() as u64 + 1, 10, &Filter::all()).await?;
    ensure!(past_end.is_empty(), "read past the end returned {} records", past_end.len());

    let mut last_by_aggregate: HashMap<&AggregateRef, u64> = HashMap::new();
    for (ev, seq) in evs.iter().zip(&seqs) {
        last_by_aggregate.insert(&ev.aggregate, *seq);
    }
    for (aggregate, seq) in last_by_aggregate {
        let got = log.aggregate_last_seq(&account, aggregate).await?;
        ensure!(got == Some(seq), "aggregate_last_seq({aggregate}) = {got:?}, expected Some({seq})");
    }
    Ok(())
}

/// Re-sending an event answers its original seq with `duplicate: true` and
/// stores nothing — also later, also with a guard that no longer holds, and
/// also when many copies race.
pub async fn dedupe_resent_event(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-dedupe");
    let ev = cluster_event(&account, "cluster-dedupe");
    let first = log.append(&ev, Expect::NoEvents).await?;
    ensure!(!first.duplicate, "first append reported as duplicate");
    let again = log.append(&ev, Expect::Any).await?;
    ensure!(again == Appended { seq: first.seq, duplicate: true }, "re-send answered {again:?}, expected seq {} duplicate", first.seq);

    append_all(log, &events(&account, 5)).await?;
    let later = log.append(&ev, Expect::Any).await?;
    ensure!(later == Appended { seq: first.seq, duplicate: true }, "later re-send answered {later:?}");
    // A retry of an append that succeeded must not turn into a conflict.
    let guarded = log.append(&ev, Expect::NoEvents).await;
    ensure!(
        matches!(guarded, Ok(Appended { seq, duplicate: true }) if seq == first.seq),
        "re-send with the (now stale) guard it succeeded with answered {guarded:?}, expected the original seq as a duplicate"
    );

    // Many copies of one new event at once: one stored, all answer its seq.
    let racer = cluster_event(&account, "cluster-dedupe-race");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (log, racer) = (log.clone(), racer.clone());
            tokio::spawn(async move { log.append(&racer, Expect::Any).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await??);
    }
    let seqs: HashSet<u64> = answers.iter().map(|a| a.seq).collect();
    let fresh = answers.iter().filter(|a| !a.duplicate).count();
    ensure!(seqs.len() == 1 && fresh == 1, "8 racing copies answered {answers:?}: expected one seq, one non-duplicate");

    let records = read_all(log, first.seq, &account_filter(&account)).await?;
    for id in [ev.id, racer.id] {
        let copies = records.iter().filter(|r| decode(r).map(|e| e.id == id).unwrap_or(false)).count();
        ensure!(copies == 1, "event {id} is stored {copies} times");
    }
    Ok(())
}

/// The per-aggregate guard: `NoEvents` and `LastSeq` pass or fail with
/// `Conflict`, a refused append stores nothing (not even its id), other
/// aggregates and accounts are independent, and of 16 racing appends with
/// the same `LastSeq` exactly one wins.
pub async fn guarded_append_conflict(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-guard");
    let cluster = "cluster-guarded";
    let aggregate = cluster_event(&account, cluster).aggregate;
    ensure!(
        log.aggregate_last_seq(&account, &aggregate).await?.is_none(),
        "aggregate_last_seq of a new aggregate is not None"
    );

    let e1 = cluster_event(&account, cluster);
    let s1 = log.append(&e1, Expect::NoEvents).await.context("NoEvents on a fresh aggregate")?.seq;
    ensure!(log.aggregate_last_seq(&account, &aggregate).await? == Some(s1), "aggregate_last_seq is not {s1}");

    let last_before = log.last_seq().await?;
    let e2 = cluster_event(&account, cluster);
    let r = log.append(&e2, Expect::NoEvents).await;
    ensure!(is_conflict(&r), "second NoEvents answered {r:?}, expected Conflict");
    ensure!(log.last_seq().await? == last_before, "a refused append moved last_seq");
    ensure!(log.aggregate_last_seq(&account, &aggregate).await? == Some(s1), "a refused append moved the aggregate");

    let e3 = cluster_event(&account, cluster);
    let s3 = log.append(&e3, Expect::LastSeq(s1)).await.context("LastSeq(current)")?.seq;
    for stale in [s1, s3 + 1000] {
        let r = log.append(&cluster_event(&account, cluster), Expect::LastSeq(stale)).await;
        ensure!(is_conflict(&r), "LastSeq({stale}) with the aggregate at {s3} answered {r:?}, expected Conflict");
    }
    // The refused event's id was not recorded: with the right guard it is new.
    let retry = log.append(&e2, Expect::LastSeq(s3)).await.context("retry of a refused event")?;
    ensure!(!retry.duplicate, "an event refused with Conflict was later reported as a duplicate");

    // Another aggregate, and the same aggregate id in another account, are independent.
    log.append(&cluster_event(&account, "cluster-other"), Expect::NoEvents)
        .await
        .context("NoEvents on a second aggregate")?;
    let other_account = fresh_account("conf-guard");
    log.append(&cluster_event(&other_account, cluster), Expect::NoEvents)
        .await
        .context("NoEvents on the same aggregate id in another account")?;

    let stored: HashSet<Uuid> = read_all(log, s1, &account_filter(&account))
        .await?
        .iter()
        .map(decode)
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .map(|e| e.id)
        .collect();
    ensure!(stored.len() == 4, "expected 4 stored events in the account, found {}", stored.len());

    // 16 writers race with the same expectation: exactly one wins.
    let current = log.aggregate_last_seq(&account, &aggregate).await?.context("aggregate has events")?;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            let ev = cluster_event(&account, cluster);
            tokio::spawn(async move { log.append(&ev, Expect::LastSeq(current)).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    let winners: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok()).map(|a| a.seq).collect();
    let conflicts = results.iter().filter(|r| is_conflict(r)).count();
    ensure!(
        winners.len() == 1 && conflicts == 15,
        "16 racing LastSeq({current}) appends: {} won, {conflicts} conflicted, others: {:?}",
        winners.len(),
        results.iter().filter(|r| r.is_err() && !is_conflict(r)).collect::<Vec<_>>()
    );
    let now = log.aggregate_last_seq(&account, &aggregate).await?;
    ensure!(now == Some(winners[0]), "aggregate_last_seq is {now:?} after the race, winner has {}", winners[0]);
    let mut raced = 0;
    for r in read_all(log, current + 1, &account_filter(&account)).await? {
        raced += usize::from(decode(&r)?.aggregate == aggregate);
    }
    ensure!(raced == 1, "the race stored {raced} records on the aggregate, expected 1");
    Ok(())
}

/// A subscription from seq N opened while another task keeps appending sees
/// exactly N..=last, in order, with no gap and no duplicate across the
/// catch-up/live boundary.
pub async fn subscribe_from_seq_while_appending(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-sub");
    append_all(log, &events(&account, 100)).await?;
    let prefilled = log.last_seq().await?;
    let start = prefilled - 49;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 75;
    let total = (WRITERS * PER_WRITER) as u64;

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = log.clone();
            let evs = events(&account, PER_WRITER);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for ev in &evs {
                    seqs.push(log.append(ev, Expect::Any).await?.seq);
                    tokio::task::yield_now().await;
                }
                Ok::<_, LogError>(seqs)
            })
        })
        .collect();
    let mut sub = log.subscribe(StartAt::Seq(start), Filter::all()).await?;
    let end = prefilled + total;
    let mut got = Vec::new();
    while got.last().is_none_or(|&s| s < end) {
        let rec = next_record(&mut sub, &format!("subscription from {start} (have {} records)", got.len())).await?;
        decode(&rec)?;
        got.push(rec.seq);
    }
    let expected: Vec<u64> = (start..=end).collect();
    if got != expected {
        let dups = got.len() - got.iter().collect::<HashSet<_>>().len();
        bail!(
            "subscription from {start} delivered {} records ({dups} duplicates), expected {start}..={end} in order; first wrong position: {:?}",
            got.len(),
            got.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    expect_quiet(&mut sub, "subscription after the last append").await?;
    let mut appended = Vec::new();
    for w in writers {
        appended.extend(w.await??);
    }
    appended.sort_unstable();
    ensure!(appended == (prefilled + 1..=end).collect::<Vec<_>>(), "concurrent appends did not get seqs {}..={end}", prefilled + 1);
    Ok(())
}

/// `StartAt::New` delivers only what is appended after subscribing;
/// `StartAt::Time(t)` starts at the first record stored at or after `t`.
pub async fn subscribe_new_and_from_time(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-time");
    let filter = account_filter(&account);
    let early = append_all(log, &events(&account, 10)).await?;

    let mut new_sub = log.subscribe(StartAt::New, filter.clone()).await?;
    let later = append_all(log, &events(&account, 5)).await?;
    let got = receive_seqs(&mut new_sub, 5, "StartAt::New").await?;
    ensure!(got == later, "StartAt::New delivered {got:?}, expected only the later appends {later:?}");
    expect_quiet(&mut new_sub, "StartAt::New").await?;

    tokio::time::sleep(Duration::from_millis(250)).await;
    let t: DateTime<Utc> = Utc::now();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after_t = append_all(log, &events(&account, 5)).await?;

    let records = read_all(log, early[0], &filter).await?;
    let first_at_t = records.iter().find(|r| r.stored_at >= t).map(|r| r.seq);
    ensure!(
        first_at_t == Some(after_t[0]),
        "stored times do not straddle t={t} as expected: first record stored at/after t is {first_at_t:?}, appended after t from {}",
        after_t[0]
    );
    let mut time_sub = log.subscribe(StartAt::Time(t), filter.clone()).await?;
    let got = receive_seqs(&mut time_sub, 5, "StartAt::Time").await?;
    ensure!(got == after_t, "StartAt::Time(t) delivered {got:?}, expected {after_t:?}");
    expect_quiet(&mut time_sub, "StartAt::Time").await?;
    let live = append_all(log, &events(&account, 1)).await?;
    let got = next_record(&mut time_sub, "StartAt::Time, live part").await?.seq;
    ensure!(got == live[0], "StartAt::Time went live with {got}, expected {}", live[0]);

    let mut past_sub = log.subscribe(StartAt::Time(t - chrono::Duration::days(3650)), filter.clone()).await?;
    let first = next_record(&mut past_sub, "StartAt::Time(long ago)").await?.seq;
    ensure!(first == early[0], "StartAt::Time(long ago) started at {first}, expected the account's first record {}", early[0]);

    let mut future_sub = log.subscribe(StartAt::Time(Utc::now() + chrono::Duration::seconds(2)), filter).await?;
    expect_quiet(&mut future_sub, "StartAt::Time(future)").await?;
    Ok(())
}

/// Filters by account and kind *string* prefix (`system.k3s.handshake.join`
/// matches `join_request`, `join_token_issued`, `join_rejected`; `sdwan`
/// matches `sdwan.…` but not `system.sdwan.…`), for read and subscribe.
pub async fn filter_by_account_and_kind_prefix(log: &SharedLog) -> anyhow::Result<()> {
    let (a, b) = (fresh_account("conf-filt"), fresh_account("conf-filt"));
    let base = log.last_seq().await?;
    let mut appended: Vec<(u64, Envelope)> = Vec::new();
    let n = example_payloads().len() * 2;
    for (ea, eb) in events(&a, n).into_iter().zip(events(&b, n)) {
        for ev in [ea, eb] {
            let seq = log.append(&ev, Expect::Any).await?.seq;
            appended.push((seq, ev));
        }
    }
    let cases = [
        (Some(&a), Some("system.k3s.handshake.join")),
        (None, Some("system.k3s.handshake.join")),
        (Some(&b), Some("sdwan")),
        (Some(&a), Some("system.sdwan.")),
        (Some(&b), Some("system.k3s.handshake.join_request")),
        (Some(&a), None),
        (None, Some("no.such.kind")),
    ];
    for (account, prefix) in cases {
        let filter = Filter {
            account: account.cloned(),
            kind_prefix: prefix.map(str::to_string),
        };
        let expected: Vec<u64> = appended
            .iter()
            .filter(|(_, ev)| {
                account.is_none_or(|acc| ev.account_id == *acc) && prefix.is_none_or(|p| ev.kind().starts_with(p))
            })
            .map(|(seq, _)| *seq)
            .collect();
        let read: Vec<u64> = read_all(log, base + 1, &filter).await?.iter().map(|r| r.seq).collect();
        ensure!(read == expected, "read with {filter:?} returned seqs {read:?}, expected {expected:?}");
        let mut sub = log.subscribe(StartAt::Seq(base + 1), filter.clone()).await?;
        let got = receive_seqs(&mut sub, expected.len(), &format!("subscribe with {filter:?}")).await?;
        ensure!(got == expected, "subscribe with {filter:?} delivered {got:?}, expected {expected:?}");
        expect_quiet(&mut sub, &format!("subscribe with {filter:?}")).await?;
    }

    // The filter also applies to live records.
    let filter = Filter {
        account: Some(a.clone()),
        kind_prefix: Some("system.k3s.handshake.join".into()),
    };
    let limited = log.read(base + 1, 2, &filter).await?;
    ensure!(limited.len() == 2, "read with limit 2 returned {} records", limited.len());
    let mut sub = log.subscribe(StartAt::New, filter.clone()).await?;
    let join = |acc: &AccountId| {
        example_payloads()
            .into_iter()
            .find(|p| p.kind() == "system.k3s.handshake.join_token_issued")
            .map(|p| event(acc, p))
            .context("example payloads include join_token_issued")
    };
    let other_kind = events(&a, 1).remove(0);
    log.append(&join(&b)?, Expect::Any).await?;
    log.append(&other_kind, Expect::Any).await?;
    let wanted = log.append(&join(&a)?, Expect::Any).await?.seq;
    let got = next_record(&mut sub, "live filtered subscription").await?;
    ensure!(got.seq == wanted, "live filtered subscription delivered seq {} ({}), expected {wanted}", got.seq, got.subject);
    expect_quiet(&mut sub, "live filtered subscription").await?;
    Ok(())
}

/// Collects `n` records from a durable cursor (batches may be partial).
async fn take_from_cursor(
    cursor: &mut dyn powernode_services::log::DurableCursor,
    n: usize,
    what: &str,
) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut seqs = Vec::new();
    while seqs.len() < n {
        ensure!(Instant::now() < deadline, "{what}: got only {seqs:?} of {n} records");
        let batch = cursor.next_batch(n - seqs.len(), Duration::from_secs(2)).await?;
        ensure!(batch.len() <= n - seqs.len(), "{what}: next_batch returned more than max");
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    Ok(seqs)
}

/// A durable cursor resumes after its acknowledged position when the log is
/// reopened (unacknowledged records come again); a new cursor starts after
/// `start_after`; an idle `next_batch` answers empty after `wait`.
pub async fn durable_cursor_resumes(open: &Opener) -> anyhow::Result<()> {
    let log = open().await?;
    let account = fresh_account("conf-durable");
    let filter = account_filter(&account);
    let base = log.last_seq().await?;
    let seqs = append_all(&log, &events(&account, 10)).await?;
    let name = format!("conf-{}", &Uuid::new_v4().simple().to_string()[..12]);

    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    ensure!(cursor.acked().await? == base, "a new cursor's acked() is not its start_after {base}");
    let got = take_from_cursor(cursor.as_mut(), 6, "first consumer").await?;
    ensure!(got == seqs[..6], "cursor delivered {got:?}, expected {:?}", &seqs[..6]);
    cursor.ack_through(seqs[3]).await?;
    ensure!(cursor.acked().await? == seqs[3], "acked() after ack_through({}) is wrong", seqs[3]);
    drop(cursor);
    drop(log);

    let log = open().await.context("reopening the log")?;
    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    ensure!(cursor.acked().await? == seqs[3], "after reopen acked() is not {}", seqs[3]);
    let got = take_from_cursor(cursor.as_mut(), 6, "resumed consumer").await?;
    ensure!(got == seqs[4..], "resumed cursor delivered {got:?}, expected {:?} (everything after the ack)", &seqs[4..]);

    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let idle = cursor.next_batch(10, wait).await?;
    ensure!(idle.is_empty(), "idle next_batch returned {} records", idle.len());
    ensure!(started.elapsed() < wait + Duration::from_secs(5), "idle next_batch took {:?}", started.elapsed());

    let appender = {
        let (log, ev) = (log.clone(), events(&account, 1).remove(0));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log.append(&ev, Expect::Any).await
        })
    };
    let live = cursor.next_batch(10, DELIVERY_TIMEOUT).await?;
    let live_seq = appender.await??.seq;
    ensure!(
        live.iter().map(|r| r.seq).collect::<Vec<_>>() == [live_seq],
        "waiting next_batch did not return the record appended meanwhile ({live_seq})"
    );
    cursor.ack_through(live_seq).await?;

    let other = format!("{name}-b");
    let mut fresh = log.durable(&other, filter, seqs[6]).await?;
    let got = take_from_cursor(fresh.as_mut(), 1, "new cursor").await?;
    ensure!(got == [seqs[7]], "a new cursor with start_after {} delivered {got:?} first", seqs[6]);
    Ok(())
}

/// Deleting a durable cursor forgets its position: reopened, it starts after
/// `start_after` again. Deleting a missing cursor is fine.
pub async fn delete_durable_rewinds(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-delete");
    let filter = account_filter(&account);
    let base = log.last_seq().await?;
    let seqs = append_all(log, &events(&account, 4)).await?;
    let name = format!("conf-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    take_from_cursor(cursor.as_mut(), 4, "before delete").await?;
    cursor.ack_through(seqs[3]).await?;
    drop(cursor);
    log.delete_durable(&name).await.context("delete_durable")?;
    let mut cursor = log.durable(&name, filter, base).await?;
    let got = take_from_cursor(cursor.as_mut(), 4, "after delete").await?;
    ensure!(got == seqs, "after delete_durable the cursor delivered {got:?}, expected {seqs:?}");
    log.delete_durable("conf-never-created").await.context("deleting a missing cursor")?;
    Ok(())
}

/// Every acknowledged append survives dropping and reopening the log: each
/// event exactly once at the seq it was acknowledged with, dedupe still
/// holds, aggregate positions survive, appends continue at the next seq.
pub async fn survives_reopen(open: &Opener) -> anyhow::Result<()> {
    let log = open().await?;
    let account = fresh_account("conf-reopen");
    let base = log.last_seq().await?;
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = log.clone();
            let evs = events(&account, PER_WRITER);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for ev in evs {
                    let a = log.append(&ev, Expect::Any).await?;
                    acked.push((ev, a.seq));
                }
                Ok::<_, LogError>(acked)
            })
        })
        .collect();
    let mut acked: Vec<(Envelope, u64)> = Vec::new();
    for w in writers {
        acked.extend(w.await??);
    }
    drop(log);

    let log = open().await.context("reopening the log")?;
    let total = (WRITERS * PER_WRITER) as u64;
    ensure!(log.last_seq().await? == base + total, "after reopen last_seq is not {}", base + total);
    let records = read_all(&log, base + 1, &Filter::all()).await?;
    let by_seq: BTreeMap<u64, Uuid> = records.iter().map(|r| Ok((r.seq, decode(r)?.id))).collect::<anyhow::Result<_>>()?;
    ensure!(by_seq.len() as u64 == total, "after reopen {} records follow {base}, expected {total}", by_seq.len());
    for (ev, seq) in &acked {
        ensure!(by_seq.get(seq) == Some(&ev.id), "acknowledged event {} (seq {seq}) is not at its seq after reopen", ev.id);
    }

    let (resent, seq) = &acked[acked.len() / 2];
    let again = log.append(resent, Expect::Any).await?;
    ensure!(again == Appended { seq: *seq, duplicate: true }, "after reopen a re-send answered {again:?}");
    let mut last_by_aggregate: HashMap<&AggregateRef, u64> = HashMap::new();
    for (ev, seq) in &acked {
        let e = last_by_aggregate.entry(&ev.aggregate).or_insert(0);
        *e = (*e).max(*seq);
    }
    for (aggregate, seq) in last_by_aggregate {
        let got = log.aggregate_last_seq(&account, aggregate).await?;
        ensure!(got == Some(seq), "after reopen aggregate_last_seq({aggregate}) = {got:?}, expected {seq}");
    }
    let next = log.append(&events(&account, 1).remove(0), Expect::Any).await?;
    ensure!(
        next == Appended { seq: base + total + 1, duplicate: false },
        "after reopen a new append answered {next:?}, expected seq {}",
        base + total + 1
    );
    Ok(())
}

/// Runs every check in order, each on a freshly opened handle.
pub async fn run_all(open: &Opener) -> anyhow::Result<()> {
    append_and_read_back(&open().await?).await.context("append_and_read_back")?;
    dedupe_resent_event(&open().await?).await.context("dedupe_resent_event")?;
    guarded_append_conflict(&open().await?).await.context("guarded_append_conflict")?;
    subscribe_from_seq_while_appending(&open().await?)
        .await
        .context("subscribe_from_seq_while_appending")?;
    subscribe_new_and_from_time(&open().await?).await.context("subscribe_new_and_from_time")?;
    filter_by_account_and_kind_prefix(&open().await?)
        .await
        .context("filter_by_account_and_kind_prefix")?;
    delete_durable_rewinds(&open().await?).await.context("delete_durable_rewinds")?;
    durable_cursor_resumes(open).await.context("durable_cursor_resumes")?;
    survives_reopen(open).await.context("survives_reopen")?;
    Ok(())
}
