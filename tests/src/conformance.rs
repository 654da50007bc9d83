//! The event-log conformance suite: the behaviour every
//! [`EventLog`](powernode_log::EventLog) backend
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
//! * `append` — read back, dedupe by event id (a stored id under another
//!   record is `IdTaken`, never a duplicate), the per-aggregate guard;
//! * `subscribe` — catch-up then live, `StartAt` positions, filters;
//! * `durability` — durable cursors, and acknowledged appends across a reopen.
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
use powernode_log::{Appended, Expect, Filter, LogError, Record, SharedLog, StartAt, Subscription};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

mod append;
mod durability;
mod subscribe;

pub use append::{
    append_and_read_back, dedupe_resent_event, duplicate_id_of_another_record_is_refused,
    guarded_append_conflict,
};
pub use durability::{delete_durable_rewinds, durable_cursor_resumes, survives_reopen};
pub use subscribe::{
    filter_by_account_and_kind_prefix, subscribe_from_seq_while_appending,
    subscribe_new_and_from_time,
};

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
        ensure!(
            !a.duplicate,
            "fresh event {} was reported as a duplicate",
            ev.id
        );
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
        Ok(Some(r)) => bail!(
            "{what}: unexpected extra delivery {:?}",
            r.map(|r| (r.seq, r.subject))
        ),
    }
}

/// Receives `n` records and returns their seqs.
async fn receive_seqs(sub: &mut Subscription, n: usize, what: &str) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        seqs.push(
            next_record(sub, &format!("{what} (record {} of {n})", i + 1))
                .await?
                .seq,
        );
    }
    Ok(seqs)
}

fn decode(record: &Record) -> anyhow::Result<Envelope> {
    Envelope::decode(&record.bytes)
        .map_err(|e| anyhow!("record {} does not decode: {e}", record.seq))
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
        let Some(last) = page.last() else {
            return Ok(out);
        };
        next = last.seq + 1;
        out.extend(page);
    }
}

/// Runs every check in order, each on a freshly opened handle.
pub async fn run_all(open: &Opener) -> anyhow::Result<()> {
    append_and_read_back(&open().await?)
        .await
        .context("append_and_read_back")?;
    dedupe_resent_event(&open().await?)
        .await
        .context("dedupe_resent_event")?;
    guarded_append_conflict(&open().await?)
        .await
        .context("guarded_append_conflict")?;
    duplicate_id_of_another_record_is_refused(&open().await?)
        .await
        .context("duplicate_id_of_another_record_is_refused")?;
    subscribe_from_seq_while_appending(&open().await?)
        .await
        .context("subscribe_from_seq_while_appending")?;
    subscribe_new_and_from_time(&open().await?)
        .await
        .context("subscribe_new_and_from_time")?;
    filter_by_account_and_kind_prefix(&open().await?)
        .await
        .context("filter_by_account_and_kind_prefix")?;
    delete_durable_rewinds(&open().await?)
        .await
        .context("delete_durable_rewinds")?;
    durable_cursor_resumes(open)
        .await
        .context("durable_cursor_resumes")?;
    survives_reopen(open).await.context("survives_reopen")?;
    Ok(())
}
