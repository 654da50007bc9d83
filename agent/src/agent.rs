//! The reconcile loop: enroll once, heartbeat, take the module assignment,
//! and walk the handshake one step per reconcile — install, then bootstrap
//! (a `k3s-server` without `target_cluster_id`) or join, then `ready`.
//! A refused step is retried on the next reconcile; `bad token` drops the
//! cached token and asks to join again.
//!
//! Every heartbeat also reports the virtual IPs the agent holds, and every
//! reply's VIP duties are applied at once, whatever the handshake phase
//! ([`crate::vips`] has the fencing rule). A nudge from the platform runs
//! a reconcile without waiting for the interval.
//!
//! With the data plane on ([`Agent::with_data_plane`]) the agent also
//! registers its WireGuard key, applies each reply's WireGuard configs,
//! puts held VIPs on the network's interface, probes the cluster's VIPs
//! and reports applied revisions and probe results in every heartbeat.

use crate::driver::{AgentPlan, Role, Runtime, RuntimeError, ServerPlan};
use crate::identity::{Identity, IdentityError};
use crate::link::{AgentLink, LinkError};
use crate::state::{AgentState, Phase, Plan, StateStore};
use powernode_events::payloads::k3s::{
    HandshakeBootstrap, HandshakeJoinRequest, HandshakeReady, K3sModule, RuntimeInstalling,
};

use powernode_protocol::{
    fingerprint, Assignment, BootstrapSecrets, EnrollRequest, HeartbeatReply, HeldVip, SubmitReply,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod calls;
mod dataplane;
mod fencing;
mod orders;
pub mod report;
pub mod upgrade;

/// The driver, shared with a background upgrade: each call holds it for
/// its duration (one phase at a time).
pub(crate) type SharedRuntime = Arc<std::sync::Mutex<Box<dyn Runtime>>>;
/// The driver's name, k3s version and node name as of its last call
/// (answered while a phase holds the driver).
pub(crate) type SharedInfo = Arc<std::sync::Mutex<(&'static str, String, String)>>;

/// Why a reconcile step failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The intake refused or could not be reached.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The runtime driver failed.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// The state file could not be read or written.
    #[error("state: {0}")]
    State(#[from] std::io::Error),
    /// Signing failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Not enrolled and no credential to enroll with.
    #[error("this agent is not enrolled yet: pass --enroll <credential> (system_provision_instance returned it)")]
    NotEnrolled,
    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),
    /// The platform answered something that does not fit the request.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Moved to a new phase.
    Advanced(Phase),
    /// Nothing to do (no assignment yet, or ready).
    Idle,
    /// The platform refused the step; retried next time.
    Refused(String),
    /// The instance was terminated; the agent stops.
    Terminated,
}

/// One agent.
pub struct Agent {
    identity: Arc<Identity>,
    link: Arc<dyn AgentLink>,
    /// The driver (held by one blocking call at a time).
    runtime: SharedRuntime,
    /// What the driver last said of itself.
    info: SharedInfo,
    /// Recent errors and the upgrade running, for the self report.
    diagnostics: Arc<report::Diagnostics>,
    /// The catalog version running (an upgrade changes it).
    running_pin: Arc<std::sync::Mutex<Option<powernode_protocol::ModuleVersionPin>>>,
    /// Upgrade steps: their record, the one running in this process, and
    /// how long `wait_ready` waits.
    upgrades: upgrade::UpgradeStore,
    upgrade_task: Option<(String, u32, tokio::task::JoinHandle<()>)>,
    ready_timeout: Duration,
    store: StateStore,
    state: AgentState,
    /// Whether this process has fixed its plan yet (a plan is taken from the
    /// first heartbeat that carries an assignment, and kept until restart).
    plan_fixed: bool,
    /// Flags the platform would stamp on a cluster this agent bootstraps
    /// (from the last heartbeat), used for k3s's first start.
    bootstrap_flags: Vec<String>,
    /// After a refused bootstrap or join, the step waits until then
    /// (heartbeats go on), doubling with each refusal: a worker pointed at
    /// a wrong cluster does not flood the log.
    retry_at: Option<std::time::Instant>,
    refusals: u32,
    /// Whether this process has made sure the runtime is installed (after
    /// a restart the state says `installed`, but a fresh driver — the
    /// simulated one, or a node whose k3s was removed — may not be).
    runtime_checked: bool,
    /// The virtual IPs (ids) this process has put on the node through its
    /// driver: after a restart the state says what was held, and a
    /// confirmed hold is applied through the (fresh) driver again.
    vips_applied: BTreeSet<String>,
    /// Whether the last reconcile changed what is held or applied (the
    /// change is then reported by an immediate heartbeat).
    report_now: bool,
    /// The log sequence the last nudge named: the next heartbeat asks for
    /// an answer that includes it.
    after_seq: Option<u64>,
    /// Wakes the loop for an immediate heartbeat (a VIP probe result changed).
    wake: Arc<Notify>,
    /// The data plane, when on.
    data_plane: Option<dataplane::DataPlaneSlot>,
    /// This node's overlay /128 (from the last heartbeat's WireGuard
    /// config): a SAN of the k3s API certificate.
    overlay_ip: Option<String>,
}

/// First wait after a refused bootstrap or join; doubles up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest wait between attempts of a refused step.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

impl Agent {
    /// Loads the persisted state and enrolls when not enrolled yet.
    pub async fn start(
        identity: Identity,
        link: Arc<dyn AgentLink>,
        runtime: Box<dyn Runtime>,
        store: StateStore,
        credential: Option<String>,
    ) -> Result<Self, AgentError> {
        let mut state = store.load()?;
        if state.instance_id.is_none() {
            let credential = credential.ok_or(AgentError::NotEnrolled)?;
            let reply = link
                .enroll(EnrollRequest {
                    credential,
                    public_key: identity.public_key_hex(),
                })
                .await?;
            info!(instance = %reply.instance_id, account = %reply.account_id, "enrolled");
            state.instance_id = Some(reply.instance_id);
            state.account_id = Some(reply.account_id);
            state.hostname = Some(reply.hostname);
            state.phase = Phase::Enrolled;
            store.save(&state)?;
        }
        let info = (runtime.name(), runtime.version(), runtime.node_name());
        let upgrades = upgrade::UpgradeStore::new(store.sibling("upgrade.json"));
        // A step that ended after the state was last saved changed the
        // version running.
        if let Some(record) = upgrades.load().filter(|r| r.outcome.is_some()) {
            state.module_version = record.running;
        }
        let running_pin = state.module_version.clone();
        Ok(Self {
            identity: Arc::new(identity),
            link,
            runtime: Arc::new(std::sync::Mutex::new(runtime)),
            info: Arc::new(std::sync::Mutex::new(info)),
            diagnostics: Arc::default(),
            running_pin: Arc::new(std::sync::Mutex::new(running_pin)),
            upgrades,
            upgrade_task: None,
            ready_timeout: upgrade::DEFAULT_READY_TIMEOUT,
            store,
            state,
            plan_fixed: false,
            bootstrap_flags: Vec::new(),
            retry_at: None,
            refusals: 0,
            runtime_checked: false,
            vips_applied: BTreeSet::new(),
            report_now: false,
            after_seq: None,
            wake: Arc::new(Notify::new()),
            data_plane: None,
            overlay_ip: None,
        })
    }

    /// The state as it stands.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        self.state.instance_id.as_deref().unwrap_or_default()
    }

    /// The virtual IPs the agent holds, at their generations: what the next
    /// heartbeat reports.
    pub fn held_vips(&self) -> Vec<HeldVip> {
        crate::vips::held(&self.state.vips)
    }

    /// Heartbeats, applies the reply's VIP duties, and takes one handshake
    /// step.
    pub async fn reconcile(&mut self) -> Result<Step, AgentError> {
        if self.data_plane_on() {
            self.register_wireguard_key().await;
        }
        let hb = self.heartbeat().await?;
        self.apply_vip_duties(&hb.vips).await?;
        self.take_orders(&hb).await;
        self.observe_cluster(&hb);
        if self.data_plane_on() {
            self.apply_wireguard(hb.wireguard, hb.probe_targets).await;
        }
        if hb.status == "terminated" {
            return Ok(Step::Terminated);
        }
        self.bootstrap_flags = hb.bootstrap_server_flags;
        if !self.plan_fixed {
            self.fix_plan(&hb.assignments)?;
        }
        if self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            return Ok(Step::Idle);
        }
        if !self.runtime_checked {
            let resumed = self.state.phase >= Phase::Installed && self.state.phase != Phase::Ready;
            if let (true, Some(plan)) = (resumed, &self.state.plan) {
                let role = role_of(plan.module);
                let pin = self.state.module_version.clone();
                self.with_runtime(move |rt| rt.install_version(role, pin.as_ref()))
                    .await?;
            }
            self.runtime_checked = true;
        }
        let step = match (self.state.phase, self.state.plan.clone()) {
            (_, None) | (Phase::New, _) | (Phase::Ready, _) => Ok(Step::Idle),
            (Phase::Enrolled, Some(plan)) => self.install(&plan).await,
            (Phase::Installed, Some(plan)) => {
                if plan.module == K3sModule::K3sServer && plan.target_cluster_id.is_none() {
                    self.bootstrap().await
                } else {
                    self.join(&plan).await
                }
            }
            (Phase::Bootstrapped | Phase::Joined, Some(_)) => self.ready().await,
        };
        match &step {
            // A driver failure while joining waits like a refusal.
            Err(AgentError::Runtime(_)) if self.state.phase == Phase::Installed => {
                self.back_off();
            }
            // A refused `ready` (bad token, cluster gone) goes back to
            // joining at once; a refused bootstrap or join waits.
            Ok(Step::Refused(reason))
                if self.state.phase == Phase::Installed && !reason.starts_with("bad_token") =>
            {
                self.state.last_rejection = Some(reason.clone());
                self.back_off();
            }
            Ok(Step::Refused(reason)) => self.state.last_rejection = Some(reason.clone()),
            Ok(Step::Advanced(_)) => {
                self.state.last_rejection = None;
                self.refusals = 0;
                self.retry_at = None;
            }
            _ => {}
        }
        self.state.module_version = self
            .running_pin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.store.save(&self.state)?;
        step
    }

    /// Reconciles until `shutdown` or termination: immediately again after
    /// progress or a change of the VIPs held (so the platform hears of it),
    /// after `interval` or at the next nudge otherwise (a burst of nudges is
    /// one reconcile; a refused join still waits for its back-off).
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut nudges = self.link.nudges(self.instance_id()).await;
        let _probing = self.start_probing(&shutdown);
        let mut reported_change = false;
        loop {
            let mut wait = match self.reconcile().await {
                Ok(Step::Advanced(phase)) => {
                    info!(instance = %self.instance_id(), ?phase, "advanced");
                    Duration::ZERO
                }
                Ok(Step::Idle) => interval,
                Ok(Step::Refused(reason)) => {
                    warn!(instance = %self.instance_id(), %reason, "refused; retrying on the next reconcile");
                    interval
                }
                Ok(Step::Terminated) => {
                    info!(instance = %self.instance_id(), "instance terminated; agent stops");
                    return;
                }
                Err(e) => {
                    warn!(instance = %self.instance_id(), error = %e, "reconcile failed; retrying");
                    self.diagnostics.error(format!("reconcile failed: {e}"));
                    interval
                }
            };
            // Report a changed holding at once — but not twice in a row, so
            // replies that keep contradicting each other cannot spin.
            let changed = std::mem::take(&mut self.report_now);
            if changed && !reported_change {
                wait = Duration::ZERO;
            }
            reported_change = changed && wait.is_zero();
            match fencing::wait(wait, &mut nudges, &self.wake, &shutdown).await {
                None => return,
                Some(seq) => self.after_seq = (seq > 0).then_some(seq),
            }
        }
    }

    async fn heartbeat(&self) -> Result<HeartbeatReply, AgentError> {
        let hb = fencing::signed_heartbeat(
            &self.identity,
            fencing::Report {
                instance_id: self.instance_id(),
                held_vips: self.held_vips(),
                after_seq: self.after_seq,
                wireguard_applied: self.wireguard_applied(),
                vip_probes: self.take_vip_probes(),
                report: Some(self.self_report()),
            },
        );
        Ok(self.link.heartbeat(hb).await?)
    }

    /// Takes the plan from the assignments (a `k3s-server` assignment wins
    /// over `k3s-agent`). When the assignment differs from what the
    /// previous run did (a new `target_cluster_id`), the handshake starts
    /// over from install.
    fn fix_plan(&mut self, assignments: &[Assignment]) -> Result<(), AgentError> {
        let chosen = assignments
            .iter()
            .find(|a| a.module_name == K3sModule::K3sServer)
            .or_else(|| assignments.first());
        let Some(a) = chosen else {
            return Ok(());
        };
        let plan = Plan {
            assignment_id: a.assignment_id.clone(),
            module: a.module_name,
            target_cluster_id: a.target_cluster_id.clone().filter(|t| !t.is_empty()),
            version: a.version.clone(),
        };
        if let Some(old) = &self.state.plan {
            if (old.module, &old.target_cluster_id) != (plan.module, &plan.target_cluster_id)
                && self.state.phase > Phase::Enrolled
            {
                info!(instance = %self.instance_id(), ?old, new = ?plan, "assignment changed since the last run; joining again");
                self.state.phase = if old.module == plan.module {
                    Phase::Installed
                } else {
                    Phase::Enrolled
                };
                self.forget_cluster();
            }
        }
        self.state.plan = Some(plan);
        self.plan_fixed = true;
        self.store.save(&self.state)?;
        Ok(())
    }

    /// Waits before the next attempt of a refused or failed step.
    fn back_off(&mut self) {
        let wait = RETRY_BASE
            .saturating_mul(1 << self.refusals.min(8))
            .min(RETRY_MAX);
        self.refusals += 1;
        self.retry_at = Some(std::time::Instant::now() + wait);
    }

    fn forget_cluster(&mut self) {
        self.state.cluster_id = None;
        self.state.api_endpoint = None;
        self.state.token = None;
        self.state.token_fingerprint = None;
    }

    async fn install(&mut self, plan: &Plan) -> Result<Step, AgentError> {
        // The pinned release, else the driver's default.
        let version = plan
            .version
            .as_ref()
            .map_or_else(|| self.runtime_info().1, |p| p.k3s_version.clone());
        let reply = self
            .submit(
                RuntimeInstalling {
                    instance_id: self.instance_id().to_string(),
                    module_name: plan.module,
                    version,
                },
                None,
            )
            .await?;
        if let SubmitReply::Rejected { reason } = reply {
            return Ok(Step::Refused(reason));
        }
        let role = role_of(plan.module);
        let pin = plan.version.clone();
        self.with_runtime(move |rt| rt.install_version(role, pin.as_ref()))
            .await?;
        *self.running_pin.lock().unwrap_or_else(|e| e.into_inner()) = plan.version.clone();
        self.upgrades.installed(plan.version.clone());
        self.runtime_checked = true;
        self.state.phase = Phase::Installed;
        Ok(Step::Advanced(Phase::Installed))
    }

    async fn bootstrap(&mut self) -> Result<Step, AgentError> {
        let token = self
            .state
            .token
            .clone()
            .unwrap_or_else(crate::driver::simulated::new_token);
        self.state.token = Some(token.clone());
        self.store.save(&self.state)?;
        // Start with the flags the platform will stamp (the pod CIDR cannot
        // change once k3s has started); the VIP is added as --tls-san below.
        let first = ServerPlan {
            cluster_init: true,
            token: token.clone(),
            extra_flags: self.bootstrap_flags.clone(),
            overlay_ip: self.overlay_ip.clone(),
            ..ServerPlan::default()
        };
        let artifacts = self
            .with_runtime(move |rt| {
                rt.start_server(&first)?;
                rt.read_artifacts()
            })
            .await?;
        let version = self.runtime_info().1;
        let report = HandshakeBootstrap {
            instance_id: self.instance_id().to_string(),
            k3s_version: version,
            node_token_fingerprint: fingerprint(artifacts.node_token.as_bytes()),
            kubeconfig_fingerprint: fingerprint(artifacts.kubeconfig.as_bytes()),
        };
        let secrets = BootstrapSecrets {
            node_token: artifacts.node_token.clone(),
            kubeconfig: artifacts.kubeconfig,
            cluster_ca: artifacts.cluster_ca,
        };
        match self.submit(report, Some(secrets)).await? {
            SubmitReply::ClusterCreated {
                cluster_id,
                api_endpoint,
                vip,
                server_flags,
            } => {
                let plan = ServerPlan {
                    cluster_init: true,
                    server_url: None,
                    token: token.clone(),
                    tls_sans: vip.into_iter().collect(),
                    extra_flags: server_flags,
                    overlay_ip: self.overlay_ip.clone(),
                    cluster_ca: None,
                };
                self.with_runtime(move |rt| rt.start_server(&plan)).await?;
                self.state.token_fingerprint = Some(fingerprint(artifacts.node_token.as_bytes()));
                self.state.token = Some(artifacts.node_token);
                self.state.cluster_id = Some(cluster_id);
                self.state.api_endpoint = Some(api_endpoint);
                self.state.phase = Phase::Bootstrapped;
                Ok(Step::Advanced(Phase::Bootstrapped))
            }
            SubmitReply::Rejected { reason } => Ok(Step::Refused(reason)),
            _ => Err(AgentError::Unexpected("bootstrap")),
        }
    }

    async fn join(&mut self, plan: &Plan) -> Result<Step, AgentError> {
        let request = HandshakeJoinRequest {
            instance_id: self.instance_id().to_string(),
            module_name: plan.module,
            target_cluster_id: plan.target_cluster_id.clone(),
        };
        match self.submit(request, None).await? {
            SubmitReply::JoinGranted {
                cluster_id,
                api_endpoint,
                vip,
                token,
                token_fingerprint,
                server_flags,
                cluster_ca,
            } => {
                let (module, overlay_ip) = (plan.module, self.overlay_ip.clone());
                let url = api_endpoint.clone();
                let secret = token.clone();
                self.with_runtime(move |rt| match module {
                    K3sModule::K3sServer => rt.start_server(&ServerPlan {
                        cluster_init: false,
                        server_url: Some(url),
                        token: secret,
                        tls_sans: vip.into_iter().collect(),
                        extra_flags: server_flags,
                        overlay_ip,
                        cluster_ca,
                    }),
                    K3sModule::K3sAgent => rt.start_agent(&AgentPlan {
                        server_url: url,
                        token: secret,
                    }),
                })
                .await?;
                self.state.cluster_id = Some(cluster_id);
                self.state.api_endpoint = Some(api_endpoint);
                self.state.token = Some(token);
                self.state.token_fingerprint = Some(token_fingerprint);
                self.state.phase = Phase::Joined;
                Ok(Step::Advanced(Phase::Joined))
            }
            SubmitReply::Rejected { reason } => Ok(Step::Refused(reason)),
            _ => Err(AgentError::Unexpected("join_request")),
        }
    }

    async fn ready(&mut self) -> Result<Step, AgentError> {
        let joined = self.state.phase == Phase::Joined;
        let report = HandshakeReady {
            instance_id: self.instance_id().to_string(),
            cluster_id: self.state.cluster_id.clone().unwrap_or_default(),
            node_name: self.node_name(),
            k3s_version: self.runtime_info().1,
            token_fingerprint: if joined {
                self.state.token_fingerprint.clone()
            } else {
                None
            },
        };
        match self.submit(report, None).await? {
            SubmitReply::Accepted { .. } => {
                self.state.phase = Phase::Ready;
                Ok(Step::Advanced(Phase::Ready))
            }
            SubmitReply::Rejected { reason } => {
                // `bad_token` (rotated since it was issued) or a cluster that
                // is gone: drop what was cached and ask to join again.
                self.forget_cluster();
                self.state.phase = Phase::Installed;
                Ok(Step::Refused(reason))
            }
            _ => Err(AgentError::Unexpected("ready")),
        }
    }
}

fn role_of(module: K3sModule) -> Role {
    match module {
        K3sModule::K3sServer => Role::Server,
        K3sModule::K3sAgent => Role::Agent,
    }
}
