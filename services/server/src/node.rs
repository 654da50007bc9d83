//! Running services in this process: open the log and the checkpoint store,
//! start the consumers (and the HTTP API), stop cleanly on Ctrl-C / SIGTERM.

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
use powernode_runtime::Shared;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Which log to use, and where local state lives.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// NATS URL of a JetStream server (e.g. nats://127.0.0.1:4222). Without it
    /// the embedded log in --data-dir is used.
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: Option<String>,
    /// Local state: the embedded log and the services' checkpoints.
    #[arg(long, env = "POWERNODE_DATA_DIR", default_value = "./.powernode")]
    pub data_dir: PathBuf,
    /// JetStream stream name.
    #[arg(long, env = "POWERNODE_STREAM", default_value = powernode_log::jetstream::DEFAULT_STREAM)]
    pub stream: String,
    /// JetStream replicas for the stream (3 on a 3-node cluster).
    #[arg(long, env = "POWERNODE_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How concurrent appends are grouped: `atomic` batches (one disk flush
    /// per batch; right for servers with `sync_interval: always`) or
    /// `pipelined` publishes (faster on servers that do not sync each write).
    #[arg(
        long,
        env = "POWERNODE_GROUP_COMMIT",
        value_enum,
        default_value = "atomic"
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
    /// The admin token file, when the API runs here.
    pub admin_token_file: Option<PathBuf>,
    /// Cancelling it stops every service.
    pub shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl RunningNode {
    /// Waits until every service has stopped (after `shutdown`, or when one
    /// fails, which stops the others); the first error wins.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = outcome {
                error!(error = %format!("{e:#}"), "a service stopped with an error; stopping the others");
                self.shutdown.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        info!("stopped");
        result
    }

    /// Stops every service and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
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
    /// Starts the simulator.
    pub start: fn(
        Intake,
        PathBuf,
        std::time::Duration,
        CancellationToken,
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
    /// Replica name (see [`ServiceContext::replica`]).
    pub replica: Option<String>,
    /// The platform's NATS credentials: with the auth-callout issuer key in
    /// them, the API admits agents to NATS ([`crate::natsauth::callout`]).
    pub nats_creds: Option<PlatformCreds>,
    /// The secrets key file (`None`: [`crate::secrets::seal::resolve_key_file`]).
    pub secrets_key_file: Option<PathBuf>,
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
        replica: extras.replica.clone(),
    };
    info!(log = %log.describe(), data_dir = %data_dir.display(), "starting {} service(s)", services.len());

    let mut node = RunningNode {
        api_addr: None,
        admin_token_file: None,
        shutdown: shutdown.clone(),
        tasks: JoinSet::new(),
    };
    let mut api = None;
    let mut hears_beats: Option<Shared<_>> = None;
    for &name in services {
        let shared = Shared::default();
        if matches!(name, ServiceName::Sensor | ServiceName::Failover) && hears_beats.is_none() {
            hears_beats = Some(shared.clone());
        }
        if name == ServiceName::Api {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            info!("API listening on http://{addr}");
            node.api_addr = Some(addr);
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
            );
            if let Some((client, _)) = nats {
                let creds = extras.nats_creds.clone().or_else(|| log.nats_creds());
                match creds.as_ref().and_then(PlatformCreds::issuer) {
                    Some(issuer) => {
                        let (fleet, client, stop) = (shared.clone(), client.clone(), shutdown.clone());
                        node.tasks.spawn(async move {
                            crate::natsauth::callout::serve(issuer, fleet, client, stop).await
                        });
                    }
                    None => info!("no auth-callout key in the NATS credentials: this API admits no agents to NATS (another API replica, or static server users, must)"),
                }
                let (intake, stop) = (intake.clone(), shutdown.clone());
                node.tasks
                    .spawn(async move { crate::intake::nats::serve(intake, client, stop).await });
            }
            let on_provision = extras.simulate_agents.clone().map(|sim| {
                info!("simulated agents on (heartbeat every {:?})", sim.interval);
                (sim.start)(
                    intake.clone(),
                    data_dir.join("sim-agents"),
                    sim.interval,
                    shutdown.clone(),
                )
            });
            let app = router(ApiState {
                log: log.clone(),
                fleet: shared.clone(),
                secrets,
                on_provision,
                liveness: ctx.liveness.clone(),
                failover: ctx.failover.clone(),
                shutdown: shutdown.clone(),
            });
            let stop = shutdown.clone();
            node.tasks.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .context("HTTP server failed")
            });
            api = Some(shared.clone());
        }
        let ctx = ctx.clone();
        node.tasks.spawn(async move {
            run_service(name, ctx, shared)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    // Sensor and failover need every agent's heartbeats. The intake of this
    // process records the beats it answers, but intakes share beats through
    // a queue group: with NATS, also follow the heartbeat subject (once per
    // process; a beat the local intake verified is not verified again).
    if let (Some(fleet), Some((client, _))) = (hears_beats, log.nats_client()) {
        let (liveness, stop) = (ctx.liveness.clone(), shutdown.clone());
        node.tasks.spawn(async move {
            crate::intake::follow::follow_heartbeats(client, fleet, liveness, stop).await
        });
    }
    if let Some(shared) = api {
        match crate::api::bootstrap::ensure_admin_token(&log, &shared, data_dir).await {
            Ok(path) => {
                info!("admin token in {}", path.display());
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

/// Runs `services` (and the API if among them) until Ctrl-C or SIGTERM.
pub async fn run_node(
    args: &LogArgs,
    services: &[ServiceName],
    listen: SocketAddr,
    checkpoint_name: &str,
    extras: NodeExtras,
) -> anyhow::Result<()> {
    // Take over Ctrl-C / SIGTERM before starting anything, so a signal that
    // arrives during start-up stops cleanly instead of killing the process.
    let signalled = CancellationToken::new();
    let on_signal = signalled.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    let mut extras = extras;
    if extras.secrets_key_file.is_none() {
        extras.secrets_key_file = args.secrets_key_file.clone();
    }
    if extras.nats_creds.is_none() {
        extras.nats_creds = args.client_auth()?.creds;
    }
    let log = open_log(args).await?;
    let node = start_node_with(
        log,
        &args.data_dir,
        services,
        listen,
        checkpoint_name,
        extras,
    )
    .await?;
    let stop = node.shutdown.clone();
    tokio::spawn(async move {
        signalled.cancelled().await;
        info!("shutting down");
        stop.cancel();
    });
    node.wait().await
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
