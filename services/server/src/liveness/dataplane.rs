//! What agents' heartbeats say about the data plane, kept in memory next
//! to when they were heard: the WireGuard revision each applied per
//! network, and the probes they made through their cluster's VIPs.
//!
//! Like heartbeats themselves these are not events: the API reads the
//! applied revisions (`in_sync` of a peer's config), the sensor reads the
//! probes (a holder that beats but whose VIP does not answer).

use chrono::{DateTime, Utc};
use powernode_protocol::{AppliedConfig, VipProbe};
use std::collections::{HashMap, VecDeque};

/// Probe reports kept per (VIP, prober): enough to see how long a run of
/// failures has lasted at any sensible probe rate and threshold.
pub const PROBES_KEPT: usize = 64;

/// One probe through a VIP, as a prober's heartbeat reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Whether anything answered.
    pub reached: bool,
    /// The instance that answered, when the server said.
    pub answered_by: Option<String>,
    /// The generation the answering holder said it holds the VIP at.
    pub generation: Option<u64>,
    /// When the probe finished (ms since the epoch, the prober's clock).
    pub probed_at_ms: i64,
    /// When the heartbeat carrying it was heard (this process's clock).
    pub heard_at: DateTime<Utc>,
}

impl ProbeReport {
    /// The report of `probe`, heard at `heard_at`.
    pub fn new(probe: &VipProbe, heard_at: DateTime<Utc>) -> Self {
        Self {
            reached: probe.reached,
            answered_by: probe.answered_by.clone(),
            generation: probe.generation,
            probed_at_ms: probe.probed_at_ms,
            heard_at,
        }
    }

    /// Whether the probe reached `holder` (the holder's instance) at
    /// `generation` or newer. An answer that names nobody (a real k3s)
    /// counts as reaching the holder; one from another instance at a
    /// newer generation means the log has not caught up yet, which is not
    /// the holder's failure either.
    pub fn reached_holder(&self, holder: &str, generation: u64) -> bool {
        if !self.reached {
            return false;
        }
        match self.answered_by.as_deref() {
            None => true,
            Some(by) if by == holder => self.generation.is_none_or(|g| g >= generation),
            Some(_) => self.generation.is_some_and(|g| g > generation),
        }
    }
}

/// The data-plane reports of every instance heard.
#[derive(Debug, Default)]
pub(super) struct DataPlaneTable {
    /// Instance → network → applied WireGuard revision.
    applied: HashMap<String, HashMap<String, u64>>,
    /// VIP id → prober instance → its latest reports, oldest first.
    probes: HashMap<String, HashMap<String, VecDeque<ProbeReport>>>,
}

impl DataPlaneTable {
    /// The revisions `instance_id` reports applied (its whole list: a
    /// network it no longer lists is gone from its interfaces).
    pub(super) fn record_applied(&mut self, instance_id: &str, applied: &[AppliedConfig]) {
        let networks = applied
            .iter()
            .map(|a| (a.network_id.clone(), a.revision))
            .collect();
        self.applied.insert(instance_id.to_string(), networks);
    }

    /// The revision `instance_id` reports applied on `network_id`.
    pub(super) fn applied(&self, instance_id: &str, network_id: &str) -> Option<u64> {
        self.applied.get(instance_id)?.get(network_id).copied()
    }

    /// Adds a prober's report (one not newer than the last one kept for
    /// the same VIP and prober is a repeat and is dropped).
    pub(super) fn record_probe(&mut self, prober: &str, vip_id: &str, report: ProbeReport) {
        let kept = self
            .probes
            .entry(vip_id.to_string())
            .or_default()
            .entry(prober.to_string())
            .or_default();
        if kept
            .back()
            .is_some_and(|last| last.probed_at_ms >= report.probed_at_ms)
        {
            return;
        }
        if kept.len() == PROBES_KEPT {
            kept.pop_front();
        }
        kept.push_back(report);
    }

    /// Every prober's reports about `vip_id`, oldest first.
    pub(super) fn probes(&self, vip_id: &str) -> HashMap<String, Vec<ProbeReport>> {
        self.probes
            .get(vip_id)
            .map(|by| {
                by.iter()
                    .map(|(prober, r)| (prober.clone(), r.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
