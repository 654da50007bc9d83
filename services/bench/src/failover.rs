//! `powernode bench failover`: V clusters of 3 servers each, every agent a
//! simulated agent in this process talking to the intake over NATS; the VIP
//! holders are killed in waves (their agents stop heartbeating), every
//! proposal is approved, and the remaining VIPs are migrated by draining
//! their holders. All figures come from the log's own timestamps:
//!
//! * `detect_*`: holder's last heartbeat + threshold → `vip_holder_silent` stored;
//! * `propose_p99_ms`: silence stored → proposal stored;
//! * `promote_p99_ms`: approve request sent → the new holder's agent holds
//!   the new generation (seen in the heartbeat it sends right after);
//!   `promote_recorded_p99_ms` to the `virtual_ip.applied` event stored;
//! * `drain_migrate_p99_ms`: drain request sent → new holder holds it (and
//!   `drain_recorded_p99_ms` to the event stored);
//! * `split_brain_observed`: moments two agents held one VIP at the same
//!   generation, replayed from the `applied` events.

use super::ceiling;
use super::lifecycle::{percentile, Operator};
use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use powernode_actions::ActionName;
use powernode_agent::agent::Agent;
use powernode_agent::driver::simulated::SimulatedRuntime;
use powernode_agent::identity::Identity;
use powernode_agent::link::{AgentLink, LinkError, NatsLink};
use powernode_agent::state::StateStore;
use powernode_events::{Envelope, EventPayload};
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::SharedLog;
use powernode_protocol::{
    EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, Submission, SubmitReply,
};
use powernode_server::node::{start_node_with, NodeExtras};
use powernode_server::services::failover::{FailoverConfig, FailoverPolicy};
use powernode_server::services::ServiceName;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Arguments of `powernode bench failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and deletes its own stream).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Virtual IPs (clusters of 3 servers each).
    #[arg(long, default_value_t = 500)]
    pub vips: usize,
    /// Silence threshold in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub threshold_ms: u64,
    /// Agents' heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Waves the holders are killed in.
    #[arg(long, default_value_t = 5)]
    pub waves: usize,
    /// Share of the VIPs migrated by drain instead of failover (0-1).
    #[arg(long, default_value_t = 0.2)]
    pub drain_share: f64,
    /// Approvals sent at the same time (each is an operator's HTTP call;
    /// `promote_*` counts from the moment a call is sent).
    #[arg(long, default_value_t = 32)]
    pub approve_concurrency: usize,
    /// Clusters brought up at the same time.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_FAILOVER";
const VERSION: &str = "v1.30.5+k3s1";

/// Records each instance's last successful heartbeat, and when an agent
/// first reported holding a VIP at generation 2 or later (it applied it
/// just before sending that heartbeat).
struct BeatLink {
    inner: NatsLink,
    last_beat: Mutex<HashMap<String, DateTime<Utc>>>,
    applied_at: Mutex<HashMap<String, DateTime<Utc>>>,
}

#[async_trait]
impl AgentLink for BeatLink {
    async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, LinkError> {
        self.inner.enroll(req).await
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        let id = hb.instance_id.clone();
        let sent = Utc::now();
        {
            let mut applied = self.applied_at.lock().expect("applied lock");
            for h in hb.held_vips.iter().filter(|h| h.generation >= 2) {
                applied.entry(h.virtual_ip_id.clone()).or_insert(sent);
            }
        }
        let reply = self.inner.heartbeat(hb).await?;
        self.last_beat.lock().expect("beats lock").insert(id, sent);
        Ok(reply)
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        self.inner.submit(s).await
    }

    async fn nudges(&self, instance_id: &str) -> Option<futures::stream::BoxStream<'static, u64>> {
        self.inner.nudges(instance_id).await
    }
}

/// One running agent.
struct Running {
    instance_id: String,
    stop: CancellationToken,
}

/// One cluster: its VIP and its three servers' agents.
struct BenchCluster {
    vip_id: String,
    agents: Vec<Running>,
}

async fn spawn_agent(
    link: Arc<BeatLink>,
    credential: String,
    hostname: String,
    interval: Duration,
) -> anyhow::Result<Running> {
    let agent = Agent::start(
        Identity::ephemeral(),
        link,
        Box::new(SimulatedRuntime::new(hostname, VERSION.into())),
        StateStore::memory(),
        Some(credential),
    )
    .await?;
    let instance_id = agent.instance_id().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(agent.run(interval, stop.clone()));
    Ok(Running { instance_id, stop })
}

async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

async fn one_cluster(
    op: &Operator,
    link: Arc<BeatLink>,
    i: usize,
    interval: Duration,
) -> anyhow::Result<BenchCluster> {
    let net = op.network(&format!("fo-net-{i}")).await?;
    let boot_t = op
        .template_with(&format!("fo-{i}-boot"), "k3s-server", None)
        .await?;
    let cred = op.instance(&format!("fo-{i}-s0"), &boot_t, &net).await?;
    let first = spawn_agent(link.clone(), cred, format!("fo-{i}-s0"), interval).await?;
    let cluster_id = wait_until("the bootstrap", Duration::from_secs(120), || async {
        let i = op
            .call(ActionName::ListInstances.as_str(), json!({}))
            .await?;
        Ok(i["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["id"] == first.instance_id.as_str()))
            .and_then(|x| x["cluster_id"].as_str().map(str::to_string)))
    })
    .await?;
    wait_until("activation", Duration::from_secs(120), || async {
        let c = op
            .call(ActionName::GetCluster.as_str(), json!({ "id": cluster_id }))
            .await?;
        Ok((c["cluster"]["status"] == "active").then_some(()))
    })
    .await?;
    let join_t = op
        .template_with(&format!("fo-{i}-join"), "k3s-server", Some(&cluster_id))
        .await?;
    let mut agents = vec![first];
    for s in 1..3 {
        let host = format!("fo-{i}-s{s}");
        let cred = op.instance(&host, &join_t, &net).await?;
        agents.push(spawn_agent(link.clone(), cred, host, interval).await?);
    }
    // Ready: 3 nodes, the VIP applied by the holder at generation 1, two candidates.
    let vip_id = wait_until(
        "3 servers and an applied VIP",
        Duration::from_secs(120),
        || async {
            let v = op
                .call(
                    ActionName::GetVirtualIp.as_str(),
                    json!({ "cluster_id": cluster_id }),
                )
                .await?;
            let v = &v["virtual_ip"];
            let ready = v["failover_candidates"]
                .as_array()
                .is_some_and(|c| c.len() == 2)
                && v["applied_generations"]
                    .as_object()
                    .is_some_and(|a| a.len() == 1);
            Ok(ready.then(|| v["id"].as_str().unwrap_or_default().to_string()))
        },
    )
    .await?;
    Ok(BenchCluster { vip_id, agents })
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    if args.vips == 0 || args.waves == 0 {
        bail!("--vips and --waves must be at least 1");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = args.nats_auth.client_auth()?;
    config.stream = BENCH_STREAM.to_string();
    let log: SharedLog = Arc::new(JetStreamLog::connect(config).await?);
    let dir = tempfile::tempdir()?;
    let failover = FailoverConfig {
        silence_threshold_ms: args.threshold_ms,
        policy: FailoverPolicy::RequireApproval,
        cooldown_secs: 0,
        ..FailoverConfig::default()
    };
    let node = start_node_with(
        log.clone(),
        dir.path(),
        &ServiceName::ALL,
        "127.0.0.1:0".parse()?,
        "bench",
        NodeExtras {
            failover,
            ..NodeExtras::default()
        },
    )
    .await?;
    let api = node.api_addr.context("the API runs here")?.to_string();
    let admin = std::fs::read_to_string(node.admin_token_file.as_ref().context("admin token")?)?;
    let op = Operator::new(&api, admin.trim())?;
    let link = Arc::new(BeatLink {
        // One connection stands in for every simulated agent: the
        // platform's own user (an agent's grant covers its own subjects only).
        inner: NatsLink::connect_with(
            &args.nats,
            &crate::platform_link_auth(&args.nats_auth.client_auth()?),
        )
        .await?,
        last_beat: Mutex::default(),
        applied_at: Mutex::default(),
    });
    let interval = Duration::from_millis(args.heartbeat_ms.max(10));
    progress(&format!("bringing up {} clusters × 3 servers…", args.vips));
    let started = Instant::now();
    let clusters: Vec<BenchCluster> = futures::stream::iter(0..args.vips)
        .map(|i| {
            let (op, link) = (&op, link.clone());
            async move {
                one_cluster(op, link, i, interval)
                    .await
                    .with_context(|| format!("cluster {i}"))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect()
        .await?;
    progress(&format!("up in {:.1} s", started.elapsed().as_secs_f64()));
    let first_seq = log.last_seq().await? + 1;

    // Failover: kill holders in waves, approve every proposal.
    let drained = ((args.vips as f64) * args.drain_share.clamp(0.0, 1.0)).round() as usize;
    let (drain_set, fail_set) = clusters.split_at(drained);
    let mut approve_sent: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut approval_vip: HashMap<String, String> = HashMap::new();
    let mut killed_at_beat: HashMap<String, DateTime<Utc>> = HashMap::new();
    let wave_size = fail_set.len().div_ceil(args.waves).max(1);
    for (w, wave) in fail_set.chunks(wave_size).enumerate() {
        progress(&format!("wave {}: killing {} holders", w + 1, wave.len()));
        for c in wave {
            c.agents[0].stop.cancel();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let beats = link.last_beat.lock().expect("beats lock");
            for c in wave {
                if let Some(t) = beats.get(&c.agents[0].instance_id) {
                    killed_at_beat.insert(c.vip_id.clone(), *t);
                }
            }
        }
        let wave_vips: HashSet<&str> = wave.iter().map(|c| c.vip_id.as_str()).collect();
        let approvals = wait_until(
            "proposals for the wave",
            Duration::from_secs(120),
            || async {
                let list = op
                    .call(ActionName::ListApprovals.as_str(), json!({}))
                    .await?;
                let mine: Vec<(String, String)> = list["approvals"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter(|a| {
                                a["virtual_ip_id"]
                                    .as_str()
                                    .is_some_and(|v| wave_vips.contains(v))
                            })
                            .map(|a| {
                                (
                                    a["id"].as_str().unwrap_or_default().to_string(),
                                    a["virtual_ip_id"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((mine.len() == wave.len()).then_some(mine))
            },
        )
        .await?;
        approval_vip.extend(approvals.iter().cloned());
        futures::stream::iter(approvals)
            .map(|(id, vip)| {
                let op = &op;
                async move {
                    let at = Utc::now();
                    op.call(ActionName::Approve.as_str(), json!({ "approval_id": id }))
                        .await?;
                    anyhow::Ok((vip, at))
                }
            })
            .buffer_unordered(args.approve_concurrency.max(1))
            .try_for_each(|(vip, at)| {
                approve_sent.insert(vip, at);
                futures::future::ready(Ok(()))
            })
            .await?;
    }
    // Drain the rest.
    let mut drain_sent: HashMap<String, DateTime<Utc>> = HashMap::new();
    progress(&format!("draining {} holders", drain_set.len()));
    for c in drain_set {
        let at = Utc::now();
        op.call(
            ActionName::DrainInstance.as_str(),
            json!({ "id": c.agents[0].instance_id }),
        )
        .await?;
        drain_sent.insert(c.vip_id.clone(), at);
    }
    // Wait until every VIP is applied at generation 2 by its new holder.
    let all: Vec<&BenchCluster> = clusters.iter().collect();
    wait_until(
        "every VIP at generation 2, applied",
        Duration::from_secs(180),
        || async {
            let mut done = 0;
            for c in &all {
                let v = op
                    .call(ActionName::GetVirtualIp.as_str(), json!({ "id": c.vip_id }))
                    .await?;
                let v = &v["virtual_ip"];
                let holder = v["holder_peer_id"].as_str().unwrap_or_default();
                if v["generation"] == 2 && v["applied_generations"][holder] == 2 {
                    done += 1;
                }
            }
            Ok((done == all.len()).then_some(()))
        },
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();

    // Figures from the log.
    progress("reading the log…");
    let last_seq = log.last_seq().await?;
    let records = super::read_range(&log, first_seq, last_seq).await?;
    let threshold = chrono::Duration::milliseconds(args.threshold_ms as i64);
    let (mut detect, mut propose, mut promote_logged, mut drain_logged) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    // Agent side: request sent → the new holder's agent holds generation 2.
    let (mut promote, mut drain) = (Vec::new(), Vec::new());
    for (vip, at) in link.applied_at.lock().expect("applied lock").iter() {
        if let Some(t) = approve_sent.get(vip) {
            promote.push(ms(*at - *t));
        }
        if let Some(t) = drain_sent.get(vip) {
            drain.push(ms(*at - *t));
        }
    }
    let mut silent_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    // Where a promotion's time goes: approve sent → granted stored →
    // promotion stored → the new holder's agent holds it.
    let (mut to_granted, mut to_promoted, mut to_held) = (Vec::new(), Vec::new(), Vec::new());
    let mut granted_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    let applied_at = link.applied_at.lock().expect("applied lock").clone();
    // vip → generation → peers holding it now.
    let mut holding: HashMap<String, BTreeMap<u64, HashSet<String>>> = HashMap::new();
    let mut split_brain = 0u64;
    for r in &records {
        let Ok(e) = Envelope::decode(&r.bytes) else {
            continue;
        };
        match &e.payload {
            EventPayload::VipHolderSilent(p) => {
                if let Some(beat) = killed_at_beat.get(&p.virtual_ip_id) {
                    detect.push(ms(r.stored_at - (*beat + threshold)));
                }
                silent_at.insert(p.virtual_ip_id.clone(), r.stored_at);
            }
            EventPayload::ApprovalGranted(p) => {
                let vip = approval_vip.get(&p.approval_id);
                if let Some((vip, sent)) = vip.and_then(|v| approve_sent.get(v).map(|t| (v, t))) {
                    to_granted.push(ms(r.stored_at - *sent));
                    granted_at.insert(vip.clone(), r.stored_at);
                }
            }
            EventPayload::VirtualIpPromoted(p) => {
                if let Some(g) = granted_at.get(&p.virtual_ip_id) {
                    to_promoted.push(ms(r.stored_at - *g));
                    if let Some(held) = applied_at.get(&p.virtual_ip_id) {
                        to_held.push(ms(*held - r.stored_at));
                    }
                }
            }
            EventPayload::FailoverProposed(p) => {
                if let Some(s) = silent_at.get(&p.virtual_ip_id) {
                    propose.push(ms(r.stored_at - *s));
                }
            }
            EventPayload::VirtualIpApplied(p) => {
                let gens = holding.entry(p.virtual_ip_id.clone()).or_default();
                if p.held {
                    for peers in gens.values_mut() {
                        peers.remove(&p.peer_id);
                    }
                    let peers = gens.entry(p.generation).or_default();
                    peers.insert(p.peer_id.clone());
                    if peers.len() > 1 {
                        split_brain += 1;
                    }
                    if p.generation == 2 {
                        if let Some(t) = approve_sent.get(&p.virtual_ip_id) {
                            promote_logged.push(ms(r.stored_at - *t));
                        }
                        if let Some(t) = drain_sent.get(&p.virtual_ip_id) {
                            drain_logged.push(ms(r.stored_at - *t));
                        }
                    }
                } else if let Some(peers) = gens.get_mut(&p.generation) {
                    peers.remove(&p.peer_id);
                }
            }
            _ => {}
        }
    }
    for v in [
        &mut detect,
        &mut propose,
        &mut promote,
        &mut drain,
        &mut promote_logged,
        &mut drain_logged,
        &mut to_granted,
        &mut to_promoted,
        &mut to_held,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.bytes.to_vec()).collect();
    let raw = ceiling::measure(&args.nats, &args.nats_auth.client_auth()?, &payloads).await?;
    for c in &clusters {
        for a in &c.agents {
            a.stop.cancel();
        }
    }
    node.stop().await?;
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;
    let out: Value = json!({
        "bench": "failover",
        "vips": args.vips,
        "agents": args.vips * 3,
        "threshold_ms": args.threshold_ms,
        "approve_concurrency": args.approve_concurrency,
        "heartbeat_ms": args.heartbeat_ms,
        "failovers": promote.len(),
        "drains": drain.len(),
        "seconds": (seconds * 100.0).round() / 100.0,
        "events": records.len(),
        "detect_p50_ms": percentile(&detect, 0.50),
        "detect_p99_ms": percentile(&detect, 0.99),
        "propose_p99_ms": percentile(&propose, 0.99),
        "promote_p50_ms": percentile(&promote, 0.50),
        "promote_p99_ms": percentile(&promote, 0.99),
        "drain_migrate_p50_ms": percentile(&drain, 0.50),
        "drain_migrate_p99_ms": percentile(&drain, 0.99),
        "promote_recorded_p99_ms": percentile(&promote_logged, 0.99),
        "promote_steps_ms": {
            "approve_to_granted_stored": [percentile(&to_granted, 0.50), percentile(&to_granted, 0.99)],
            "granted_to_promotion_stored": [percentile(&to_promoted, 0.50), percentile(&to_promoted, 0.99)],
            "promotion_to_agent_holding": [percentile(&to_held, 0.50), percentile(&to_held, 0.99)],
        },
        "drain_recorded_p99_ms": percentile(&drain_logged, 0.99),
        "split_brain_observed": split_brain,
        "raw_publish_per_s": raw.publish_per_s.round(),
        "peak_rss_mib": (super::peak_rss_mib() * 10.0).round() / 10.0,
    });
    super::print_figures(&out, args.json)
}
