//! `powernode events tail --follow` as an operator runs it, against a real
//! nats-server and a `powernode serve api` process: the switch from the
//! catch-up to the live stream with appends racing it, a dropped
//! connection (the API killed and started again), a nats-server restart,
//! and "from now" never replaying history. Every test checks the printed
//! sequences are exactly the matching events: no gap, no duplicate.

use anyhow::ensure;
use futures::future::try_join_all;
use powernode_log::jetstream::JetStreamLog;
use powernode_tests::nats::{NatsOptions, NatsServer};
use powernode_tests::tail_support::{
    append_retrying, exactly, system_account, template_event, ApiProcess, TailProcess,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kind prefix of the events the tests append.
const PREFIX: &str = "system.template";
/// How long a tail may take to print what was appended.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A nats-server (syncing every write, so a killed server loses nothing
/// it acknowledged), the API on it, and a log handle of the test's own.
struct Rig {
    nats: NatsServer,
    api: ApiProcess,
    log: Arc<JetStreamLog>,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> anyhow::Result<Self> {
        let nats = NatsServer::start_with(NatsOptions {
            sync_always: true,
            ..NatsOptions::default()
        })?;
        let dir = tempfile::tempdir()?;
        let api = ApiProcess::start(&nats.url(), &dir.path().join("api")).await?;
        let log =
            Arc::new(JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?);
        Ok(Self {
            nats,
            api,
            log,
            dir,
        })
    }

    fn tail(&self, args: &[&str]) -> anyhow::Result<TailProcess> {
        TailProcess::spawn(&self.api, args, self.dir.path())
    }

    /// Appends `n` template events, `width` at a time; their seqs, ascending.
    async fn append(&self, n: usize, width: usize) -> anyhow::Result<Vec<u64>> {
        let account = system_account();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seqs = Vec::with_capacity(n);
        let events: Vec<_> = (0..n)
            .map(|i| template_event(&account, &format!("t{i}")))
            .collect();
        for chunk in events.chunks(width.max(1)) {
            let log = self.log.as_ref();
            let stored = try_join_all(
                chunk
                    .iter()
                    .map(|ev| async move { append_retrying(log, ev, deadline).await }),
            )
            .await?;
            seqs.extend(stored);
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Appends in the background, `writers` at a time with a short pause
    /// between appends, until `stop` is set; the seqs so far are in `seqs`.
    fn appending(&self, writers: usize, pause: Duration) -> Appending {
        let stop = Arc::new(AtomicBool::new(false));
        let seqs: Arc<Mutex<Vec<u64>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let tasks = (0..writers)
            .map(|w| {
                let (log, stop, seqs, count) =
                    (self.log.clone(), stop.clone(), seqs.clone(), count.clone());
                tokio::spawn(async move {
                    let account = system_account();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let ev = template_event(&account, &format!("w{w}-{i}"));
                        let deadline = Instant::now() + Duration::from_secs(60);
                        let seq = append_retrying(log.as_ref(), &ev, deadline).await?;
                        seqs.lock().expect("seqs lock").push(seq);
                        count.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        Appending {
            stop,
            seqs,
            count,
            tasks,
        }
    }
}

/// Background appends (see [`Rig::appending`]).
struct Appending {
    stop: Arc<AtomicBool>,
    seqs: Arc<Mutex<Vec<u64>>>,
    count: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Appending {
    /// Waits until `n` more appends were acknowledged.
    async fn wait_for(&self, n: usize) {
        let target = self.count.load(Ordering::SeqCst) + n;
        while self.count.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops, waits for the writers; every seq appended, ascending.
    async fn finish(self) -> anyhow::Result<Vec<u64>> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await??;
        }
        let mut seqs = self.seqs.lock().expect("seqs lock").clone();
        seqs.sort_unstable();
        Ok(seqs)
    }
}

/// Waits until the tail printed `want`'s last seq, lets a little more
/// time pass (a duplicate would show), and checks it printed exactly `want`.
async fn printed_exactly(tail: &mut TailProcess, want: &[u64]) -> anyhow::Result<()> {
    let last = *want.last().expect("something was appended");
    tail.wait_for_seq(last, CATCH_UP).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    exactly(&tail.seqs(), want)
}

/// `--since 1 --follow` started in the middle of concurrent appends: the
/// catch-up (two pages of recent_events) and the live stream together
/// print every matching event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_switch_over_with_appends_racing() -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let mut want = rig.append(1_200, 64).await?;
    let appending = rig.appending(4, Duration::from_millis(1));
    appending.wait_for(100).await;
    let mut tail = rig.tail(&["--since", "1", "--follow", "--kind-prefix", PREFIX])?;
    // Keep appending while the tail catches up and switches to the stream.
    tail.wait_for_seq(want[want.len() - 1], CATCH_UP).await?;
    appending.wait_for(200).await;
    want.extend(appending.finish().await?);
    printed_exactly(&mut tail, &want).await?;
    ensure!(
        !tail.stderr().contains("reconnecting"),
        "the stream dropped: {}",
        tail.stderr()
    );
    Ok(())
}

/// The API is killed and started again on the same port while events keep
/// coming: the tail reconnects with Last-Event-ID and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_resumes_across_an_api_restart() -> anyhow::Result<()> {
    let mut rig = Rig::start().await?;
    let mut want = rig.append(5, 1).await?;
    let mut tail = rig.tail(&["-n", "3", "--follow", "--kind-prefix", PREFIX])?;
    want.drain(..2);
    tail.wait_for_seq(want[want.len() - 1], CATCH_UP).await?;
    let appending = rig.appending(2, Duration::from_millis(5));
    appending.wait_for(50).await;
    rig.api.kill();
    appending.wait_for(100).await;
    rig.api.restart().await?;
    appending.wait_for(50).await;
    want.extend(appending.finish().await?);
    printed_exactly(&mut tail, &want)
        .await
        .map_err(|e| e.context(rig.api.log_tail(20)))?;
    ensure!(
        tail.stderr().contains("reconnecting"),
        "no reconnection note on stderr: {}",
        tail.stderr()
    );
    Ok(())
}

/// nats-server killed and restarted on the same store while the tail
/// follows and events keep coming: the API's subscription carries on and
/// the tail prints every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_follows_across_a_nats_server_restart() -> anyhow::Result<()> {
    let mut rig = Rig::start().await?;
    let mut want = rig.append(20, 4).await?;
    let mut tail = rig.tail(&["--since", "1", "--follow", "--kind-prefix", PREFIX])?;
    tail.wait_for_seq(want[want.len() - 1], CATCH_UP).await?;
    let appending = rig.appending(2, Duration::from_millis(5));
    appending.wait_for(50).await;
    tokio::task::block_in_place(|| rig.nats.restart())?;
    appending.wait_for(50).await;
    want.extend(appending.finish().await?);
    printed_exactly(&mut tail, &want)
        .await
        .map_err(|e| e.context(rig.api.log_tail(20)))
}

/// `--follow -n 0` on a log with history prints only what is appended
/// after it started, also after a nats-server restart (the ordered
/// consumer under the stream must not fall back to the whole stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn from_now_never_replays_history() -> anyhow::Result<()> {
    let mut rig = Rig::start().await?;
    let history = rig.append(300, 32).await?;
    let history_last = history[history.len() - 1];
    let mut tail = rig.tail(&["-n", "0", "--follow", "--kind-prefix", PREFIX])?;
    // The tail prints nothing until it is connected: append one event at a
    // time until one shows; from then on it must print everything.
    let mut probes = Vec::new();
    let start = Instant::now();
    while tail.seqs().is_empty() {
        ensure!(
            start.elapsed() < CATCH_UP,
            "the tail printed nothing: {}",
            tail.stderr()
        );
        probes.extend(rig.append(1, 1).await?);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = tail.seqs()[0];
    ensure!(
        first > history_last,
        "the tail printed history (seq {first} <= {history_last})"
    );
    let mut want: Vec<u64> = probes.into_iter().filter(|&s| s >= first).collect();
    want.extend(rig.append(20, 4).await?);
    printed_exactly(&mut tail, &want).await?;

    tokio::task::block_in_place(|| rig.nats.restart())?;
    want.extend(rig.append(20, 1).await?);
    printed_exactly(&mut tail, &want)
        .await
        .map_err(|e| e.context(rig.api.log_tail(20)))
}
