//! How an agent reaches the platform's intake: over NATS request/reply
//! ([`NatsLink`]), or by a direct call for agents running inside the
//! platform's process (the simulator implements [`AgentLink`] itself).
//! A link may also carry nudges: "heartbeat now" signals the platform sends
//! an instance (e.g. after a VIP promotion), so it need not wait for its
//! interval.

use crate::protocol::{
    subjects, EnrollReply, EnrollRequest, ErrorBody, Heartbeat, HeartbeatReply, Reply, Submission,
    SubmitReply,
};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Why a request to the intake failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The intake refused the request (bad credential, bad signature, …).
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorBody),
    /// The intake could not be reached or did not answer; try again later.
    #[error("intake unavailable: {0}")]
    Unavailable(String),
}

/// The three requests an agent makes, and the nudges it listens to.
#[async_trait]
pub trait AgentLink: Send + Sync {
    /// Registers the agent's key with its one-time credential.
    async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, LinkError>;
    /// Proof of life; answers the instance's assignments.
    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError>;
    /// One signed handshake event; answers the platform's decision.
    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError>;
    /// The nudges sent to `instance_id` (one item each), or `None` when
    /// this link carries none (the agent then beats on its interval only).
    async fn nudges(&self, instance_id: &str) -> Option<BoxStream<'static, u64>> {
        let _ = instance_id;
        None
    }
}

/// How long an agent waits for the intake's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The intake over NATS request/reply.
pub struct NatsLink {
    client: async_nats::Client,
    timeout: Duration,
}

impl NatsLink {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Self, LinkError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("powernode-agent")
            // The intake may wait up to 20 s for a decision before answering.
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|e| LinkError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        Ok(Self::new(client))
    }

    /// Uses an existing connection.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            timeout: REQUEST_TIMEOUT + Duration::from_secs(5),
        }
    }

    async fn request<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: &'static str,
        body: &Q,
    ) -> Result<A, LinkError> {
        let payload = serde_json::to_vec(body).expect("protocol messages serialize");
        let msg = tokio::time::timeout(self.timeout, self.client.request(subject, payload.into()))
            .await
            .map_err(|_| {
                LinkError::Unavailable(format!("{subject}: no answer in {:?}", self.timeout))
            })?
            .map_err(|e| LinkError::Unavailable(format!("{subject}: {e}")))?;
        match serde_json::from_slice::<Reply<A>>(&msg.payload) {
            Ok(Reply::Ok(a)) => Ok(a),
            Ok(Reply::Error(e)) => Err(LinkError::Refused(e)),
            Err(e) => Err(LinkError::Unavailable(format!(
                "{subject}: unreadable answer: {e}"
            ))),
        }
    }
}

#[async_trait]
impl AgentLink for NatsLink {
    async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, LinkError> {
        self.request(subjects::ENROLL, &req).await
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        self.request(subjects::HEARTBEAT, &hb).await
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        self.request(subjects::SUBMIT, &s).await
    }

    /// Subscribes to [`subjects::nudge`] for the instance (core NATS; the
    /// subscription survives reconnects).
    async fn nudges(&self, instance_id: &str) -> Option<BoxStream<'static, u64>> {
        let subject = subjects::nudge(instance_id);
        match self.client.subscribe(subject.clone()).await {
            Ok(subscriber) => Some(
                subscriber
                    .map(|m| {
                        std::str::from_utf8(&m.payload)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .unwrap_or(0)
                    })
                    .boxed(),
            ),
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot subscribe to nudges; heartbeats on the interval only");
                None
            }
        }
    }
}
