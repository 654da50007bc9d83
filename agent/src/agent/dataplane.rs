//! The agent's side of the data plane (on with `--wireguard-endpoint`):
//! register the node's WireGuard key, apply each reply's desired configs,
//! put held VIPs on the network's interface, hand the probe targets to the
//! prober, and report the applied revisions and probe results in every
//! heartbeat.

use super::{Agent, RETRY_BASE, RETRY_MAX};
use crate::probe::Prober;
use crate::state::RegisteredKey;
use crate::wireguard::{DataPlane, DataPlaneError};
use powernode_events::payloads::sdwan::WireguardKeyRegistered;
use powernode_events::wireguard::WireguardConfig;
use powernode_protocol::{AppliedConfig, ProbeTarget, SubmitReply, VipProbe};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// The data plane's part of an [`Agent`].
pub(super) struct DataPlaneSlot {
    /// The data plane, taken out while a blocking call runs.
    plane: std::sync::Mutex<Option<DataPlane>>,
    /// The VIP probes' targets and results.
    pub(super) prober: Prober,
    /// How often the prober probes.
    pub(super) probe_interval: Duration,
    /// After a refused registration, the next attempt waits until then.
    retry_at: Option<Instant>,
    refusals: u32,
}

impl Agent {
    /// Turns the data plane on: the node's key is registered after
    /// enrollment, every reply's WireGuard configs are applied with
    /// `plane`, held VIPs also go on their network's interface, and the
    /// cluster's VIPs are probed every `probe_interval` while
    /// [`Agent::run`] runs (`Duration::ZERO`: never, for a simulated data
    /// plane whose VIPs nothing can reach).
    pub fn with_data_plane(mut self, plane: DataPlane, probe_interval: Duration) -> Self {
        self.data_plane = Some(DataPlaneSlot {
            plane: std::sync::Mutex::new(Some(plane)),
            prober: Prober::new(self.wake.clone()),
            probe_interval,
            retry_at: None,
            refusals: 0,
        });
        self
    }

    /// The WireGuard revision applied per network (empty without a data plane).
    pub fn wireguard_applied(&self) -> Vec<AppliedConfig> {
        self.data_plane
            .as_ref()
            .and_then(|slot| {
                let guard = slot.plane.lock().expect("data plane lock");
                guard.as_ref().map(DataPlane::applied_revisions)
            })
            .unwrap_or_default()
    }

    /// The VIP probe results the next heartbeat carries (and marks them
    /// reported).
    pub(super) fn take_vip_probes(&self) -> Vec<VipProbe> {
        self.data_plane
            .as_ref()
            .map(|slot| slot.prober.take_unreported())
            .unwrap_or_default()
    }

    /// The probe targets of the last reply (empty without a data plane).
    pub fn probe_targets(&self) -> Vec<ProbeTarget> {
        self.data_plane
            .as_ref()
            .map(|slot| slot.prober.targets())
            .unwrap_or_default()
    }

    /// Submits `system.sdwan.wireguard_key.registered` when the key or the
    /// endpoint differs from what the platform last accepted. A refusal is
    /// logged with its reason and tried again after a back-off that
    /// doubles; nothing here fails the reconcile.
    pub(super) async fn register_wireguard_key(&mut self) {
        let Some(slot) = self.data_plane.as_ref() else {
            return;
        };
        if slot.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let wanted = {
            let guard = slot.plane.lock().expect("data plane lock");
            let plane = guard
                .as_ref()
                .expect("the data plane is back after every call");
            RegisteredKey {
                public_key: plane.key().public_key().to_owned(),
                endpoint: plane.endpoint().to_owned(),
            }
        };
        if self.state.wireguard.as_ref() == Some(&wanted) {
            return;
        }
        let event = WireguardKeyRegistered {
            instance_id: self.instance_id().to_owned(),
            public_key: wanted.public_key.clone(),
            endpoint: wanted.endpoint.clone(),
        };
        match self.submit(event, None).await {
            Ok(SubmitReply::Accepted { seq }) => {
                info!(instance = %self.instance_id(), public_key = %wanted.public_key, endpoint = %wanted.endpoint, seq, "WireGuard key registered");
                self.state.wireguard = Some(wanted);
                if let Err(e) = self.store.save(&self.state) {
                    warn!(error = %e, "could not save the registered WireGuard key; it will be registered again");
                }
                if let Some(slot) = self.data_plane.as_mut() {
                    slot.retry_at = None;
                    slot.refusals = 0;
                }
                // Heartbeat at once: the reply now carries the configs.
                self.report_now = true;
                return;
            }
            Ok(SubmitReply::Rejected { reason }) => {
                error!(instance = %self.instance_id(), %reason, "the platform refused the WireGuard key registration; retrying later");
            }
            Ok(_) => {
                error!(instance = %self.instance_id(), "unexpected answer to the WireGuard key registration; retrying later");
            }
            Err(e) => {
                warn!(instance = %self.instance_id(), error = %e, "could not register the WireGuard key; retrying later");
            }
        }
        if let Some(slot) = self.data_plane.as_mut() {
            let wait = RETRY_BASE
                .saturating_mul(1 << slot.refusals.min(8))
                .min(RETRY_MAX);
            slot.refusals += 1;
            slot.retry_at = Some(Instant::now() + wait);
        }
    }

    /// Applies a reply's WireGuard configs and takes its probe targets.
    pub(super) async fn apply_wireguard(
        &mut self,
        configs: Vec<WireguardConfig>,
        targets: Vec<ProbeTarget>,
    ) {
        let Some(slot) = self.data_plane.as_ref() else {
            return;
        };
        slot.prober.set_targets(targets);
        let before = self.wireguard_applied();
        self.run_data_plane(move |plane| {
            plane.apply_all(&configs);
            Ok(())
        })
        .await
        .unwrap_or_default();
        let after = self.wireguard_applied();
        if after != before {
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            // One line per newly applied revision, with the wall clock
            // (`powernode bench dataplane` reads it: config propagation).
            for c in after.iter().filter(|c| !before.contains(c)) {
                info!(network = %c.network_id, revision = c.revision, at_ms, "WireGuard config applied");
            }
            self.report_now = true;
        }
    }

    /// Whether the data plane is on.
    pub(super) fn data_plane_on(&self) -> bool {
        self.data_plane.is_some()
    }

    /// Runs a blocking data-plane call off the async threads (`Ok(None)`
    /// without a data plane).
    pub(super) async fn run_data_plane<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DataPlane) -> Result<T, DataPlaneError> + Send + 'static,
    ) -> Result<Option<T>, DataPlaneError> {
        let Some(slot) = self.data_plane.as_ref() else {
            return Ok(None);
        };
        let mut plane = slot
            .plane
            .lock()
            .expect("data plane lock")
            .take()
            .expect("the data plane is back after every call");
        let (plane, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut plane);
            (plane, out)
        })
        .await
        .expect("data plane panicked");
        *slot.plane.lock().expect("data plane lock") = Some(plane);
        out.map(Some)
    }
}

impl Agent {
    /// Spawns the probing task (with the data plane on); it stops when the
    /// returned guard drops or at `shutdown`.
    pub(super) fn start_probing(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<tokio_util::sync::DropGuard> {
        let slot = self.data_plane.as_ref()?;
        if slot.probe_interval.is_zero() {
            return None;
        }
        let timeout = slot.probe_interval.max(Duration::from_millis(100));
        match crate::probe::client(timeout) {
            Ok(client) => {
                let stop = shutdown.child_token();
                tokio::spawn(
                    slot.prober
                        .clone()
                        .run(client, slot.probe_interval, stop.clone()),
                );
                Some(stop.drop_guard())
            }
            Err(e) => {
                error!(error = %e, "cannot probe VIPs; the data-path check is off");
                None
            }
        }
    }
}
