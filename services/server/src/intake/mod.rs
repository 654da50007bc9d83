//! Agent intake: the only door agent input comes through.
//!
//! Agents are untrusted. Every submission is decoded, attributed (the event's
//! actor is the instance it reports about, in that instance's account),
//! verified against the key the instance enrolled with, checked for
//! freshness, and validated for its kind before the fact is appended —
//! the agent's signed envelope as it is, so every consumer can verify it
//! again. Every agent-reported field is bounded (`limits`), and an agent
//! event's id must be a fresh UUIDv7, so it can never pre-claim the id of a
//! fact a service will record. A refusal of a submission signed by the
//! enrolled key is itself an event (`system.agent.submission_rejected`)
//! and an error answer naming the problem; refusals nobody can be held to
//! (unsigned, unknown instance …) are counted and summarised, one event
//! per window at most (`summary`).
//!
//! The intake runs beside the API (it reads the API's projection) and
//! answers agents with the platform's decision: after appending a bootstrap
//! report or a join request it waits for the provisioner's verdict, then
//! hands over what the agent needs — the join token (and, to a joining
//! server, the cluster CA) comes from the secret store, never from the log.

mod cluster_ca;
mod dataplane;
pub mod follow;
mod heartbeat;
pub mod limits;
mod local;
pub mod nats;
mod summary;
mod token;
mod upgrade;
mod validate;
mod wireguard;

pub use heartbeat::verify_heartbeat;

use crate::liveness::SharedLiveness;
use crate::secrets::{SecretKey, SharedSecrets};
use powernode_events::payloads::fleet::{AgentEnrolled, AgentSubmissionRejected};
use powernode_events::payloads::k3s::JoinRejected;
use powernode_events::{AccountId, Actor, AggregateRef, AggregateType, Envelope, EventPayload};
use powernode_log::{Expect, LogError, SharedLog};
use powernode_projections::fleet::{InstanceStatus, K3sPhase};
use powernode_projections::FleetState;
use powernode_protocol::{
    fingerprint, EnrollReply, EnrollRequest, ErrorBody, Submission, SubmitReply,
};
use powernode_runtime::supervisor::Spawner;
use powernode_runtime::Shared;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;

/// How far a heartbeat's or event's clock may be from ours.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// An intake refusal: code and message, as the agent sees it.
pub type Refusal = ErrorBody;

pub(crate) fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    ErrorBody {
        code: code.to_string(),
        message: message.into(),
    }
}

/// Runs `task`, a helper that outlives the request that started it, under
/// the node's supervisor (`tasks`) — or, for an intake run outside a node
/// (tests), detached.
fn spawn_helper<F>(tasks: Option<&Spawner>, name: impl Into<String>, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match tasks {
        Some(tasks) => tasks.spawn_transient(name, task),
        None => {
            tokio::spawn(task);
        }
    }
}

/// (virtual IP, instance) → (generation, held) last recorded by this intake.
type AppliedSent = HashMap<(String, String), (u64, bool)>;

/// The intake.
#[derive(Clone)]
pub struct Intake {
    log: SharedLog,
    fleet: Shared<FleetState>,
    secrets: SharedSecrets,
    /// When each agent was last heard (shared with the services of this process).
    liveness: SharedLiveness,
    /// VIP holdings recorded lately, so a change is appended once while
    /// the projection catches up: (virtual IP, instance) → (generation, held).
    applied_sent: Arc<Mutex<AppliedSent>>,
    /// Data-path checks appended lately: (virtual IP, generation).
    reachable_sent: Arc<Mutex<std::collections::HashSet<(String, u64)>>>,
    /// Refusals not attributable to a verified sender, counted and summarised.
    unattributed: Arc<summary::Unattributed>,
    /// How long a submission waits for the platform's decision.
    pub decision_timeout: Duration,
    /// Where helpers that outlive a request run (recording VIP holdings,
    /// summarising refusals): the node's supervisor; `None` when the intake
    /// runs outside a node.
    tasks: Option<Spawner>,
}

impl Intake {
    /// Waits (at most `limit`) until the projection has applied everything
    /// the log held when called: a replica that joins the intake's queue
    /// group must not answer agents from an empty or stale view (it would
    /// call enrolled agents unknown and hold up their heartbeats).
    pub async fn caught_up_with_log(&self, limit: Duration) -> bool {
        match self.log.last_seq().await {
            Ok(last) => self.fleet.wait_for(last, limit).await,
            Err(_) => false,
        }
    }

    /// An intake over the API's projection.
    pub fn new(
        log: SharedLog,
        fleet: Shared<FleetState>,
        secrets: SharedSecrets,
        liveness: SharedLiveness,
    ) -> Self {
        Self {
            unattributed: summary::Unattributed::new(log.clone()),
            log,
            fleet,
            secrets,
            liveness,
            applied_sent: Arc::default(),
            reachable_sent: Arc::default(),
            decision_timeout: Duration::from_secs(20),
            tasks: None,
        }
    }

    /// Runs the intake's background helpers under `tasks` (a node's
    /// supervisor): joined at shutdown, and a panic in one stops the node.
    pub fn with_tasks(mut self, tasks: Spawner) -> Self {
        self.tasks = Some(tasks);
        self
    }

    /// Runs `task`, a helper that outlives the request that started it:
    /// see [`spawn_helper`].
    fn spawn_helper<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        spawn_helper(self.tasks.as_ref(), name, task);
    }

    /// When each agent was last heard.
    pub fn liveness(&self) -> &SharedLiveness {
        &self.liveness
    }

    /// How long refusals of unverified submissions are counted before one
    /// summary of them is appended (default: one minute).
    pub fn set_rejection_window(&self, window: Duration) {
        self.unattributed.set_window(window);
    }

    /// Enrollment: the one-time credential binds the agent's key to its
    /// instance. Enrolling again with the same key answers the same; a
    /// different key on a used credential is refused.
    pub async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, Refusal> {
        limits::enroll(&req)?;
        powernode_events::signing::verifying_key_from_hex(&req.public_key)
            .map_err(|e| refusal("bad_key", format!("public_key: {e}")))?;
        let fp = fingerprint(req.credential.as_bytes());
        let (account, instance_id, hostname, existing, status) = {
            let fleet = self.fleet.state.read().await;
            let (account, i) = fleet.instance_by_enrollment(&fp).ok_or_else(|| {
                refusal(
                    "unknown_credential",
                    "no instance was provisioned with this enrollment credential",
                )
            })?;
            let hostname = fleet
                .account(account)
                .and_then(|a| a.nodes.get(&i.node_id))
                .map(|n| n.hostname.clone())
                .unwrap_or_default();
            (
                account.clone(),
                i.id.clone(),
                hostname,
                i.public_key.clone(),
                i.status,
            )
        };
        let reply = EnrollReply {
            instance_id: instance_id.clone(),
            account_id: account.to_string(),
            hostname,
        };
        if status == InstanceStatus::Terminated {
            return Err(refusal(
                "instance_terminated",
                format!("instance {instance_id} is terminated"),
            ));
        }
        match existing {
            Some(key) if key == req.public_key => return Ok(reply),
            Some(_) => {
                let reason = format!(
                    "credential_used: instance {instance_id} already enrolled a different key; provision a new instance"
                );
                self.record_rejection(&account, &instance_id, None, &reason)
                    .await;
                return Err(refusal("credential_used", reason));
            }
            None => {}
        }
        let event = Envelope::new(
            account.clone(),
            Actor::service("intake"),
            AgentEnrolled {
                instance_id: instance_id.clone(),
                public_key: req.public_key,
            },
        );
        let aggregate = AggregateRef::new(AggregateType::Instance, instance_id.clone());
        let guard = self
            .log
            .aggregate_last_seq(&account, &aggregate)
            .await
            .map_err(unavailable)?;
        let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
        let seq = match self.log.append(&event, expect).await {
            Ok(a) => a.seq,
            Err(LogError::Conflict { .. }) => {
                return Err(refusal(
                    "conflict",
                    format!("instance {instance_id} changed while enrolling; retry"),
                ))
            }
            Err(e) => return Err(log_refusal(e)),
        };
        self.caught_up(seq).await?;
        Ok(reply)
    }

    /// One signed handshake event.
    pub async fn submit(&self, s: Submission) -> Result<SubmitReply, Refusal> {
        self.submit_from(None, s).await
    }

    /// [`Self::submit`] for a submission that arrived on an instance's own
    /// subject (`pn.agent.submit.<sender>`): an event about another
    /// instance is refused (`subject_mismatch`) and recorded.
    pub async fn submit_from(
        &self,
        sender: Option<&str>,
        s: Submission,
    ) -> Result<SubmitReply, Refusal> {
        let event = match validate::admit(&self.fleet, &s, sender).await {
            Ok(event) => event,
            Err(rejected) => {
                if let Some((account, instance)) = &rejected.attributed {
                    self.record_rejection(
                        account,
                        instance,
                        rejected.event.as_ref(),
                        &format!("{}: {}", rejected.refusal.code, rejected.refusal.message),
                    )
                    .await;
                } else {
                    tracing::debug!(code = %rejected.refusal.code, "unverified agent submission refused");
                    self.unattributed
                        .count(&rejected.refusal.code, self.tasks.as_ref());
                }
                return Err(rejected.refusal);
            }
        };
        let answer = self.decide(&event, s.secrets).await;
        if let Err(r) = &answer {
            // The log refused the verified event: its id belongs to another record.
            if let (ID_TAKEN, Actor::Agent { instance_id }) = (r.code.as_str(), &event.actor) {
                let reason = format!("{}: {}", r.code, r.message);
                self.record_rejection(&event.account_id, instance_id, Some(&event), &reason)
                    .await;
            }
        }
        answer
    }

    /// What the platform answers an admitted event.
    async fn decide(
        &self,
        event: &Envelope,
        secrets: Option<powernode_protocol::BootstrapSecrets>,
    ) -> Result<SubmitReply, Refusal> {
        match &event.payload {
            EventPayload::RuntimeInstalling(_) => {
                let seq = self.append(event).await?;
                Ok(SubmitReply::Accepted { seq })
            }
            EventPayload::HandshakeBootstrap(p) => {
                self.bootstrap(event, &p.instance_id, secrets).await
            }
            EventPayload::HandshakeJoinRequest(p) => self.join(event, &p.instance_id).await,
            EventPayload::WireguardKeyRegistered(p) => self.register_wireguard_key(event, p).await,
            EventPayload::ModuleUpgraded(_) | EventPayload::ModuleUpgradeFailed(_) => {
                self.upgrade_report(event).await
            }
            EventPayload::HandshakeReady(p) => {
                self.ready(
                    event,
                    &p.instance_id,
                    &p.cluster_id,
                    p.token_fingerprint.as_deref(),
                )
                .await
            }
            _ => unreachable!(
                "validate::admit lets only handshake kinds, key registrations and upgrade reports through"
            ),
        }
    }

    async fn bootstrap(
        &self,
        event: &Envelope,
        instance_id: &str,
        secrets: Option<powernode_protocol::BootstrapSecrets>,
    ) -> Result<SubmitReply, Refusal> {
        let account = &event.account_id;
        let cluster_id = powernode_events::ids::cluster_id_for_bootstrap(event.id);
        // The read guard must not live into the awaits below (the API's
        // consumer needs the write lock to apply what is appended).
        let allowed = validate::may_bootstrap(&*self.fleet.state.read().await, event);
        if let Err(reason) = allowed {
            let rejection = Envelope::new(
                account.clone(),
                Actor::service("intake"),
                powernode_events::payloads::k3s::BootstrapRejected {
                    instance_id: instance_id.to_string(),
                    reason: reason.clone(),
                },
            )
            .caused_by(event);
            self.append(&rejection).await?;
            return Ok(SubmitReply::Rejected { reason });
        }
        let checked =
            validate::bootstrap_secrets(event, secrets).and_then(|s| match &s.cluster_ca {
                Some(ca) => cluster_ca::check(ca, &s.kubeconfig).map(|()| s),
                None => Ok(s),
            });
        let secrets = match checked {
            Ok(s) => s,
            Err(refused) => {
                let reason = format!("{}: {}", refused.code, refused.message);
                self.record_rejection(account, instance_id, Some(event), &reason)
                    .await;
                return Err(refused);
            }
        };
        // Write-once: a cluster's bootstrap secrets are created, never
        // replaced (a re-sent report with other secrets is refused), and a
        // decommissioned cluster's are never written again.
        let decommissioned = self
            .fleet
            .state
            .read()
            .await
            .cluster(account, &cluster_id)
            .is_some_and(|c| {
                c.status == powernode_projections::fleet::ClusterStatus::Decommissioned
            });
        let written = if decommissioned {
            Err(refusal(
                "cluster_decommissioned",
                format!(
                    "cluster {cluster_id} was decommissioned; its secrets are not written again"
                ),
            ))
        } else {
            let ca = secrets.cluster_ca.as_ref().map(cluster_ca::encode);
            let mut all = vec![
                (
                    SecretKey::join_token(account, &cluster_id),
                    secrets.node_token.as_bytes(),
                ),
                (
                    SecretKey::kubeconfig(account, &cluster_id),
                    secrets.kubeconfig.as_bytes(),
                ),
            ];
            if let Some(ca) = &ca {
                all.push((SecretKey::cluster_ca(account, &cluster_id), ca.as_slice()));
            }
            self.put_secret(&all).await
        };
        let created = match written {
            Ok(created) => created,
            Err(refused) => {
                if refused.code != "unavailable" {
                    let reason = format!("{}: {}", refused.code, refused.message);
                    self.record_rejection(account, instance_id, Some(event), &reason)
                        .await;
                }
                return Err(refused);
            }
        };
        // The secrets were written first, so the event never names a
        // missing secret. If the event is not appended, the secrets this
        // call created go again (an identical retry creates them anew).
        let seq = match self.log.append(event, Expect::Any).await {
            Ok(appended) => appended.seq,
            Err(e) => {
                self.forget_secrets(&created).await;
                return Err(log_refusal(e));
            }
        };
        self.caught_up(seq).await?;
        let created = self
            .fleet
            .wait_until(self.decision_timeout, |fleet| {
                let c = fleet.cluster(account, &cluster_id)?;
                let vip = fleet
                    .cluster_virtual_ip(account, &cluster_id)
                    .map(|v| v.vip.to_string());
                Some(SubmitReply::ClusterCreated {
                    cluster_id: c.id.clone(),
                    api_endpoint: c.api_endpoint.clone(),
                    vip,
                    server_flags: c.server_flags.clone(),
                })
            })
            .await;
        created.ok_or_else(|| {
            refusal(
                "decision_timeout",
                format!("the bootstrap report was recorded but cluster {cluster_id} was not created within {:?}; is the provisioner running?", self.decision_timeout),
            )
        })
    }

    async fn join(&self, event: &Envelope, instance_id: &str) -> Result<SubmitReply, Refusal> {
        let account = &event.account_id;
        let t0 = std::time::Instant::now();
        let appended = self
            .log
            .append(event, Expect::Any)
            .await
            .map_err(log_refusal)?;
        self.caught_up(appended.seq).await?;
        let (asked_at, replayed) = (appended.seq, appended.duplicate);
        let t_appended = t0.elapsed();
        let verdict = self
            .fleet
            .wait_until(self.decision_timeout, |fleet| {
                let i = fleet.instance(account, instance_id)?;
                // A replayed request was decided long ago (the instance may
                // even be ready by now): answer from the current state.
                if i.phase_seq <= asked_at && !replayed {
                    return None;
                }
                match i.k3s_phase? {
                    K3sPhase::JoinRejected => Some(Err(i
                        .last_join_rejection
                        .clone()
                        .unwrap_or_else(|| "rejected".into()))),
                    K3sPhase::JoinTokenIssued | K3sPhase::Ready => {
                        let c = fleet.cluster(account, i.cluster_id.as_deref()?)?;
                        let vip = fleet
                            .cluster_virtual_ip(account, &c.id)
                            .filter(|v| v.status == powernode_projections::fleet::VipStatus::Allocated)
                            .map(|v| v.vip.to_string());
                        // Only a joining server gets the CA, never a worker.
                        let server = fleet.cluster_nodes(account, &c.id).iter().any(|n| {
                            n.instance_id == instance_id && n.role == powernode_events::payloads::k3s::NodeRole::ControlPlane
                        });
                        Some(Ok((c.id.clone(), c.api_endpoint.clone(), vip, c.server_flags.clone(), c.join_token_fingerprint.clone(), server)))
                    }
                    _ => None,
                }
            })
            .await
            .ok_or_else(|| {
                refusal(
                    "decision_timeout",
                    format!("the join request was recorded but not decided within {:?}; is the provisioner running?", self.decision_timeout),
                )
            })?;
        tracing::debug!(
            instance = %instance_id,
            appended_and_applied_ms = t_appended.as_secs_f64() * 1000.0,
            decided_ms = t0.elapsed().as_secs_f64() * 1000.0,
            "join request decided"
        );
        let (cluster_id, api_endpoint, vip, server_flags, token_fingerprint, server) = match verdict
        {
            Ok(granted) => granted,
            Err(reason) => return Ok(SubmitReply::Rejected { reason }),
        };
        let token = self
            .get_secret(SecretKey::join_token(account, &cluster_id))
            .await?
            .ok_or_else(|| {
                refusal(
                    "token_missing",
                    format!("cluster {cluster_id} has no join token in the secret store"),
                )
            })?;
        let token = String::from_utf8(token)
            .map_err(|_| refusal("token_missing", "the stored join token is not text"))?;
        let cluster_ca = match server {
            true => self
                .get_secret(SecretKey::cluster_ca(account, &cluster_id))
                .await?
                .map(|bytes| cluster_ca::decode(&bytes, &cluster_id))
                .transpose()?,
            false => None,
        };
        Ok(SubmitReply::JoinGranted {
            cluster_id,
            api_endpoint,
            vip,
            token,
            token_fingerprint,
            server_flags,
            cluster_ca,
        })
    }

    async fn ready(
        &self,
        event: &Envelope,
        instance_id: &str,
        cluster_id: &str,
        token_fp: Option<&str>,
    ) -> Result<SubmitReply, Refusal> {
        let account = &event.account_id;
        let problem = {
            let fleet = self.fleet.state.read().await;
            validate::ready_problem(&fleet, account, instance_id, cluster_id, token_fp)
        };
        if let Some(reason) = problem {
            let EventPayload::HandshakeReady(p) = &event.payload else {
                unreachable!()
            };
            let rejection = Envelope::new(
                account.clone(),
                Actor::service("intake"),
                JoinRejected {
                    instance_id: p.instance_id.clone(),
                    target_cluster_id: Some(cluster_id.to_string()),
                    reason: reason.clone(),
                },
            )
            .caused_by(event);
            self.append(&rejection).await?;
            return Ok(SubmitReply::Rejected { reason });
        }
        let seq = self.append(event).await?;
        Ok(SubmitReply::Accepted { seq })
    }

    /// Appends and waits until the projection has it.
    async fn append(&self, event: &Envelope) -> Result<u64, Refusal> {
        let seq = self
            .log
            .append(event, Expect::Any)
            .await
            .map_err(log_refusal)?
            .seq;
        self.caught_up(seq).await?;
        Ok(seq)
    }

    async fn caught_up(&self, seq: u64) -> Result<(), Refusal> {
        if self.fleet.wait_for(seq, self.decision_timeout).await {
            Ok(())
        } else {
            Err(refusal(
                "unavailable",
                format!("recorded at seq {seq} but not applied yet; retry"),
            ))
        }
    }

    /// Creates each secret where there is none (write-once): the keys this
    /// call created. A key holding another value refuses the lot with
    /// `secrets_exist` — nothing is overwritten, and what this call had
    /// created is removed again; one holding the same value (a retry) is
    /// left as it is.
    async fn put_secret(
        &self,
        secrets: &[(Result<SecretKey, crate::secrets::SecretError>, &[u8])],
    ) -> Result<Vec<SecretKey>, Refusal> {
        let mut created = Vec::new();
        for (key, value) in secrets {
            let outcome = match key {
                Ok(key) => self.secrets.create(key, value).await.map(|o| (key, o)),
                Err(e) => {
                    self.forget_secrets(&created).await;
                    return Err(refusal("invalid_arguments", e.to_string()));
                }
            };
            match outcome {
                Ok((key, crate::secrets::Created::Created)) => created.push(key.clone()),
                Ok((_, crate::secrets::Created::AlreadyEqual)) => {}
                Ok((key, crate::secrets::Created::ExistsDifferent)) => {
                    self.forget_secrets(&created).await;
                    return Err(refusal(
                        "secrets_exist",
                        format!("{key} already holds a different secret; a cluster's bootstrap secrets are written once"),
                    ));
                }
                Err(e) => {
                    self.forget_secrets(&created).await;
                    return Err(refusal("unavailable", e.to_string()));
                }
            }
        }
        Ok(created)
    }

    /// Removes secrets this intake created for a bootstrap that was not
    /// recorded (best effort: logged when it fails).
    async fn forget_secrets(&self, created: &[SecretKey]) {
        for key in created {
            if let Err(e) = self.secrets.delete(key).await {
                warn!(%key, error = %e, "could not remove a secret of an unrecorded bootstrap");
            }
        }
    }

    async fn get_secret(
        &self,
        key: Result<SecretKey, crate::secrets::SecretError>,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let key = key.map_err(|e| refusal("invalid_arguments", e.to_string()))?;
        self.secrets
            .get(&key)
            .await
            .map_err(|e| refusal("unavailable", e.to_string()))
    }

    /// Records a refused submission as a fact (never a silent drop).
    async fn record_rejection(
        &self,
        account: &AccountId,
        instance_id: &str,
        event: Option<&Envelope>,
        reason: &str,
    ) {
        warn!(instance = %instance_id, %reason, "agent submission refused");
        let rejection = Envelope::new(
            account.clone(),
            Actor::service("intake"),
            AgentSubmissionRejected {
                instance_id: instance_id.to_string(),
                kind: event.map(|e| e.kind().to_string()),
                event_id: event.map(|e| e.id.to_string()),
                reason: reason.to_string(),
            },
        );
        if let Err(e) = self.log.append(&rejection, Expect::Any).await {
            warn!(error = %e, "could not record the refusal");
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    refusal("unavailable", e.to_string())
}

/// The refusal code of an event whose id belongs to a different record.
const ID_TAKEN: &str = "id_taken";

/// What a failed append means for the agent.
fn log_refusal(e: LogError) -> Refusal {
    match e {
        LogError::IdTaken { .. } => refusal(ID_TAKEN, e.to_string()),
        LogError::Conflict { .. } => refusal("conflict", format!("{e}; retry")),
        e => unavailable(e),
    }
}
