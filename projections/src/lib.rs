//! # powernode-projections — pure folds of the event log
//!
//! A projection turns the ordered stream of [`Envelope`]s into the state a
//! service decides on. This crate holds:
//!
//! * [`Projection`] — the trait every fold implements: `apply`, `snapshot`,
//!   `restore`, and the enrolled-key lookup the consumer runtime uses to
//!   verify agent-signed events;
//! * [`fleet`] — [`FleetState`], the fold of the whole fleet (accounts,
//!   operator tokens, templates, nodes, instances, networks, peers, virtual
//!   IPs, clusters, k8s nodes, approvals) with the query helpers the API needs;
//! * [`snapshot`] — the canonical CBOR snapshot format and its typed errors;
//! * [`tracked`] — the map that remembers its changed keys, so checkpoints
//!   are incremental ([`Projection::take_changes`]);
//! * [`state_hash`] — the digest of a state's snapshot (equal states, equal digests).
//!
//! Where a consumer keeps its snapshots (sled checkpoints) is the runtime's
//! business (`powernode-runtime`), not this crate's.
//!
//! What this crate must never do: I/O, clock reads, randomness or iteration
//! over hash maps inside `apply`. Applying the same events in the same order
//! must always produce the same state and byte-identical snapshots, so that
//! any past state can be rebuilt by replay. Folds record facts; they never
//! decide (whether a join is allowed, who gets promoted …) — services do.

#![warn(missing_docs)]

pub mod fleet;
mod hash;
pub mod snapshot;
pub mod tracked;

pub use fleet::FleetState;
pub use hash::state_hash;
pub use snapshot::SnapshotError;

use powernode_events::Envelope;

/// One stored entry of an incremental snapshot: its key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One entry of an incremental snapshot: its key, and its value or `None`
/// when the entry went away.
pub type EntryChange = (Vec<u8>, Option<Vec<u8>>);

/// Changes taken from a projection, encoded when called: the consumer
/// takes them under its lock (a copy of what changed) and encodes them
/// beside its loop.
pub type PendingChanges = Box<dyn FnOnce() -> Result<Vec<EntryChange>, SnapshotError> + Send>;

/// The one entry of a projection that is not incremental: its snapshot.
const WHOLE: &[u8] = b"whole";

/// A deterministic fold of the event log.
///
/// Implementations must be pure: `apply` may not read clocks, draw random
/// numbers, do I/O or depend on hash-map iteration order.
pub trait Projection: Default + Send + 'static {
    /// Folds one event, read from the log at sequence `seq`, into the state.
    ///
    /// Never fails and never panics: an event about an object the state does
    /// not know is tolerated (usually ignored).
    fn apply(&mut self, seq: u64, event: &Envelope);

    /// The state as canonical bytes (byte-identical for equal states).
    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError>;

    /// The inverse of [`Projection::snapshot`]; a typed error on bytes that
    /// are not a snapshot of this projection.
    fn restore(bytes: &[u8]) -> Result<Self, SnapshotError>
    where
        Self: Sized;

    /// The entries changed since the last call to this or to
    /// [`Projection::all_entries`], as (key, value) with `None` for an entry
    /// that went away; the marks are forgotten. Written over the stored
    /// entries, they make the stored entries describe this state (an
    /// incremental checkpoint). Called under the consumer's lock: it must
    /// cost what changed, not what the state holds.
    ///
    /// The answer copies what changed and encodes it when called, so the
    /// encoding can happen after the lock is released.
    ///
    /// The default is the whole snapshot as one entry (not incremental).
    fn take_changes(&mut self) -> PendingChanges {
        let whole = self.snapshot();
        Box::new(move || Ok(vec![(WHOLE.to_vec(), Some(whole?))]))
    }

    /// Every entry of the state (a first checkpoint, or one that replaces
    /// what is stored), forgetting the marks.
    fn all_entries(&mut self) -> Result<Vec<crate::Entry>, SnapshotError> {
        Ok(vec![(WHOLE.to_vec(), self.snapshot()?)])
    }

    /// The state the stored entries describe (in key order), with no marks:
    /// the inverse of [`Projection::all_entries`].
    fn restore_entries(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, SnapshotError>
    where
        Self: Sized,
    {
        match entries.into_iter().find(|(k, _)| k == WHOLE) {
            Some((_, bytes)) => Self::restore(&bytes),
            None => Self::restore(&[]),
        }
    }

    /// The ed25519 public key (32 raw bytes) the agent of `instance_id`
    /// enrolled with (`system.agent.enrolled`), used to verify agent-signed
    /// events before they are applied. `None` when unknown (the event is then
    /// refused). Raw bytes, because comparing keys is cheap and decompressing
    /// one is not.
    fn agent_key(&self, _instance_id: &str) -> Option<[u8; 32]> {
        None
    }
}
