//! `powernode bench lifecycle`: C clusters, each with one server and W
//! workers, through the whole handshake — operator actions over HTTP,
//! simulated agents in this process talking to the intake over NATS, every
//! service consuming the JetStream log — then the API's list latency with
//! all clusters in place, and the raw JetStream ceiling for the same events.

use super::ceiling;
use powernode_actions::accounts::{CreateAccountArgs, CreateOperatorTokenArgs};
use powernode_actions::{Action, ActionName, CreateAccount, CreateOperatorToken, Permission};

use anyhow::{bail, Context};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use powernode_agent::agent::{Agent, Step};
use powernode_agent::driver::simulated::SimulatedRuntime;
use powernode_agent::identity::Identity;
use powernode_agent::link::{AgentLink, LinkError, NatsLink};
use powernode_agent::state::{Phase, StateStore};
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::SharedLog;
use powernode_protocol::{
    EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, Submission, SubmitReply,
};
use powernode_server::node::{start_node_with, NodeExtras};
use powernode_server::services::ServiceName;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `powernode bench lifecycle`.
#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and deletes
    /// its own stream; it refuses to run where `pn.evt.>` is already taken).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Clusters.
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// Workers per cluster (each cluster also has one server).
    #[arg(long, default_value_t = 5)]
    pub workers: usize,
    /// Clusters brought up at the same time. At 4 the join latency is the
    /// platform's own; many more at once saturate two cores and the joins
    /// queue behind each other (64: p99 ~0.5 s, the run ~18 s).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `kubernetes_list_clusters` calls for the latency figure.
    #[arg(long, default_value_t = 200)]
    pub list_calls: usize,
    /// How the log groups concurrent appends (see `powernode up --help`).
    #[arg(long, value_enum, default_value = "adaptive")]
    pub group_commit: powernode_log::jetstream::GroupCommit,
    /// Atomic batches (or lone publishes) awaiting their ack at once.
    #[arg(long, default_value_t = powernode_log::jetstream::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Print one JSON object (otherwise a readable summary).
    #[arg(long)]
    pub json: bool,
    /// Keep the platform up this many seconds after measuring (printing
    /// its API address and operator token), to poke at it by hand.
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
}

const BENCH_STREAM: &str = "PN_BENCH_LIFECYCLE";
const VERSION: &str = "v1.30.5+k3s1";

/// Times join requests: submit of `join_request` → token in hand.
pub(super) struct TimingLink {
    pub(super) inner: NatsLink,
    pub(super) joins_ms: Mutex<Vec<f64>>,
}

#[async_trait]
impl AgentLink for TimingLink {
    async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, LinkError> {
        self.inner.enroll(req).await
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        self.inner.heartbeat(hb).await
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        let start = Instant::now();
        let reply = self.inner.submit(s).await?;
        if matches!(reply, SubmitReply::JoinGranted { .. }) {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            self.joins_ms.lock().expect("joins lock").push(ms);
        }
        Ok(reply)
    }
}

/// The operator side: HTTP calls with one token, on kept-alive connections
/// (as any real API client does).
#[derive(Clone)]
pub(super) struct Operator {
    api: powernode_client::Api,
}

impl Operator {
    pub(super) fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            api: powernode_client::Api::new(url, token)?,
        })
    }

    /// A new account `name` on `node`'s API (made with the node's admin
    /// token) and an operator of it carrying `permissions`, with its token.
    pub(super) async fn for_new_account(
        node: &powernode_server::node::RunningNode,
        name: &str,
        permissions: &[Permission],
    ) -> anyhow::Result<(Self, String)> {
        let api = node.api_addr.context("the API runs here")?.to_string();
        let admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().context("admin token")?)?;
        let admin = Operator::new(&api, admin.trim())?;
        let account = admin
            .act::<CreateAccount>(&CreateAccountArgs { name: name.into() })
            .await?
            .account;
        let token = admin
            .act::<CreateOperatorToken>(&CreateOperatorTokenArgs {
                account_id: account.id,
                permissions: permissions.iter().map(|p| p.as_str().to_string()).collect(),
                ttl_secs: None,
            })
            .await?
            .token;
        Ok((Operator::new(&api, &token)?, token))
    }

    pub(super) async fn call(&self, action: &str, args: Value) -> anyhow::Result<Value> {
        self.api
            .call(action, &args)
            .await
            .with_context(|| action.to_string())
    }

    /// Runs `A` with typed arguments, answering its typed answer.
    pub(super) async fn act<A: Action>(&self, args: &A::Args) -> anyhow::Result<A::Answer> {
        self.api.act::<A>(args).await.with_context(|| A::NAME)
    }

    /// A new SD-WAN network; its id.
    pub(super) async fn network(&self, name: &str) -> anyhow::Result<String> {
        let net = self
            .call(ActionName::CreateNetwork.as_str(), json!({ "name": name }))
            .await?;
        Ok(net["network"]["id"]
            .as_str()
            .context("network id")?
            .to_string())
    }

    /// A new template with `module` assigned (joining `target` when
    /// given); its id.
    pub(super) async fn template_with(
        &self,
        name: &str,
        module: &str,
        target: Option<&str>,
    ) -> anyhow::Result<String> {
        let t = self
            .call(ActionName::CreateTemplate.as_str(), json!({ "name": name }))
            .await?;
        let id = t["template"]["id"]
            .as_str()
            .context("template id")?
            .to_string();
        let mut assign = json!({"template_id": id, "module_name": module});
        if let Some(target) = target {
            assign["config"] = json!({ "target_cluster_id": target });
        }
        self.call(ActionName::AssignModuleToTemplate.as_str(), assign)
            .await?;
        Ok(id)
    }

    /// Node + instance + peer; answers the instance's enrollment credential.
    pub(super) async fn instance(
        &self,
        hostname: &str,
        template: &str,
        net: &str,
    ) -> anyhow::Result<String> {
        let node = self
            .call(
                ActionName::CreateNode.as_str(),
                json!({"hostname": hostname, "node_template_id": template, "memory_mb": 2048}),
            )
            .await?;
        let node_id = node["node"]["id"].as_str().context("node id")?;
        let inst = self
            .call(
                ActionName::ProvisionInstance.as_str(),
                json!({ "node_id": node_id }),
            )
            .await?;
        let id = inst["id"].as_str().context("instance id")?;
        self.call(
            ActionName::AttachPeer.as_str(),
            json!({"network_id": net, "node_instance_id": id}),
        )
        .await?;
        Ok(inst["enrollment_credential"]
            .as_str()
            .context("credential")?
            .to_string())
    }
}

/// Runs one simulated agent until its node is ready.
async fn agent_until_ready(
    link: Arc<TimingLink>,
    credential: String,
    hostname: &str,
) -> anyhow::Result<String> {
    let mut agent = Agent::start(
        Identity::ephemeral(),
        link,
        Box::new(SimulatedRuntime::new(hostname.to_string(), VERSION.into())),
        StateStore::memory(),
        Some(credential),
    )
    .await?;
    for _ in 0..2000 {
        match agent.reconcile().await? {
            Step::Advanced(Phase::Ready) => {
                return agent
                    .state()
                    .cluster_id
                    .clone()
                    .context("ready without a cluster")
            }
            Step::Advanced(_) => {}
            Step::Idle | Step::Refused(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Step::Terminated => bail!("{hostname}: terminated"),
        }
    }
    bail!("{hostname}: not ready after 2000 reconciles")
}

/// Brings up `clusters` clusters of one server and `workers` workers
/// through the handshake, `concurrency` at a time, saying `<label>: n/total
/// clusters ready` every `every`.
pub(super) async fn build_clusters(
    op: &Operator,
    link: &Arc<TimingLink>,
    clusters: usize,
    workers: usize,
    concurrency: usize,
    label: &str,
    every: usize,
) -> anyhow::Result<()> {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures::stream::iter(0..clusters)
        .map(|i| {
            let (op, link, done) = (op.clone(), link.clone(), done.clone());
            async move {
                one_cluster(op, link, i, workers)
                    .await
                    .with_context(|| format!("cluster {i}"))?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % every == 0 || n == clusters {
                    eprintln!("{label}: {n}/{clusters} clusters ready");
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Cluster `i`: one server and `workers` workers, through the whole
/// handshake.
pub(super) async fn one_cluster(
    op: Operator,
    link: Arc<TimingLink>,
    i: usize,
    workers: usize,
) -> anyhow::Result<()> {
    let net = op
        .call(
            ActionName::CreateNetwork.as_str(),
            json!({"name": format!("bench-net-{i}")}),
        )
        .await?;
    let net = net["network"]["id"]
        .as_str()
        .context("network id")?
        .to_string();
    let tmpl = |name: String| {
        let op = op.clone();
        async move {
            let t = op
                .call(ActionName::CreateTemplate.as_str(), json!({ "name": name }))
                .await?;
            anyhow::Ok(
                t["template"]["id"]
                    .as_str()
                    .context("template id")?
                    .to_string(),
            )
        }
    };
    let (server_t, worker_t) = tokio::try_join!(
        tmpl(format!("bench-{i}-server")),
        tmpl(format!("bench-{i}-worker"))
    )?;
    let hostname = format!("bench-{i}-server");
    let credential = op.instance(&hostname, &server_t, &net).await?;
    op.call(
        ActionName::AssignModuleToTemplate.as_str(),
        json!({"template_id": server_t, "module_name": "k3s-server"}),
    )
    .await?;
    let cluster = agent_until_ready(link.clone(), credential, &hostname).await?;
    // Workers join an active cluster; activation follows the server's ready.
    // Polled as an operator would, backing off from 5 ms to 40 ms.
    let mut pause = Duration::from_millis(5);
    for _ in 0..2000 {
        let c = op
            .call(ActionName::GetCluster.as_str(), json!({ "id": cluster }))
            .await?;
        if c["cluster"]["status"] == "active" {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(40));
    }
    op.call(
        ActionName::AssignModuleToTemplate.as_str(),
        json!({"template_id": worker_t, "module_name": "k3s-agent", "config": {"target_cluster_id": cluster}}),
    )
    .await?;
    futures::stream::iter(0..workers)
        .map(|w| {
            let (op, link, worker_t, net) =
                (op.clone(), link.clone(), worker_t.clone(), net.clone());
            async move {
                let hostname = format!("bench-{i}-worker-{w}");
                let credential = op.instance(&hostname, &worker_t, &net).await?;
                agent_until_ready(link, credential, &hostname).await
            }
        })
        .buffer_unordered(workers.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[idx] * 100.0).round() / 100.0
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: LifecycleArgs) -> anyhow::Result<()> {
    if args.clusters == 0 || args.concurrency == 0 {
        bail!("--clusters and --concurrency must be at least 1");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = args.nats_auth.client_auth()?;
    config.stream = BENCH_STREAM.to_string();
    config.group_commit = args.group_commit;
    config.max_in_flight = args.max_in_flight.max(1);
    let js_log = Arc::new(JetStreamLog::connect(config).await?);
    let log: SharedLog = js_log.clone();
    let dir = tempfile::tempdir()?;
    let node = start_node_with(
        log.clone(),
        dir.path(),
        &ServiceName::ALL,
        "127.0.0.1:0".parse()?,
        "bench",
        NodeExtras::default(),
    )
    .await?;
    let api = node.api_addr.context("the API runs here")?.to_string();
    let (op, op_token) =
        Operator::for_new_account(&node, "bench", &[Permission::KubernetesProvision]).await?;
    let link = Arc::new(TimingLink {
        // One connection stands in for every simulated agent: the
        // platform's own user (an agent's grant covers its own subjects only).
        inner: NatsLink::connect_with(
            &args.nats,
            &crate::platform_link_auth(&args.nats_auth.client_auth()?),
        )
        .await?,
        joins_ms: Mutex::default(),
    });

    let first_seq = log.last_seq().await? + 1;
    progress(&format!(
        "bringing up {} clusters × (1 server + {} workers), {} at a time…",
        args.clusters, args.workers, args.concurrency
    ));
    let start = Instant::now();
    build_clusters(
        &op,
        &link,
        args.clusters,
        args.workers,
        args.concurrency,
        "bench",
        100,
    )
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let last_seq = log.last_seq().await?;
    let events = last_seq + 1 - first_seq;

    progress("checking every cluster is active with all its nodes…");
    let listed = op
        .call(ActionName::ListClusters.as_str(), json!({}))
        .await?;
    let clusters = listed["clusters"].as_array().context("clusters")?;
    let active = clusters.iter().filter(|c| c["status"] == "active").count();
    let nodes: u64 = clusters
        .iter()
        .map(|c| c["node_count"].as_u64().unwrap_or(0))
        .sum();
    if active != args.clusters || nodes != (args.clusters * (1 + args.workers)) as u64 {
        bail!(
            "expected {} active clusters with {} nodes, found {active} active with {nodes} nodes",
            args.clusters,
            args.clusters * (1 + args.workers)
        );
    }

    progress(&format!(
        "{} × {}…",
        args.list_calls,
        ActionName::ListClusters
    ));
    let mut list_ms = Vec::with_capacity(args.list_calls);
    for _ in 0..args.list_calls {
        let t = Instant::now();
        op.call(ActionName::ListClusters.as_str(), json!({}))
            .await?;
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    list_ms.sort_by(f64::total_cmp);
    let mut joins = link.joins_ms.lock().expect("joins lock").clone();
    joins.sort_by(f64::total_cmp);

    progress("measuring the raw JetStream ceiling for the same events…");
    let payloads: Vec<Vec<u8>> = super::read_range(&log, first_seq, last_seq)
        .await?
        .into_iter()
        .map(|r| r.bytes.to_vec())
        .collect();
    let raw = ceiling::measure(&args.nats, &args.nats_auth.client_auth()?, &payloads).await?;
    if args.hold_secs > 0 {
        progress(&format!(
            "holding for {} s: POWERNODE_URL=http://{} POWERNODE_TOKEN={}",
            args.hold_secs, api, op_token
        ));
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }
    node.stop().await?;
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;

    let events_per_s = events as f64 / seconds;
    let writer = js_log.writer_stats();
    let out = json!({
        "bench": "lifecycle",
        "clusters": args.clusters,
        "workers_per_cluster": args.workers,
        "nodes": args.clusters * (1 + args.workers),
        "concurrency": args.concurrency,
        "group_commit": format!("{:?}", args.group_commit).to_lowercase(),
        "max_in_flight": args.max_in_flight,
        "seconds": (seconds * 100.0).round() / 100.0,
        "events": events,
        "events_per_s": events_per_s.round(),
        "raw_publish_per_s": raw.publish_per_s.round(),
        "events_ratio": (events_per_s / raw.publish_per_s * 1000.0).round() / 1000.0,
        "joins": joins.len(),
        "join_p50_ms": percentile(&joins, 0.50),
        "join_p99_ms": percentile(&joins, 0.99),
        "api_list_clusters_p50_ms": percentile(&list_ms, 0.50),
        "api_list_clusters_p99_ms": percentile(&list_ms, 0.99),
        "peak_rss_mib": (super::peak_rss_mib() * 10.0).round() / 10.0,
        "writer": {
            "atomic_batches": writer.atomic_batches,
            "batched_appends": writer.batched_appends,
            "single_publishes": writer.single_publishes,
            "refused_batches": writer.refused_batches,
        },
    });
    super::print_figures(&out, args.json)
}
