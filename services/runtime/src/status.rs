//! A consumer's live status: what `agent_introspect` shows of a service
//! replica (state, applied sequence, last error, checkpoint and start
//! times, host).
//!
//! [`run_consumer`](crate::run_consumer) keeps it in the [`ConsumerStatus`]
//! of its [`ConsumerConfig`](crate::ConsumerConfig); whoever holds a clone
//! reads [`ConsumerStatus::report`] and is woken on state changes through
//! the handle's [`Notify`]. Publishing it is the server's business.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Where a consumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// Still applying what the log held when it started.
    CatchingUp,
    /// At the log's head (as of its start), following new records.
    Running,
    /// Its reactor (or the log) failed and it is retrying.
    Retrying,
    /// Its loop ended.
    Stopped,
}

impl ConsumerState {
    /// `catching_up`, `running`, `retrying`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CatchingUp => "catching_up",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Stopped => "stopped",
        }
    }
}

/// One replica's status, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The service (`sdwan`).
    pub service: String,
    /// Its consumer name (`sdwan` or `sdwan-<replica>`).
    pub replica: String,
    /// Where it is.
    pub state: ConsumerState,
    /// The last sequence it applied.
    pub applied_seq: u64,
    /// The log's head when it started.
    pub head_at_start: u64,
    /// The log's head when it reported (filled by the publisher).
    #[serde(default)]
    pub log_head_seq: u64,
    /// The last error it met (reaction or log failure), if any.
    pub last_error: Option<String>,
    /// When it last saved a checkpoint.
    pub last_checkpoint_at: Option<DateTime<Utc>>,
    /// When its loop started.
    pub started_at: DateTime<Utc>,
    /// When this report was made.
    pub reported_at: DateTime<Utc>,
    /// `<hostname> pid <pid>`.
    pub host: String,
}

impl StatusReport {
    /// The state to show at `now`: `stale` when no report came within
    /// three report `interval`s (a stopped replica stays `stopped`).
    pub fn status_at(&self, now: DateTime<Utc>, interval: Duration) -> &'static str {
        let silent = (now - self.reported_at).to_std().unwrap_or_default();
        if self.state != ConsumerState::Stopped && silent > interval * 3 {
            "stale"
        } else {
            self.state.as_str()
        }
    }

    /// How far it is behind `head`.
    pub fn lag(&self, head: u64) -> u64 {
        head.saturating_sub(self.applied_seq)
    }
}

/// The live status of one consumer, shared with whoever reports it.
#[derive(Debug, Clone)]
pub struct ConsumerStatus {
    inner: Arc<Mutex<StatusReport>>,
    changed: Arc<Notify>,
}

impl ConsumerStatus {
    /// A status for consumer `replica` of `service`, with its own notifier.
    pub fn new(service: &str, replica: &str) -> Self {
        Self::with_notify(service, replica, Arc::new(Notify::new()))
    }

    /// A status whose state changes wake `changed` (one notifier can serve
    /// every consumer of a process).
    pub fn with_notify(service: &str, replica: &str, changed: Arc<Notify>) -> Self {
        let now = Utc::now();
        Self {
            inner: Arc::new(Mutex::new(StatusReport {
                service: service.to_string(),
                replica: replica.to_string(),
                state: ConsumerState::CatchingUp,
                applied_seq: 0,
                head_at_start: 0,
                log_head_seq: 0,
                last_error: None,
                last_checkpoint_at: None,
                started_at: now,
                reported_at: now,
                host: host(),
            })),
            changed,
        }
    }

    /// A copy of the status now (`reported_at` set to now).
    pub fn report(&self) -> StatusReport {
        let mut r = self.lock().clone();
        r.reported_at = Utc::now();
        r
    }

    /// Woken at every state change.
    pub fn notifier(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusReport> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut StatusReport)) {
        let changed = {
            let mut r = self.lock();
            let before = r.state;
            f(&mut r);
            r.state != before
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// The loop started at `applied`, with the log's head at `head`.
    pub fn started(&self, applied: u64, head: u64) {
        self.update(|r| {
            r.started_at = Utc::now();
            r.applied_seq = applied;
            r.head_at_start = head;
            r.state = if applied >= head {
                ConsumerState::Running
            } else {
                ConsumerState::CatchingUp
            };
        });
        // A (re)start is news even when the state reads the same.
        self.changed.notify_one();
    }

    /// It applied everything up to `applied`; `caught_up` when the log had
    /// nothing more to give.
    pub fn applied(&self, applied: u64, caught_up: bool) {
        self.update(|r| {
            r.applied_seq = applied;
            let at_head = caught_up || applied >= r.head_at_start;
            r.state = match r.state {
                ConsumerState::CatchingUp if !at_head => ConsumerState::CatchingUp,
                ConsumerState::Stopped => ConsumerState::Stopped,
                _ => ConsumerState::Running,
            };
        });
    }

    /// A reaction or a log call failed with `error` and is retried.
    pub fn retrying(&self, error: &str) {
        self.update(|r| {
            r.last_error = Some(error.to_string());
            r.state = ConsumerState::Retrying;
        });
    }

    /// A checkpoint was saved.
    pub fn checkpointed(&self) {
        self.update(|r| r.last_checkpoint_at = Some(Utc::now()));
    }

    /// The loop ended, with `error` if it failed.
    pub fn stopped(&self, error: Option<&str>) {
        self.update(|r| {
            if let Some(e) = error {
                r.last_error = Some(e.to_string());
            }
            r.state = ConsumerState::Stopped;
        });
    }
}

/// `<hostname> pid <pid>`.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string());
    format!("{name} pid {}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catching_up_until_the_head_seen_at_start_then_running() {
        let s = ConsumerStatus::new("sdwan", "sdwan-a");
        s.started(10, 50);
        assert_eq!(s.report().state, ConsumerState::CatchingUp);
        s.applied(40, false);
        assert_eq!(s.report().state, ConsumerState::CatchingUp);
        s.applied(50, false);
        let r = s.report();
        assert_eq!(r.state, ConsumerState::Running);
        assert_eq!(r.applied_seq, 50);
        assert_eq!(
            (r.service.as_str(), r.replica.as_str()),
            ("sdwan", "sdwan-a")
        );
    }

    #[test]
    fn an_empty_fetch_means_caught_up() {
        let s = ConsumerStatus::new("api", "api");
        s.started(0, 50);
        s.applied(3, true);
        assert_eq!(s.report().state, ConsumerState::Running);
    }

    #[test]
    fn starting_at_the_head_is_running() {
        let s = ConsumerStatus::new("api", "api");
        s.started(7, 7);
        assert_eq!(s.report().state, ConsumerState::Running);
    }

    #[test]
    fn retrying_keeps_the_error_until_it_recovers_and_stopped_is_final() {
        let s = ConsumerStatus::new("failover", "failover");
        s.started(5, 5);
        s.retrying("vip v1: log unavailable");
        let r = s.report();
        assert_eq!(r.state, ConsumerState::Retrying);
        assert_eq!(r.last_error.as_deref(), Some("vip v1: log unavailable"));
        s.applied(6, false);
        let r = s.report();
        assert_eq!(r.state, ConsumerState::Running);
        assert_eq!(r.last_error.as_deref(), Some("vip v1: log unavailable"));
        s.stopped(None);
        s.applied(7, true);
        assert_eq!(s.report().state, ConsumerState::Stopped);
    }

    #[test]
    fn checkpoint_time_is_recorded() {
        let s = ConsumerStatus::new("sensor", "sensor");
        assert!(s.report().last_checkpoint_at.is_none());
        s.checkpointed();
        assert!(s.report().last_checkpoint_at.is_some());
    }

    #[test]
    fn a_report_not_renewed_for_three_intervals_is_stale() {
        let s = ConsumerStatus::new("sdwan", "sdwan");
        s.started(1, 1);
        let r = s.report();
        let interval = Duration::from_secs(2);
        let at = |secs: i64| r.reported_at + chrono::Duration::seconds(secs);
        assert_eq!(r.status_at(at(5), interval), "running");
        assert_eq!(r.status_at(at(7), interval), "stale");
        s.stopped(Some("boom"));
        let stopped = s.report();
        let later = stopped.reported_at + chrono::Duration::seconds(60);
        assert_eq!(stopped.status_at(later, interval), "stopped");
        assert_eq!(stopped.last_error.as_deref(), Some("boom"));
    }

    #[tokio::test]
    async fn state_changes_wake_the_notifier_and_progress_alone_does_not() {
        let s = ConsumerStatus::new("api", "api");
        let n = s.notifier();
        s.started(0, 10);
        let quick = Duration::from_millis(50);
        assert!(tokio::time::timeout(quick, n.notified()).await.is_ok());
        s.applied(5, false);
        assert!(tokio::time::timeout(quick, n.notified()).await.is_err());
        s.applied(10, false);
        assert!(tokio::time::timeout(quick, n.notified()).await.is_ok());
    }

    #[test]
    fn lag_is_head_minus_applied() {
        let s = ConsumerStatus::new("api", "api");
        s.started(4, 10);
        assert_eq!(s.report().lag(10), 6);
        assert_eq!(s.report().lag(3), 0);
    }
}
