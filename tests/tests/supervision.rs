//! A node owns its tasks: a task that fails or panics stops the whole node
//! with an error naming it (and `powernode up` exits non-zero with it), and
//! a clean shutdown joins every task promptly.

use anyhow::{bail, Context};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::SharedLog;
use powernode_runtime::checkpoint::{Checkpoint, CheckpointStore};
use powernode_runtime::supervisor::SupervisorError;
use powernode_server::node::{start_node, RunningNode};
use powernode_server::services::ServiceName;
use powernode_tests::bins::powernode_bin;
use powernode_tests::nats::NatsServer;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every service and the API on `log`, checkpoints under `dir`.
async fn start_all(log: SharedLog, dir: &Path) -> anyhow::Result<RunningNode> {
    start_node(log, dir, &ServiceName::ALL, "127.0.0.1:0".parse()?, "it").await
}

/// The embedded log in `dir`.
fn embedded(dir: &Path) -> anyhow::Result<SharedLog> {
    Ok(Arc::new(EmbeddedLog::open(&dir.join("log"))?))
}

/// Leaves a checkpoint for `service` that no projection can restore, in
/// the checkpoint directory named `checkpoint_name` under `data_dir`.
fn corrupt_checkpoint(data_dir: &Path, checkpoint_name: &str, service: &str) -> anyhow::Result<()> {
    let store = CheckpointStore::open(data_dir.join(format!("checkpoints-{checkpoint_name}")))?;
    store.save(
        service,
        &Checkpoint {
            seq: 1,
            snapshot: b"not a snapshot".to_vec(),
        },
    )?;
    Ok(())
}

/// The node's error, as the supervisor reported it.
fn supervisor_error(e: &anyhow::Error) -> anyhow::Result<&SupervisorError> {
    e.downcast_ref::<SupervisorError>()
        .with_context(|| format!("not a supervisor error: {e:#}"))
}

#[tokio::test]
async fn a_failing_service_stops_the_node_and_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    corrupt_checkpoint(dir.path(), "it", "sdwan")?;
    let node = start_all(embedded(dir.path())?, dir.path()).await?;
    let shutdown = node.shutdown.clone();
    let e = tokio::time::timeout(Duration::from_secs(10), node.wait())
        .await
        .context("the node did not stop")?
        .expect_err("the node stops with an error");
    let SupervisorError::Failed { task, reason } = supervisor_error(&e)? else {
        bail!("not a failure: {e:#}");
    };
    assert_eq!(task, "service sdwan", "{e:#}");
    assert!(reason.contains("checkpoint"), "{reason}");
    assert!(shutdown.is_cancelled(), "the failure stopped the others");
    Ok(())
}

/// A task that panics.
async fn injected_fault() {
    tokio::time::sleep(Duration::from_millis(50)).await;
    panic!("injected for the test");
}

#[tokio::test]
async fn a_panicking_task_stops_the_node_and_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = start_all(embedded(dir.path())?, dir.path()).await?;
    let port = node.api_addr.context("the API runs here")?.port();
    assert_eq!(
        powernode_tests::http::request(port, "GET", "/healthz", None, b"")
            .await?
            .status,
        200
    );
    // The hook: one more task of the node, which panics.
    node.tasks().spawn("injected fault", injected_fault());
    let e = tokio::time::timeout(Duration::from_secs(10), node.wait())
        .await
        .context("the node did not stop")?
        .expect_err("the node stops with an error");
    assert_eq!(
        supervisor_error(&e)?,
        &SupervisorError::Panicked {
            task: "injected fault".into(),
            message: "injected for the test".into()
        }
    );
    assert!(
        powernode_tests::http::request(port, "GET", "/healthz", None, b"")
            .await
            .is_err(),
        "the API stopped with the node"
    );
    Ok(())
}

/// Stops `node`, which must join every task within a second.
async fn stops_within_a_second(node: RunningNode) -> anyhow::Result<()> {
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), node.stop())
        .await
        .context("not every task stopped within a second")??;
    eprintln!("stopped in {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_clean_shutdown_joins_every_task_within_a_second_embedded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = start_all(embedded(dir.path())?, dir.path()).await?;
    let running = node.running_tasks();
    for task in [
        "HTTP server",
        "service api",
        "service sensor",
        "service failover",
    ] {
        assert!(
            running.iter().any(|t| t == task),
            "{task} not in {running:?}"
        );
    }
    stops_within_a_second(node).await?;
    // Everything let go of the data dir: it opens again.
    let node = start_all(embedded(dir.path())?, dir.path()).await?;
    stops_within_a_second(node).await
}

#[tokio::test]
async fn a_clean_shutdown_joins_every_task_within_a_second_on_nats() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let log: SharedLog =
        Arc::new(JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?);
    let dir = tempfile::tempdir()?;
    let node = start_all(log, dir.path()).await?;
    let running = node.running_tasks();
    for task in ["intake over NATS", "heartbeat follower", "HTTP server"] {
        assert!(
            running.iter().any(|t| t == task),
            "{task} not in {running:?}"
        );
    }
    stops_within_a_second(node).await
}

#[tokio::test]
async fn up_exits_non_zero_naming_the_failed_task() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    corrupt_checkpoint(&data, "up", "provisioner")?;
    let bin = powernode_bin()?;
    let child = tokio::process::Command::new(bin)
        .args([
            "up",
            "--insecure-http",
            "--data-dir",
            data.to_str().expect("a temporary path is UTF-8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .context("powernode up did not exit")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", stderr.lines().last().unwrap_or_default());
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("task \"service provisioner\" failed"),
        "{stderr}"
    );
    Ok(())
}
