//! Durable cursors of the embedded log: a name → acknowledged-seq entry in
//! the `pn.log.cursors` tree, flushed on every acknowledgement.

use super::store::{seq_key, storage};
use super::Shared;
use crate::{DurableCursor, Filter, LogError, Record};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Records examined per step of `next_batch`.
const SCAN_STEP: u64 = 4096;

/// A named, persistent position in the embedded log.
///
/// Delivery continues after the last *delivered* record; a new cursor for the
/// same name (after a restart) resumes after the last *acknowledged* one, so
/// records delivered but not acknowledged are delivered again.
pub struct EmbeddedCursor {
    shared: Arc<Shared>,
    name: String,
    filter: Filter,
    /// Everything up to here was delivered (or acknowledged).
    delivered: u64,
    visible: watch::Receiver<u64>,
}

impl EmbeddedCursor {
    /// Opens the cursor `name`, creating it (positioned after `start_after`,
    /// flushed) if it does not exist.
    pub(super) async fn open(
        shared: Arc<Shared>,
        name: &str,
        filter: Filter,
        start_after: u64,
    ) -> Result<Self, LogError> {
        if !powernode_events::ids::is_token_safe(name) {
            return Err(LogError::Invalid(format!(
                "durable cursor name {name:?} must be 1-64 characters of [A-Za-z0-9_-]"
            )));
        }
        let store = &shared.store;
        let acked = match store.cursor(name)? {
            Some(acked) => acked,
            None => {
                // Create only if still absent (two openers race harmlessly).
                let created = store
                    .cursors
                    .compare_and_swap(
                        name.as_bytes(),
                        None::<&[u8]>,
                        Some(&seq_key(start_after)[..]),
                    )
                    .map_err(storage("creating a durable cursor"))?;
                store.flush().await?;
                match created {
                    Ok(()) => start_after,
                    Err(_) => store.cursor(name)?.unwrap_or(start_after),
                }
            }
        };
        tracing::debug!(cursor = name, acked, "durable cursor opened");
        let visible = shared.visible.subscribe();
        Ok(Self {
            shared,
            name: name.to_string(),
            filter,
            delivered: acked,
            visible,
        })
    }
}

#[async_trait]
impl DurableCursor for EmbeddedCursor {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let visible = *self.visible.borrow_and_update();
            if self.delivered < visible {
                // Bounded steps, so a selective filter over a long log yields between them.
                let to = visible.min(self.delivered.saturating_add(SCAN_STEP));
                let (records, next) =
                    self.shared
                        .store
                        .scan(self.delivered + 1, to, max, &self.filter)?;
                self.delivered = next - 1;
                if !records.is_empty() {
                    return Ok(records);
                }
                tokio::task::yield_now().await;
                continue;
            }
            match tokio::time::timeout_at(deadline, self.visible.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn ack_through(&mut self, seq: u64) -> Result<(), LogError> {
        let last = *self.visible.borrow();
        if seq > last {
            return Err(LogError::Invalid(format!(
                "cannot acknowledge {seq} on cursor {}: the log ends at {last}",
                self.name
            )));
        }
        // Monotonic: an older ack never moves the cursor back.
        self.shared
            .store
            .cursors
            .fetch_and_update(self.name.as_bytes(), |old| {
                let old = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(seq_key(old.max(seq)).to_vec())
            })
            .map_err(storage("acknowledging"))?;
        self.shared.store.flush().await?;
        self.delivered = self.delivered.max(seq);
        tracing::trace!(cursor = %self.name, seq, "acknowledged");
        Ok(())
    }

    async fn acked(&mut self) -> Result<u64, LogError> {
        Ok(self.shared.store.cursor(&self.name)?.unwrap_or(0))
    }
}
