//! Running services in this process: open the log and the checkpoint store,
//! start the consumers (and the HTTP API), stop cleanly on Ctrl-C / SIGTERM.
//!
//! Every task of a node runs under one [`Supervisor`]: named, joined at
//! shutdown, and the first one to fail, panic or end early stops the node
//! with an error naming it ([`RunningNode::wait`]).

use crate::api::{router, ApiState};
use crate::intake::Intake;
use crate::services::{run_service, ServiceContext, ServiceName};
use anyhow::Context;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::{GroupCommit, JetStreamConfig, JetStreamLog};
use powernode_log::nats::connect::ClientAuth;
use powernode_log::nats::PlatformCreds;
use powernode_log::SharedLog;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::supervisor::{Spawner, Supervisor};
use powernode_runtime::Shared;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long a node's tasks have to stop after shutdown before they are
/// aborted and named in the node's error (a consumer writes its last
/// checkpoint in this time; the HTTP server lets open requests finish).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Which log to use, and where local state lives.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// NATS URL of a JetStream server (e.g. nats://127.0.0.1:4222). Without it
    /// the embedded log in --data-dir is used.
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: Option<String>,
    /// Local state: the embedded log and the services' checkpoints (the
    /// CLI's global `--data-dir`, set by the command that runs the node).
    #[arg(skip = PathBuf::from("./.powernode"))]
    pub data_dir: PathBuf,
    /// JetStream stream name.
    #[arg(long, env = "POWERNODE_STREAM", default_value = powernode_log::jetstream::DEFAULT_STREAM)]
    pub stream: String,
    /// JetStream replicas for the stream (3 on a 3-node cluster).
    #[arg(long, env = "POWERNODE_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How concurrent appends are grouped: `adaptive` (per wave, whichever
    /// of an atomic batch and pipelined publishes has measured cheaper on
    /// this server), or always `atomic` batches (one disk flush per batch;
    /// wins with `sync_interval: always`) or `pipelined` publishes (win on
    /// servers that do not sync each write).
    #[arg(
        long,
        env = "POWERNODE_GROUP_COMMIT",
        value_enum,
        default_value = "adaptive"
    )]
    pub group_commit: GroupCommit,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// The key secrets are sealed with at rest (32 bytes, mode 0600,
    /// created when absent; never inside --data-dir). Default:
    /// `$XDG_CONFIG_HOME/powernode/secrets.key` or `~/.config/powernode/secrets.key`.
    #[arg(long, env = crate::secrets::seal::ENV_KEY_FILE)]
    pub secrets_key_file: Option<PathBuf>,
    /// Sealing the log (where the API runs).
    #[command(flatten)]
    pub seal: crate::sealer::SealArgs,
}

impl LogArgs {
    /// The NATS credentials and TLS settings these arguments name.
    pub fn client_auth(&self) -> anyhow::Result<ClientAuth> {
        self.nats_auth.client_auth()
    }
}

/// Opens the log the arguments select.
pub async fn open_log(args: &LogArgs) -> anyhow::Result<SharedLog> {
    Ok(match &args.nats {
        Some(url) => {
            let mut config = JetStreamConfig::new(url);
            config.stream = args.stream.clone();
            config.replicas = args.replicas;
            config.group_commit = args.group_commit;
            config.auth = args.client_auth()?;
            Arc::new(JetStreamLog::connect(config).await?)
        }
        None => {
            let dir = args.data_dir.join("log");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Arc::new(EmbeddedLog::open(&dir)?)
        }
    })
}

/// Services running in this process.
pub struct RunningNode {
    /// Where the API listens, when it runs here.
    pub api_addr: Option<SocketAddr>,
    /// The API's URL scheme (`http` or `https`), when it runs here.
    pub api_scheme: Option<&'static str>,
    /// The CA file clients trust for this API's https (the one made under
    /// `<data-dir>/tls/`), when it serves https with a known CA.
    pub api_ca_file: Option<PathBuf>,
    /// The admin token file, when the API runs here.
    pub admin_token_file: Option<PathBuf>,
    /// The public half of the key this node seals the log with (hex), when
    /// it runs the sealer: what verifiers pin (`--seal-key`).
    pub seal_public_key: Option<String>,
    /// Cancelling it stops every service.
    pub shutdown: CancellationToken,
    /// Every task of the node. Dropping the node aborts them.
    supervisor: Supervisor,
}

impl RunningNode {
    /// The API's URL, `https://127.0.0.1:PORT` or `http://…`, when it runs
    /// here (an unspecified listen address answered as loopback).
    pub fn api_url(&self) -> Option<String> {
        let mut addr = self.api_addr?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Some(format!("{}://{addr}", self.api_scheme?))
    }

    /// Runs until `shutdown` is cancelled or one of the node's tasks fails,
    /// panics or ends early (which cancels it), then joins every task
    /// (within [`SHUTDOWN_GRACE`]). The first failure is the error: a
    /// [`SupervisorError`](powernode_runtime::supervisor::SupervisorError)
    /// naming the task.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.supervisor.wait(SHUTDOWN_GRACE).await?;
        info!("stopped");
        Ok(())
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Spawns more tasks under this node's supervision (they stop with it,
    /// and stop it when they fail).
    pub fn tasks(&self) -> Spawner {
        self.supervisor.spawner()
    }

    /// Names of the node's tasks still running.
    pub fn running_tasks(&self) -> Vec<String> {
        self.supervisor.running()
    }
}

/// Starts `services` on `log` (and the API, with its admin token, if among
/// them), keeping checkpoints under `data_dir`.
pub async fn start_node(
    log: SharedLog,
    data_dir: &Path,
    services: &[ServiceName],
    listen: SocketAddr,
    checkpoint_name: &str,
) -> anyhow::Result<RunningNode> {
    start_node_with(
        log,
        data_dir,
        services,
        listen,
        checkpoint_name,
        NodeExtras::default(),
    )
    .await
}

/// In-process simulated agents: how often they beat, and what starts them.
/// The simulator is the CLI's (it links the agent; the server does not):
/// `start` resumes the agents under the directory it is given and answers
/// a sender that starts one for every newly provisioned instance.
#[derive(Debug, Clone)]
pub struct SimulatedAgents {
    /// Heartbeat interval.
    pub interval: std::time::Duration,
    /// Starts the simulator, its tasks under the node's supervision.
    pub start: fn(
        Intake,
        PathBuf,
        std::time::Duration,
        Spawner,
    ) -> tokio::sync::mpsc::UnboundedSender<crate::api::Provisioned>,
}

/// Optional parts of a node.
#[derive(Debug, Clone, Default)]
pub struct NodeExtras {
    /// Run a simulated agent for every instance provisioned through this
    /// API.
    pub simulate_agents: Option<SimulatedAgents>,
    /// Silence threshold, failover policy and damping.
    pub failover: crate::services::failover::FailoverConfig,
    /// Skill executions: step timeout and timer tick.
    pub skills: crate::services::skills::SkillsConfig,
    /// Replica name (see [`ServiceContext::replica`]).
    pub replica: Option<String>,
    /// Whether the replica splits the accounts with its peers
    /// ([`crate::services::partitions`]).
    pub partitions: crate::services::partitions::PartitionArgs,
    /// The platform's NATS credentials: with the auth-callout issuer key in
    /// them, the API admits agents to NATS ([`crate::natsauth::callout`]).
    pub nats_creds: Option<PlatformCreds>,
    /// The secrets key file (`None`: [`crate::secrets::seal::resolve_key_file`]).
    pub secrets_key_file: Option<PathBuf>,
    /// How the API serves (https by default from the CLI, through
    /// [`TlsArgs::transport`](crate::tls::TlsArgs::transport); the
    /// library's default serves plain http, as in-process tests use).
    pub tls: crate::tls::ApiTransport,
    /// Metrics: where a node without the API serves `/metrics`, and the
    /// scrape token.
    pub metrics: crate::metrics::MetricsArgs,
    /// Seal the log where the API runs ([`crate::sealer`]); `None` (the
    /// library's default, as in-process tests use): no sealer. The CLI's
    /// nodes seal by default.
    pub seal: Option<crate::sealer::SealArgs>,
}

/// [`start_node`] with optional parts. The API brings the agent intake
/// (over NATS when the log is on NATS, and by direct call for simulated
/// agents) and the secret store matching the log.
pub async fn start_node_with(
    log: SharedLog,
    data_dir: &Path,
    services: &[ServiceName],
    listen: SocketAddr,
    checkpoint_name: &str,
    extras: NodeExtras,
) -> anyhow::Result<RunningNode> {
    let cp_dir = data_dir.join(format!("checkpoints-{checkpoint_name}"));
    std::fs::create_dir_all(&cp_dir)
        .with_context(|| format!("cannot create {}", cp_dir.display()))?;
    let checkpoints = Arc::new(CheckpointStore::open(&cp_dir)?);
    let shutdown = CancellationToken::new();
    let ctx = ServiceContext {
        log: log.clone(),
        checkpoints,
        shutdown: shutdown.clone(),
        liveness: crate::liveness::Liveness::shared(),
        failover: extras.failover.clone(),
        skills: extras.skills.clone(),
        replica: extras.replica.clone(),
        status: crate::status::StatusBoard::shared(),
        partitions: extras.partitions.clone(),
    };
    info!(log = %log.describe(), data_dir = %data_dir.display(), "starting {} service(s)", services.len());

    let mut node = RunningNode {
        api_addr: None,
        api_scheme: None,
        api_ca_file: None,
        admin_token_file: None,
        seal_public_key: None,
        shutdown: shutdown.clone(),
        supervisor: Supervisor::new(shutdown.clone()),
    };
    let mut api = None;
    let mut hears_beats: Option<Shared<_>> = None;
    for &name in services {
        let shared = Shared::default();
        // Sensor and failover judge holders by their beats; the API shows
        // the WireGuard revision each agent applied (`in_sync`).
        if matches!(
            name,
            ServiceName::Sensor | ServiceName::Failover | ServiceName::Api
        ) && hears_beats.is_none()
        {
            hears_beats = Some(shared.clone());
        }
        if name == ServiceName::Api {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            let tls = match &extras.tls {
                crate::tls::ApiTransport::Http => {
                    info!("API listening on http://{addr}");
                    None
                }
                crate::tls::ApiTransport::Https(args) => {
                    let tls = crate::tls::prepare(args, data_dir, addr)
                        .context("cannot set up the API's https")?;
                    match &tls.ca_fingerprint {
                        Some(fp) => info!("API listening on https://{addr} (CA {fp})"),
                        None => info!("API listening on https://{addr}"),
                    }
                    node.api_ca_file = tls.ca_file.clone();
                    Some(tls.config)
                }
            };
            node.api_addr = Some(addr);
            node.api_scheme = Some(extras.tls.scheme());
            let nats = log.nats_client();
            let secrets = crate::secrets::open_for(
                nats.as_ref().map(|(c, _)| c),
                data_dir,
                nats.as_ref().map_or(1, |(_, r)| *r),
                extras.secrets_key_file.as_deref(),
            )
            .await
            .context("cannot open the secret store")?;
            info!(secrets = %secrets.describe(), "secret store");
            let intake = Intake::new(
                log.clone(),
                shared.clone(),
                secrets.clone(),
                ctx.liveness.clone(),
            )
            .with_tasks(node.tasks());
            if let Some((client, _)) = nats {
                let creds = extras.nats_creds.clone().or_else(|| log.nats_creds());
                match creds.as_ref().and_then(PlatformCreds::issuer) {
                    Some(issuer) => {
                        let (fleet, client, stop) = (shared.clone(), client.clone(), shutdown.clone());
                        node.supervisor.spawn(
                            "NATS auth callout",
                            crate::natsauth::callout::serve(issuer, fleet, client, stop),
                        );
                    }
                    None => info!("no auth-callout key in the NATS credentials: this API admits no agents to NATS (another API replica, or static server users, must)"),
                }
                let (intake, stop) = (intake.clone(), shutdown.clone());
                node.supervisor.spawn(
                    "intake over NATS",
                    crate::intake::nats::serve(intake, client, stop),
                );
            }
            let on_provision = extras.simulate_agents.clone().map(|sim| {
                info!("simulated agents on (heartbeat every {:?})", sim.interval);
                (sim.start)(
                    intake.clone(),
                    data_dir.join("sim-agents"),
                    sim.interval,
                    node.tasks(),
                )
            });
            // The events index follows the log from the start, so the first
            // cluster- or instance-filtered recent_events is already served
            // from it (started lazily, the first queries scanned what the
            // index had not yet folded: p99 ~1 s at 200k events).
            let events_index: Arc<crate::api::index::EventIndex> = Default::default();
            events_index.ensure_started(&log, &shutdown);
            let app = router(ApiState {
                log: log.clone(),
                fleet: shared.clone(),
                secrets,
                on_provision,
                liveness: ctx.liveness.clone(),
                failover: ctx.failover.clone(),
                shutdown: shutdown.clone(),
                status: ctx.status.clone(),
                https: tls.is_some(),
                read_only: None,
                events_index,
            });
            let stop = shutdown.clone();
            match tls {
                None => node.supervisor.spawn("HTTP server", async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                }),
                Some(config) => {
                    let listener = crate::tls::TlsListener::new(listener, config)?;
                    node.supervisor.spawn("HTTPS server", async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async move { stop.cancelled().await })
                            .await
                    })
                }
            }
            if let Some((client, _)) = log.nats_client() {
                let (board, stop) = (ctx.status.clone(), shutdown.clone());
                node.supervisor.spawn(
                    "status collector",
                    crate::status::publish::run_collector(board, client, stop),
                );
            }
            let (log, fleet, liveness, stop) = (
                log.clone(),
                shared.clone(),
                ctx.liveness.clone(),
                shutdown.clone(),
            );
            node.supervisor.spawn(
                "outdated agents",
                crate::liveness::outdated::run_outdated(log, fleet, liveness, stop),
            );
            api = Some(shared.clone());
        }
        node.supervisor.spawn(
            format!("service {}", name.as_str()),
            run_service(name, ctx.clone(), shared),
        );
    }
    // Every consumer's status, on the board (and NATS).
    {
        let client = log.nats_client().map(|(c, _)| c);
        let (board, log, stop) = (ctx.status.clone(), log.clone(), shutdown.clone());
        node.supervisor.spawn(
            "status publisher",
            crate::status::publish::run_publisher(board, log, client, stop),
        );
    }
    // Metrics: the scrape token, and /metrics on --metrics-listen.
    if let Err(e) = crate::metrics::start(&extras.metrics, &log, &ctx.status, &node.tasks()).await {
        let _ = node.stop().await;
        return Err(e);
    }
    // Sensor, failover and the API need every agent's heartbeats. The intake of this
    // process records the beats it answers, but intakes share beats through
    // a queue group: with NATS, also follow the heartbeat subject (once per
    // process; a beat the local intake verified is not verified again).
    if let (Some(fleet), Some((client, _))) = (hears_beats, log.nats_client()) {
        let (liveness, stop) = (ctx.liveness.clone(), shutdown.clone());
        node.supervisor.spawn(
            "heartbeat follower",
            crate::intake::follow::follow_heartbeats(client, fleet, liveness, stop),
        );
    }
    // The sealer runs beside the API (every API replica; the seal
    // aggregate's guard lets one seal each range).
    if let (Some(_), Some(seal)) = (&api, &extras.seal) {
        if seal.seal_every > 0 {
            let path = seal
                .seal_key_file
                .clone()
                .unwrap_or_else(|| crate::sealer::key::default_key_file(data_dir));
            match crate::sealer::key::SealKey::load_or_create(&path) {
                Ok(key) => {
                    node.seal_public_key = Some(key.public_hex());
                    let (log, stop) = (log.clone(), shutdown.clone());
                    node.supervisor.spawn(
                        "log sealer",
                        crate::sealer::run_sealer(log, Arc::new(key), seal.into(), stop),
                    );
                }
                Err(e) => {
                    let _ = node.stop().await;
                    return Err(e);
                }
            }
        }
    }
    if let Some(shared) = api {
        match crate::api::bootstrap::ensure_admin_token(&log, &shared, data_dir).await {
            Ok(path) => {
                info!("admin token in {}", path.display());
                if let Some(url) = node.api_url() {
                    info!(
                        "Dashboard: {url}/ui/ (sign in with an operator token, e.g. {})",
                        path.display()
                    );
                }
                node.admin_token_file = Some(path);
            }
            Err(e) => {
                let _ = node.stop().await;
                return Err(e.into());
            }
        }
    }
    Ok(node)
}

/// Runs `services` (and the API if among them) until Ctrl-C or SIGTERM, or
/// until one of the node's tasks fails: then its error, naming the task.
pub async fn run_node(
    args: &LogArgs,
    services: &[ServiceName],
    listen: SocketAddr,
    checkpoint_name: &str,
    extras: NodeExtras,
) -> anyhow::Result<()> {
    let mut extras = extras;
    if extras.secrets_key_file.is_none() {
        extras.secrets_key_file = args.secrets_key_file.clone();
    }
    if extras.nats_creds.is_none() {
        extras.nats_creds = args.client_auth()?.creds;
    }
    if extras.seal.is_none() {
        extras.seal = Some(args.seal.clone());
    }
    // Listen for Ctrl-C / SIGTERM from before the start (polled beside it,
    // never cancelling it), so a signal that arrives during start-up stops
    // the node once started instead of killing the process.
    let signal = wait_for_signal();
    tokio::pin!(signal);
    // One poll now installs the handlers: a start whose every step is
    // ready at once never yields to the `select!` below, and until the
    // handlers are installed a Ctrl-C kills the process instead of
    // stopping it (seen: the API answered, then SIGINT killed it).
    let mut signalled = futures::FutureExt::now_or_never(signal.as_mut()).is_some();
    let start = async {
        let log = open_log(args).await?;
        start_node_with(
            log,
            &args.data_dir,
            services,
            listen,
            checkpoint_name,
            extras,
        )
        .await
    };
    tokio::pin!(start);
    let node = loop {
        tokio::select! {
            node = &mut start => break node?,
            _ = &mut signal, if !signalled => signalled = true,
        }
    };
    let stop = node.shutdown.clone();
    if signalled {
        info!("shutting down");
        stop.cancel();
    }
    let running = node.wait();
    tokio::pin!(running);
    tokio::select! {
        stopped = &mut running => return stopped,
        _ = &mut signal, if !signalled => {
            info!("shutting down");
            stop.cancel();
        }
    }
    running.await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
