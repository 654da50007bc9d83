//! Checkpoints written beside the consumer loop, not in its way, and only
//! what changed.
//!
//! A whole snapshot of a large fleet is megabytes: at 1,000 clusters
//! encoding it took 60–160 ms and writing it 7–370 ms, and copying it still
//! stopped the loop for 30–100 ms. Now the loop only takes the entries that
//! changed since the last checkpoint ([`Projection::take_changes`], under
//! the write lock: it costs what changed, not what the fleet holds), and
//! they are written, with the sequence, in one sled batch on the blocking
//! pool while the loop goes on ([`CheckpointStore::save_changes`]). The
//! first checkpoint after a restore from a whole snapshot, or with nothing
//! restored, writes every entry instead. The cursor is acknowledged up to
//! a checkpoint only once it is saved; one checkpoint is written at a time.

use super::{RuntimeError, Shared};
use crate::checkpoint::{self, CheckpointStore};
use crate::status::ConsumerStatus;
use powernode_log::DurableCursor;
use powernode_projections::{PendingChanges, Projection};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// When checkpoints are due.
#[derive(Debug, Clone, Copy)]
pub(super) struct Every {
    /// After this many applied records…
    pub records: u64,
    /// …or after this long with something applied.
    pub interval: Duration,
}

/// The checkpoints of one consumer.
pub(super) struct Checkpointer<S> {
    shared: Shared<S>,
    store: Arc<CheckpointStore>,
    name: String,
    every: Every,
    /// The sequence of the last saved checkpoint.
    saved: u64,
    /// Whether the stored entries describe the state as of `saved`, so the
    /// next checkpoint may write only what changed since.
    incremental: bool,
    saved_at: Instant,
    /// The checkpoint being written: its sequence and the writer.
    writing: Option<(u64, JoinHandle<Result<(), String>>)>,
    /// Told when a checkpoint is saved.
    status: ConsumerStatus,
    /// Where the applied sequence is reported ([`checkpoint::applied`]).
    progress: Arc<AtomicU64>,
}

impl<S: Projection + Clone + Sync> Checkpointer<S> {
    /// `restored`: what [`restore`] found at start.
    pub(super) fn new(
        shared: Shared<S>,
        store: Arc<CheckpointStore>,
        name: &str,
        every: Every,
        restored: Restored,
        status: ConsumerStatus,
    ) -> Self {
        Self {
            shared,
            store,
            name: name.to_string(),
            every,
            saved: restored.seq,
            incremental: restored.incremental,
            saved_at: Instant::now(),
            writing: None,
            status,
            progress: {
                let handle = checkpoint::applied_handle(name);
                handle.store(restored.seq, Ordering::Relaxed);
                handle
            },
        }
    }

    /// After a batch, with the projection at `applied`: acknowledges a
    /// checkpoint written meanwhile, and starts the next one when due.
    pub(super) async fn after_batch(
        &mut self,
        applied: u64,
        cursor: &mut dyn DurableCursor,
    ) -> Result<(), RuntimeError> {
        self.progress.store(applied, Ordering::Relaxed);
        self.collect(cursor, false).await?;
        let due = applied - self.saved >= self.every.records
            || (applied > self.saved && self.saved_at.elapsed() >= self.every.interval);
        if self.writing.is_none() && due {
            self.start(applied).await?;
        }
        Ok(())
    }

    /// On the way out: waits for the checkpoint being written, then saves
    /// one at `applied` if it is newer, acknowledging each.
    pub(super) async fn finish(
        &mut self,
        applied: u64,
        cursor: &mut dyn DurableCursor,
    ) -> Result<(), RuntimeError> {
        self.collect(cursor, true).await?;
        if applied > self.saved {
            self.start(applied).await?;
            self.collect(cursor, true).await?;
        }
        Ok(())
    }

    /// Takes what changed in the projection (now at `applied`) and writes
    /// it in the background.
    async fn start(&mut self, applied: u64) -> Result<(), RuntimeError> {
        let t = Instant::now();
        // The loop applies nothing while the lock is held, so the changes
        // are those up to `applied`.
        let full = !self.incremental;
        let changes: PendingChanges = {
            let mut state = self.shared.state.write().await;
            if full {
                let all = state.all_entries();
                Box::new(move || Ok(all?.into_iter().map(|(k, v)| (k, Some(v))).collect()))
            } else {
                state.take_changes()
            }
        };
        let stall_ms = ms(t.elapsed());
        // From here on the stored entries follow the marks, once this
        // write lands (a failed write stops the consumer, and a restart
        // restores from what is stored).
        self.incremental = true;
        let (store, name) = (self.store.clone(), self.name.clone());
        let (service, started) = (self.status.report().service, t);
        let writer = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let changes = changes().map_err(|e| e.to_string())?;
            let written = store
                .save_changes(&name, applied, changes, full)
                .map_err(|e| e.to_string())?;
            let save_ms = ms(t.elapsed());
            powernode_log::metrics::checkpoint_saved(
                &service,
                started.elapsed(),
                written.bytes as usize,
            );
            checkpoint::record(&name, full, written, stall_ms, save_ms);
            debug!(
                applied,
                full,
                entries = written.puts + written.removes,
                bytes = written.bytes,
                stall_ms,
                save_ms,
                "checkpoint written"
            );
            Ok(())
        });
        self.writing = Some((applied, writer));
        Ok(())
    }

    /// Acknowledges the checkpoint being written once it is saved (waiting
    /// for it when `wait`).
    async fn collect(
        &mut self,
        cursor: &mut dyn DurableCursor,
        wait: bool,
    ) -> Result<(), RuntimeError> {
        match &self.writing {
            Some((_, writer)) if wait || writer.is_finished() => {}
            _ => return Ok(()),
        }
        let Some((seq, writer)) = self.writing.take() else {
            return Ok(());
        };
        writer
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|reason| self.failed(reason))?;
        self.saved = seq;
        self.saved_at = Instant::now();
        self.status.checkpointed();
        if let Err(e) = cursor.ack_through(seq).await {
            // Not fatal: the checkpoint is authoritative and redeliveries are skipped.
            warn!(error = %e, seq, "ack failed after checkpoint");
        }
        debug!(seq, "checkpointed");
        Ok(())
    }

    fn failed(&self, reason: String) -> RuntimeError {
        RuntimeError::Checkpoint {
            name: self.name.clone(),
            reason,
        }
    }
}

/// What a consumer starts from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Restored {
    /// The sequence the state is at (0: nothing restored).
    pub seq: u64,
    /// Whether the state came from an incremental checkpoint (so the next
    /// one may write only what changed).
    pub incremental: bool,
}

/// Loads `name`'s checkpoint into `shared`: the incremental form, or else a
/// whole snapshot (replaced by the incremental form at the next
/// checkpoint). With none, `shared` is left as it is, at 0.
pub(super) async fn restore<S: Projection>(
    store: &CheckpointStore,
    shared: &Shared<S>,
    name: &str,
) -> Result<Restored, RuntimeError> {
    let err = |reason: String| RuntimeError::Checkpoint {
        name: name.to_string(),
        reason,
    };
    if let Some(cp) = store.load_entries(name).map_err(|e| err(e.to_string()))? {
        *shared.state.write().await =
            S::restore_entries(cp.entries).map_err(|e| err(e.to_string()))?;
        return Ok(Restored {
            seq: cp.seq,
            incremental: true,
        });
    }
    if let Some(cp) = store.load(name).map_err(|e| err(e.to_string()))? {
        *shared.state.write().await = S::restore(&cp.snapshot).map_err(|e| err(e.to_string()))?;
        return Ok(Restored {
            seq: cp.seq,
            incremental: false,
        });
    }
    Ok(Restored {
        seq: 0,
        incremental: false,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
