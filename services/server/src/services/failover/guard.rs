//! Guarded appends on a VIP's aggregate, shared by [`super::decide`]
//! (a silence is decided once) and [`super::promote`] (a generation is
//! promoted once).
//!
//! An event decided on state that had applied the log through `seen_seq`
//! is appended with the aggregate's expected last sequence, unless a
//! *competing* event (another answer to the same silence, another promotion
//! of the same VIP) landed after `seen_seq`: then that one stands and
//! nothing is appended. The same event found again (same id: a retry, a
//! replica deciding alike) counts as landed.

use powernode_events::{AggregateRef, Envelope, EventKind};
use powernode_log::{EventLog, Expect, Filter, LogError};
use tracing::debug;

/// How a guarded append ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// Appended at this sequence (or found already appended: same event id).
    Landed(u64),
    /// A competing event landed first (why it stands); nothing appended.
    Moot(String),
}

/// Attempts before giving up on an aggregate that keeps changing.
const ATTEMPTS: usize = 8;

/// What one guarded append is about.
pub struct Guard<'a, F> {
    /// The aggregate the append is guarded on.
    pub aggregate: &'a AggregateRef,
    /// Records that may compete (account and kind prefix).
    pub filter: Filter,
    /// Whether a record competes with this append, and why it stands.
    pub competes: F,
    /// What the append is, for errors (`"decision"`, `"promotion"`).
    pub what: &'static str,
}

/// Appends `event` under `guard` (see the module doc).
pub async fn append_guarded<F>(
    log: &dyn EventLog,
    seen_seq: u64,
    event: &Envelope,
    guard: Guard<'_, F>,
) -> Result<Guarded, LogError>
where
    F: Fn(&Envelope) -> Option<String>,
{
    for _ in 0..ATTEMPTS {
        let last = log
            .aggregate_last_seq(&event.account_id, guard.aggregate)
            .await?;
        if let Some(l) = last.filter(|l| *l > seen_seq) {
            if let Some((id, seq, why)) =
                first_competing(log, &guard.filter, &guard.competes, seen_seq, l).await?
            {
                if id == event.id {
                    return Ok(Guarded::Landed(seq));
                }
                return Ok(Guarded::Moot(why));
            }
        }
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match log.append(event, expect).await {
            Ok(a) => return Ok(Guarded::Landed(a.seq)),
            Err(LogError::Conflict { .. }) => {
                debug!(aggregate = %guard.aggregate.id, what = guard.what, "aggregate changed while appending; checking again");
            }
            Err(e) => return Err(e),
        }
    }
    Err(LogError::Unavailable(format!(
        "{} {} kept changing; {} not appended after {ATTEMPTS} attempts",
        guard.aggregate.kind.as_str(),
        guard.aggregate.id,
        guard.what
    )))
}

/// The first competing record in `(after, through]`, as (event id,
/// sequence, why it stands).
async fn first_competing(
    log: &dyn EventLog,
    filter: &Filter,
    competes: &impl Fn(&Envelope) -> Option<String>,
    after: u64,
    through: u64,
) -> Result<Option<(uuid::Uuid, u64, String)>, LogError> {
    let mut from = after + 1;
    while from <= through {
        let batch = log.read(from, 256, filter).await?;
        let Some(last) = batch.last().map(|r| r.seq) else {
            break;
        };
        for record in batch.iter().filter(|r| r.seq <= through) {
            let Ok(e) = Envelope::decode(&record.bytes) else {
                continue;
            };
            if let Some(why) = competes(&e) {
                return Ok(Some((e.id, record.seq, why)));
            }
        }
        from = last + 1;
    }
    Ok(None)
}

/// The kind prefix `kind` shares with its siblings: everything up to its
/// last dot (`system.sdwan.failover.` for `system.sdwan.failover.proposed`).
pub fn family(kind: EventKind) -> String {
    let kind = kind.as_str();
    kind[..=kind.rfind('.').unwrap_or(kind.len() - 1)].to_string()
}
