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
//!
//! A beat also carries data-plane reports (the WireGuard revisions applied,
//! probes through VIPs), kept here too ([`dataplane`]), and the agent's
//! own report (version, capabilities, modules, errors), which
//! `agent_introspect` shows and [`outdated`] checks against what the
//! instance's config needs.

pub mod dataplane;
pub mod outdated;

use chrono::{DateTime, Utc};
use dataplane::{DataPlaneTable, ProbeReport};
use powernode_protocol::{AgentReport, Heartbeat};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Last-heard times of agents, by instance id.
#[derive(Debug)]
pub struct Liveness {
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The agent's own send time of the newest beat verified here, per
    /// instance: a beat both the intake and the follower of one process
    /// receive is verified once.
    beats: Mutex<HashMap<String, i64>>,
    /// Applied WireGuard revisions and VIP probes, per instance.
    data_plane: Mutex<DataPlaneTable>,
    /// The last verified beat's report (`None`: an agent that sends none)
    /// and when that beat arrived, per instance.
    reports: Mutex<HashMap<String, LastBeat>>,
    /// Instances whose report arrived since [`Self::take_reported`], and
    /// the wake-up of whoever takes them.
    reported: Mutex<BTreeSet<String>>,
    reported_notify: tokio::sync::Notify,
    started_at: DateTime<Utc>,
}

/// An instance's last verified heartbeat, as far as introspection cares.
#[derive(Debug, Clone, PartialEq)]
pub struct LastBeat {
    /// When it arrived here.
    pub at: DateTime<Utc>,
    /// The agent's report; `None` from an agent too old to send one.
    pub report: Option<AgentReport>,
}

/// A liveness table shared by the parts of one process.
pub type SharedLiveness = Arc<Liveness>;

impl Default for Liveness {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            beats: Mutex::default(),
            data_plane: Mutex::default(),
            reports: Mutex::default(),
            reported: Mutex::default(),
            reported_notify: tokio::sync::Notify::new(),
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

    /// A verified heartbeat arrived now: its time ([`Self::record_beat`])
    /// and its data-plane reports (applied revisions, VIP probes).
    pub fn record_heartbeat(&self, hb: &Heartbeat) {
        self.record_beat(&hb.instance_id, hb.sent_at_ms);
        let now = Utc::now();
        self.record_report(&hb.instance_id, hb.report.clone(), now);
        let mut table = self.data_plane.lock().unwrap_or_else(|e| e.into_inner());
        table.record_applied(&hb.instance_id, &hb.wireguard_applied);
        for probe in &hb.vip_probes {
            table.record_probe(
                &hb.instance_id,
                &probe.virtual_ip_id,
                ProbeReport::new(probe, now),
            );
        }
    }

    /// Records the report of a verified beat of `instance_id` that arrived
    /// `at` (what [`Self::record_heartbeat`] does; tests call it directly).
    pub fn record_report(&self, instance_id: &str, report: Option<AgentReport>, at: DateTime<Utc>) {
        let changed = {
            let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            let last = LastBeat { at, report };
            let changed = reports
                .get(instance_id)
                .is_none_or(|old| old.report != last.report);
            reports.insert(instance_id.to_string(), last);
            changed
        };
        if changed {
            self.reported
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(instance_id.to_string());
            self.reported_notify.notify_one();
        }
    }

    /// The instance's last verified beat heard by this process, if any.
    pub fn last_beat(&self, instance_id: &str) -> Option<LastBeat> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_id)
            .cloned()
    }

    /// Every instance whose beat was verified here.
    pub fn heard_instances(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The instances whose report is new or changed since the last call
    /// (the first beat of each counts), waiting for one if there is none.
    pub async fn take_reported(&self) -> BTreeSet<String> {
        loop {
            let notified = self.reported_notify.notified();
            let taken =
                std::mem::take(&mut *self.reported.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            notified.await;
        }
    }

    /// Records the WireGuard revisions `instance_id` reported applied (what
    /// [`Self::record_heartbeat`] does; tests call it directly).
    pub fn record_applied(&self, instance_id: &str, applied: &[powernode_protocol::AppliedConfig]) {
        self.data_plane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_applied(instance_id, applied);
    }

    /// Records one probe report of `prober` about `vip_id` (what
    /// [`Self::record_heartbeat`] does per probe; tests give the time).
    pub fn record_probe(&self, prober: &str, vip_id: &str, report: ProbeReport) {
        self.data_plane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_probe(prober, vip_id, report);
    }

    /// The WireGuard revision `instance_id` last reported applied on
    /// `network_id`, if this process heard it.
    pub fn applied_revision(&self, instance_id: &str, network_id: &str) -> Option<u64> {
        self.data_plane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .applied(instance_id, network_id)
    }

    /// Every prober's recent reports about `vip_id` (prober instance →
    /// reports, oldest first).
    pub fn probes(&self, vip_id: &str) -> HashMap<String, Vec<ProbeReport>> {
        self.data_plane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .probes(vip_id)
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
