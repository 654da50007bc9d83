//! The agent's VIP fencing against a fake intake that answers scripted
//! heartbeat replies and records every heartbeat: holding, releasing,
//! stale replies, restarts, signed reports, and nudges.

use async_trait::async_trait;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::StreamExt;
use powernode_agent::agent::{Agent, Step};
use powernode_agent::driver::simulated::{HeldAddresses, SimulatedRuntime};
use powernode_agent::identity::Identity;
use powernode_agent::link::{AgentLink, LinkError};
use powernode_agent::state::StateStore;
use powernode_protocol::{
    EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, HeldVip, Submission, SubmitReply,
    VipDuty,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const INSTANCE: &str = "inst-1";
const VIP_A: &str = "fd00:abcd:1::100";
const VIP_B: &str = "fd00:abcd:2::100";

/// An intake that answers every heartbeat with `reply` and keeps the beats.
#[derive(Default)]
struct FakeLink {
    reply: Mutex<Vec<VipDuty>>,
    status: Mutex<Option<String>>,
    beats: Mutex<Vec<Heartbeat>>,
    nudges: Mutex<Option<mpsc::UnboundedReceiver<u64>>>,
}

impl FakeLink {
    fn answer(&self, vips: Vec<VipDuty>) {
        *self.reply.lock().unwrap() = vips;
    }

    fn beats(&self) -> Vec<Heartbeat> {
        self.beats.lock().unwrap().clone()
    }

    fn last_reported(&self) -> Vec<HeldVip> {
        self.beats().last().expect("a heartbeat").held_vips.clone()
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
            status: self
                .status
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| "enrolled".into()),
            assignments: Vec::new(),
            cluster_id: None,
            bootstrap_server_flags: Vec::new(),
            vips: self.reply.lock().unwrap().clone(),
            wireguard: Vec::new(),
            probe_targets: Vec::new(),
            cluster_nodes: Vec::new(),
            upgrade: None,
            join_token: None,
        })
    }

    async fn submit(&self, _s: Submission) -> Result<SubmitReply, LinkError> {
        Ok(SubmitReply::Rejected {
            reason: "no submissions in this test".into(),
        })
    }

    async fn nudges(&self, instance_id: &str) -> Option<BoxStream<'static, u64>> {
        assert_eq!(instance_id, INSTANCE);
        let rx = self.nudges.lock().unwrap().take()?;
        Some(rx.boxed())
    }
}

fn duty(id: &str, vip: &str, generation: u64, hold: bool) -> VipDuty {
    VipDuty {
        virtual_ip_id: id.into(),
        vip: vip.into(),
        generation,
        hold,
        network_id: None,
    }
}

fn held(id: &str, vip: &str, generation: u64) -> HeldVip {
    HeldVip {
        virtual_ip_id: id.into(),
        vip: vip.into(),
        generation,
    }
}

/// An agent with a fresh simulated driver, its state (and key) in `dir`.
async fn agent(dir: &Path, link: &Arc<FakeLink>) -> (Agent, HeldAddresses) {
    let runtime = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    let addresses = runtime.held_addresses();
    let agent = Agent::start(
        Identity::load_or_create(&dir.join("identity.key")).unwrap(),
        link.clone(),
        Box::new(runtime),
        StateStore::in_dir(dir),
        Some("credential".into()),
    )
    .await
    .unwrap();
    (agent, addresses)
}

#[tokio::test]
async fn holds_a_vip_it_is_told_to_hold_and_reports_it_in_the_next_beat() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    link.answer(vec![
        duty("vip-a", VIP_A, 1, true),
        duty("vip-b", VIP_B, 4, false),
    ]);

    assert_eq!(agent.reconcile().await.unwrap(), Step::Idle);
    // The beat went out before the reply was applied.
    assert!(link.last_reported().is_empty());
    assert_eq!(addresses.generation(VIP_A), Some(1));
    assert_eq!(
        addresses.generation(VIP_B),
        None,
        "a candidate holds nothing"
    );
    assert_eq!(agent.held_vips(), [held("vip-a", VIP_A, 1)]);

    agent.reconcile().await.unwrap();
    assert_eq!(link.last_reported(), [held("vip-a", VIP_A, 1)]);
    assert_eq!(addresses.snapshot().len(), 1);
    let state = StateStore::in_dir(dir.path()).load().unwrap();
    assert_eq!(state.vips["vip-a"].held_generation, Some(1));
    assert_eq!(state.vips["vip-b"].seen_generation, 4);
    assert_eq!(state.vips["vip-b"].held_generation, None);
}

#[tokio::test]
async fn releases_when_a_newer_generation_belongs_to_another_holder() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    link.answer(vec![duty("vip-a", VIP_A, 1, true)]);
    agent.reconcile().await.unwrap();
    assert_eq!(addresses.generation(VIP_A), Some(1));

    link.answer(vec![duty("vip-a", VIP_A, 2, false)]);
    agent.reconcile().await.unwrap();
    assert_eq!(link.last_reported(), [held("vip-a", VIP_A, 1)]);
    assert_eq!(addresses.generation(VIP_A), None);
    assert!(agent.held_vips().is_empty());

    agent.reconcile().await.unwrap();
    assert!(link.last_reported().is_empty());
    let state = StateStore::in_dir(dir.path()).load().unwrap();
    assert_eq!(state.vips["vip-a"].seen_generation, 2);
    assert_eq!(state.vips["vip-a"].held_generation, None);
}

#[tokio::test]
async fn ignores_a_stale_reply_with_an_older_generation() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    link.answer(vec![
        duty("vip-a", VIP_A, 3, true),
        duty("vip-b", VIP_B, 7, false),
    ]);
    agent.reconcile().await.unwrap();

    // A lagging replica: generation 2 of A was someone else's, and
    // generation 6 of B was ours.
    link.answer(vec![
        duty("vip-a", VIP_A, 2, false),
        duty("vip-b", VIP_B, 6, true),
    ]);
    agent.reconcile().await.unwrap();
    assert_eq!(addresses.generation(VIP_A), Some(3));
    assert_eq!(addresses.generation(VIP_B), None);
    assert_eq!(agent.held_vips(), [held("vip-a", VIP_A, 3)]);

    // The same generation again is not stale: it is the current answer.
    link.answer(vec![
        duty("vip-a", VIP_A, 3, true),
        duty("vip-b", VIP_B, 7, true),
    ]);
    agent.reconcile().await.unwrap();
    assert_eq!(addresses.generation(VIP_B), Some(7));
}

#[tokio::test]
async fn releases_a_vip_the_reply_no_longer_lists() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    link.answer(vec![
        duty("vip-a", VIP_A, 1, true),
        duty("vip-b", VIP_B, 1, true),
    ]);
    agent.reconcile().await.unwrap();
    assert_eq!(addresses.snapshot().len(), 2);

    link.answer(vec![duty("vip-b", VIP_B, 1, true)]);
    agent.reconcile().await.unwrap();
    assert_eq!(addresses.generation(VIP_A), None);
    assert_eq!(addresses.generation(VIP_B), Some(1));
    assert_eq!(agent.held_vips(), [held("vip-b", VIP_B, 1)]);

    link.answer(Vec::new());
    agent.reconcile().await.unwrap();
    assert!(addresses.snapshot().is_empty());
    assert!(agent.held_vips().is_empty());
}

#[tokio::test]
async fn never_holds_two_generations_of_one_vip() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    for generation in [1, 2, 5] {
        link.answer(vec![duty("vip-a", VIP_A, generation, true)]);
        agent.reconcile().await.unwrap();
        assert_eq!(agent.held_vips(), [held("vip-a", VIP_A, generation)]);
        assert_eq!(
            addresses.snapshot().into_iter().collect::<Vec<_>>(),
            [(VIP_A.to_string(), generation)]
        );
    }
    agent.reconcile().await.unwrap();
    assert_eq!(link.last_reported(), [held("vip-a", VIP_A, 5)]);
}

#[tokio::test]
async fn the_held_vips_are_reported_signed() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, _addresses) = agent(dir.path(), &link).await;
    link.answer(vec![
        duty("vip-b", VIP_B, 9, true),
        duty("vip-a", VIP_A, 2, true),
    ]);
    agent.reconcile().await.unwrap();
    agent.reconcile().await.unwrap();

    let beat = link.beats().pop().unwrap();
    assert_eq!(beat.instance_id, INSTANCE);
    let mut reported = beat.held_vips.clone();
    reported.sort_by(|a, b| a.virtual_ip_id.cmp(&b.virtual_ip_id));
    assert_eq!(reported, [held("vip-a", VIP_A, 2), held("vip-b", VIP_B, 9)]);

    let public = Identity::load_or_create(&dir.path().join("identity.key"))
        .unwrap()
        .public_key_hex();
    let key: [u8; 32] = hex::decode(public).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&key).unwrap();
    let signature = Signature::from_slice(&hex::decode(&beat.signature).unwrap()).unwrap();
    key.verify(&beat.bytes_to_sign(), &signature)
        .expect("the beat verifies");

    // The signature covers the held VIPs: claiming another generation breaks it.
    let mut forged = beat.clone();
    forged.held_vips[0].generation += 1;
    assert!(key.verify(&forged.bytes_to_sign(), &signature).is_err());
    let mut none = beat.clone();
    none.held_vips.clear();
    assert!(key.verify(&none.bytes_to_sign(), &signature).is_err());
    // And the agent's report: claiming another version breaks it.
    let mut forged = beat.clone();
    forged.report.as_mut().expect("a report").agent_version = "0.0.0".into();
    assert!(key.verify(&forged.bytes_to_sign(), &signature).is_err());
}

#[tokio::test]
async fn a_restart_reports_what_was_held_and_holds_it_again_when_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    {
        let (mut agent, addresses) = agent(dir.path(), &link).await;
        link.answer(vec![
            duty("vip-a", VIP_A, 2, true),
            duty("vip-b", VIP_B, 3, true),
        ]);
        agent.reconcile().await.unwrap();
        assert_eq!(addresses.snapshot().len(), 2);
    }

    // Same state dir, fresh simulated driver (it remembers nothing).
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    assert!(addresses.snapshot().is_empty());
    assert_eq!(
        agent.held_vips(),
        [held("vip-a", VIP_A, 2), held("vip-b", VIP_B, 3)]
    );
    // While the restart happened, B was promoted elsewhere.
    link.answer(vec![
        duty("vip-a", VIP_A, 2, true),
        duty("vip-b", VIP_B, 4, false),
    ]);
    agent.reconcile().await.unwrap();
    assert_eq!(
        link.last_reported(),
        [held("vip-a", VIP_A, 2), held("vip-b", VIP_B, 3)],
        "the first beat after a restart reports what the state says is held"
    );
    assert_eq!(addresses.generation(VIP_A), Some(2), "re-applied");
    assert_eq!(addresses.generation(VIP_B), None);
    assert_eq!(agent.held_vips(), [held("vip-a", VIP_A, 2)]);
}

#[tokio::test]
async fn a_failed_hold_is_not_reported_as_held_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    // The simulated driver refuses an empty address.
    link.answer(vec![duty("vip-a", " ", 1, true)]);
    assert_eq!(agent.reconcile().await.unwrap(), Step::Idle);
    assert!(agent.held_vips().is_empty());
    assert!(addresses.snapshot().is_empty());

    link.answer(vec![duty("vip-a", VIP_A, 1, true)]);
    agent.reconcile().await.unwrap();
    assert_eq!(agent.held_vips(), [held("vip-a", VIP_A, 1)]);
}

#[tokio::test]
async fn a_terminated_instance_releases_before_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (mut agent, addresses) = agent(dir.path(), &link).await;
    link.answer(vec![duty("vip-a", VIP_A, 1, true)]);
    agent.reconcile().await.unwrap();
    *link.status.lock().unwrap() = Some("terminated".into());
    link.answer(Vec::new());
    assert_eq!(agent.reconcile().await.unwrap(), Step::Terminated);
    assert!(addresses.snapshot().is_empty());
    let state = StateStore::in_dir(dir.path()).load().unwrap();
    assert_eq!(state.vips["vip-a"].held_generation, None);
}

#[test]
fn a_state_file_from_before_vip_failover_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state.json"),
        r#"{"instance_id":"inst-1","account_id":"acct-1","hostname":"node-a","plan":null,
            "phase":"enrolled","cluster_id":null,"api_endpoint":null,"token":null,
            "token_fingerprint":null,"last_rejection":null}"#,
    )
    .unwrap();
    let state = StateStore::in_dir(dir.path()).load().unwrap();
    assert_eq!(state.instance_id.as_deref(), Some("inst-1"));
    assert!(state.vips.is_empty());
}

/// Waits (up to 5 s) until `link` has seen `n` heartbeats.
async fn until_beats(link: &FakeLink, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while link.beats().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} heartbeats expected, got {}", link.beats().len()));
}

#[tokio::test]
async fn a_burst_of_nudges_is_one_reconcile_before_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let (tx, rx) = mpsc::unbounded();
    *link.nudges.lock().unwrap() = Some(rx);
    let (agent, _addresses) = agent(dir.path(), &link).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(Duration::from_secs(3600), shutdown.clone()));

    until_beats(&link, 1).await;
    for _ in 0..3 {
        tx.unbounded_send(7).unwrap();
    }
    until_beats(&link, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(link.beats().len(), 2, "three nudges at once, one reconcile");

    tx.unbounded_send(9).unwrap();
    until_beats(&link, 3).await;
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_changed_holding_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    link.answer(vec![duty("vip-a", VIP_A, 1, true)]);
    let (agent, addresses) = agent(dir.path(), &link).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(Duration::from_secs(3600), shutdown.clone()));

    until_beats(&link, 2).await;
    assert_eq!(link.last_reported(), [held("vip-a", VIP_A, 1)]);
    assert_eq!(addresses.generation(VIP_A), Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(link.beats().len(), 2, "nothing changed since: the interval");
    shutdown.cancel();
    task.await.unwrap();
}
