//! The agent with its data plane on, against a fake intake and a fake
//! kernel: the WireGuard key (0600, reused), its registration (retried
//! after a refusal, once accepted never again), configs applied from a
//! heartbeat reply and reported in the next signed beat, held VIPs on the
//! network's interface, a restarted old holder removing the address, and
//! probe results reported once.

use powernode_agent::wireguard::simulated as wireguard_fake;

use async_trait::async_trait;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures::stream::BoxStream;
use powernode_agent::agent::Agent;
use powernode_agent::driver::simulated::SimulatedRuntime;
use powernode_agent::identity::Identity;
use powernode_agent::link::{AgentLink, LinkError};
use powernode_agent::probe::Prober;
use powernode_agent::state::StateStore;
use powernode_agent::wireguard::{DataPlane, KeyError, WireguardKey};
use powernode_events::wireguard::{WireguardConfig, WireguardPeer};
use powernode_events::{Envelope, EventPayload};
use powernode_protocol::{
    EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, ProbeTarget, Submission, SubmitReply,
    VipDuty, VipProbe,
};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wireguard_fake::{Kernel, Link, Shared};

const INSTANCE: &str = "inst-1";
const IF: &str = "wg-sdwan-prod";
const NET: &str = "net-1";
const VIP: &str = "fd00:abcd::100";
const ENDPOINT: &str = "10.99.0.1:51820";

/// An intake with scripted submit answers and a settable heartbeat reply.
#[derive(Default)]
struct FakeLink {
    submit_answers: Mutex<VecDeque<SubmitReply>>,
    submissions: Mutex<Vec<Envelope>>,
    reply: Mutex<Option<HeartbeatReply>>,
    beats: Mutex<Vec<Heartbeat>>,
}

impl FakeLink {
    fn answer(&self, vips: Vec<VipDuty>, wireguard: Vec<WireguardConfig>) {
        *self.reply.lock().unwrap() = Some(HeartbeatReply {
            status: "enrolled".into(),
            assignments: Vec::new(),
            cluster_id: None,
            bootstrap_server_flags: Vec::new(),
            vips,
            wireguard,
            probe_targets: Vec::new(),
            cluster_nodes: Vec::new(),
            upgrade: None,
            join_token: None,
        });
    }

    fn probe(&self, targets: Vec<ProbeTarget>) {
        if let Some(reply) = self.reply.lock().unwrap().as_mut() {
            reply.probe_targets = targets;
        }
    }

    fn beats(&self) -> Vec<Heartbeat> {
        self.beats.lock().unwrap().clone()
    }

    fn submissions(&self) -> Vec<Envelope> {
        self.submissions.lock().unwrap().clone()
    }

    fn last_beat(&self) -> Heartbeat {
        self.beats.lock().unwrap().last().expect("a beat").clone()
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
        Ok(self
            .reply
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(HeartbeatReply {
                status: "enrolled".into(),
                assignments: Vec::new(),
                cluster_id: None,
                bootstrap_server_flags: Vec::new(),
                vips: Vec::new(),
                wireguard: Vec::new(),
                probe_targets: Vec::new(),
                cluster_nodes: Vec::new(),
                upgrade: None,
                join_token: None,
            }))
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        let bytes = hex::decode(&s.event).unwrap();
        self.submissions
            .lock()
            .unwrap()
            .push(Envelope::decode(&bytes).unwrap());
        Ok(self
            .submit_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SubmitReply::Accepted { seq: 1 }))
    }

    async fn nudges(&self, _instance_id: &str) -> Option<BoxStream<'static, u64>> {
        None
    }
}

fn kernel_with_wireguard() -> Shared {
    Arc::new(Mutex::new(Kernel {
        has_wireguard: true,
        ..Kernel::default()
    }))
}

/// An agent whose state and keys live in `dir`, its data plane on the
/// fake `kernel`.
async fn agent(dir: &Path, link: &Arc<FakeLink>, kernel: &Shared) -> Agent {
    let runtime = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    let (runner, _) = wireguard_fake::runner(kernel, dir);
    let key = WireguardKey::load_or_create(dir).unwrap();
    let plane = DataPlane::new(key, ENDPOINT.into(), Box::new(runner)).with_socket_dir(dir);
    Agent::start(
        Identity::load_or_create(&dir.join("identity.key")).unwrap(),
        link.clone(),
        Box::new(runtime),
        StateStore::in_dir(dir),
        Some("credential".into()),
    )
    .await
    .unwrap()
    .with_data_plane(plane, Duration::from_millis(1000))
}

fn config(revision: u64, peer_ips: &[&str]) -> WireguardConfig {
    WireguardConfig {
        network_id: NET.into(),
        interface: IF.into(),
        address: "fd00:abcd::1".parse().unwrap(),
        listen_port: 51820,
        revision,
        forwarding: false,
        peers: vec![WireguardPeer {
            id: "peer-2".into(),
            public_key: powernode_events::wireguard::encode_base64(&[2; 32]),
            endpoint: Some("10.99.0.2:51820".into()),
            persistent_keepalive: Some(25),
            allowed_ips: peer_ips.iter().map(|i| i.parse().unwrap()).collect(),
        }],
    }
}

fn duty(generation: u64, hold: bool) -> VipDuty {
    VipDuty {
        virtual_ip_id: "vip-a".into(),
        vip: VIP.into(),
        generation,
        hold,
        network_id: Some(NET.into()),
    }
}

fn verifies(identity_dir: &Path, beat: &Heartbeat) -> bool {
    let identity = Identity::load_or_create(&identity_dir.join("identity.key")).unwrap();
    let key: [u8; 32] = hex::decode(identity.public_key_hex())
        .unwrap()
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&key).unwrap();
    let sig: [u8; 64] = hex::decode(&beat.signature).unwrap().try_into().unwrap();
    key.verify(&beat.bytes_to_sign(), &Signature::from_bytes(&sig))
        .is_ok()
}

#[test]
fn the_key_is_made_once_with_mode_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = WireguardKey::load_or_create(dir.path()).unwrap();
    let file = dir.path().join("wireguard.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let private = std::fs::read_to_string(&file).unwrap();
    assert_ne!(private.trim(), first.public_key());
    powernode_events::wireguard::check_public_key(first.public_key()).unwrap();
    assert!(
        !format!("{first:?}").contains(private.trim()),
        "Debug shows no private key"
    );
    let again = WireguardKey::load_or_create(dir.path()).unwrap();
    assert_eq!(again.public_key(), first.public_key());
    std::fs::write(&file, "not a key\n").unwrap();
    assert!(matches!(
        WireguardKey::load_or_create(dir.path()),
        Err(KeyError::Malformed(_))
    ));
}

#[tokio::test]
async fn registration_is_retried_after_a_refusal_and_kept_once_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    link.submit_answers
        .lock()
        .unwrap()
        .push_back(SubmitReply::Rejected {
            reason: "public_key already registered by another instance".into(),
        });
    let kernel = kernel_with_wireguard();
    let mut agent = agent(dir.path(), &link, &kernel).await;
    let public_key = WireguardKey::load_or_create(dir.path())
        .unwrap()
        .public_key()
        .to_owned();

    agent.reconcile().await.unwrap();
    let subs = link.submissions();
    assert_eq!(subs.len(), 1);
    match &subs[0].payload {
        EventPayload::WireguardKeyRegistered(p) => {
            assert_eq!(p.instance_id, INSTANCE);
            assert_eq!(p.public_key, public_key);
            assert_eq!(p.endpoint, ENDPOINT);
        }
        other => panic!("expected a key registration, got {other:?}"),
    }
    let identity = Identity::load_or_create(&dir.path().join("identity.key")).unwrap();
    let vk = powernode_events::signing::verifying_key_from_hex(&identity.public_key_hex()).unwrap();
    subs[0].verify(&vk).expect("the registration is signed");
    assert!(agent.state().wireguard.is_none());

    // Within the back-off: not again.
    agent.reconcile().await.unwrap();
    assert_eq!(link.submissions().len(), 1);
    tokio::time::sleep(Duration::from_millis(550)).await;
    agent.reconcile().await.unwrap();
    assert_eq!(link.submissions().len(), 2);
    let saved = StateStore::in_dir(dir.path()).load().unwrap();
    let registered = saved.wireguard.expect("accepted registration persisted");
    assert_eq!(
        (registered.public_key.as_str(), registered.endpoint.as_str()),
        (public_key.as_str(), ENDPOINT)
    );
    agent.reconcile().await.unwrap();
    assert_eq!(link.submissions().len(), 2, "registered once");

    // A restart with the same key and endpoint does not register again.
    drop(agent);
    let mut again = agent_again(dir.path(), &link, &kernel, ENDPOINT).await;
    again.reconcile().await.unwrap();
    assert_eq!(link.submissions().len(), 2);
    // A new endpoint is registered.
    drop(again);
    let mut moved = agent_again(dir.path(), &link, &kernel, "10.99.0.7:51820").await;
    moved.reconcile().await.unwrap();
    assert_eq!(link.submissions().len(), 3);
}

async fn agent_again(dir: &Path, link: &Arc<FakeLink>, kernel: &Shared, endpoint: &str) -> Agent {
    let runtime = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    let (runner, _) = wireguard_fake::runner(kernel, dir);
    let key = WireguardKey::load_or_create(dir).unwrap();
    let plane = DataPlane::new(key, endpoint.into(), Box::new(runner)).with_socket_dir(dir);
    Agent::start(
        Identity::load_or_create(&dir.join("identity.key")).unwrap(),
        link.clone(),
        Box::new(runtime),
        StateStore::in_dir(dir),
        None,
    )
    .await
    .unwrap()
    .with_data_plane(plane, Duration::from_millis(1000))
}

#[tokio::test]
async fn configs_are_applied_and_the_revision_reported_in_a_signed_beat() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let kernel = kernel_with_wireguard();
    let mut agent = agent(dir.path(), &link, &kernel).await;
    link.answer(vec![duty(1, true)], vec![config(5, &["fd00:abcd::2/128"])]);
    agent.reconcile().await.unwrap();
    {
        let k = kernel.lock().unwrap();
        let link = &k.links[IF];
        assert!(link.up);
        assert_eq!(link.peers.len(), 1);
        assert!(link.addrs.contains("fd00:abcd::1/128"));
        assert!(
            link.addrs.contains(&format!("{VIP}/128")),
            "the held VIP is on the interface"
        );
    }
    assert_eq!(agent.wireguard_applied()[0].revision, 5);
    agent.reconcile().await.unwrap();
    let beat = link.last_beat();
    assert_eq!(beat.wireguard_applied.len(), 1);
    assert_eq!(
        (
            beat.wireguard_applied[0].network_id.as_str(),
            beat.wireguard_applied[0].revision
        ),
        (NET, 5)
    );
    assert!(verifies(dir.path(), &beat), "signed over bytes_to_sign");

    // A newer generation belongs to another holder: the address goes and
    // the VIP is routed to the peer that holds it now.
    link.answer(
        vec![duty(2, false)],
        vec![config(6, &["fd00:abcd::2/128", "fd00:abcd::100/128"])],
    );
    agent.reconcile().await.unwrap();
    let k = kernel.lock().unwrap();
    assert!(!k.links[IF].addrs.contains(&format!("{VIP}/128")));
    assert!(k.links[IF]
        .routes
        .contains(&("-6".into(), format!("{VIP}/128"))));
}

#[tokio::test]
async fn a_restarted_old_holder_removes_the_address_it_no_longer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let kernel = kernel_with_wireguard();
    let mut agent = agent(dir.path(), &link, &kernel).await;
    link.answer(vec![duty(1, true)], vec![config(5, &["fd00:abcd::2/128"])]);
    agent.reconcile().await.unwrap();
    assert!(kernel.lock().unwrap().links[IF]
        .addrs
        .contains(&format!("{VIP}/128")));
    drop(agent); // killed; the interface and its address stay

    // While it was away, the VIP was promoted elsewhere.
    link.answer(
        vec![duty(2, false)],
        vec![config(7, &["fd00:abcd::2/128", "fd00:abcd::100/128"])],
    );
    let mut back = agent_again(dir.path(), &link, &kernel, ENDPOINT).await;
    back.reconcile().await.unwrap();
    let k = kernel.lock().unwrap();
    assert!(!k.links[IF].addrs.contains(&format!("{VIP}/128")));
    assert!(back.held_vips().is_empty());
}

#[tokio::test]
async fn a_restart_over_an_address_the_state_forgot_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let kernel = kernel_with_wireguard();
    kernel.lock().unwrap().links.insert(IF.into(), {
        let mut l = Link {
            up: true,
            ..Link::default()
        };
        l.addrs.insert(format!("{VIP}/128"));
        l
    });
    let mut agent = agent(dir.path(), &link, &kernel).await;
    link.answer(vec![duty(3, false)], vec![config(9, &["fd00:abcd::2/128"])]);
    agent.reconcile().await.unwrap();
    assert!(!kernel.lock().unwrap().links[IF]
        .addrs
        .contains(&format!("{VIP}/128")));
}

#[tokio::test]
async fn probe_results_are_reported_once_and_a_change_wakes_the_agent() {
    let wake = Arc::new(tokio::sync::Notify::new());
    let prober = Prober::new(wake.clone());
    let target = ProbeTarget {
        virtual_ip_id: "vip-a".into(),
        vip: VIP.into(),
        generation: 2,
        holder_instance_id: "inst-2".into(),
    };
    let result = |at: i64, by: &str| VipProbe {
        virtual_ip_id: "vip-a".into(),
        vip: VIP.into(),
        reached: true,
        answered_by: Some(by.into()),
        generation: Some(2),
        probed_at_ms: at,
    };
    assert!(!prober.record(result(1, "inst-2")), "not a target yet");
    prober.set_targets(vec![target.clone()]);
    assert!(prober.record(result(10, "inst-2")));
    assert!(!prober.record(result(20, "inst-2")), "same answer");
    assert_eq!(prober.take_unreported(), vec![result(20, "inst-2")]);
    assert!(prober.take_unreported().is_empty());
    assert!(
        prober.record(result(30, "inst-3")),
        "another holder answered"
    );
    assert_eq!(prober.take_unreported(), vec![result(30, "inst-3")]);
    prober.set_targets(Vec::new());
    assert!(prober.take_unreported().is_empty());
    // The stored wake-up permit: the agent's loop would run at once.
    let woke = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
    assert!(woke.is_ok());
}

#[tokio::test]
async fn a_vip_nobody_answers_for_is_reported_unreached() {
    let client = powernode_agent::probe::client(Duration::from_millis(300)).unwrap();
    let target = ProbeTarget {
        virtual_ip_id: "vip-z".into(),
        // Documentation prefix: routed nowhere.
        vip: "2001:db8::dead".into(),
        generation: 1,
        holder_instance_id: "inst-9".into(),
    };
    let started = std::time::Instant::now();
    let probe = powernode_agent::probe::probe(&client, &target).await;
    assert!(!probe.reached);
    assert_eq!((probe.answered_by, probe.generation), (None, None));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout holds"
    );
}

#[tokio::test]
async fn the_running_agent_probes_its_targets_and_reports_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let kernel = kernel_with_wireguard();
    link.answer(Vec::new(), vec![config(1, &["fd00:abcd::2/128"])]);
    link.probe(vec![ProbeTarget {
        virtual_ip_id: "vip-z".into(),
        vip: "2001:db8::dead".into(),
        generation: 1,
        holder_instance_id: "inst-9".into(),
    }]);
    let runtime = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    let (runner, _) = wireguard_fake::runner(&kernel, dir.path());
    let key = WireguardKey::load_or_create(dir.path()).unwrap();
    let plane = DataPlane::new(key, ENDPOINT.into(), Box::new(runner)).with_socket_dir(dir.path());
    let agent = Agent::start(
        Identity::load_or_create(&dir.path().join("identity.key")).unwrap(),
        link.clone(),
        Box::new(runtime),
        StateStore::in_dir(dir.path()),
        Some("credential".into()),
    )
    .await
    .unwrap()
    .with_data_plane(plane, Duration::from_millis(200));
    let stop = tokio_util::sync::CancellationToken::new();
    // A long interval: only a wake-up makes the beat that carries the probe.
    let running = tokio::spawn(agent.run(Duration::from_secs(30), stop.clone()));
    let started = std::time::Instant::now();
    let probed = loop {
        if let Some(beat) = link.beats().into_iter().find(|b| !b.vip_probes.is_empty()) {
            break beat;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no probe reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(probed.vip_probes[0].virtual_ip_id, "vip-z");
    assert!(!probed.vip_probes[0].reached);
    assert_eq!(probed.wireguard_applied.len(), 1);
    assert!(verifies(dir.path(), &probed));
    stop.cancel();
    running.await.unwrap();
}
