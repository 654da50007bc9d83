//! The link between an agent and the platform's intake, as both sides see
//! it: the requests an agent makes ([`AgentLink`]), why one fails
//! ([`LinkError`]) and the inbox an agent may use. The agent implements it
//! over NATS; the server implements it by direct call for agents that run
//! inside its process.

use crate::{
    EnrollReply, EnrollRequest, ErrorBody, Heartbeat, HeartbeatReply, Submission, SubmitReply,
};
use async_trait::async_trait;
use futures::stream::BoxStream;

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

/// The reply-subject prefix of the agent whose NKey public key is
/// `public_key`: `_INBOX.<public_key>`. Its permissions allow subscribing
/// to `_INBOX.<public_key>.>` only.
pub fn inbox_prefix_for(public_key: &str) -> String {
    format!("_INBOX.{public_key}")
}
