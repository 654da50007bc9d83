//! The intake over NATS request/reply: agents on other hosts reach it on
//! the `pn.agent.*` subjects (queue group `pn-intake`, so several API
//! replicas share the load).

use super::{refusal, Intake};
use futures::StreamExt;
use powernode_agent::protocol::{subjects, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Answers agent requests on `client` until `shutdown`.
pub async fn serve(
    intake: Intake,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut enroll = client
        .queue_subscribe(subjects::ENROLL, subjects::QUEUE.into())
        .await?;
    let mut heartbeat = client
        .queue_subscribe(subjects::HEARTBEAT, subjects::QUEUE.into())
        .await?;
    let mut submit = client
        .queue_subscribe(subjects::SUBMIT, subjects::QUEUE.into())
        .await?;
    info!("agent intake listening on pn.agent.*");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(msg) = enroll.next() => {
                let i = intake.clone();
                spawn_answer(client.clone(), msg, move |req| async move { i.enroll(req).await });
            }
            Some(msg) = heartbeat.next() => {
                let i = intake.clone();
                spawn_answer(client.clone(), msg, move |req| async move { i.heartbeat(req).await });
            }
            Some(msg) = submit.next() => {
                let i = intake.clone();
                spawn_answer(client.clone(), msg, move |req| async move { i.submit(req).await });
            }
            else => return Ok(()),
        }
    }
}

fn spawn_answer<Q, A, F, Fut>(client: async_nats::Client, msg: async_nats::Message, f: F)
where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
    F: FnOnce(Q) -> Fut + Send + 'static,
    Fut: Future<Output = Result<A, super::Refusal>> + Send + 'static,
{
    tokio::spawn(async move {
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
        let body = serde_json::to_vec(&answer).expect("replies serialize");
        if let Err(e) = client.publish(reply_to, body.into()).await {
            warn!(error = %e, "could not answer an agent");
        }
    });
}
