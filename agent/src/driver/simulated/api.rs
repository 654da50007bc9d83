//! The simulated runtime's API server: bound when a server starts, its
//! certificate issued from the cluster CA for the current SANs, and its
//! node list kept to what the platform says.

use super::SimulatedRuntime;
use crate::driver::apiserver::{pki, ApiServer, ApiState};
use crate::driver::{ClusterNode, RuntimeError};
use std::net::SocketAddr;
use std::sync::Arc;

impl SimulatedRuntime {
    /// Binds the API listener when one is configured and not yet bound;
    /// the bound address.
    pub(super) fn ensure_api(&mut self) -> Result<Option<SocketAddr>, RuntimeError> {
        let Some(listen) = self.api_listen else {
            return Ok(None);
        };
        if self.api.is_none() {
            self.api = Some(Arc::new(ApiServer::bind(listen, self.api_state())?));
        }
        Ok(self.api_address())
    }

    /// After a server start: the API listens, with a certificate from the
    /// cluster CA for the current SANs.
    pub(super) fn serve_api(&mut self) -> Result<(), RuntimeError> {
        if self.api_listen.is_none() || self.server.is_none() {
            return Ok(());
        }
        if self.ca.is_none() {
            // A platform that hands a joining server no CA (an older one):
            // serve anyway; kubectl will not verify this node.
            tracing::warn!(
                node = %self.node_name,
                "no cluster CA was handed over; the simulated API serves a certificate of its own CA, which the cluster's kubeconfig does not verify"
            );
            self.ca = Some(pki::new_cluster_ca()?);
        }
        self.ensure_api()?;
        self.reissue_if_needed()
    }

    /// Issues the API certificate again when the SANs it needs changed,
    /// or the cluster CA did (a joining server that started before the
    /// platform handed it the cluster's CA served one of its own: once the
    /// CA arrives, clients that verify with the kubeconfig must see a
    /// certificate of that CA, whatever the SANs).
    fn reissue_if_needed(&mut self) -> Result<(), RuntimeError> {
        let (Some(api), Some(ca)) = (&self.api, &self.ca) else {
            return Ok(());
        };
        let sans = self.desired_sans();
        if sans == self.cert_sans && self.cert_ca.as_deref() == Some(ca.cert_pem.as_str()) {
            return Ok(());
        }
        let cert = pki::server_cert(ca, &self.node_name, &sans)?;
        api.set_certificate(ca, &cert)?;
        tracing::info!(node = %self.node_name, ?sans, "simulated k3s API certificate issued");
        self.cert_ca = Some(ca.cert_pem.clone());
        self.cert_sans = sans;
        Ok(())
    }

    /// The plan's SANs, this node's overlay address as the platform lists
    /// it, and the local names.
    fn desired_sans(&self) -> Vec<String> {
        let mut sans = self
            .server
            .as_ref()
            .map(|plan| plan.sans())
            .unwrap_or_default();
        let me = self.instance_id.as_deref();
        sans.extend(
            self.nodes
                .iter()
                .filter(|n| Some(n.instance_id.as_str()) == me || n.name == self.node_name)
                .filter_map(|n| n.overlay_ip.clone()),
        );
        pki::server_sans(&self.node_name, &sans)
    }

    /// What a newly bound API answers from.
    fn api_state(&self) -> ApiState {
        let held = self.vips.clone();
        ApiState {
            node_name: self.node_name.clone(),
            version: self.version.clone(),
            instance_id: self.instance_id.clone(),
            nodes: self.nodes.clone(),
            started_at: chrono::Utc::now(),
            vip_generation: Arc::new(move |host| held.generation_of_address(host)),
            restarting: false,
        }
    }

    /// Takes in what the platform says of the cluster.
    pub(super) fn observe(&mut self, instance_id: &str, nodes: &[ClusterNode]) {
        let before = (self.instance_id.clone(), self.nodes.clone());
        if !instance_id.is_empty() {
            self.instance_id = Some(instance_id.to_owned());
        }
        self.nodes = nodes.to_vec();
        if before != (self.instance_id.clone(), self.nodes.clone()) {
            if let Err(e) = self.persist() {
                tracing::warn!(node = %self.node_name, error = %e, "could not save the simulated k3s node");
            }
        }
        // The platform's name for this node wins (an agent started before
        // it enrolled knew no hostname yet).
        let me = self.instance_id.as_deref();
        if let Some(listed) = nodes.iter().find(|n| Some(n.instance_id.as_str()) == me) {
            self.node_name.clone_from(&listed.name);
        }
        if let Some(api) = &self.api {
            let (id, name) = (self.instance_id.clone(), self.node_name.clone());
            api.update(|state| {
                state.instance_id = id;
                state.node_name = name;
                state.nodes = nodes.to_vec();
            });
        }
        self.resume_api();
        if let Err(e) = self.reissue_if_needed() {
            tracing::warn!(node = %self.node_name, error = %e, "could not issue the simulated k3s API certificate again");
        }
    }
}
