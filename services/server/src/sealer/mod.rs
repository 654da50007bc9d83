//! The sealer: appends `system.log.sealed` over the log's records every
//! [`SealConfig::every`] records or [`SealConfig::interval`], whichever
//! comes first, signed with the platform's seal key ([`key`]).
//!
//! Each round reads the last seal from the log (so a restart resumes after
//! it), reads the records after it, and appends the next seal to the seal
//! aggregate guarded by the last seal's sequence: two sealers (two
//! replicas) can never both seal a range; the loser reads the winner's seal
//! and carries on after it. A sealer whose key is not the one the log's
//! seals were made with stands by (it says so once): the first key is the
//! one verifiers pin.

pub mod key;

use key::SealKey;
use powernode_events::payloads::log::LogSealed;
use powernode_events::seal::{leaf, Leaf, SEAL_CHAIN};
use powernode_events::{AccountId, Actor, AggregateRef, AggregateType, Envelope, EventPayload};
use powernode_log::{Expect, Filter, LogError, SharedLog};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Records read from the log per request while sealing.
const READ_PAGE: usize = 4096;

/// When and with what key the log is sealed.
#[derive(Debug, Clone, clap::Args)]
pub struct SealArgs {
    /// Seal the log every this many records (0: never seal).
    #[arg(long, env = "POWERNODE_SEAL_EVERY", default_value_t = 4096)]
    pub seal_every: u64,
    /// …or this many milliseconds after the last seal, when records wait.
    #[arg(long, env = "POWERNODE_SEAL_INTERVAL_MS", default_value_t = 10_000)]
    pub seal_interval_ms: u64,
    /// The platform's seal key (ed25519, 32 bytes, mode 0600, created when
    /// absent). Replicas of the API must share one. Default
    /// `<data-dir>/keys/seal.key`; its public half is `seal.pub` beside it.
    #[arg(long, env = "POWERNODE_SEAL_KEY_FILE")]
    pub seal_key_file: Option<PathBuf>,
}

impl Default for SealArgs {
    fn default() -> Self {
        Self {
            seal_every: 4096,
            seal_interval_ms: 10_000,
            seal_key_file: None,
        }
    }
}

/// The sealer's settings.
#[derive(Debug, Clone, Copy)]
pub struct SealConfig {
    /// Seal once this many records wait (also the most one seal covers).
    pub every: u64,
    /// Seal what waits once this long has passed since the last seal.
    pub interval: Duration,
}

impl From<&SealArgs> for SealConfig {
    fn from(a: &SealArgs) -> Self {
        Self {
            every: a.seal_every.max(1),
            interval: Duration::from_millis(a.seal_interval_ms.max(1)),
        }
    }
}

/// The account seals belong to.
fn system_account() -> AccountId {
    powernode_runtime::system_account()
}

/// The seal aggregate.
pub fn seal_aggregate() -> AggregateRef {
    AggregateRef::new(AggregateType::Log, SEAL_CHAIN)
}

/// The log's last seal: its sequence and content.
pub async fn last_seal(log: &SharedLog) -> Result<Option<(u64, LogSealed)>, LogError> {
    let Some(seq) = log
        .aggregate_last_seq(&system_account(), &seal_aggregate())
        .await?
    else {
        return Ok(None);
    };
    let records = log.read(seq, 1, &Filter::all()).await?;
    let record = records
        .into_iter()
        .find(|r| r.seq == seq)
        .ok_or_else(|| LogError::Storage(format!("the last seal (seq {seq}) cannot be read")))?;
    match Envelope::decode(&record.bytes) {
        Ok(Envelope {
            payload: EventPayload::LogSealed(s),
            ..
        }) => Ok(Some((seq, s))),
        _ => Err(LogError::Storage(format!(
            "the last seal (seq {seq}) does not decode as a seal"
        ))),
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Appended a seal over `from..=through`, at `seq`.
    Sealed {
        /// First sealed sequence.
        from: u64,
        /// Last sealed sequence.
        through: u64,
        /// The seal's own sequence.
        seq: u64,
    },
    /// Another sealer sealed first.
    Lost,
    /// Nothing due yet.
    Idle,
    /// The log is sealed with another key: this sealer stands by.
    OtherKey,
}

/// One round: seals what waits when `due(waiting)` says so.
pub async fn seal_once(
    log: &SharedLog,
    key: &SealKey,
    every: u64,
    due: impl Fn(u64) -> bool,
) -> Result<Round, LogError> {
    let last = last_seal(log).await?;
    if let Some((_, s)) = &last {
        if s.key != key.public_hex() {
            return Ok(Round::OtherKey);
        }
    }
    let from = last.as_ref().map_or(1, |(_, s)| s.through_seq + 1);
    let end = log.last_seq().await?;
    // The last seal is itself a record past the range it seals: when it is
    // all that waits, there is nothing to seal (else an idle log would get a
    // seal of the previous seal every interval, for ever).
    let only_the_last_seal = last.as_ref().is_some_and(|(s, _)| from == end && *s == end);
    if end < from || only_the_last_seal || !due(end + 1 - from) {
        return Ok(Round::Idle);
    }
    let through = end.min(from + every - 1);
    let mut leaves: Vec<Leaf> = Vec::with_capacity((through + 1 - from) as usize);
    let mut next = from;
    while next <= through {
        let page = log.read(next, READ_PAGE, &Filter::all()).await?;
        if page.is_empty() {
            return Err(LogError::Storage(format!(
                "records {next}-{through} cannot be read to seal them"
            )));
        }
        for r in page.into_iter().take_while(|r| r.seq <= through) {
            if r.seq != next {
                return Err(LogError::Storage(format!(
                    "seq {next} is missing from the log (read seq {}): cannot seal over a gap",
                    r.seq
                )));
            }
            leaves.push(leaf(r.seq, &r.subject, &r.bytes));
            next += 1;
        }
    }
    let sealed = LogSealed::seal(key.signing_key(), from, &leaves);
    let event = Envelope::new(system_account(), Actor::service("sealer"), sealed);
    let expect = last
        .as_ref()
        .map_or(Expect::NoEvents, |(s, _)| Expect::LastSeq(*s));
    match log.append(&event, expect).await {
        Ok(a) => Ok(Round::Sealed {
            from,
            through,
            seq: a.seq,
        }),
        Err(LogError::Conflict { .. }) => Ok(Round::Lost),
        Err(e) => Err(e),
    }
}

/// Seals `log` until `shutdown`: never fails the node (a failed round is
/// logged and tried again).
pub async fn run_sealer(
    log: SharedLog,
    key: Arc<SealKey>,
    config: SealConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    info!(public_key = %key.public_hex(), every = config.every, interval_ms = config.interval.as_millis() as u64, "sealing the log");
    let mut last_sealed = Instant::now();
    let mut said_other_key = false;
    let poll = (config.interval / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        let elapsed = last_sealed.elapsed() >= config.interval;
        let round = seal_once(&log, &key, config.every, |waiting| {
            waiting >= config.every || elapsed
        })
        .await;
        let wait = match round {
            Ok(Round::Sealed { from, through, seq }) => {
                debug!(from, through, seq, "sealed");
                last_sealed = Instant::now();
                Duration::ZERO
            }
            Ok(Round::Lost) => Duration::ZERO,
            Ok(Round::Idle) => poll,
            Ok(Round::OtherKey) => {
                if !said_other_key {
                    warn!(public_key = %key.public_hex(), "the log is sealed with another key: not sealing (give every replica the same --seal-key-file)");
                    said_other_key = true;
                }
                poll.max(Duration::from_secs(1))
            }
            Err(e) => {
                warn!(error = %e, "sealing failed; trying again");
                Duration::from_secs(1)
            }
        };
        if wait.is_zero() && !shutdown.is_cancelled() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
