//! Incremental checkpoints through the consumer runtime: a restart
//! restores exactly what was folded; a store holding an older, whole
//! checkpoint is taken over; a checkpoint of a large state writes only what
//! changed since the last one.

use anyhow::ensure;
use powernode_events::payloads::fleet::{InstanceProvisioned, NodeCreated, TemplateCreated};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::{Expect, SharedLog};
use powernode_projections::{FleetState, Projection};
use powernode_runtime::checkpoint::{self, Checkpoint, CheckpointStore};
use powernode_runtime::{run_consumer, ConsumerConfig, ProjectOnly, Shared};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn event(p: impl Into<EventPayload>) -> Envelope {
    let account = AccountId::new("acme").expect("literal id");
    Envelope::new(
        account,
        Actor::Operator {
            token_id: "tok".into(),
        },
        p,
    )
}

/// Template, node and instance `i` (three events, three objects).
async fn append_objects(log: &SharedLog, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for i in range {
        let (t, n) = (format!("tmpl-{i}"), format!("node-{i}"));
        log.append(
            &event(TemplateCreated {
                template_id: t.clone(),
                name: format!("t{i}"),
            }),
            Expect::Any,
        )
        .await?;
        log.append(
            &event(NodeCreated {
                node_id: n.clone(),
                hostname: format!("h{i}"),
                template_id: t.clone(),
                memory_mb: 1024,
            }),
            Expect::Any,
        )
        .await?;
        log.append(
            &event(InstanceProvisioned {
                instance_id: format!("inst-{i}"),
                node_id: n,
                template_id: t,
                cni_plugin: None,
                enrollment_fingerprint: "sha256:00".into(),
            }),
            Expect::Any,
        )
        .await?;
    }
    Ok(())
}

fn config(name: &str, every: u64) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(name);
    c.checkpoint_every = every;
    c.wait = Duration::from_millis(50);
    c
}

/// Runs consumer `name` on a fresh projection until it applied `until`,
/// then stops it; the projection.
async fn run_until(
    log: &SharedLog,
    store: &Arc<CheckpointStore>,
    name: &str,
    every: u64,
    until: u64,
) -> anyhow::Result<FleetState> {
    let shared: Shared<FleetState> = Shared::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        log.clone(),
        store.clone(),
        config(name, every),
        shared.clone(),
        ProjectOnly,
        stop.clone(),
    ));
    let reached = shared.wait_for(until, Duration::from_secs(20)).await;
    stop.cancel();
    task.await??;
    ensure!(reached, "reached only {} of {until}", shared.applied());
    let state = shared.state.read().await.clone();
    Ok(state)
}

/// Everything in the log folded at once.
async fn fold_all(log: &SharedLog) -> anyhow::Result<FleetState> {
    let mut state = FleetState::default();
    for r in log.read(1, 100_000, &powernode_log::Filter::all()).await? {
        state.apply(r.seq, &Envelope::decode(&r.bytes)?);
    }
    Ok(state)
}

fn open() -> anyhow::Result<(SharedLog, Arc<CheckpointStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let log: SharedLog = Arc::new(EmbeddedLog::open(&dir.path().join("log"))?);
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp"))?);
    Ok((log, store, dir))
}

#[tokio::test]
async fn a_restart_restores_exactly_what_was_folded() -> anyhow::Result<()> {
    let (log, store, _dir) = open()?;
    append_objects(&log, 0..40).await?;
    // given a consumer that checkpointed every 7 records and stopped at 120
    let first = run_until(&log, &store, "restart", 7, 120).await?;
    ensure!(store.saved_seq("restart")? == Some(120));
    ensure!(store.load("restart")?.is_none(), "no whole checkpoint");

    // when it restarts on a fresh projection with more in the log
    append_objects(&log, 40..50).await?;
    let again = run_until(&log, &store, "restart", 7, 150).await?;

    // then what it restored and folded equals folding everything at once
    ensure!(first.applied() == 120, "first applied {}", first.applied());
    let all = fold_all(&log).await?;
    ensure!(
        again.snapshot()? == all.snapshot()?,
        "restored state differs"
    );
    let restored = FleetState::restore_entries(
        store
            .load_entries("restart")?
            .expect("an incremental checkpoint")
            .entries,
    )?;
    ensure!(restored == all, "the stored entries differ from the fold");
    Ok(())
}

#[tokio::test]
async fn a_whole_checkpoint_is_taken_over_by_entries() -> anyhow::Result<()> {
    let (log, store, _dir) = open()?;
    append_objects(&log, 0..10).await?;
    // given a store with a whole checkpoint at 30 (an older node's)
    let at_30 = fold_all(&log).await?;
    store.save(
        "legacy",
        &Checkpoint {
            seq: 30,
            snapshot: at_30.snapshot()?,
        },
    )?;

    // when the consumer runs on to 60
    append_objects(&log, 10..20).await?;
    run_until(&log, &store, "legacy", 1_000, 60).await?;

    // then it wrote every entry once (a full one), the whole one is gone,
    // and the entries restore the fold of everything
    ensure!(
        store.load("legacy")?.is_none(),
        "the whole checkpoint stayed"
    );
    let stats = checkpoint::stats();
    let s = stats.get("legacy").expect("figures for the consumer");
    ensure!(s.full == 1, "{} full checkpoints", s.full);
    let cp = store.load_entries("legacy")?.expect("entries");
    ensure!(cp.seq == 60);
    ensure!(FleetState::restore_entries(cp.entries)? == fold_all(&log).await?);
    Ok(())
}

#[tokio::test]
async fn a_checkpoint_of_a_large_state_writes_only_what_changed() -> anyhow::Result<()> {
    let (log, store, _dir) = open()?;
    append_objects(&log, 0..300).await?;
    // given a consumer that checkpointed 900 records' worth of objects
    run_until(&log, &store, "small-steps", 10_000, 900).await?;
    let before = checkpoint::stats()["small-steps"].clone();

    // when it restarts and folds two more objects' events (6 records)
    append_objects(&log, 300..302).await?;
    run_until(&log, &store, "small-steps", 10_000, 906).await?;

    // then that checkpoint put the head, the account and six objects
    // (and two index rows), not the 900 objects the state holds
    let after = checkpoint::stats()["small-steps"].clone();
    ensure!(after.saved == before.saved + 1, "{after:?}");
    ensure!(
        after.full == before.full,
        "a restored consumer wrote everything"
    );
    ensure!(
        after.last_entries <= 12,
        "{} entries written for 6 records",
        after.last_entries
    );
    ensure!(
        after.last_bytes * 20 < before.last_bytes,
        "{after:?} vs {before:?}"
    );
    Ok(())
}
