//! Owned tasks: every task a node spawns is named, joined under the node's
//! shutdown, and stops the node when it fails.
//!
//! A [`Supervisor`] wraps a [`JoinSet`] and the node's [`CancellationToken`].
//! Tasks are spawned with a name ([`Supervisor::spawn`], or from inside other
//! tasks through a cloned [`Spawner`]); [`Supervisor::wait`] then:
//!
//! * stops the node at the first task that returns an error, panics, or —
//!   for a task meant to run as long as the node ([`Spawner::spawn`]) —
//!   ends while the node is still running: the token is cancelled and that
//!   task, named, is the error `wait` returns;
//! * after the token is cancelled (by the owner, or by a failure), joins
//!   every task, giving them a bounded grace period; tasks still running
//!   after it are aborted and named.
//!
//! It never restarts anything: a failed task means a failed node, and the
//! process (or whoever runs it) decides what comes next.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Why a supervised group of tasks stopped with an error. The first failure
/// wins; later ones are logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// A task panicked.
    #[error("task {task:?} panicked: {message}")]
    Panicked {
        /// The task's name.
        task: String,
        /// The panic message.
        message: String,
    },
    /// A task returned an error.
    #[error("task {task:?} failed: {reason}")]
    Failed {
        /// The task's name.
        task: String,
        /// The error, with its causes.
        reason: String,
    },
    /// A task meant to run until shutdown ended while the node was running.
    #[error("task {task:?} ended while the node was still running")]
    EndedEarly {
        /// The task's name.
        task: String,
    },
    /// Tasks still running a grace period after shutdown (aborted then).
    #[error("task(s) did not stop within {grace:?} of shutdown: {}", tasks.join(", "))]
    DidNotStop {
        /// Their names.
        tasks: Vec<String>,
        /// The grace period they had.
        grace: Duration,
    },
}

impl SupervisorError {
    /// The task that caused the error (the first one, for `DidNotStop`).
    pub fn task(&self) -> &str {
        match self {
            Self::Panicked { task, .. } | Self::Failed { task, .. } | Self::EndedEarly { task } => {
                task
            }
            Self::DidNotStop { tasks, .. } => tasks.first().map_or("", String::as_str),
        }
    }
}

/// What a supervised task returns: `()`, or a `Result` whose error is
/// reported with its causes.
pub trait TaskOutput: Send + 'static {
    /// `Err` with the error's text (and its causes) when the task failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl TaskOutput for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E> TaskOutput for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| with_causes(&*e.into()))
    }
}

/// `error: cause: cause …`, leaving out a cause whose text the message
/// already ends with (errors that print their source themselves).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

/// Whether a task may end on its own while the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Runs until shutdown: ending earlier stops the node.
    UntilShutdown,
    /// May end whenever its work is done.
    Transient,
}

/// The tasks, and what is known about each.
struct Tasks {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, (String, Lifetime)>,
    /// Set once everything was joined: nothing more is started.
    closed: bool,
}

struct Inner {
    tasks: Mutex<Tasks>,
    /// Woken when a task is added (the set may have been empty).
    added: Notify,
    shutdown: CancellationToken,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tasks> {
        // No code panics while holding the lock (it only spawns and polls),
        // and the state stays consistent even if one did: go on.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Spawns tasks under a [`Supervisor`]; cheap to clone, for tasks that
/// start others.
#[derive(Clone)]
pub struct Spawner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("shutdown", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Spawner {
    /// The token that stops every task of this supervisor.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Spawns `task`, named `name`, to run until shutdown: it must return
    /// once the token is cancelled, and ending before that (even `Ok`)
    /// stops the node.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.start(name.into(), Lifetime::UntilShutdown, task);
    }

    /// Spawns `task`, named `name`, that may end whenever its work is done
    /// (a job, a helper of one request). Failing or panicking still stops
    /// the node, and it is joined at shutdown like every other task.
    pub fn spawn_transient<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.start(name.into(), Lifetime::Transient, task);
    }

    fn start<F>(&self, name: String, lifetime: Lifetime, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let mut tasks = self.inner.lock();
        if tasks.closed {
            warn!(task = %name, "not started: the node has stopped");
            return;
        }
        let handle = tasks.set.spawn(async move { task.await.into_outcome() });
        debug!(task = %name, id = %handle.id(), "task started");
        tasks.names.insert(handle.id(), (name, lifetime));
        drop(tasks);
        self.inner.added.notify_waiters();
    }
}

/// Owns a node's tasks: see the [module](self) documentation.
#[derive(Debug)]
pub struct Supervisor {
    spawner: Spawner,
}

impl Supervisor {
    /// An empty supervisor whose tasks stop when `shutdown` is cancelled
    /// (and which cancels it when one of them fails).
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            spawner: Spawner {
                inner: Arc::new(Inner {
                    tasks: Mutex::new(Tasks {
                        set: JoinSet::new(),
                        names: HashMap::new(),
                        closed: false,
                    }),
                    added: Notify::new(),
                    shutdown,
                }),
            },
        }
    }

    /// A handle that spawns tasks under this supervisor.
    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// The token that stops every task.
    pub fn shutdown(&self) -> &CancellationToken {
        self.spawner.shutdown()
    }

    /// [`Spawner::spawn`]: a task that runs until shutdown.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.spawner.spawn(name, task);
    }

    /// [`Spawner::spawn_transient`]: a task that may end on its own.
    pub fn spawn_transient<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        self.spawner.spawn_transient(name, task);
    }

    /// Names of the tasks still running.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .spawner
            .inner
            .lock()
            .names
            .values()
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Runs until the shutdown token is cancelled or a task fails (which
    /// cancels it), then joins every task, aborting and naming those still
    /// running `grace` after that. The first failure is the error.
    pub async fn wait(self, grace: Duration) -> Result<(), SupervisorError> {
        let inner = &self.spawner.inner;
        let mut first: Option<SupervisorError> = None;
        // Running: until shutdown or the first failure.
        while first.is_none() {
            let joined = tokio::select! {
                biased;
                joined = self.next_joined() => joined,
                _ = inner.shutdown.cancelled() => break,
            };
            first = self.judge(joined, inner.shutdown.is_cancelled());
        }
        if let Some(e) = &first {
            error!(task = %e.task(), error = %e, "a task failed; stopping the node");
            inner.shutdown.cancel();
        }
        // Stopping: join everything, within the grace period.
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.next_joined_or_close()).await {
                Ok(Some(joined)) => {
                    if let Some(e) = self.judge(joined, true) {
                        if first.is_none() {
                            first = Some(e);
                        } else {
                            error!(task = %e.task(), error = %e, "another task failed while stopping");
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let tasks = self.abort_remaining();
                    let late = SupervisorError::DidNotStop { tasks, grace };
                    error!(error = %late, "aborted");
                    first.get_or_insert(late);
                    break;
                }
            }
        }
        match first {
            None => {
                info!("every task stopped");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// The next task to finish (waits for one to be added when none runs).
    async fn next_joined(&self) -> Result<(Id, Result<(), String>), JoinError> {
        let inner = &self.spawner.inner;
        loop {
            let added = inner.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let next = std::future::poll_fn(|cx| inner.lock().set.poll_join_next_with_id(cx)).await;
            match next {
                Some(joined) => return joined,
                None => added.await,
            }
        }
    }

    /// The next task to finish; `None` (and nothing starts any more) once
    /// none runs.
    async fn next_joined_or_close(&self) -> Option<Result<(Id, Result<(), String>), JoinError>> {
        let inner = &self.spawner.inner;
        std::future::poll_fn(|cx| {
            let mut tasks = inner.lock();
            let next = tasks.set.poll_join_next_with_id(cx);
            if let std::task::Poll::Ready(None) = next {
                tasks.closed = true;
            }
            next
        })
        .await
    }

    /// Turns a joined task into the error it stands for, if any.
    fn judge(
        &self,
        joined: Result<(Id, Result<(), String>), JoinError>,
        stopping: bool,
    ) -> Option<SupervisorError> {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let (task, lifetime) = self
            .spawner
            .inner
            .lock()
            .names
            .remove(&id)
            .unwrap_or_else(|| (format!("task {id}"), Lifetime::Transient));
        match joined {
            Ok((_, Ok(()))) if lifetime == Lifetime::UntilShutdown && !stopping => {
                Some(SupervisorError::EndedEarly { task })
            }
            Ok((_, Ok(()))) => {
                debug!(%task, "task ended");
                None
            }
            Ok((_, Err(reason))) => Some(SupervisorError::Failed { task, reason }),
            Err(e) if e.is_panic() => Some(SupervisorError::Panicked {
                task,
                message: panic_message(e.into_panic()),
            }),
            // Cancelled: only `abort_remaining` aborts, after which nothing
            // is joined any more.
            Err(_) => {
                debug!(%task, "task aborted");
                None
            }
        }
    }

    /// Aborts every task still running and closes the set; their names.
    fn abort_remaining(&self) -> Vec<String> {
        let mut tasks = self.spawner.inner.lock();
        tasks.closed = true;
        tasks.set.abort_all();
        let mut names: Vec<String> = tasks.names.drain().map(|(_, (n, _))| n).collect();
        names.sort();
        names
    }
}

impl Drop for Supervisor {
    /// Dropped without [`wait`](Self::wait) finishing: every task is
    /// aborted, as a dropped [`JoinSet`] would.
    fn drop(&mut self) {
        let mut tasks = self.spawner.inner.lock();
        tasks.closed = true;
        tasks.set.abort_all();
    }
}

/// The message a panic was raised with (from a [`JoinError::into_panic`]).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "(a panic without a message)".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A task that runs until shutdown, counting itself stopped.
    async fn well_behaved(stop: CancellationToken, stopped: Arc<AtomicUsize>) {
        stop.cancelled().await;
        stopped.fetch_add(1, Ordering::SeqCst);
    }

    async fn explode() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        panic!("boom at {}", 42);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_stops_the_others_and_is_named() {
        let sup = Supervisor::new(CancellationToken::new());
        let stopped = Arc::new(AtomicUsize::new(0));
        for name in ["a", "b"] {
            sup.spawn(name, well_behaved(sup.shutdown().clone(), stopped.clone()));
        }
        sup.spawn("doomed", explode());
        let stop = sup.shutdown().clone();
        let e = sup.wait(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e,
            SupervisorError::Panicked {
                task: "doomed".into(),
                message: "boom at 42".into()
            }
        );
        assert!(
            e.to_string().contains("\"doomed\" panicked: boom at 42"),
            "{e}"
        );
        assert!(stop.is_cancelled());
        assert_eq!(stopped.load(Ordering::SeqCst), 2, "the others were joined");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_is_named_with_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot save")]
        struct Outer(#[source] std::io::Error);
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn("a", well_behaved(sup.shutdown().clone(), Arc::default()));
        sup.spawn("checkpoint", async {
            Err::<(), _>(Outer(std::io::Error::other("disk full")))
        });
        let e = sup.wait(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e,
            SupervisorError::Failed {
                task: "checkpoint".into(),
                reason: "cannot save: disk full".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_shutdown_joins_every_task() {
        let sup = Supervisor::new(CancellationToken::new());
        let stopped = Arc::new(AtomicUsize::new(0));
        for i in 0..5 {
            sup.spawn(
                format!("t{i}"),
                well_behaved(sup.shutdown().clone(), stopped.clone()),
            );
        }
        // Started from inside a task, and one that ends on its own.
        let spawner = sup.spawner();
        let (stop, count) = (sup.shutdown().clone(), stopped.clone());
        sup.spawn_transient("starter", async move {
            spawner.spawn("late", well_behaved(stop, count));
        });
        sup.spawn_transient("job", async { Ok::<(), std::io::Error>(()) });
        let stop = sup.shutdown().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        sup.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(stopped.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_ending_early_stops_the_node() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn("a", well_behaved(sup.shutdown().clone(), Arc::default()));
        sup.spawn("listener", async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        });
        let e = sup.wait(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e,
            SupervisorError::EndedEarly {
                task: "listener".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_ignoring_shutdown_is_named_after_the_grace_period() {
        let sup = Supervisor::new(CancellationToken::new());
        let stopped = Arc::new(AtomicUsize::new(0));
        sup.spawn(
            "polite",
            well_behaved(sup.shutdown().clone(), stopped.clone()),
        );
        sup.spawn("stubborn", std::future::pending::<()>());
        sup.shutdown().cancel();
        let start = tokio::time::Instant::now();
        let e = sup.wait(Duration::from_secs(3)).await.unwrap_err();
        assert_eq!(
            e,
            SupervisorError::DidNotStop {
                tasks: vec!["stubborn".into()],
                grace: Duration::from_secs(3)
            }
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_starts_after_the_supervisor_is_done() {
        let sup = Supervisor::new(CancellationToken::new());
        let spawner = sup.spawner();
        sup.shutdown().cancel();
        sup.wait(Duration::from_secs(1)).await.unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        spawner.spawn_transient("too late", async move {
            r.fetch_add(1, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
