//! The agent's calls into its driver (off the async threads, one at a
//! time) and its signed submissions.

use super::{Agent, AgentError, SharedInfo, SharedRuntime};
use crate::driver::{Runtime, RuntimeError};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_protocol::{BootstrapSecrets, HeartbeatReply, Submission, SubmitReply};
use std::sync::Arc;

impl Agent {
    pub(super) fn node_name(&self) -> String {
        let (name, _, node_name) = self.runtime_info();
        match (&self.state.hostname, name) {
            (Some(h), "simulated") => h.clone(),
            _ => node_name,
        }
    }

    /// The driver's name, k3s version and node name.
    pub(super) fn runtime_info(&self) -> (&'static str, String, String) {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells the driver what the platform knows of the cluster, and keeps
    /// the overlay address the WireGuard config names.
    pub(super) fn observe_cluster(&mut self, hb: &HeartbeatReply) {
        if let Some(config) = hb.wireguard.first() {
            self.overlay_ip = Some(config.address.to_string());
        }
        let id = self.instance_id().to_owned();
        // Skipped while an upgrade phase holds the driver: the next beat
        // says it again.
        if let Ok(mut rt) = self.runtime.try_lock() {
            rt.observe_cluster(&id, &hb.cluster_nodes);
        }
    }

    /// Runs a blocking driver call off the async threads.
    pub(super) async fn with_runtime<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        run_on(&self.runtime, &self.info, f).await
    }

    /// Signs `payload` as this instance and submits it.
    pub(super) async fn submit(
        &self,
        payload: impl Into<EventPayload>,
        secrets: Option<BootstrapSecrets>,
    ) -> Result<SubmitReply, AgentError> {
        let account = AccountId::new(self.state.account_id.clone().unwrap_or_default())
            .map_err(|_| AgentError::NotEnrolled)?;
        let mut event = Envelope::new(
            account,
            Actor::Agent {
                instance_id: self.instance_id().to_string(),
            },
            payload,
        );
        self.identity.sign(&mut event)?;
        let bytes = event
            .encode()
            .map_err(|e| AgentError::Encode(e.to_string()))?;
        Ok(self
            .link
            .submit(Submission {
                event: hex::encode(bytes),
                secrets,
            })
            .await?)
    }
}

/// Runs a blocking driver call off the async threads, holding the driver
/// for its duration, and notes what the driver then says of itself.
pub(crate) async fn run_on<T: Send + 'static>(
    runtime: &SharedRuntime,
    info: &SharedInfo,
    f: impl FnOnce(&mut dyn Runtime) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let (runtime, info) = (Arc::clone(runtime), Arc::clone(info));
    tokio::task::spawn_blocking(move || {
        let mut rt = runtime.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(rt.as_mut());
        *info.lock().unwrap_or_else(|e| e.into_inner()) = (rt.name(), rt.version(), rt.node_name());
        out
    })
    .await
    .expect("runtime driver panicked")
}
