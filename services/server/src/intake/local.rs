//! The intake as a direct call, for agents running inside the platform's
//! process (`powernode up --simulate-agents`, `powernode demo`, the
//! lifecycle benchmark). The same checks run as over NATS.

use super::Intake;
use async_trait::async_trait;
use powernode_protocol::link::{AgentLink, LinkError};
use powernode_protocol::{
    EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, Submission, SubmitReply,
};

#[async_trait]
impl AgentLink for Intake {
    async fn enroll(&self, req: EnrollRequest) -> Result<EnrollReply, LinkError> {
        Intake::enroll(self, req).await.map_err(refused)
    }

    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        Intake::heartbeat(self, hb).await.map_err(refused)
    }

    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        Intake::submit(self, s).await.map_err(refused)
    }
}

/// A refusal answered, counted by its code.
fn refused(r: super::Refusal) -> LinkError {
    powernode_log::metrics::intake_refused(&r.code);
    LinkError::Refused(r)
}
