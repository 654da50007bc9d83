//! The harness: a nats-server, the API node (projection and agent
//! intake) and a skills node that can be stopped and started again on its
//! checkpoints; an account with enrolled hand-driven agents, and a module
//! catalog.

use anyhow::{anyhow, ensure, Context as _};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::skills::*;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Expect, Filter, SharedLog};
use powernode_protocol::{subjects, EnrollRequest, Heartbeat};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::skills::SkillsConfig;
use powernode_server::services::ServiceName;
use powernode_tests::lifecycle_support::{
    call, request, str_at, wait_until, ManualAgent, Operator, OPERATOR_PERMISSIONS,
};
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// The version the nodes run.
pub const FROM: &str = "v-k3s-agent-1.30.5";
/// The version they are upgraded to.
pub const TO: &str = "v-k3s-agent-1.31.0";

/// A platform whose skills service can be restarted.
pub struct World {
    pub log: SharedLog,
    pub op: Operator,
    pub agents: Vec<ManualAgent>,
    pub skills: Option<RunningNode>,
    pub config: SkillsConfig,
    api: Option<RunningNode>,
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        for n in [&self.api, &self.skills].into_iter().flatten() {
            n.shutdown.cancel();
        }
    }
}

impl World {
    /// The platform, `n` enrolled agents on one template, and the catalog.
    pub async fn start(n: usize, config: SkillsConfig) -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let log: SharedLog =
            Arc::new(JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?);
        let dir = tempfile::Builder::new().prefix("pn-skills-").tempdir()?;
        let api = start_node_with(
            log.clone(),
            &dir.path().join("api"),
            &[ServiceName::Api],
            "127.0.0.1:0".parse()?,
            "api",
            NodeExtras::default(),
        )
        .await?;
        let port = api.api_addr.context("the API runs here")?.port();
        let admin = std::fs::read_to_string(api.admin_token_file.as_ref().context("admin token")?)?
            .trim()
            .to_string();
        let a = call(
            port,
            &admin,
            "system_create_account",
            &json!({ "name": "skills" }),
        )
        .await
        .map_err(|e| anyhow!("system_create_account: {e}"))?;
        let account_id = str_at(&a, "/account/id")?;
        let t = call(
            port,
            &admin,
            "system_create_operator_token",
            &json!({ "account_id": account_id, "permissions": OPERATOR_PERMISSIONS }),
        )
        .await
        .map_err(|e| anyhow!("system_create_operator_token: {e}"))?;
        let op = Operator {
            port,
            token: str_at(&t, "/token")?,
            account_id,
        };
        let mut w = Self {
            log,
            op,
            agents: Vec::new(),
            skills: None,
            config,
            api: Some(api),
            nats,
            dir,
        };
        let template = w.op.template("workers").await?;
        w.op.assign(&template, "k3s-agent", Some("cluster-elsewhere"))
            .await?;
        for i in 0..n {
            let agent = w.enroll(&format!("worker-{i}"), &template).await?;
            w.agents.push(agent);
        }
        for version in ["1.30.5", "1.31.0"] {
            w.append(ModuleVersionCreated {
                module_version_id: K3sModule::K3sAgent.version_id(version),
                module_id: K3sModule::K3sAgent.module_id().into(),
                module_name: K3sModule::K3sAgent,
                version: version.into(),
                k3s_version: format!("v{version}+k3s1"),
            })
            .await?;
        }
        w.start_skills().await?;
        Ok(w)
    }

    /// Provisions an instance on `template` and enrolls a fresh key for it.
    async fn enroll(&self, hostname: &str, template: &str) -> anyhow::Result<ManualAgent> {
        let (instance_id, credential) = self.op.provision(hostname, template, 2048).await?;
        let client = powernode_tests::nats::connect(&self.nats.url()).await?;
        let identity = powernode_agent::identity::Identity::ephemeral();
        let body = serde_json::to_vec(&EnrollRequest {
            credential,
            public_key: identity.public_key_hex(),
        })?;
        let reply = request(&client, subjects::ENROLL, body).await?;
        ensure!(
            reply["ok"]["instance_id"] == instance_id.as_str(),
            "enroll: {reply}"
        );
        Ok(ManualAgent {
            identity,
            instance_id,
            account: AccountId::new(self.op.account_id.clone())?,
            client,
        })
    }

    /// Starts the skills service (on its checkpoints, when it ran before).
    pub async fn start_skills(&mut self) -> anyhow::Result<()> {
        let node = start_node_with(
            self.log.clone(),
            &self.dir.path().join("skills"),
            &[ServiceName::Skills],
            "127.0.0.1:0".parse()?,
            "skills",
            NodeExtras {
                skills: self.config.clone(),
                ..NodeExtras::default()
            },
        )
        .await?;
        self.skills = Some(node);
        Ok(())
    }

    /// Stops the skills service (it checkpoints on the way out).
    pub async fn stop_skills(&mut self) -> anyhow::Result<()> {
        match self.skills.take() {
            Some(n) => n.stop().await,
            None => Ok(()),
        }
    }

    /// Appends `payload` as the API would.
    pub async fn append(&self, payload: impl Into<EventPayload>) -> anyhow::Result<u64> {
        let e = Envelope::new(
            AccountId::new(self.op.account_id.clone())?,
            Actor::service("api"),
            payload,
        );
        Ok(self.log.append(&e, Expect::Any).await?.seq)
    }

    /// Starts execution `id`: the agents upgraded two per batch.
    pub async fn execute(&self, id: &str, max_failures: u32) -> anyhow::Result<()> {
        let steps = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| PlanStep {
                step: i as u32,
                batch: i as u32 / 2,
                action: StepAction::Upgrade,
                instance_id: a.instance_id.clone(),
                node_name: format!("worker-{i}"),
                role: K3sModule::K3sAgent,
                cluster_id: None,
                from_version_id: Some(FROM.into()),
                to_version_id: Some(TO.into()),
                extra_flags: vec![],
                vip_moves: vec![],
            })
            .collect();
        self.append(SkillExecutionStarted {
            execution_id: id.into(),
            skill: SkillName::RollingModuleUpgrade,
            inputs: Box::default(),
            scope: "template/workers".into(),
            steps,
            max_consecutive_failures: max_failures,
        })
        .await?;
        Ok(())
    }

    /// The account's events whose kind starts with `prefix`, in log order.
    pub async fn events(&self, prefix: &str) -> anyhow::Result<Vec<Envelope>> {
        let filter = Filter {
            account: Some(AccountId::new(self.op.account_id.clone())?),
            kind_prefix: Some(prefix.into()),
        };
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let page = self.log.read(from, 1000, &filter).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                out.push(Envelope::decode(&r.bytes)?);
            }
            from = last + 1;
        }
        Ok(out)
    }

    /// Waits until the steps `steps` of execution `id` have started.
    pub async fn wait_started(&self, id: &str, steps: &[u32]) -> anyhow::Result<()> {
        wait_until(
            WAIT,
            &format!("steps {steps:?} of {id} started"),
            || async {
                let started = self.started(id).await.map_err(|e| e.to_string())?;
                if steps.iter().all(|s| started.contains(s)) {
                    Ok(())
                } else {
                    Err(format!("started: {started:?}"))
                }
            },
        )
        .await
    }

    /// The steps of `id` started, in log order (a step started twice is
    /// listed twice).
    pub async fn started(&self, id: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .events("system.skill.execution.step_started")
            .await?
            .into_iter()
            .filter_map(|e| match e.payload {
                EventPayload::SkillStepStarted(p) if p.execution_id == id => Some(p.step),
                _ => None,
            })
            .collect())
    }

    /// Waits for the end of execution `id` (completed or aborted).
    pub async fn wait_finished(&self, id: &str) -> anyhow::Result<EventPayload> {
        wait_until(WAIT, &format!("execution {id} finished"), || async {
            let all = self
                .events("system.skill.execution.")
                .await
                .map_err(|e| e.to_string())?;
            all.iter()
                .find_map(|e| match &e.payload {
                    EventPayload::SkillExecutionCompleted(p) if p.execution_id == id => {
                        Some(e.payload.clone())
                    }
                    EventPayload::SkillExecutionAborted(p) if p.execution_id == id => {
                        Some(e.payload.clone())
                    }
                    _ => None,
                })
                .ok_or_else(|| format!("{} execution events so far", all.len()))
        })
        .await
    }
}

/// A signed heartbeat of `a`; the answer.
pub async fn beat(a: &ManualAgent) -> anyhow::Result<Value> {
    let mut hb = Heartbeat {
        instance_id: a.instance_id.clone(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        held_vips: Vec::new(),
        after_seq: None,
        wireguard_applied: Vec::new(),
        vip_probes: Vec::new(),
        report: None,
        signature: String::new(),
    };
    hb.signature = a.identity.sign_bytes(&hb.bytes_to_sign());
    request(&a.client, subjects::HEARTBEAT, serde_json::to_vec(&hb)?).await
}

/// `a`'s signed report that step `step` of `id` worked; the answer.
pub async fn report_ok(a: &ManualAgent, id: &str, step: u32) -> anyhow::Result<Value> {
    let e = a.signed(ModuleUpgraded {
        execution_id: id.into(),
        step,
        instance_id: a.instance_id.clone(),
        module_name: K3sModule::K3sAgent,
        from_version_id: Some(FROM.into()),
        to_version_id: Some(TO.into()),
        k3s_version: "v1.31.0+k3s1".into(),
        phases: vec![PhaseReport {
            phase: UpgradePhase::Upgrade,
            ok: true,
            at_ms: chrono::Utc::now().timestamp_millis(),
            detail: None,
        }],
    })?;
    a.submit(&e, None).await
}

/// `a`'s signed report that step `step` of `id` failed and was rolled back.
pub async fn report_failed(a: &ManualAgent, id: &str, step: u32) -> anyhow::Result<Value> {
    let e = a.signed(ModuleUpgradeFailed {
        execution_id: id.into(),
        step,
        instance_id: a.instance_id.clone(),
        module_name: K3sModule::K3sAgent,
        to_version_id: Some(TO.into()),
        failed_phase: UpgradePhase::WaitReady,
        reason: "node not ready within 60 s".into(),
        rolled_back: true,
        running_version_id: Some(FROM.into()),
        k3s_version: "v1.30.5+k3s1".into(),
        phases: vec![],
    })?;
    a.submit(&e, None).await
}
