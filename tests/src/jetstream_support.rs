//! Helpers shared by the JetStream integration tests.

use crate::conformance::{event, Opener};
use crate::nats::NatsServer;
use futures::future::BoxFuture;
use powernode_events::Envelope;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{EventLog, Expect, Filter, LogError, SharedLog};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Log output for a failing test: `RUST_LOG=powernode_server=debug,powernode_runtime=debug`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Connects a log to `url`.
pub async fn connect(url: &str) -> anyhow::Result<JetStreamLog> {
    init_tracing();
    Ok(JetStreamLog::connect(crate::nats::log_config(url)).await?)
}

/// Opens a shared log on `server`.
pub async fn open(server: &NatsServer) -> anyhow::Result<SharedLog> {
    Ok(Arc::new(connect(&server.url()).await?))
}

/// Opens the log on `url` again each time it is called.
pub fn opener(url: String) -> Box<Opener> {
    Box::new(move || {
        let url = url.clone();
        Box::pin(async move { Ok(Arc::new(connect(&url).await?) as SharedLog) })
            as BoxFuture<'static, anyhow::Result<SharedLog>>
    })
}

/// A small event about `cluster`.
pub fn cluster_event(account: &powernode_events::AccountId, cluster: &str) -> Envelope {
    event(
        account,
        powernode_events::payloads::k3s::ClusterActivated {
            cluster_id: cluster.to_string(),
        },
    )
}

/// Appends, retrying `Unavailable` (same event id) until `deadline`.
pub async fn append_retrying(
    log: &JetStreamLog,
    ev: &Envelope,
    deadline: Instant,
) -> Result<(u64, bool, u32), LogError> {
    let mut retries = 0;
    loop {
        match log.append(ev, Expect::Any).await {
            Ok(a) => return Ok((a.seq, a.duplicate, retries)),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every record matching `filter`, page by page.
pub async fn read_everything(
    log: &dyn EventLog,
    filter: &Filter,
) -> anyhow::Result<Vec<powernode_log::Record>> {
    let mut out = Vec::new();
    let mut next = 1;
    loop {
        let page = log.read(next, 500, filter).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        next = last.seq + 1;
        out.extend(page);
    }
}
