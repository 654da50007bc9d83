//! What an agent and the platform's intake say to each other.
//!
//! Three requests, each a JSON message (over NATS request/reply on the
//! [`subjects`], or a direct call for in-process agents):
//!
//! * **enroll** — the one-time credential `system_provision_instance`
//!   returned, and the agent's ed25519 public key;
//! * **heartbeat** — signed proof of life; the answer carries the
//!   instance's module assignments (so a new assignment is picked up within
//!   one heartbeat);
//! * **submit** — one signed handshake event (CBOR, hex), plus, for a
//!   bootstrap report only, the secrets k3s generated (they go to the secret
//!   store, never into the event). The answer is the platform's decision:
//!   the cluster created, the join granted (with the token), or a refusal
//!   with its reason.

//!
//! * [`link`] — the requests as a trait both sides implement, and why one fails;
//! * [`token`] — minting join and bootstrap tokens.
//!
//! This crate is the wire contract between the agent and the server, shared
//! so that neither depends on the other. It must never do I/O, hold state
//! or know how a message travels.

pub mod link;
pub mod token;

use powernode_events::payloads::k3s::K3sModule;
use serde::{Deserialize, Serialize};

/// NATS subjects the intake answers on.
pub mod subjects {
    /// [`super::EnrollRequest`] → [`super::EnrollReply`].
    pub const ENROLL: &str = "pn.agent.enroll";
    /// [`super::Heartbeat`] → [`super::HeartbeatReply`], from any instance
    /// (the intake still answers here; agents use [`heartbeat_of`]).
    pub const HEARTBEAT: &str = "pn.agent.heartbeat";
    /// Every instance's own heartbeat subject ([`heartbeat_of`]).
    pub const HEARTBEAT_ANY: &str = "pn.agent.heartbeat.*";
    /// [`super::Submission`] → [`super::SubmitReply`], from any instance
    /// (the intake still answers here; agents use [`submit_of`]).
    pub const SUBMIT: &str = "pn.agent.submit";
    /// Every instance's own submission subject ([`submit_of`]).
    pub const SUBMIT_ANY: &str = "pn.agent.submit.*";

    /// The subject an enrolled instance's agent heartbeats on. Per-instance
    /// subjects let the server's permissions confine an agent to its own
    /// (`publish: pn.agent.heartbeat.<instance>`), and the intake refuses a
    /// beat whose instance is not the subject's (`subject_mismatch`).
    pub fn heartbeat_of(instance_id: &str) -> String {
        format!("{HEARTBEAT}.{instance_id}")
    }

    /// The subject an enrolled instance's agent submits handshake events
    /// on (see [`heartbeat_of`]).
    pub fn submit_of(instance_id: &str) -> String {
        format!("{SUBMIT}.{instance_id}")
    }

    /// The instance a per-instance subject (`<prefix>.<instance>`) names,
    /// or `None` for the shared subject `prefix` itself.
    pub fn instance_of<'a>(subject: &'a str, prefix: &str) -> Option<&'a str> {
        subject
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|id| !id.is_empty() && !id.contains('.'))
    }
    /// Queue group of the intake responders.
    pub const QUEUE: &str = "pn-intake";
    /// Prefix of the per-instance nudge subjects.
    pub const NUDGE_PREFIX: &str = "pn.agent.nudge";

    /// The subject an instance's agent listens on for nudges: "heartbeat
    /// now" (sent to the old and the new holder after a VIP promotion, so
    /// neither waits for its interval). The payload is the log sequence of
    /// the change, in decimal: the agent passes it back as
    /// [`super::Heartbeat::after_seq`] so the answer reflects the change.
    pub fn nudge(instance_id: &str) -> String {
        format!("{NUDGE_PREFIX}.{instance_id}")
    }
}

/// Enrollment: registers the agent's public key for its instance.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The credential `system_provision_instance` returned (secret).
    pub credential: String,
    /// Hex of the 32-byte ed25519 public key.
    pub public_key: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("credential", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// Who the agent now is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollReply {
    /// The instance the credential belongs to.
    pub instance_id: String,
    /// Its account.
    pub account_id: String,
    /// The node's hostname (the Kubernetes node name).
    pub hostname: String,
}

/// Proof of life, signed with the identity key over
/// [`Heartbeat::signing_bytes`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The instance.
    pub instance_id: String,
    /// When it was sent (ms since the Unix epoch); stale beats are refused.
    pub sent_at_ms: i64,
    /// The virtual IPs the agent holds right now, with the fencing
    /// generation it holds each at (covered by the signature).
    #[serde(default)]
    pub held_vips: Vec<HeldVip>,
    /// Answer only once the platform's view includes this log sequence
    /// (from a nudge; a hint, waited for briefly, not signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// The WireGuard config revision applied on each network's interface
    /// (empty when the agent runs no data plane). Signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wireguard_applied: Vec<AppliedConfig>,
    /// What this agent's probes through its cluster's VIPs saw since the
    /// last beat (empty when it probes nothing). Signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vip_probes: Vec<VipProbe>,
    /// The agent's own report (version, runtime, modules, recent errors);
    /// absent from older agents. Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<AgentReport>,
    /// Hex of the ed25519 signature.
    pub signature: String,
}

impl Heartbeat {
    /// The bytes this beat's signature covers: [`Self::signing_bytes`],
    /// then one line per applied WireGuard revision and one per VIP probe
    /// (each sorted). A beat without either signs exactly what
    /// [`Self::signing_bytes`] gives, so older agents still verify.
    pub fn bytes_to_sign(&self) -> Vec<u8> {
        let mut bytes = Self::signing_bytes(&self.instance_id, self.sent_at_ms, &self.held_vips);
        let mut lines: Vec<String> = self
            .wireguard_applied
            .iter()
            .map(|a| format!("wg {} {}", a.network_id, a.revision))
            .collect();
        lines.sort();
        let mut probes: Vec<String> = self
            .vip_probes
            .iter()
            .map(|p| {
                format!(
                    "probe {} {} {} {} {} {}",
                    p.virtual_ip_id,
                    p.vip,
                    p.reached,
                    p.answered_by.as_deref().unwrap_or("-"),
                    p.generation
                        .map_or_else(|| "-".to_string(), |g| g.to_string()),
                    p.probed_at_ms
                )
            })
            .collect();
        probes.sort();
        let report = self
            .report
            .as_ref()
            .map(AgentReport::signed_lines)
            .unwrap_or_default();
        for line in lines.into_iter().chain(probes).chain(report) {
            bytes.push(b'\n');
            bytes.extend_from_slice(line.as_bytes());
        }
        bytes
    }

    /// The bytes the signature covers: instance, time and every held VIP
    /// (sorted, so the order an agent lists them in does not matter).
    pub fn signing_bytes(instance_id: &str, sent_at_ms: i64, held: &[HeldVip]) -> Vec<u8> {
        let mut text = format!("powernode-heartbeat\n{instance_id}\n{sent_at_ms}");
        let mut held: Vec<String> = held
            .iter()
            .map(|h| format!("{} {} {}", h.virtual_ip_id, h.vip, h.generation))
            .collect();
        held.sort();
        for h in held {
            text.push('\n');
            text.push_str(&h);
        }
        text.into_bytes()
    }
}

/// A virtual IP an agent holds, at a fencing generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldVip {
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// The address.
    pub vip: String,
    /// The generation it holds the address at.
    pub generation: u64,
}

/// What the platform expects of the instance for one virtual IP it is a
/// member of (holder or failover candidate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipDuty {
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// The address.
    pub vip: String,
    /// The newest generation the platform knows for it.
    pub generation: u64,
    /// Whether this instance is the holder at that generation.
    pub hold: bool,
    /// The network the VIP belongs to (its interface is
    /// `wg-sdwan-<handle>` of that network's config); absent from older
    /// intakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
}

/// One k3s module assigned to the instance's template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Assignment id.
    pub assignment_id: String,
    /// `k3s-server` or `k3s-agent`.
    pub module_name: K3sModule,
    /// The cluster to join; absent on a bootstrap server.
    pub target_cluster_id: Option<String>,
    /// The catalog version to install (`INSTALL_K3S_VERSION`): the
    /// assignment's pin, or the version an upgrade since put on this
    /// instance; absent: the runtime's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ModuleVersionPin>,
}

/// A catalog version, as an agent needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersionPin {
    /// Version id, e.g. `v-k3s-1.31.0`.
    pub module_version_id: String,
    /// The version, e.g. `1.31.0`.
    pub version: String,
    /// The k3s release, e.g. `v1.31.0+k3s1`.
    pub k3s_version: String,
}

/// A step of a skill execution this instance is to run now: upgrade (or
/// re-stamp) its module, phase by phase, then submit
/// `system.k3s.module.upgraded` or `…upgrade_failed` for
/// (`execution_id`, `step`). Repeated in every reply until the outcome is
/// in the log; an agent runs one (execution, step) once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOrder {
    /// Execution id.
    pub execution_id: String,
    /// Step number.
    pub step: u32,
    /// `upgrade` or `restamp`.
    pub action: powernode_events::payloads::skills::StepAction,
    /// The module.
    pub module_name: K3sModule,
    /// What it runs now (put back on failure); `None`: unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ModuleVersionPin>,
    /// What to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ModuleVersionPin>,
    /// k3s server flags to reinstall with (re-stamp), verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_flags: Vec<String>,
}

/// What an agent says about itself in each heartbeat (for
/// `agent_introspect`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentReport {
    /// The agent binary's version (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// `simulated` or `k3s`.
    pub runtime: String,
    /// What this binary understands, e.g. `module_versions`,
    /// `flannel_sdwan`, `wireguard`, `upgrades`, `token_rotation`
    /// (see [`CAPABILITIES`]).
    pub capabilities: Vec<String>,
    /// The modules it runs and at which version.
    pub modules: Vec<RunningModule>,
    /// The last few errors (newest last, at most [`MAX_RECENT_ERRORS`];
    /// never a secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_errors: Vec<AgentError>,
    /// The upgrade step it is running, if any: `<execution_id>/<step>/<phase>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrading: Option<String>,
    /// `sha256:<hex>` ([`fingerprint`]) of the cluster join token the node
    /// holds, once it holds one: the intake answers a stale one with
    /// [`HeartbeatReply::join_token`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token_fingerprint: Option<String>,
}

/// Every capability this build's agent has.
pub const CAPABILITIES: &[&str] = &[
    "module_versions",
    "upgrades",
    "flannel_sdwan",
    "wireguard",
    "token_rotation",
];

/// How many recent errors a report carries at most.
pub const MAX_RECENT_ERRORS: usize = 10;

impl AgentReport {
    /// The lines of the report the heartbeat's signature covers.
    pub fn signed_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "agent {} {} {}",
            self.agent_version,
            self.runtime,
            self.capabilities.join(",")
        )];
        let mut modules: Vec<String> = self
            .modules
            .iter()
            .map(|m| {
                format!(
                    "module {} {} {}",
                    m.module_name.as_str(),
                    m.module_version_id.as_deref().unwrap_or("-"),
                    m.k3s_version
                )
            })
            .collect();
        modules.sort();
        lines.extend(modules);
        lines.extend(
            self.recent_errors
                .iter()
                .map(|e| format!("error {} {}", e.at_ms, e.message)),
        );
        if let Some(u) = &self.upgrading {
            lines.push(format!("upgrading {u}"));
        }
        if let Some(fp) = &self.join_token_fingerprint {
            lines.push(format!("join_token {fp}"));
        }
        lines
    }
}

/// A module an agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningModule {
    /// The module.
    pub module_name: K3sModule,
    /// Its catalog version; `None`: unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_version_id: Option<String>,
    /// The k3s release it runs.
    pub k3s_version: String,
}

/// An error an agent met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// What (no secrets).
    pub message: String,
}

/// The platform's view of the instance, returned to every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// `enrolled`, `drained`, `terminated`, …
    pub status: String,
    /// The k3s modules assigned to the instance's template.
    pub assignments: Vec<Assignment>,
    /// The cluster the platform has the instance in, if any.
    pub cluster_id: Option<String>,
    /// The k3s server flags a cluster bootstrapped by this instance now
    /// would be stamped with (flannel over the SD-WAN, pod CIDR), so a
    /// bootstrap server starts k3s with its final pod CIDR.
    #[serde(default)]
    pub bootstrap_server_flags: Vec<String>,
    /// Every virtual IP the instance is a member of, at its newest
    /// generation, and whether to hold it. An agent holds a VIP only for
    /// the newest generation it has seen, and releases one that is not
    /// listed or that a newer generation gives to another instance.
    #[serde(default)]
    pub vips: Vec<VipDuty>,
    /// The desired WireGuard config of each network the instance is a peer
    /// of that has a registered key (empty when it runs no data plane).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wireguard: Vec<powernode_events::wireguard::WireguardConfig>,
    /// VIPs of the instance's cluster to probe through the tunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_targets: Vec<ProbeTarget>,
    /// The instance's cluster's nodes (for a `k3s-server`'s API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_nodes: Vec<ClusterNode>,
    /// The skill step this instance is to run now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeOrder>,
    /// The cluster's current join token, when the node reported another
    /// fingerprint (rotated since). Only ever on the agent's own reply
    /// subject; secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<JoinTokenUpdate>,
}

/// A rotated cluster join token for a node to adopt. `rotate`: this node
/// (exactly one server of the cluster) runs `k3s token rotate` from its
/// old token to this one first; every other node only rewrites its stored
/// token. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenUpdate {
    /// `sha256:<hex>` of `token`.
    pub fingerprint: String,
    /// The token (secret).
    pub token: String,
    /// Whether this node rotates the cluster's token in k3s itself.
    pub rotate: bool,
}

impl std::fmt::Debug for JoinTokenUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTokenUpdate")
            .field("fingerprint", &self.fingerprint)
            .field("token", &"<redacted>")
            .field("rotate", &self.rotate)
            .finish()
    }
}

/// Secrets a bootstrap server hands over with its report.
/// The WireGuard config revision an agent applied on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedConfig {
    /// Network id.
    pub network_id: String,
    /// The [`WireguardConfig::revision`] now in force on the interface.
    pub revision: u64,
}

/// One probe of a VIP's :6443 through the tunnel: who answered, at which
/// generation (the data-path check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipProbe {
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// The address probed.
    pub vip: String,
    /// Whether anything answered (TLS handshake and an HTTP answer).
    pub reached: bool,
    /// The instance that answered, when the server says (the simulated
    /// runtime does; a real k3s does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The generation the answering holder holds the VIP at, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// When the probe finished (ms since the Unix epoch).
    pub probed_at_ms: i64,
}

/// A VIP the agent should probe through the tunnel (a VIP of its cluster
/// that it does not hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTarget {
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// The address; the probe goes to `https://[vip]:6443`.
    pub vip: String,
    /// The generation the log says is newest.
    pub generation: u64,
    /// The instance the log says holds it.
    pub holder_instance_id: String,
}

/// A node of the agent's cluster as the platform knows it (the simulated
/// runtime's API server lists these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Kubernetes node name.
    pub name: String,
    /// The instance behind it.
    pub instance_id: String,
    /// `server` (control plane) or `agent` (worker).
    pub role: String,
    /// Whether the node reported ready.
    pub ready: bool,
    /// Its overlay address, when attached to a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_ip: Option<String>,
    /// When it registered (RFC 3339).
    pub registered_at: String,
}

/// A cluster's certificate authority (PEM). Made by the bootstrap server,
/// kept in the secret store, handed to servers that join so they serve
/// certificates the kubeconfig verifies. Never in an event.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCa {
    /// The CA certificate (what the kubeconfig's
    /// `certificate-authority-data` holds).
    pub cert_pem: String,
    /// The CA's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCa(<redacted>)")
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct BootstrapSecrets {
    /// The node (join) token.
    pub node_token: String,
    /// The admin kubeconfig.
    pub kubeconfig: String,
    /// The cluster's CA, when the runtime made one the platform must hand
    /// to joining servers (the simulated runtime does; real k3s shares its
    /// CA through its own datastore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<ClusterCa>,
}

impl std::fmt::Debug for BootstrapSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootstrapSecrets(<redacted>)")
    }
}

/// One signed handshake event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// Hex of the signed event's canonical CBOR encoding.
    pub event: String,
    /// Only with `system.k3s.handshake.bootstrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BootstrapSecrets>,
}

/// The platform's decision on a submission.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SubmitReply {
    /// Recorded (installing, ready).
    Accepted {
        /// Log sequence of the recorded event.
        seq: u64,
    },
    /// The bootstrap report created a cluster.
    ClusterCreated {
        /// The new cluster.
        cluster_id: String,
        /// `https://[vip]:6443` (or the fallback endpoint).
        api_endpoint: String,
        /// The VIP to add as `--tls-san`, when one was allocated.
        vip: Option<String>,
        /// Flags stamped by the platform (flannel over the SD-WAN …).
        server_flags: Vec<String>,
    },
    /// The join request was granted.
    JoinGranted {
        /// The cluster to join.
        cluster_id: String,
        /// `K3S_URL` / `--server`.
        api_endpoint: String,
        /// The VIP to add as `--tls-san` (servers), when there is one.
        vip: Option<String>,
        /// The join token (secret).
        token: String,
        /// `sha256:<hex>` of the token (reported back with `ready`).
        token_fingerprint: String,
        /// Flags stamped by the platform for joining servers.
        server_flags: Vec<String>,
        /// The cluster's CA, for a joining `k3s-server` of a cluster whose
        /// bootstrap stored one (secret; redacted in `Debug`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_ca: Option<ClusterCa>,
    },
    /// Refused; the agent retries on its next reconcile.
    Rejected {
        /// Why (`cluster_not_found`, `bad_token`, …).
        reason: String,
    },
}

impl std::fmt::Debug for SubmitReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JoinGranted {
                cluster_id,
                api_endpoint,
                ..
            } => f
                .debug_struct("JoinGranted")
                .field("cluster_id", cluster_id)
                .field("api_endpoint", api_endpoint)
                .field("token", &"<redacted>")
                .finish(),
            Self::Accepted { seq } => f.debug_struct("Accepted").field("seq", seq).finish(),
            Self::ClusterCreated {
                cluster_id,
                api_endpoint,
                ..
            } => f
                .debug_struct("ClusterCreated")
                .field("cluster_id", cluster_id)
                .field("api_endpoint", api_endpoint)
                .finish(),
            Self::Rejected { reason } => {
                f.debug_struct("Rejected").field("reason", reason).finish()
            }
        }
    }
}

/// A request the intake refused outright (it could not be attributed or
/// verified), as `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (`bad_signature`, `unknown_credential`, …).
    pub code: String,
    /// What is wrong, for a human.
    pub message: String,
}

/// The envelope every intake answer travels in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    /// The answer.
    Ok(T),
    /// The refusal.
    Error(ErrorBody),
}

/// `sha256:<hex>` of a secret: what events carry instead of it.
pub fn fingerprint(secret: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(secret)))
}
