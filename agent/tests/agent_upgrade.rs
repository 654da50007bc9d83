//! Upgrade orders against a scripted intake: a worker joins, is ordered
//! to upgrade, runs the step once in the background while it keeps
//! beating, submits the signed outcome (again after a restart when it was
//! not answered), rolls back on an injected failure, and takes a rotated
//! join token.

use async_trait::async_trait;
use futures::stream::BoxStream;
use powernode_agent::agent::{Agent, Step};
use powernode_agent::driver::simulated::{SimulatedRuntime, UpgradeBehaviour};
use powernode_agent::identity::Identity;
use powernode_agent::link::{AgentLink, LinkError};
use powernode_agent::state::{Phase, StateStore};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::skills::{StepAction, UpgradePhase};
use powernode_events::{Envelope, EventPayload};
use powernode_protocol::{
    fingerprint, Assignment, EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply,
    JoinTokenUpdate, ModuleVersionPin, Submission, SubmitReply, UpgradeOrder,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const INSTANCE: &str = "inst-1";
const OLD_TOKEN: &str = "old-token-0123456789abcdef";

fn pin(id: &str, k3s: &str) -> ModuleVersionPin {
    ModuleVersionPin {
        module_version_id: id.into(),
        version: id.trim_start_matches("v-k3s-").into(),
        k3s_version: k3s.into(),
    }
}

fn v1() -> ModuleVersionPin {
    pin("v-k3s-1.30.5", "v1.30.5+k3s1")
}

fn v2() -> ModuleVersionPin {
    pin("v-k3s-1.31.0", "v1.31.0+k3s1")
}

fn order() -> UpgradeOrder {
    UpgradeOrder {
        execution_id: "exec-1".into(),
        step: 3,
        action: StepAction::Upgrade,
        module_name: K3sModule::K3sAgent,
        from: Some(v1()),
        to: Some(v2()),
        extra_flags: Vec::new(),
    }
}

/// An intake answering the join handshake of a worker pinned to v1, an
/// optional upgrade order and join token, and recording beats and
/// outcome submissions (`refuse_outcomes`: the link is down for them).
#[derive(Default)]
struct FakeLink {
    order: Mutex<Option<UpgradeOrder>>,
    join_token: Mutex<Option<JoinTokenUpdate>>,
    beats: Mutex<Vec<Heartbeat>>,
    outcomes: Mutex<Vec<(Envelope, bool)>>,
    refuse_outcomes: Mutex<bool>,
}

impl FakeLink {
    fn beats(&self) -> Vec<Heartbeat> {
        self.beats.lock().unwrap().clone()
    }

    /// Outcomes the platform answered.
    fn answered(&self) -> Vec<Envelope> {
        let outcomes = self.outcomes.lock().unwrap();
        outcomes
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(e, _)| e.clone())
            .collect()
    }

    fn attempts(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }
}

#[async_trait]
impl AgentLink for FakeLink {
    async fn enroll(&self, _req: EnrollRequest) -> Result<EnrollReply, LinkError> {
        Ok(EnrollReply {
            instance_id: INSTANCE.into(),
            account_id: "acct-1".into(),
            hostname: "node-a".into(),
        })
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        self.beats.lock().unwrap().push(hb);
        Ok(HeartbeatReply {
            status: "enrolled".into(),
            assignments: vec![Assignment {
                assignment_id: "asg-1".into(),
                module_name: K3sModule::K3sAgent,
                target_cluster_id: Some("c-1".into()),
                version: Some(v1()),
            }],
            cluster_id: Some("c-1".into()),
            bootstrap_server_flags: Vec::new(),
            vips: Vec::new(),
            wireguard: Vec::new(),
            probe_targets: Vec::new(),
            cluster_nodes: Vec::new(),
            upgrade: self.order.lock().unwrap().clone(),
            join_token: self.join_token.lock().unwrap().clone(),
        })
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        let event = Envelope::decode(&hex::decode(&s.event).unwrap()).unwrap();
        match &event.payload {
            EventPayload::RuntimeInstalling(p) => {
                // The pinned release is what is installed.
                assert_eq!(p.version, v1().k3s_version);
                Ok(SubmitReply::Accepted { seq: 1 })
            }
            EventPayload::HandshakeReady(_) => Ok(SubmitReply::Accepted { seq: 1 }),
            EventPayload::HandshakeJoinRequest(_) => Ok(SubmitReply::JoinGranted {
                cluster_id: "c-1".into(),
                api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
                vip: None,
                token: OLD_TOKEN.into(),
                token_fingerprint: fingerprint(OLD_TOKEN.as_bytes()),
                server_flags: Vec::new(),
                cluster_ca: None,
            }),
            EventPayload::ModuleUpgraded(_) | EventPayload::ModuleUpgradeFailed(_) => {
                let refuse = *self.refuse_outcomes.lock().unwrap();
                self.outcomes.lock().unwrap().push((event, !refuse));
                if refuse {
                    Err(LinkError::Unavailable("intake down (test)".into()))
                } else {
                    Ok(SubmitReply::Accepted { seq: 2 })
                }
            }
            other => panic!("unexpected submission {}", other.kind()),
        }
    }

    async fn nudges(&self, _instance_id: &str) -> Option<BoxStream<'static, u64>> {
        None
    }
}

/// An agent on a simulated node saved in `dir`, upgrades taking `pace`.
async fn agent(dir: &Path, link: &Arc<FakeLink>, behaviour: UpgradeBehaviour) -> Agent {
    let runtime = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into())
        .with_upgrade_behaviour(behaviour)
        .with_state_dir(dir)
        .unwrap();
    Agent::start(
        Identity::load_or_create(&dir.join("identity.key")).unwrap(),
        link.clone(),
        Box::new(runtime),
        StateStore::in_dir(dir),
        Some("credential".into()),
    )
    .await
    .unwrap()
    .with_ready_timeout(Duration::from_secs(2))
}

fn pace(ms: u64) -> UpgradeBehaviour {
    UpgradeBehaviour {
        node_upgrade: Duration::from_millis(ms),
        ..UpgradeBehaviour::default()
    }
}

/// Reconciles until the handshake is done.
async fn join(agent: &mut Agent) {
    for _ in 0..10 {
        if agent.state().phase == Phase::Ready {
            return;
        }
        let step = agent.reconcile().await.unwrap();
        assert!(matches!(step, Step::Advanced(_) | Step::Idle), "{step:?}");
    }
    panic!("the agent did not get ready: {:?}", agent.state().phase);
}

/// Runs the agent (10 ms interval) until `done` or 10 s, then stops it.
async fn run_until(agent: Agent, done: impl Fn() -> bool) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(Duration::from_millis(10), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

fn last_report(link: &FakeLink) -> powernode_protocol::AgentReport {
    link.beats()
        .last()
        .and_then(|b| b.report.clone())
        .expect("a report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_runs_once_in_the_background_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let mut a = agent(dir.path(), &link, pace(600)).await;
    join(&mut a).await;
    let report = last_report(&link);
    assert_eq!(
        report.modules[0].module_version_id.as_deref(),
        Some("v-k3s-1.30.5")
    );
    assert_eq!(report.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(report.capabilities.iter().any(|c| c == "upgrades"));

    *link.order.lock().unwrap() = Some(order());
    let beats_before = link.beats().len();
    run_until(a, || !link.answered().is_empty()).await;

    // Heartbeats went on during the upgrade, saying which phase ran.
    let during: Vec<String> = link.beats()[beats_before..]
        .iter()
        .filter_map(|b| b.report.as_ref()?.upgrading.clone())
        .collect();
    assert!(during.len() >= 3, "beats during the upgrade: {during:?}");
    assert!(during.iter().all(|u| u.starts_with("exec-1/3/")));
    assert!(during.iter().any(|u| u == "exec-1/3/drain"), "{during:?}");

    let outcome = link.answered()[0].clone();
    let EventPayload::ModuleUpgraded(up) = &outcome.payload else {
        panic!("expected module.upgraded, got {}", outcome.kind());
    };
    assert!(outcome.signature.is_some(), "signed by the agent");
    assert_eq!((up.execution_id.as_str(), up.step), ("exec-1", 3));
    assert_eq!(up.to_version_id.as_deref(), Some("v-k3s-1.31.0"));
    assert_eq!(up.k3s_version, "v1.31.0+k3s1");
    let phases: Vec<UpgradePhase> = up.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [
            UpgradePhase::Cordon,
            UpgradePhase::Drain,
            UpgradePhase::Upgrade,
            UpgradePhase::WaitReady,
            UpgradePhase::Uncordon
        ]
    );
    assert!(up.phases.iter().all(|p| p.ok));

    // Restarted with the order still in every reply: nothing runs again.
    let a = agent(dir.path(), &link, pace(600)).await;
    let beats = link.beats().len();
    run_until(a, || link.beats().len() >= beats + 20).await;
    assert_eq!(link.attempts(), 1, "the step ran and was submitted once");
    let report = last_report(&link);
    assert_eq!(report.upgrading, None);
    assert_eq!(
        report.modules[0].module_version_id.as_deref(),
        Some("v-k3s-1.31.0")
    );
    assert_eq!(report.modules[0].k3s_version, "v1.31.0+k3s1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_outcome_is_submitted_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let mut a = agent(dir.path(), &link, pace(50)).await;
    join(&mut a).await;
    *link.order.lock().unwrap() = Some(order());
    *link.refuse_outcomes.lock().unwrap() = true;
    run_until(a, || link.attempts() >= 2).await;
    assert!(link.answered().is_empty());
    let first = link.outcomes.lock().unwrap()[0].0.clone();

    // The platform is back and no longer orders the step: the agent still
    // submits the outcome it signed, the same event.
    *link.refuse_outcomes.lock().unwrap() = false;
    *link.order.lock().unwrap() = None;
    let a = agent(dir.path(), &link, pace(50)).await;
    run_until(a, || !link.answered().is_empty()).await;
    let again = &link.answered()[0];
    assert_eq!(again.id, first.id, "the same event, not a second run");
    assert!(matches!(again.payload, EventPayload::ModuleUpgraded(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_failure_rolls_back_to_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let behaviour = UpgradeBehaviour {
        node_upgrade: Duration::from_millis(50),
        fail_upgrade_to: Some("v-k3s-1.31.0".into()),
        fail_rollback: false,
    };
    let mut a = agent(dir.path(), &link, behaviour).await;
    join(&mut a).await;
    *link.order.lock().unwrap() = Some(order());
    let beats = link.beats().len();
    run_until(a, || {
        !link.answered().is_empty() && link.beats().len() > beats + 3
    })
    .await;
    let EventPayload::ModuleUpgradeFailed(failed) = &link.answered()[0].payload else {
        panic!("expected module.upgrade_failed");
    };
    assert_eq!(failed.failed_phase, UpgradePhase::WaitReady);
    assert!(failed.rolled_back);
    assert_eq!(failed.running_version_id.as_deref(), Some("v-k3s-1.30.5"));
    assert_eq!(failed.k3s_version, "v1.30.5+k3s1");
    assert!(failed.reason.contains("not Ready"), "{}", failed.reason);
    let phases: Vec<(UpgradePhase, bool)> = failed.phases.iter().map(|p| (p.phase, p.ok)).collect();
    assert_eq!(
        phases,
        [
            (UpgradePhase::Cordon, true),
            (UpgradePhase::Drain, true),
            (UpgradePhase::Upgrade, true),
            (UpgradePhase::WaitReady, false),
            (UpgradePhase::Rollback, true),
            (UpgradePhase::Uncordon, true),
        ]
    );
    // The node runs its old version, and says so; the error is reported.
    let report = last_report(&link);
    assert_eq!(
        report.modules[0].module_version_id.as_deref(),
        Some("v-k3s-1.30.5")
    );
    assert_eq!(report.modules[0].k3s_version, "v1.30.5+k3s1");
    assert!(report
        .recent_errors
        .iter()
        .any(|e| e.message.contains("wait_ready")));
    let saved = std::fs::read_to_string(dir.path().join("simulated-k3s.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["version"], "v1.30.5+k3s1");
    assert_eq!(saved["cordoned"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_is_not_called_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let behaviour = UpgradeBehaviour {
        node_upgrade: Duration::from_millis(20),
        fail_upgrade_to: Some("v-k3s-1.31.0".into()),
        fail_rollback: true,
    };
    let mut a = agent(dir.path(), &link, behaviour).await;
    join(&mut a).await;
    *link.order.lock().unwrap() = Some(order());
    run_until(a, || !link.answered().is_empty()).await;
    let EventPayload::ModuleUpgradeFailed(failed) = &link.answered()[0].payload else {
        panic!("expected module.upgrade_failed");
    };
    assert!(!failed.rolled_back);
    let last = failed.phases.last().unwrap();
    assert_eq!((last.phase, last.ok), (UpgradePhase::Rollback, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_join_token_is_taken_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let mut a = agent(dir.path(), &link, pace(0)).await;
    join(&mut a).await;
    a.reconcile().await.unwrap();
    assert_eq!(
        last_report(&link).join_token_fingerprint,
        Some(fingerprint(OLD_TOKEN.as_bytes()))
    );
    let new = "new-token-fedcba9876543210";
    *link.join_token.lock().unwrap() = Some(JoinTokenUpdate {
        fingerprint: fingerprint(new.as_bytes()),
        token: new.into(),
        rotate: false,
    });
    a.reconcile().await.unwrap();
    a.reconcile().await.unwrap();
    assert_eq!(
        last_report(&link).join_token_fingerprint,
        Some(fingerprint(new.as_bytes()))
    );
    let saved = std::fs::read_to_string(dir.path().join("simulated-k3s.json")).unwrap();
    assert!(saved.contains(new) && !saved.contains(OLD_TOKEN));
    // Never in a report.
    let beats = serde_json::to_string(&link.beats()).unwrap();
    assert!(!beats.contains(new) && !beats.contains(OLD_TOKEN));
}
