//! A hand-driven agent over NATS (its own key; builds, signs and submits
//! exactly what a test says), and raw intake requests.

use super::*;
use anyhow::{ensure, Context as _};
use powernode_agent::identity::Identity;
use powernode_events::payloads::k3s::{HandshakeJoinRequest, K3sModule};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_protocol::{subjects, BootstrapSecrets, EnrollRequest, Submission};
use serde_json::Value;
use std::time::Duration;

/// How long a raw intake request may take before a test calls it hung.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Sends `body` on `subject`; the parsed reply.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
) -> anyhow::Result<Value> {
    let ask = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(ANSWER_WITHIN));
    let msg = tokio::time::timeout(ANSWER_WITHIN, client.send_request(subject.to_string(), ask))
        .await
        .with_context(|| format!("{subject}: no answer within {ANSWER_WITHIN:?}"))?
        .with_context(|| format!("{subject}: no answer within {ANSWER_WITHIN:?}"))?;
    Ok(serde_json::from_slice(&msg.payload)?)
}

/// `reply.error.code`, or a description of the reply.
pub fn error_code(reply: &Value) -> Result<&str, String> {
    reply["error"]["code"]
        .as_str()
        .ok_or_else(|| format!("not an error: {reply}"))
}

/// A hand-driven agent over NATS: its own key, enrolled for one instance;
/// builds, signs and submits events exactly as the test says.
pub struct ManualAgent {
    /// Its key.
    pub identity: Identity,
    /// The instance it enrolled for.
    pub instance_id: String,
    /// The instance's account.
    pub account: AccountId,
    /// Its NATS connection.
    pub client: async_nats::Client,
}

impl ManualAgent {
    /// Provisions an instance (template with `module`, when given) and enrolls a fresh key.
    pub async fn enroll(
        p: &Platform,
        op: &Operator,
        hostname: &str,
        module: Option<(&str, Option<&str>)>,
    ) -> anyhow::Result<Self> {
        let template = op.template(&format!("{hostname}-template")).await?;
        if let Some((m, target)) = module {
            op.assign(&template, m, target).await?;
        }
        let (instance_id, credential) = op.provision(hostname, &template, 2048).await?;
        let client = crate::nats::connect(p.nats_url()).await?;
        let identity = Identity::ephemeral();
        let reply = request(
            &client,
            subjects::ENROLL,
            serde_json::to_vec(&EnrollRequest {
                credential,
                public_key: identity.public_key_hex(),
            })?,
        )
        .await?;
        ensure!(
            reply["ok"]["instance_id"] == instance_id.as_str(),
            "enroll: {reply}"
        );
        Ok(Self {
            identity,
            instance_id,
            account: AccountId::new(op.account_id.clone())?,
            client,
        })
    }

    /// An unsigned event by `actor` (default: this instance).
    pub fn event(&self, actor: Option<&str>, payload: impl Into<EventPayload>) -> Envelope {
        Envelope::new(
            self.account.clone(),
            Actor::Agent {
                instance_id: actor.unwrap_or(&self.instance_id).to_string(),
            },
            payload,
        )
    }

    /// The event signed with this agent's key.
    pub fn signed(&self, payload: impl Into<EventPayload>) -> anyhow::Result<Envelope> {
        let mut e = self.event(None, payload);
        self.identity.sign(&mut e)?;
        Ok(e)
    }

    /// Submits an encoded event; the raw reply.
    pub async fn submit(
        &self,
        event: &Envelope,
        secrets: Option<BootstrapSecrets>,
    ) -> anyhow::Result<Value> {
        let s = Submission {
            event: hex::encode(event.encode()?),
            secrets,
        };
        request(&self.client, subjects::SUBMIT, serde_json::to_vec(&s)?).await
    }

    /// A join request for this instance (as a `k3s-agent`).
    pub fn join_request(&self, target: Option<&str>) -> HandshakeJoinRequest {
        HandshakeJoinRequest {
            instance_id: self.instance_id.clone(),
            module_name: K3sModule::K3sAgent,
            target_cluster_id: target.map(str::to_string),
        }
    }
}
