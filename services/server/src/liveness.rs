//! Who is alive: when each instance's agent was last heard, from verified
//! heartbeats. Heartbeats are not events (one per beat would flood the log);
//! every process that needs them keeps this table in memory.
//!
//! Two sources fill it: the intake of this process (every heartbeat it
//! answers), and, when the log is on NATS, a plain subscription to the
//! heartbeat subject (`intake::follow::follow_heartbeats`) — not a queue group, so every
//! sensor and failover replica hears every beat, wherever the intake runs
//! (intakes share the beats through a queue group, so the local one hears
//! only its share when several API replicas run).
//! Each beat is verified against the key the instance enrolled with before
//! it counts.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Last-heard times of agents, by instance id.
#[derive(Debug)]
pub struct Liveness {
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The agent's own send time of the newest beat verified here, per
    /// instance: a beat both the intake and the follower of one process
    /// receive is verified once.
    beats: Mutex<HashMap<String, i64>>,
    started_at: DateTime<Utc>,
}

/// A liveness table shared by the parts of one process.
pub type SharedLiveness = Arc<Liveness>;

impl Default for Liveness {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            beats: Mutex::default(),
            started_at: Utc::now(),
        }
    }
}

impl Liveness {
    /// An empty table; silence is counted from now for instances not heard yet.
    pub fn shared() -> SharedLiveness {
        Arc::new(Self::default())
    }

    /// The instance was heard at `at` (a later time wins).
    pub fn record(&self, instance_id: &str, at: DateTime<Utc>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(instance_id.to_string()).or_insert(at);
        if at > *entry {
            *entry = at;
        }
    }

    /// A verified heartbeat the agent sent at `sent_at_ms` arrived now.
    pub fn record_beat(&self, instance_id: &str, sent_at_ms: i64) {
        {
            let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = beats.entry(instance_id.to_string()).or_insert(sent_at_ms);
            *entry = (*entry).max(sent_at_ms);
        }
        self.record(instance_id, Utc::now());
    }

    /// Whether the beat the agent sent at `sent_at_ms` (or a later one) was
    /// verified here already.
    pub fn has_beat(&self, instance_id: &str, sent_at_ms: i64) -> bool {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_id)
            .is_some_and(|t| *t >= sent_at_ms)
    }

    /// When the instance was last heard by this process, if ever.
    pub fn last_seen(&self, instance_id: &str) -> Option<DateTime<Utc>> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_id)
            .copied()
    }

    /// When the instance was last heard, or when this process started
    /// listening if never: an instance is not silent before we could hear it.
    pub fn heard_or_start(&self, instance_id: &str) -> DateTime<Utc> {
        self.last_seen(instance_id).unwrap_or(self.started_at)
    }

    /// Every instance heard, with when (for status output and tests).
    pub fn snapshot(&self) -> HashMap<String, DateTime<Utc>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
