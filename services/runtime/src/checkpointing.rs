//! Checkpoints written beside the consumer loop, not in its way.
//!
//! A checkpoint of a large fleet is megabytes: encoding it took 60–160 ms
//! and writing it (with its flush) 7–370 ms in `bench lifecycle` at 1,000
//! clusters, and the loop applied nothing meanwhile — every join that
//! arrived then waited. Now the loop only copies the projection (a clone,
//! on the blocking pool, while nothing applies), and the copy is encoded
//! and saved on the blocking pool while the loop goes on. The cursor is
//! acknowledged up to a checkpoint only once it is saved; one checkpoint is
//! written at a time.

use super::{RuntimeError, Shared};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::status::ConsumerStatus;
use powernode_log::DurableCursor;
use powernode_projections::Projection;
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
    saved_at: Instant,
    /// The checkpoint being written: its sequence and the writer.
    writing: Option<(u64, JoinHandle<Result<(), String>>)>,
    /// Told when a checkpoint is saved.
    status: ConsumerStatus,
}

impl<S: Projection + Clone + Sync> Checkpointer<S> {
    /// `saved`: the sequence of the checkpoint restored at start.
    pub(super) fn new(
        shared: Shared<S>,
        store: Arc<CheckpointStore>,
        name: &str,
        every: Every,
        saved: u64,
        status: ConsumerStatus,
    ) -> Self {
        Self {
            shared,
            store,
            name: name.to_string(),
            every,
            saved,
            saved_at: Instant::now(),
            writing: None,
            status,
        }
    }

    /// After a batch, with the projection at `applied`: acknowledges a
    /// checkpoint written meanwhile, and starts the next one when due.
    pub(super) async fn after_batch(
        &mut self,
        applied: u64,
        cursor: &mut dyn DurableCursor,
    ) -> Result<(), RuntimeError> {
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

    /// Copies the projection (now at `applied`) and writes the copy in the
    /// background.
    async fn start(&mut self, applied: u64) -> Result<(), RuntimeError> {
        let state = self.shared.state.clone();
        let t = Instant::now();
        // The loop applies nothing until the copy is taken, so it is the
        // state at `applied`.
        let copy = tokio::task::spawn_blocking(move || state.blocking_read().clone())
            .await
            .map_err(|e| self.failed(e.to_string()))?;
        let copy_ms = ms(t.elapsed());
        let (store, name) = (self.store.clone(), self.name.clone());
        let (service, started) = (self.status.report().service, t);
        let writer = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let snapshot = copy.snapshot().map_err(|e| e.to_string())?;
            drop(copy);
            let encode_ms = ms(t.elapsed());
            let bytes = snapshot.len();
            let checkpoint = Checkpoint {
                seq: applied,
                snapshot,
            };
            store.save(&name, &checkpoint).map_err(|e| e.to_string())?;
            powernode_log::metrics::checkpoint_saved(&service, started.elapsed(), bytes);
            debug!(
                applied,
                bytes,
                copy_ms,
                encode_ms,
                save_ms = ms(t.elapsed()) - encode_ms,
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
