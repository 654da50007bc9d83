//! The consumer runtime against both log backends: checkpoints, skip on
//! redelivery, ack after success, graceful shutdown, rejection of malformed
//! and forged records.

use anyhow::{bail, ensure};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use powernode_events::payloads::fleet::{
    AgentEnrolled, InstanceDrained, InstanceProvisioned, TemplateCreated,
};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Expect, Filter, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::{
    run_consumer, ConsumerConfig, Decisions, Outbox, ReactError, Reactor, Shared,
};
use powernode_tests::nats::NatsServer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A log backend under test, able to store a raw (possibly malformed) record.
/// The second field keeps the backing store alive for the test's duration.
enum Backend {
    Embedded(Arc<EmbeddedLog>, #[allow(dead_code)] tempfile::TempDir),
    JetStream(Arc<JetStreamLog>, #[allow(dead_code)] NatsServer),
}

impl Backend {
    async fn embedded() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self::Embedded(
            Arc::new(EmbeddedLog::open(dir.path())?),
            dir,
        ))
    }

    async fn jetstream() -> anyhow::Result<Self> {
        let server = NatsServer::start()?;
        let log = JetStreamLog::connect(powernode_tests::nats::log_config(server.url())).await?;
        Ok(Self::JetStream(Arc::new(log), server))
    }

    fn log(&self) -> SharedLog {
        match self {
            Self::Embedded(l, _) => l.clone(),
            Self::JetStream(l, _) => l.clone(),
        }
    }

    async fn append_raw(&self, subject: &str, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Self::Embedded(l, _) => {
                l.append_raw_for_tests(subject, Bytes::copy_from_slice(bytes))
                    .await?;
            }
            Self::JetStream(l, _) => {
                let js = async_nats::jetstream::new(l.client().clone());
                js.publish(subject.to_string(), Bytes::copy_from_slice(bytes))
                    .await?
                    .await?;
            }
        }
        Ok(())
    }
}

/// The log under test and a fresh checkpoint store (kept alive by the dir).
fn fixture(b: &Backend) -> anyhow::Result<(SharedLog, Arc<CheckpointStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(CheckpointStore::open(dir.path())?);
    Ok((b.log(), store, dir))
}

fn account() -> AccountId {
    AccountId::new("acct-rt").unwrap()
}

fn template(i: usize) -> Envelope {
    Envelope::new(
        account(),
        Actor::service("test"),
        TemplateCreated {
            template_id: format!("tmpl-{i}"),
            name: format!("t{i}"),
        },
    )
}

async fn append_templates(log: &SharedLog, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for i in range {
        log.append(&template(i), Expect::Any).await?;
    }
    Ok(())
}

/// Records every sequence it reacts to; can fail once at a chosen sequence,
/// or dawdle on one.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<u64>>>,
    fail_at: Option<u64>,
    slow_at: Option<u64>,
}

#[async_trait]
impl Reactor<FleetState> for Recorder {
    type Effect = u64;

    fn decide(
        &mut self,
        _: &FleetState,
        seq: u64,
        _: &Envelope,
        _: DateTime<Utc>,
        out: &mut Decisions<u64>,
    ) {
        out.effect(seq);
    }

    async fn execute(
        &mut self,
        seq: u64,
        effects: &mut Vec<u64>,
        _: &mut Outbox,
    ) -> Result<(), ReactError> {
        if self.fail_at == Some(seq) {
            return Err(ReactError::Fatal(format!("told to fail at {seq}")));
        }
        if self.slow_at == Some(seq) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.seen.lock().unwrap().append(effects);
        Ok(())
    }
}

fn config() -> ConsumerConfig {
    let mut c = ConsumerConfig::new("svc");
    c.checkpoint_every = 10;
    c.wait = Duration::from_millis(100);
    c
}

/// A consumer running in the background on a fresh projection: the
/// projection, its task and the token that stops it.
type Running = (
    Shared<FleetState>,
    tokio::task::JoinHandle<Result<(), powernode_runtime::RuntimeError>>,
    CancellationToken,
);

fn spawn_consumer<R: Reactor<FleetState>>(
    log: &SharedLog,
    store: &Arc<CheckpointStore>,
    reactor: R,
) -> Running {
    let shared: Shared<FleetState> = Shared::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        log.clone(),
        store.clone(),
        config(),
        shared.clone(),
        reactor,
        stop.clone(),
    ));
    (shared, task, stop)
}

/// Runs a consumer until it has applied `until`, then stops it.
async fn run_until(
    log: &SharedLog,
    store: &Arc<CheckpointStore>,
    shared: Shared<FleetState>,
    reactor: Recorder,
    until: u64,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        log.clone(),
        store.clone(),
        config(),
        shared.clone(),
        reactor,
        stop.clone(),
    ));
    let reached = shared.wait_for(until, Duration::from_secs(20)).await;
    stop.cancel();
    task.await??;
    ensure!(
        reached,
        "consumer reached only {} of {until}",
        shared.applied()
    );
    Ok(())
}

async fn resumes_from_checkpoint_without_double_apply(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..25).await?;
    let rec = Recorder::default();
    run_until(&log, &store, Shared::default(), rec.clone(), 25).await?;
    ensure!(
        store.saved_seq("svc")? == Some(25),
        "checkpoint not at 25 after stop"
    );

    append_templates(&log, 25..40).await?;
    let shared: Shared<FleetState> = Shared::default();
    run_until(&log, &store, shared.clone(), rec.clone(), 40).await?;
    let applied = shared.state.read().await.applied();
    ensure!(
        applied == 40,
        "state applied {applied} events, expected 40 (restored 25 + 15 new)"
    );
    let seen = rec.seen.lock().unwrap().clone();
    ensure!(seen == (1..=40).collect::<Vec<_>>(), "reactor saw {seen:?}");
    Ok(())
}

async fn redelivered_records_are_skipped(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..20).await?;
    let rec = Recorder::default();
    run_until(&log, &store, Shared::default(), rec.clone(), 20).await?;
    // Rewind the durable cursor to the very beginning: everything is redelivered.
    log.delete_durable("svc").await?;
    drop(log.durable("svc", Filter::all(), 0).await?);
    let acked = log.durable("svc", Filter::all(), 20).await?.acked().await?;
    ensure!(
        acked == 0,
        "rewound cursor reports acked {acked}, not 0: nothing would be redelivered"
    );
    append_templates(&log, 20..22).await?;
    let shared: Shared<FleetState> = Shared::default();
    run_until(&log, &store, shared.clone(), rec.clone(), 22).await?;
    let seen = rec.seen.lock().unwrap().clone();
    ensure!(
        seen == (1..=22).collect::<Vec<_>>(),
        "redelivery applied twice: {seen:?}"
    );
    ensure!(shared.state.read().await.applied() == 22);
    Ok(())
}

async fn nothing_is_acked_past_a_failed_event(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..30).await?;
    let failing = Recorder {
        fail_at: Some(17),
        ..Recorder::default()
    };
    let stop = CancellationToken::new();
    let result = run_consumer(
        log.clone(),
        store.clone(),
        config(),
        Shared::<FleetState>::default(),
        failing.clone(),
        stop,
    )
    .await;
    ensure!(result.is_err(), "consumer did not stop on a fatal reaction");
    let cp = store.saved_seq("svc")?.unwrap_or(0);
    ensure!(cp < 17, "checkpoint {cp} passed the failed event 17");
    let acked = log.durable("svc", Filter::all(), 0).await?.acked().await?;
    ensure!(acked < 17, "cursor acked {acked}, past the failed event 17");

    // After a restart the failed event is handled (once), and everything after it.
    let fixed = Recorder::default();
    let shared: Shared<FleetState> = Shared::default();
    run_until(&log, &store, shared.clone(), fixed.clone(), 30).await?;
    let seen = fixed.seen.lock().unwrap().clone();
    ensure!(
        seen == ((cp + 1)..=30).collect::<Vec<_>>(),
        "after restart saw {seen:?}"
    );
    ensure!(shared.state.read().await.applied() == 30);
    Ok(())
}

async fn shutdown_finishes_the_event_in_hand(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..10).await?;
    let rec = Recorder {
        slow_at: Some(5),
        ..Recorder::default()
    };
    let (shared, task, stop) = spawn_consumer(&log, &store, rec.clone());
    // Wait until event 5 is in hand (4 applied), then ask to stop.
    ensure!(shared.wait_for(4, Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    task.await??;
    let seen = rec.seen.lock().unwrap().clone();
    ensure!(
        seen == vec![1, 2, 3, 4, 5],
        "expected to finish 5 and stop, saw {seen:?}"
    );
    ensure!(
        store.saved_seq("svc")? == Some(5),
        "checkpoint not at the finished event"
    );
    Ok(())
}

async fn malformed_and_forged_records_are_rejected_and_skipped(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    let acct = account();
    let key = SigningKey::from_bytes(&[3; 32]);
    let intruder = SigningKey::from_bytes(&[4; 32]);
    let agent = Actor::Agent {
        instance_id: "inst-1".into(),
    };

    append_templates(&log, 0..2).await?; // 1, 2
    b.append_raw(
        "pn.evt.acct-rt.template.t.system.template.created",
        b"\xa1garbage",
    )
    .await?; // 3: bad CBOR
    let mut unknown = template(99).to_raw()?;
    unknown.kind = "system.k3s.bogus".into();
    b.append_raw(
        "pn.evt.acct-rt.template.tmpl-99.system.k3s.bogus",
        &unknown.to_bytes()?,
    )
    .await?; // 4: unknown kind
    let provisioned = Envelope::new(
        acct.clone(),
        Actor::service("api"),
        InstanceProvisioned {
            instance_id: "inst-1".into(),
            node_id: "node-1".into(),
            template_id: "tmpl-0".into(),
            cni_plugin: None,
            enrollment_fingerprint: "sha256:00".into(),
        },
    );
    log.append(&provisioned, Expect::Any).await?; // 5
    let mut enrolled = Envelope::new(
        acct.clone(),
        agent.clone(),
        AgentEnrolled {
            instance_id: "inst-1".into(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
        },
    );
    enrolled.sign(&key)?;
    log.append(&enrolled, Expect::Any).await?; // 6: good enrollment
    let mut forged = Envelope::new(
        acct.clone(),
        agent.clone(),
        InstanceDrained {
            instance_id: "inst-1".into(),
        },
    );
    forged.sign(&intruder)?;
    log.append(&forged, Expect::Any).await?; // 7: wrong key
    let mut good = Envelope::new(
        acct.clone(),
        agent.clone(),
        InstanceDrained {
            instance_id: "inst-1".into(),
        },
    );
    good.sign(&key)?;
    log.append(&good, Expect::Any).await?; // 8: verifies
    let stranger = Envelope::new(
        acct.clone(),
        Actor::Agent {
            instance_id: "inst-2".into(),
        },
        InstanceDrained {
            instance_id: "inst-2".into(),
        },
    );
    log.append(&stranger, Expect::Any).await?; // 9: unknown agent, unsigned
    append_templates(&log, 2..3).await?; // 10

    let rec = Recorder::default();
    let shared: Shared<FleetState> = Shared::default();
    // Two consumers meet the same bad records: each rejection is recorded once.
    run_until(&log, &store, shared.clone(), rec.clone(), 10).await?;
    let store2 = Arc::new(CheckpointStore::open(
        tempfile::tempdir()?.path().join("b"),
    )?);
    run_until(&log, &store2, Shared::default(), Recorder::default(), 10).await?;

    // Rejection events (appended after seq 10) are ordinary events: ignore them here.
    let seen: Vec<u64> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|s| *s <= 10)
        .collect();
    ensure!(seen == vec![1, 2, 5, 6, 8, 10], "admitted {seen:?}");
    let rejections = log
        .read(
            11,
            100,
            &Filter {
                account: None,
                kind_prefix: Some("system.log.record_rejected".into()),
            },
        )
        .await?;
    let mut reasons = std::collections::BTreeMap::new();
    for r in &rejections {
        let e = Envelope::decode(&r.bytes)?;
        let EventPayload::RecordRejected(p) = e.payload else {
            bail!("not a rejection")
        };
        ensure!(
            reasons.insert(p.rejected_seq, p.reason).is_none(),
            "seq {} rejected twice",
            r.seq
        );
    }
    ensure!(
        reasons.keys().copied().collect::<Vec<_>>() == vec![3, 4, 7, 9],
        "rejected {reasons:?}"
    );
    ensure!(reasons[&3].contains("CBOR"), "{}", reasons[&3]);
    ensure!(
        reasons[&4].contains("unknown event kind"),
        "{}",
        reasons[&4]
    );
    ensure!(reasons[&7].contains("signature"), "{}", reasons[&7]);
    ensure!(reasons[&9].contains("no enrolled key"), "{}", reasons[&9]);
    Ok(())
}

/// Puts off every record it reacts to until the end of its batch; the
/// first `failures` end-of-batch calls ask to be retried (doing nothing).
#[derive(Clone, Default)]
struct Deferring {
    batch: Vec<u64>,
    done: Arc<Mutex<Vec<u64>>>,
    failures: Arc<Mutex<u32>>,
}

#[async_trait]
impl Reactor<FleetState> for Deferring {
    type Effect = std::convert::Infallible;

    fn decide(
        &mut self,
        _: &FleetState,
        seq: u64,
        _: &Envelope,
        _: DateTime<Utc>,
        _: &mut Decisions<Self::Effect>,
    ) {
        self.batch.push(seq);
    }

    async fn end_batch(&mut self) -> Result<(), ReactError> {
        {
            let mut left = self.failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(ReactError::Retry("told to retry".into()));
            }
        }
        self.done.lock().unwrap().append(&mut self.batch);
        Ok(())
    }
}

/// Work a reactor puts off to the end of a batch is retried until it is
/// done, once per record, and the consumer checkpoints past it only then.
async fn deferred_work_is_retried_until_done(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..25).await?;
    let reactor = Deferring {
        failures: Arc::new(Mutex::new(3)),
        ..Deferring::default()
    };
    let (_shared, task, stop) = spawn_consumer(&log, &store, reactor.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reactor.done.lock().unwrap().len() < 25 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await??;
    let done = reactor.done.lock().unwrap().clone();
    ensure!(
        done == (1..=25).collect::<Vec<_>>(),
        "deferred work done for {done:?}"
    );
    ensure!(
        *reactor.failures.lock().unwrap() == 0,
        "retries not used up"
    );
    ensure!(store.saved_seq("svc")? == Some(25), "checkpoint not at 25");
    Ok(())
}

/// Deferred work that never succeeds: the consumer stops on shutdown with
/// an error, and neither its checkpoint nor its cursor passes that work.
async fn nothing_is_checkpointed_past_unfinished_deferred_work(b: Backend) -> anyhow::Result<()> {
    let (log, store, _dir) = fixture(&b)?;
    append_templates(&log, 0..10).await?;
    let reactor = Deferring {
        failures: Arc::new(Mutex::new(u32::MAX)),
        ..Deferring::default()
    };
    let (shared, task, stop) = spawn_consumer(&log, &store, reactor.clone());
    ensure!(shared.wait_for(1, Duration::from_secs(20)).await);
    // Several retries (250 ms apart), then stop.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.cancel();
    let result = task.await?;
    ensure!(
        result.is_err(),
        "the consumer stopped cleanly with its deferred work undone"
    );
    ensure!(reactor.done.lock().unwrap().is_empty());
    let cp = store.saved_seq("svc")?.unwrap_or(0);
    ensure!(cp == 0, "checkpoint at {cp}, past undone deferred work");
    let acked = log.durable("svc", Filter::all(), 0).await?.acked().await?;
    ensure!(
        acked == 0,
        "cursor acked {acked}, past undone deferred work"
    );
    Ok(())
}

macro_rules! both_backends {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test] async fn $check() -> anyhow::Result<()> { super::$check(super::Backend::embedded().await?).await } )*
        }
        mod jetstream {
            $( #[tokio::test] async fn $check() -> anyhow::Result<()> { super::$check(super::Backend::jetstream().await?).await } )*
        }
    };
}

both_backends!(
    resumes_from_checkpoint_without_double_apply,
    redelivered_records_are_skipped,
    nothing_is_acked_past_a_failed_event,
    shutdown_finishes_the_event_in_hand,
    malformed_and_forged_records_are_rejected_and_skipped,
    deferred_work_is_retried_until_done,
    nothing_is_checkpointed_past_unfinished_deferred_work,
);
