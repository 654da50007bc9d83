//! Refusals nobody can be held to: submissions not signed by an enrolled
//! key (unknown instance, bad signature, malformed, oversized …). Anyone
//! who can reach the intake can send those, so recording each one would
//! let junk grow the log without bound. They are counted in memory per
//! refusal code, and one `system.agent.submissions_rejected_summary` is
//! appended per window that saw any: at most one event per window, however
//! many refusals.

use chrono::{DateTime, Utc};
use powernode_events::payloads::log::AgentSubmissionsRejectedSummary;
use powernode_events::{Actor, Envelope};
use powernode_log::{Expect, SharedLog};
use powernode_runtime::supervisor::Spawner;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, warn};

/// How long refusals are counted before their summary is appended.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Window {
    /// When the open window's first refusal came; `None`: no window open.
    start: Option<DateTime<Utc>>,
    count: u64,
    by_reason: BTreeMap<String, u64>,
}

/// The counter of unattributed refusals (shared by every clone of the intake).
pub(super) struct Unattributed {
    log: SharedLog,
    window: Mutex<Duration>,
    open: Mutex<Window>,
}

impl Unattributed {
    pub(super) fn new(log: SharedLog) -> Arc<Self> {
        Arc::new(Self {
            log,
            window: Mutex::new(DEFAULT_WINDOW),
            open: Mutex::default(),
        })
    }

    /// Sets the window length (windows opened from now on).
    pub(super) fn set_window(&self, window: Duration) {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = window;
    }

    /// Counts one refusal with this code (a code from the intake's fixed
    /// set, never agent text). The first refusal of a window schedules its
    /// summary (under `tasks`, the node's supervisor; at shutdown, the open
    /// window is summarised at once).
    pub(super) fn count(self: &Arc<Self>, code: &str, tasks: Option<&Spawner>) {
        let mut w = self.open.lock().unwrap_or_else(|e| e.into_inner());
        w.count += 1;
        *w.by_reason.entry(code.to_string()).or_default() += 1;
        if w.start.is_none() {
            w.start = Some(Utc::now());
            let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
            let this = self.clone();
            let shutdown = tasks.map(|t| t.shutdown().clone()).unwrap_or_default();
            super::spawn_helper(
                tasks,
                "intake: summary of unattributed refusals",
                async move {
                    tokio::select! {
                        _ = tokio::time::sleep(window) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    this.flush().await;
                },
            );
        }
    }

    /// Appends the open window's summary (if it saw anything) and closes it.
    pub(super) async fn flush(&self) {
        let (start, count, by_reason) = {
            let mut w = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let Some(start) = w.start.take() else {
                return;
            };
            let w = std::mem::take(&mut *w);
            (start, w.count, w.by_reason)
        };
        if count == 0 {
            return;
        }
        let event = Envelope::new(
            powernode_runtime::system_account(),
            Actor::service("intake"),
            AgentSubmissionsRejectedSummary {
                observed_by: "intake".into(),
                window_start: start,
                window_end: Utc::now(),
                count,
                by_reason: by_reason.clone(),
            },
        );
        match self.log.append(&event, Expect::Any).await {
            Ok(a) => debug!(count, seq = a.seq, "unattributed refusals summarised"),
            Err(e) => {
                warn!(error = %e, count, ?by_reason, "could not record the summary of unattributed refusals")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::EventPayload;
    use powernode_log::embedded::EmbeddedLog;
    use powernode_log::Filter;

    #[tokio::test]
    async fn many_refusals_make_one_summary_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open_shared(dir.path()).unwrap();
        let u = Unattributed::new(log.clone());
        u.set_window(Duration::from_millis(300));
        for i in 0..2000 {
            u.count(
                if i % 4 == 0 {
                    "unknown_instance"
                } else {
                    "bad_signature"
                },
                None,
            );
        }
        assert_eq!(
            log.last_seq().await.unwrap(),
            0,
            "nothing before the window ends"
        );
        tokio::time::sleep(Duration::from_millis(900)).await;
        let records = log.read(1, 10, &Filter::all()).await.unwrap();
        assert_eq!(records.len(), 1, "one summary");
        let e = Envelope::decode(&records[0].bytes).unwrap();
        let EventPayload::AgentSubmissionsRejectedSummary(p) = e.payload else {
            panic!("not a summary: {}", e.kind());
        };
        assert_eq!(p.count, 2000);
        assert_eq!(p.by_reason["unknown_instance"], 500);
        assert_eq!(p.by_reason["bad_signature"], 1500);
        assert!(p.window_end >= p.window_start);
        // A later refusal opens a new window.
        u.count("malformed_event", None);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(log.last_seq().await.unwrap(), 2);
    }
}
