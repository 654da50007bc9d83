//! The status board: every service replica's live status
//! ([`powernode_runtime::status`]), readable by every API process for
//! `agent_introspect`.
//!
//! Each process tracks the consumers it runs ([`StatusBoard::track`]) and
//! publishes their status every [`REPORT_INTERVAL`] and at each state
//! change ([`publish::run_publisher`]): into its own board, and, when the
//! log is on NATS, as core NATS messages on
//! `pn.status.<service>.<replica>` ([`subject_of`]), which API processes
//! collect ([`publish::run_collector`]). Only the platform's own NATS user
//! can publish or subscribe there: agents' permissions (granted by the auth
//! callout) name their own subjects only. On the embedded log (one process)
//! the board is all there is.
//!
//! A replica not heard for three intervals is `stale`
//! ([`StatusReport::status_at`]).

pub mod publish;

use powernode_runtime::status::{ConsumerStatus, StatusReport};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a process reports its consumers.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Prefix of the status subjects.
pub const SUBJECT_PREFIX: &str = "pn.status";

/// Every status subject.
pub const SUBJECT_ANY: &str = "pn.status.>";

/// The subject a replica's status is published on (dots in names, which
/// NATS reads as separators, become `_`).
pub fn subject_of(service: &str, replica: &str) -> String {
    let token = |s: &str| s.replace(['.', '*', '>', ' '], "_");
    format!("{SUBJECT_PREFIX}.{}.{}", token(service), token(replica))
}

/// The platform services `agent_introspect` knows, by the names it
/// accepts: the service itself, `<service>_agent`, and the seed's
/// `sdwan_manager_agent`.
pub const SERVICES: [&str; 6] = [
    "api",
    "provisioner",
    "sdwan",
    "sensor",
    "failover",
    "skills",
];

/// The service an introspection id names, if any.
pub fn service_named(agent_id: &str) -> Option<&'static str> {
    if agent_id == "sdwan_manager_agent" {
        return Some("sdwan");
    }
    let name = agent_id.strip_suffix("_agent").unwrap_or(agent_id);
    SERVICES.into_iter().find(|s| *s == name)
}

/// This process's consumers and every replica's last report.
#[derive(Debug, Default)]
pub struct StatusBoard {
    /// The consumers this process runs.
    local: Mutex<Vec<ConsumerStatus>>,
    /// The last report of each replica heard (by replica name).
    reports: Mutex<BTreeMap<String, StatusReport>>,
    /// Woken when a local consumer's state changes.
    changed: Arc<Notify>,
}

/// A board shared by the parts of one process.
pub type SharedBoard = Arc<StatusBoard>;

impl StatusBoard {
    /// An empty board.
    pub fn shared() -> SharedBoard {
        Arc::new(Self::default())
    }

    /// A status for consumer `replica` of `service` run by this process,
    /// published by this board.
    pub fn track(&self, service: &str, replica: &str) -> ConsumerStatus {
        let status = ConsumerStatus::with_notify(service, replica, self.changed.clone());
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(status.clone());
        status
    }

    /// Reports of this process's consumers now, with the log's head.
    pub fn local_reports(&self, head: u64) -> Vec<StatusReport> {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| {
                let mut r = s.report();
                r.log_head_seq = head;
                r
            })
            .collect()
    }

    /// Keeps `report` as its replica's latest (an older one never replaces
    /// a newer one).
    pub fn record(&self, report: StatusReport) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        match reports.get(&report.replica) {
            Some(known) if known.reported_at > report.reported_at => {}
            _ => {
                reports.insert(report.replica.clone(), report);
            }
        }
    }

    /// The last report of every replica of `service`, by replica name.
    pub fn replicas_of(&self, service: &str) -> Vec<StatusReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|r| r.service == service)
            .cloned()
            .collect()
    }

    /// Woken when a local consumer's state changes.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_include_the_seeds_name_and_agent_suffixes() {
        assert_eq!(service_named("sdwan_manager_agent"), Some("sdwan"));
        assert_eq!(service_named("sdwan"), Some("sdwan"));
        assert_eq!(service_named("provisioner_agent"), Some("provisioner"));
        assert_eq!(service_named("skills"), Some("skills"));
        assert_eq!(service_named("i-123"), None);
        assert_eq!(service_named("_agent"), None);
    }

    #[test]
    fn subjects_are_one_token_per_name() {
        assert_eq!(subject_of("sdwan", "sdwan-a"), "pn.status.sdwan.sdwan-a");
        assert_eq!(subject_of("sdwan", "x.y>"), "pn.status.sdwan.x_y_");
    }

    #[test]
    fn agents_may_neither_publish_nor_read_status() {
        let grant = crate::natsauth::callout::Grant {
            instance_id: "i-1".into(),
            nkey: "UAGENT".into(),
            enrolled: true,
        };
        let subject = subject_of("sdwan", "sdwan");
        // A NATS subject pattern covers `subject` when each token matches
        // (`*` one token, `>` the rest).
        let covers = |pattern: &str| {
            let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
            loop {
                match (p.next(), s.next()) {
                    (Some(">"), Some(_)) => return true,
                    (Some(a), Some(b)) if a == "*" || a == b => continue,
                    (None, None) => return true,
                    _ => return false,
                }
            }
        };
        for pattern in grant.publish().iter().chain(&grant.subscribe()) {
            assert!(!covers(pattern), "an agent's {pattern} covers {subject}");
        }
        assert!(covers("pn.status.>") && covers(SUBJECT_ANY));
    }

    #[test]
    fn the_newest_report_of_a_replica_wins() {
        let board = StatusBoard::default();
        let s = board.track("sdwan", "sdwan-a");
        s.started(3, 3);
        let old = board.local_reports(9).remove(0);
        s.applied(9, true);
        let new = board.local_reports(9).remove(0);
        board.record(new.clone());
        board.record(old);
        let got = board.replicas_of("sdwan");
        assert_eq!(got, vec![new]);
        assert_eq!(got[0].log_head_seq, 9);
        assert!(board.replicas_of("api").is_empty());
    }
}
