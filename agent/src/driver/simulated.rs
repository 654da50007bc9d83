//! The simulated driver: no k3s, no commands, no files. It keeps what it
//! was asked to do in memory and, once a cluster has been "created", hands
//! back artefacts shaped like the real ones (a k3s kubeconfig, a
//! `K10<ca hash>::server:<password>` node token). The virtual IPs it holds
//! are a map in memory ([`HeldAddresses`]), forgotten on restart like the
//! rest.
//!
//! It refuses what k3s would refuse (a plan that neither creates nor joins,
//! a `K10…` token on the first server, starting what was not installed), so
//! the rig catches what a real node would trip on.

use super::k3s::{
    secure_token_parts, token_password, validate_agent_plan, validate_server_plan, API_PORT,
    SECURE_TOKEN_ON_FIRST_SERVER,
};
use super::{AgentPlan, BootstrapArtifacts, Role, Runtime, RuntimeError, ServerPlan};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use powernode_protocol::token::new_token;

/// The virtual IPs a simulated node holds (address → generation): a view
/// shared with its driver, so a test keeps it after the driver is handed
/// to an agent. Clones of a driver share it (they are the same node).
#[derive(Debug, Clone, Default)]
pub struct HeldAddresses(Arc<Mutex<BTreeMap<String, u64>>>);

impl HeldAddresses {
    /// Every held address with the generation it is held at.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// The generation `vip` is held at, if it is held.
    pub fn generation(&self, vip: &str) -> Option<u64> {
        self.lock().get(vip).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A k3s stand-in that runs nothing.
#[derive(Debug, Clone)]
pub struct SimulatedRuntime {
    node_name: String,
    version: String,
    installed: Vec<Role>,
    server: Option<ServerPlan>,
    agent: Option<AgentPlan>,
    artifacts: Option<BootstrapArtifacts>,
    vips: HeldAddresses,
}

impl SimulatedRuntime {
    /// A node called `node_name` "running" k3s `version`.
    pub fn new(node_name: String, version: String) -> Self {
        Self {
            node_name,
            version,
            installed: Vec::new(),
            server: None,
            agent: None,
            artifacts: None,
            vips: HeldAddresses::default(),
        }
    }

    /// The virtual IPs this node holds (a shared view that stays current).
    pub fn held_addresses(&self) -> HeldAddresses {
        self.vips.clone()
    }

    /// Whether k3s was installed for `role`.
    pub fn is_installed(&self, role: Role) -> bool {
        self.installed.contains(&role)
    }

    /// The plan the server was last started with.
    pub fn started_server(&self) -> Option<&ServerPlan> {
        self.server.as_ref()
    }

    /// The plan the agent was last started with.
    pub fn started_agent(&self) -> Option<&AgentPlan> {
        self.agent.as_ref()
    }

    fn require_installed(&self, role: Role, unit: &str) -> Result<(), RuntimeError> {
        if self.is_installed(role) {
            Ok(())
        } else {
            Err(RuntimeError::Unexpected(format!(
                "{unit} is not installed (simulated): install it first"
            )))
        }
    }
}

impl Runtime for SimulatedRuntime {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn install(&mut self, role: Role) -> Result<(), RuntimeError> {
        if !self.installed.contains(&role) {
            self.installed.push(role);
        }
        Ok(())
    }

    fn start_server(&mut self, plan: &ServerPlan) -> Result<(), RuntimeError> {
        self.require_installed(Role::Server, "k3s")?;
        validate_server_plan(plan)?;
        if plan.cluster_init {
            match &self.artifacts {
                None if secure_token_parts(&plan.token).is_some() => {
                    return Err(RuntimeError::Unexpected(format!(
                        "{SECURE_TOKEN_ON_FIRST_SERVER} (simulated)"
                    )));
                }
                None => self.artifacts = Some(bootstrap_artifacts(&plan.token)),
                // A restart: like k3s, refuse a token of another cluster (the
                // datastore is encrypted with the first password; a secure
                // token's hash must be this cluster's CA's).
                Some(created) if !plan.token.is_empty() => {
                    let hash = |token| secure_token_parts(token).map(|(hash, _)| hash);
                    let same_password =
                        token_password(&plan.token) == token_password(&created.node_token);
                    let same_ca =
                        hash(&plan.token).is_none_or(|h| Some(h) == hash(&created.node_token));
                    if !(same_password && same_ca) {
                        return Err(RuntimeError::Unexpected(
                            "the cluster was created with another token (simulated k3s \
                             refuses to start)"
                                .into(),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        self.server = Some(plan.clone());
        Ok(())
    }

    fn read_artifacts(&mut self) -> Result<BootstrapArtifacts, RuntimeError> {
        match (&self.server, &self.artifacts) {
            (Some(plan), Some(artifacts)) if plan.cluster_init => Ok(artifacts.clone()),
            _ => Err(RuntimeError::Unexpected(
                "no kubeconfig or node token: no server was started with cluster_init \
                 (simulated)"
                    .into(),
            )),
        }
    }

    fn start_agent(&mut self, plan: &AgentPlan) -> Result<(), RuntimeError> {
        self.require_installed(Role::Agent, "k3s-agent")?;
        validate_agent_plan(plan)?;
        self.agent = Some(plan.clone());
        Ok(())
    }

    fn hold_vip(&mut self, vip: &str, generation: u64) -> Result<(), RuntimeError> {
        if vip.trim().is_empty() {
            return Err(RuntimeError::Unexpected(
                "an empty virtual IP cannot be held (simulated)".into(),
            ));
        }
        self.vips.lock().insert(vip.to_owned(), generation);
        Ok(())
    }

    fn release_vip(&mut self, vip: &str) -> Result<(), RuntimeError> {
        self.vips.lock().remove(vip);
        Ok(())
    }
}

/// What a fresh `k3s server --cluster-init --token <token>` writes: a
/// kubeconfig for `https://127.0.0.1:6443` and the node token
/// `K10<sha256 of the CA PEM>::server:<token>` (a random password when
/// `token` is empty, as k3s does).
fn bootstrap_artifacts(token: &str) -> BootstrapArtifacts {
    let ca = pem("CERTIFICATE", &der(380));
    let client_cert = pem("CERTIFICATE", &der(360));
    let client_key = pem("EC PRIVATE KEY", &der(117));
    let password = if token.is_empty() {
        random_hex(16)
    } else {
        token.to_owned()
    };
    let ca_hash = hex::encode(Sha256::digest(ca.as_bytes()));
    let kubeconfig = format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    \
         certificate-authority-data: {ca}\n    \
         server: https://127.0.0.1:{API_PORT}\n  \
         name: default\n\
         contexts:\n\
         - context:\n    \
         cluster: default\n    \
         user: default\n  \
         name: default\n\
         current-context: default\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: default\n  \
         user:\n    \
         client-certificate-data: {cert}\n    \
         client-key-data: {key}\n",
        ca = base64(ca.as_bytes()),
        cert = base64(client_cert.as_bytes()),
        key = base64(client_key.as_bytes()),
    );
    BootstrapArtifacts {
        kubeconfig,
        node_token: format!("K10{ca_hash}::server:{password}"),
    }
}

/// Random bytes behind a DER SEQUENCE header of `body_len` bytes, so the
/// PEM body starts like a real one (`MII…`).
fn der(body_len: usize) -> Vec<u8> {
    let mut bytes = if body_len < 128 {
        vec![0x30, body_len as u8]
    } else {
        vec![0x30, 0x82, (body_len >> 8) as u8, body_len as u8]
    };
    let start = bytes.len();
    bytes.resize(start + body_len, 0);
    rand::thread_rng().fill_bytes(&mut bytes[start..]);
    bytes
}

/// A PEM block with 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn pem_bodies_look_like_certificates() {
        let cert = pem("CERTIFICATE", &der(380));
        assert!(
            cert.starts_with("-----BEGIN CERTIFICATE-----\nMIIB"),
            "{cert}"
        );
        assert!(cert
            .lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert!(base64(cert.as_bytes()).starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"));
    }
}
