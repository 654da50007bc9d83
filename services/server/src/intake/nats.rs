//! The intake over NATS request/reply: agents on other hosts reach it on
//! the `pn.agent.*` subjects (queue group `pn-intake`, so several API
//! replicas share the load).
//!
//! An enrolled agent heartbeats and submits on its instance's own subjects
//! (`pn.agent.heartbeat.<instance>`, `pn.agent.submit.<instance>`), so a
//! server that authenticates agents can confine each to its own; a request
//! whose instance is not its subject's is refused (`subject_mismatch`).
//! The shared subjects (`pn.agent.heartbeat`, `pn.agent.submit`) are still
//! answered, for servers without per-agent users.

use super::{refusal, Intake};
use futures::StreamExt;
use powernode_protocol::{subjects, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a starting intake waits for its projection before answering.
const CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers agent requests on `client` until `shutdown`, once the
/// projection has caught up with the log.
///
/// Each request is answered in a task of its own, owned here: a panic in
/// one stops the intake (and so the node) with an error. At shutdown the
/// answers still in flight are dropped unanswered — they may be waiting for
/// a decision the stopping services will not make; the agent asks again,
/// and its events are appended idempotently by id.
pub async fn serve(
    intake: Intake,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Join the queue group only with a caught-up view of the fleet.
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        ok = intake.caught_up_with_log(CATCH_UP_LIMIT) => if !ok {
            tracing::warn!("the projection did not catch up with the log within {CATCH_UP_LIMIT:?}; answering agents anyway");
        },
    }
    let queue = || subjects::QUEUE.to_string();
    let mut enroll = client.queue_subscribe(subjects::ENROLL, queue()).await?;
    let heartbeat = client.queue_subscribe(subjects::HEARTBEAT, queue()).await?;
    let own_heartbeat = client
        .queue_subscribe(subjects::HEARTBEAT_ANY, queue())
        .await?;
    let submit = client.queue_subscribe(subjects::SUBMIT, queue()).await?;
    let own_submit = client
        .queue_subscribe(subjects::SUBMIT_ANY, queue())
        .await?;
    let mut heartbeat = futures::stream::select(heartbeat, own_heartbeat);
    let mut submit = futures::stream::select(submit, own_submit);
    info!("agent intake listening on pn.agent.*");
    let mut answers = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(answered) = answers.join_next() => {
                if let Err(e) = answered {
                    if e.is_panic() {
                        let message = powernode_runtime::supervisor::panic_message(e.into_panic());
                        anyhow::bail!("answering an agent panicked: {message}");
                    }
                }
            }
            Some(msg) = enroll.next() => {
                let i = intake.clone();
                spawn_answer(&mut answers, client.clone(), msg, move |req| async move { i.enroll(req).await });
            }
            Some(msg) = heartbeat.next() => {
                let i = intake.clone();
                let sender = sender(&msg, subjects::HEARTBEAT);
                spawn_answer(&mut answers, client.clone(), msg, move |req| async move {
                    i.heartbeat_from(sender.as_deref(), req).await
                });
            }
            Some(msg) = submit.next() => {
                let i = intake.clone();
                let sender = sender(&msg, subjects::SUBMIT);
                spawn_answer(&mut answers, client.clone(), msg, move |req| async move {
                    i.submit_from(sender.as_deref(), req).await
                });
            }
            else => return Ok(()),
        }
    }
}

/// The instance whose own subject (`<shared>.<instance>`) `msg` came on.
fn sender(msg: &async_nats::Message, shared: &str) -> Option<String> {
    subjects::instance_of(msg.subject.as_str(), shared).map(str::to_string)
}

fn spawn_answer<Q, A, F, Fut>(
    answers: &mut JoinSet<()>,
    client: async_nats::Client,
    msg: async_nats::Message,
    f: F,
) where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
    F: FnOnce(Q) -> Fut + Send + 'static,
    Fut: Future<Output = Result<A, super::Refusal>> + Send + 'static,
{
    answers.spawn(async move {
        let Some(reply_to) = msg.reply.clone() else {
            return;
        };
        let answer = match serde_json::from_slice::<Q>(&msg.payload) {
            Ok(req) => match f(req).await {
                Ok(a) => Reply::Ok(a),
                Err(e) => Reply::Error(e),
            },
            Err(e) => Reply::Error(refusal(
                "malformed_request",
                format!("{}: {e}", msg.subject),
            )),
        };
        if let Reply::Error(e) = &answer {
            powernode_log::metrics::intake_refused(&e.code);
        }
        let body = serde_json::to_vec(&answer).expect("replies serialize");
        if let Err(e) = client.publish(reply_to, body.into()).await {
            warn!(error = %e, "could not answer an agent");
        }
    });
}
