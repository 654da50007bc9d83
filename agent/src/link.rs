//! How an agent reaches the platform's intake: over NATS request/reply
//! ([`NatsLink`]), or by a direct call for agents running inside the
//! platform's process (the simulator implements [`AgentLink`] itself).
//! A link may also carry nudges: "heartbeat now" signals the platform sends
//! an instance (e.g. after a VIP promotion), so it need not wait for its
//! interval.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
pub use powernode_protocol::link::{inbox_prefix_for, AgentLink, LinkError};
use powernode_protocol::{
    subjects, EnrollReply, EnrollRequest, Heartbeat, HeartbeatReply, Reply, Submission, SubmitReply,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// How long an agent waits for the intake's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an agent waits for the answer to a heartbeat. The intake
/// answers at once (at most 500 ms after a nudge); an answer lost with a
/// dying NATS node must not keep the agent from beating: while it waits it
/// sends no beat, and a holder that waited [`REQUEST_TIMEOUT`] was taken
/// for silent (found by the rig's NATS-node kill). With the default 1 s
/// interval a lost answer now leaves at most ~2 s between beats, under the
/// default 3 s silence threshold. After a heartbeat went unanswered the
/// next one waits twice as long (up to [`REQUEST_TIMEOUT`]), so an intake
/// that is slow rather than gone still gets its answers through.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the link pings the server: a connection that went dead (the
/// server killed, the host cut off) is noticed after two missed pongs.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How an agent authenticates to NATS.
#[derive(Clone, Default)]
pub struct NatsAuth {
    /// The seed (`SU…`) of the agent's NKey user; `None`: no
    /// authentication (a server without users).
    pub nkey_seed: Option<String>,
    /// Prefix of the agent's reply subjects. `None` with an NKey:
    /// `_INBOX.<the NKey's public key>`, so the server can let each agent
    /// read only its own replies (join tokens travel in them). `None`
    /// without one: the client's default `_INBOX`.
    pub inbox_prefix: Option<String>,
    /// A token sent on connect: the enrollment credential, before the
    /// agent has enrolled (the auth callout then lets it enroll only).
    pub token: Option<String>,
    /// CA certificate (PEM) for the server's TLS certificate; implies TLS.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuth")
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "<redacted>"))
            .field("inbox_prefix", &self.inbox_prefix())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl NatsAuth {
    /// The NKey user with its seed in `path` (whitespace trimmed).
    pub fn from_seed_file(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::from_seed(&std::fs::read_to_string(path)?))
    }

    /// The NKey user with this seed (whitespace trimmed).
    pub fn from_seed(seed: &str) -> Self {
        Self {
            nkey_seed: Some(seed.trim().to_string()),
            inbox_prefix: None,
            token: None,
            ca_file: None,
        }
    }

    /// The agent's identity key as its NKey; `enrollment` (the one-time
    /// credential) is sent as the token until the agent has enrolled.
    pub fn from_identity(identity: &crate::identity::Identity, enrollment: Option<String>) -> Self {
        Self {
            token: enrollment,
            ..Self::from_seed(&identity.nats_seed())
        }
    }

    /// The public key (`U…`) of the NKey user, if one is set and its seed
    /// is valid.
    pub fn public_key(&self) -> Option<String> {
        let seed = self.nkey_seed.as_ref()?;
        nkeys::KeyPair::from_seed(seed).ok().map(|k| k.public_key())
    }

    /// The reply-subject prefix the agent uses (see [`Self::inbox_prefix`]).
    pub fn inbox_prefix(&self) -> Option<String> {
        self.inbox_prefix
            .clone()
            .or_else(|| self.public_key().map(|k| inbox_prefix_for(&k)))
    }
}

/// The instance a submission reports for (the signed event's actor), if
/// the event decodes.
fn submitter(s: &Submission) -> Option<String> {
    let bytes = hex::decode(&s.event).ok()?;
    match powernode_events::Envelope::decode(&bytes).ok()?.actor {
        powernode_events::Actor::Agent { instance_id } => Some(instance_id),
        _ => None,
    }
}

/// The intake over NATS request/reply.
pub struct NatsLink {
    client: async_nats::Client,
    timeout: Duration,
    /// How long the next heartbeat waits for its answer (milliseconds).
    heartbeat_wait_ms: std::sync::atomic::AtomicU64,
}

impl NatsLink {
    /// Connects to `url` (several servers: comma-separated).
    pub async fn connect(url: &str) -> Result<Self, LinkError> {
        Self::connect_with(url, &NatsAuth::default()).await
    }

    /// Connects to `url` as `auth` says (an NKey user whose server-side
    /// permissions confine it to its own subjects and reply inbox).
    pub async fn connect_with(url: &str, auth: &NatsAuth) -> Result<Self, LinkError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("powernode-agent")
            // Notice a dead or cut-off server within seconds, not minutes.
            .ping_interval(PING_INTERVAL)
            // The intake may wait up to 20 s for a decision before answering.
            .request_timeout(Some(REQUEST_TIMEOUT));
        if let Some(seed) = &auth.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(token) = &auth.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &auth.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        } else if url.split(',').any(|u| u.trim().starts_with("tls://")) {
            options = options.require_tls(true);
        }
        if let Some(prefix) = auth.inbox_prefix() {
            options = options.custom_inbox_prefix(prefix);
        }
        // Several servers (a cluster) may be given, comma-separated.
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let client = options
            .connect(servers)
            .await
            .map_err(|e| LinkError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        Ok(Self::new(client))
    }

    /// Uses an existing connection.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            timeout: REQUEST_TIMEOUT + Duration::from_secs(5),
            heartbeat_wait_ms: (HEARTBEAT_TIMEOUT.as_millis() as u64).into(),
        }
    }

    async fn request<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: String,
        body: &Q,
    ) -> Result<A, LinkError> {
        self.request_within(self.timeout, subject, body).await
    }

    async fn request_within<Q: Serialize, A: DeserializeOwned>(
        &self,
        timeout: Duration,
        subject: String,
        body: &Q,
    ) -> Result<A, LinkError> {
        let payload = serde_json::to_vec(body).expect("protocol messages serialize");
        let msg = tokio::time::timeout(
            timeout,
            self.client.request(subject.clone(), payload.into()),
        )
        .await
        .map_err(|_| LinkError::Unavailable(format!("{subject}: no answer in {timeout:?}")))?
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
        self.request(subjects::ENROLL.to_string(), &req).await
    }

    /// On the instance's own subject ([`subjects::heartbeat_of`]).
    async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, LinkError> {
        let subject = subjects::heartbeat_of(&hb.instance_id);
        use std::sync::atomic::Ordering;
        let wait = self.heartbeat_wait_ms.load(Ordering::Relaxed);
        let result = self
            .request_within(Duration::from_millis(wait), subject, &hb)
            .await;
        let next = match &result {
            Err(LinkError::Unavailable(_)) => (wait * 2).min(REQUEST_TIMEOUT.as_millis() as u64),
            _ => HEARTBEAT_TIMEOUT.as_millis() as u64,
        };
        self.heartbeat_wait_ms.store(next, Ordering::Relaxed);
        result
    }

    /// On the reporting instance's own subject ([`subjects::submit_of`]);
    /// an event that does not decode goes to the shared subject, whose
    /// answer says what is wrong with it.
    async fn submit(&self, s: Submission) -> Result<SubmitReply, LinkError> {
        let subject = match submitter(&s) {
            Some(instance) => subjects::submit_of(&instance),
            None => subjects::SUBMIT.to_string(),
        };
        self.request(subject, &s).await
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
