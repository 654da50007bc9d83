//! The single writer: group commit.
//!
//! Every append is a [`Request`] on one channel. The writer takes everything
//! queued (up to [`MAX_GROUP`]), decides each request in order (dedupe by
//! event id — a stored id under another subject is [`LogError::IdTaken`],
//! never a duplicate — then the aggregate guard), writes the accepted records of the
//! whole group in one sled transaction across the events, ids and aggregates
//! trees, makes it durable with one `flush_async`, publishes the new last
//! sequence to subscribers, and only then answers the callers. Because there
//! is one writer, checks and writes of an append cannot interleave with
//! another append, and because the group is one transaction, a crash leaves
//! either all of it or none of it.
//!
//! A storage failure poisons the writer: that group and every later append
//! fail with [`LogError::Storage`] (an unflushed write may or may not be on
//! disk, so carrying on could acknowledge events on a log in an unknown state).

use super::store::{encode_record, seq_key, storage, to_nanos};
use super::Shared;
use crate::{Appended, Expect, LogError};
use chrono::Utc;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The most requests committed as one group (bounds one transaction's size).
pub const MAX_GROUP: usize = 4096;

/// What an append must satisfy before it is stored.
pub enum Guard {
    /// A real event: idempotent by id, guarded per aggregate.
    Event {
        /// Event id.
        id: Uuid,
        /// Aggregate guard key (see [`super::store::aggregate_key`]).
        aggregate_key: String,
        /// The aggregate as `type/id`, for the conflict error.
        aggregate: String,
        /// The guard.
        expect: Expect,
    },
    /// Raw bytes from a test: no id, no aggregate.
    Raw,
    /// An imported record: stored unchecked, indexed by its event id and
    /// aggregate key when known.
    Import(Option<(Uuid, String)>),
}

/// One append waiting for the writer.
pub struct Request {
    /// Dedupe and concurrency checks.
    pub guard: Guard,
    /// The record's subject.
    pub subject: String,
    /// The record's bytes.
    pub bytes: Vec<u8>,
    /// Where the answer goes (after the group is durable).
    pub reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// An accepted record of the current group.
struct Write {
    seq: u64,
    value: Vec<u8>,
    /// (event id, aggregate key) for real events.
    index: Option<(Uuid, String)>,
}

/// The writer task's state.
pub struct Writer {
    /// The log; weak so that dropping the last [`super::EmbeddedLog`] handle
    /// closes sled at once instead of when this task notices.
    pub shared: Weak<Shared>,
    /// The append queue.
    pub rx: mpsc::Receiver<Request>,
    /// The next sequence to assign.
    pub next_seq: u64,
    /// Stored time of the last record (nanos): stored times never go back.
    pub last_stored_nanos: i64,
    /// Set after a storage failure; every later append fails with it.
    pub poisoned: Option<LogError>,
}

impl Writer {
    /// Runs until every handle to the log is gone.
    pub async fn run(mut self) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while self.rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            let Some(shared) = self.shared.upgrade() else {
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(LogError::Closed));
                }
                break;
            };
            self.commit_group(&shared, &mut group).await;
        }
        tracing::debug!("embedded log writer stopped");
    }

    async fn commit_group(&mut self, shared: &Shared, group: &mut Vec<Request>) {
        if let Some(err) = &self.poisoned {
            for req in group.drain(..) {
                let _ = req.reply.send(Err(err.clone()));
            }
            return;
        }
        let started = Instant::now();
        let size = group.len();
        match self.decide_and_write(shared, group).await {
            Ok((answers, stored)) => {
                for (req, answer) in group.drain(..).zip(answers) {
                    // The caller may have given up waiting; the record stays stored.
                    let _ = req.reply.send(answer);
                }
                tracing::trace!(
                    size,
                    stored,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "group committed"
                );
            }
            Err(err) => {
                tracing::error!(error = %err, size, "embedded log write failed; refusing further appends");
                self.poisoned = Some(err.clone());
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Decides every request, writes and flushes the accepted ones, publishes
    /// the new last seq. Returns one answer per request and the number stored.
    async fn decide_and_write(
        &mut self,
        shared: &Shared,
        group: &[Request],
    ) -> Result<(Vec<Result<Appended, LogError>>, usize), LogError> {
        let store = &shared.store;
        let stored_at = to_nanos(Utc::now()).max(self.last_stored_nanos);
        let mut next = self.next_seq;
        // Ids stored by this group so far: id → (seq, subject).
        let mut new_ids: HashMap<Uuid, (u64, &str)> = HashMap::new();
        let mut new_aggregates: HashMap<&str, u64> = HashMap::new();
        let mut writes = Vec::new();
        let mut answers = Vec::with_capacity(group.len());

        for req in group {
            let index = match &req.guard {
                Guard::Event {
                    id,
                    aggregate_key,
                    aggregate,
                    expect,
                } => {
                    let existing = match new_ids.get(id) {
                        Some((seq, subject)) => Some((*seq, subject.to_string())),
                        None => match store.seq_of_event(id)? {
                            Some(seq) => Some((seq, store.subject_at(seq)?)),
                            None => None,
                        },
                    };
                    if let Some((seq, stored_subject)) = existing {
                        // The same id is a duplicate only for the same fact:
                        // the subject names the account, aggregate and kind.
                        if stored_subject == req.subject {
                            answers.push(Ok(Appended {
                                seq,
                                duplicate: true,
                            }));
                        } else {
                            tracing::warn!(event_id = %id, seq, stored = %stored_subject, refused = %req.subject, "append refused: the event id is taken by a different record");
                            answers.push(Err(LogError::IdTaken { id: *id, seq }));
                        }
                        continue;
                    }
                    let current = match new_aggregates.get(aggregate_key.as_str()) {
                        Some(seq) => Some(*seq),
                        None => store.aggregate_seq(aggregate_key)?,
                    };
                    let allowed = match expect {
                        Expect::Any => true,
                        Expect::NoEvents => current.is_none(),
                        Expect::LastSeq(n) => current == Some(*n),
                    };
                    if !allowed {
                        tracing::debug!(%aggregate, ?expect, ?current, "append refused: guard failed");
                        answers.push(Err(LogError::Conflict {
                            aggregate: aggregate.clone(),
                            expected: *expect,
                        }));
                        continue;
                    }
                    Some((*id, aggregate_key))
                }
                Guard::Raw => None,
                Guard::Import(index) => index.as_ref().map(|(id, key)| (*id, key)),
            };
            let value = match encode_record(stored_at, &req.subject, &req.bytes) {
                Ok(value) => value,
                Err(e) => {
                    answers.push(Err(e));
                    continue;
                }
            };
            if let Some((id, aggregate_key)) = index {
                new_ids.insert(id, (next, req.subject.as_str()));
                new_aggregates.insert(aggregate_key, next);
            }
            writes.push(Write {
                seq: next,
                value,
                index: index.map(|(id, key)| (id, key.clone())),
            });
            answers.push(Ok(Appended {
                seq: next,
                duplicate: false,
            }));
            next += 1;
        }

        if writes.is_empty() {
            // Only duplicates of durable records and refusals: nothing to flush.
            return Ok((answers, 0));
        }
        (&store.events, &store.ids, &store.aggregates)
            .transaction(|(events, ids, aggregates)| {
                for w in &writes {
                    let seq = seq_key(w.seq);
                    events.insert(&seq[..], w.value.as_slice())?;
                    if let Some((id, aggregate_key)) = &w.index {
                        ids.insert(&id.as_bytes()[..], &seq[..])?;
                        aggregates.insert(aggregate_key.as_bytes(), &seq[..])?;
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => storage("writing a group of records")(e),
                TransactionError::Abort(()) => {
                    LogError::Storage("embedded log: write aborted".into())
                }
            })?;
        store.flush().await?;

        self.next_seq = next;
        self.last_stored_nanos = stored_at;
        shared.visible.send_replace(next - 1);
        Ok((answers, writes.len()))
    }
}
