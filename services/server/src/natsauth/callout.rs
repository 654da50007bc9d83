//! The auth-callout service: nats-server hands every connection that is not
//! one of the platform's own users to `$SYS.REQ.USER.AUTH`; this service
//! (in the API process, beside the agent intake, reading the same fleet
//! projection) answers with a signed user JWT whose permissions confine the
//! client to one instance's subjects — or with a refusal.
//!
//! An agent authenticates with its ed25519 identity key as an NKey (it
//! signs the server's nonce), so the key it enrolled with *is* its NATS
//! credential:
//!
//! * an enrolled, live instance's key gets the instance's permissions:
//!   publish `pn.agent.heartbeat.<instance>`, `pn.agent.submit.<instance>`
//!   and `pn.agent.enroll`; subscribe `_INBOX.<its key>.>` (its own replies)
//!   and `pn.agent.nudge.<instance>`;
//! * a key not enrolled yet that presents the instance's one-time
//!   enrollment credential as its token gets the same permissions (the
//!   credential names the instance; the agent enrolls on this connection
//!   and goes on with it), until the instance has enrolled a key;
//! * anything else — no key, a bad nonce signature, an unknown key, a
//!   terminated instance — is refused.
//!
//! Never `pn.evt.>`, `$KV.>`, `$JS.API.>` or another instance's subjects.
//! Grants expire after [`SESSION`]; the server then disconnects the client,
//! which reconnects and is decided again (a terminated instance is cut off).

use super::jwt::{self, ClaimsData};
use super::PLATFORM_ACCOUNT;
use data_encoding::{BASE64, BASE64URL_NOPAD};
use futures::StreamExt;
use powernode_projections::fleet::InstanceStatus;
use powernode_projections::FleetState;
use powernode_protocol::link::inbox_prefix_for;
use powernode_protocol::{fingerprint, subjects};
use powernode_runtime::Shared;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where nats-server sends authorization requests.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// Queue group of the callout responders (one answer per request when
/// several API replicas run).
pub const QUEUE: &str = "pn-auth";
/// How long a grant lasts before the server disconnects the client and it
/// is decided again.
pub const SESSION: Duration = Duration::from_secs(15 * 60);

/// What the server tells us about a connection (the `nats` section of the
/// authorization request, as much as is used).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthRequest {
    /// The server asking.
    pub server_id: ServerId,
    /// The key the server made for this connection: the subject of our answer.
    pub user_nkey: String,
    /// The client's connection.
    #[serde(default)]
    pub client_info: ClientInfo,
    /// What the client sent in `CONNECT`.
    #[serde(default)]
    pub connect_opts: ConnectOpts,
}

/// The server asking.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerId {
    /// Its public NKey (`N…`).
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// The client's connection.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientInfo {
    /// The nonce the client had to sign.
    #[serde(default)]
    pub nonce: String,
    /// Its address.
    #[serde(default)]
    pub host: String,
}

/// What the client sent in `CONNECT`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectOpts {
    /// Its public NKey (`U…`).
    #[serde(default)]
    pub nkey: String,
    /// Its signature of the nonce (base64url).
    #[serde(default)]
    pub sig: String,
    /// A token: the enrollment credential before enrollment.
    #[serde(default)]
    pub auth_token: String,
}

/// A decision: what a connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The instance.
    pub instance_id: String,
    /// The client's NKey.
    pub nkey: String,
    /// Admitted by its enrolled key (else by the enrollment credential).
    pub enrolled: bool,
}

impl Grant {
    /// Subjects it may publish to.
    pub fn publish(&self) -> Vec<String> {
        vec![
            subjects::ENROLL.to_string(),
            subjects::heartbeat_of(&self.instance_id),
            subjects::submit_of(&self.instance_id),
        ]
    }

    /// Subjects it may subscribe to.
    pub fn subscribe(&self) -> Vec<String> {
        vec![
            format!("{}.>", inbox_prefix_for(&self.nkey)),
            subjects::nudge(&self.instance_id),
        ]
    }
}

/// Why a connection is refused (said to the server, which logs it).
pub type Denial = String;

/// Decides `req` against the fleet: the pure rule, tested without a server.
pub fn decide(fleet: &FleetState, req: &AuthRequest) -> Result<Grant, Denial> {
    let opts = &req.connect_opts;
    if opts.nkey.is_empty() {
        return Err("agents connect with their identity key as an NKey; this client sent none (platform services use the credentials `powernode nats init` made)".into());
    }
    let key = nkeys::KeyPair::from_public_key(&opts.nkey)
        .map_err(|e| format!("nkey {:?} is not a public user key: {e}", opts.nkey))?;
    if !opts.nkey.starts_with('U') {
        return Err(format!("nkey {} is not a user key", opts.nkey));
    }
    let sig = BASE64URL_NOPAD
        .decode(opts.sig.as_bytes())
        .or_else(|_| BASE64.decode(opts.sig.as_bytes()))
        .map_err(|_| "the nonce signature is not base64".to_string())?;
    if req.client_info.nonce.is_empty()
        || key.verify(req.client_info.nonce.as_bytes(), &sig).is_err()
    {
        return Err(format!(
            "nkey {}: the nonce signature does not verify",
            opts.nkey
        ));
    }
    let (_, raw) =
        nkeys::from_public_key(&opts.nkey).map_err(|e| format!("nkey {}: {e}", opts.nkey))?;
    let public_hex = hex::encode(raw);
    let enrolled = fleet.accounts().find_map(|(_, a)| {
        a.instances
            .values()
            .find(|i| i.public_key.as_deref() == Some(public_hex.as_str()))
    });
    if let Some(i) = enrolled {
        if i.status == InstanceStatus::Terminated {
            return Err(format!("instance {} is terminated", i.id));
        }
        return Ok(Grant {
            instance_id: i.id.clone(),
            nkey: opts.nkey.clone(),
            enrolled: true,
        });
    }
    if opts.auth_token.is_empty() {
        return Err(format!(
            "nkey {} is not enrolled; the first connection presents the enrollment credential {} returned",
            opts.nkey,
            powernode_actions::ActionName::ProvisionInstance
        ));
    }
    let (_, i) = fleet
        .instance_by_enrollment(&fingerprint(opts.auth_token.as_bytes()))
        .ok_or_else(|| "no instance was provisioned with this enrollment credential".to_string())?;
    if i.status == InstanceStatus::Terminated {
        return Err(format!("instance {} is terminated", i.id));
    }
    if i.public_key.is_some() {
        return Err(format!(
            "instance {} already enrolled a different key; provision a new instance",
            i.id
        ));
    }
    Ok(Grant {
        instance_id: i.id.clone(),
        nkey: opts.nkey.clone(),
        enrolled: false,
    })
}

/// The signed answer to `req`: a user JWT for `grant`, or the denial.
pub fn answer(
    issuer: &nkeys::KeyPair,
    req: &AuthRequest,
    decision: &Result<Grant, Denial>,
    now: i64,
) -> Result<String, jwt::JwtError> {
    let nats = match decision {
        Ok(grant) => {
            let user = jwt::encode(
                ClaimsData {
                    subject: req.user_nkey.clone(),
                    audience: PLATFORM_ACCOUNT.to_string(),
                    name: format!("agent-{}", grant.instance_id),
                    expires: now + SESSION.as_secs() as i64,
                    ..Default::default()
                },
                json!({
                    "pub": {"allow": grant.publish()},
                    "sub": {"allow": grant.subscribe()},
                    "subs": -1, "data": -1, "payload": -1,
                    "type": "user", "version": 2,
                }),
                issuer,
                now,
            )?;
            json!({"jwt": user, "type": "authorization_response", "version": 2})
        }
        Err(reason) => {
            json!({"error": reason, "type": "authorization_response", "version": 2})
        }
    };
    jwt::encode(
        ClaimsData {
            subject: req.user_nkey.clone(),
            audience: req.server_id.id.clone(),
            ..Default::default()
        },
        nats,
        issuer,
        now,
    )
}

/// Reads a request token: signed by the server it names.
pub fn read_request(token: &[u8]) -> Result<AuthRequest, String> {
    let token = std::str::from_utf8(token).map_err(|_| "request is not text".to_string())?;
    let decoded = jwt::decode(token.trim()).map_err(|e| e.to_string())?;
    let req: AuthRequest = serde_json::from_value::<AuthRequest>(decoded.nats.clone())
        .map_err(|e| format!("authorization request: {e}"))?;
    if decoded.data.issuer != req.server_id.id || !req.server_id.id.starts_with('N') {
        return Err(format!(
            "authorization request signed by {} on behalf of server {}",
            decoded.data.issuer, req.server_id.id
        ));
    }
    if !req.user_nkey.starts_with('U') {
        return Err("authorization request without a user nkey".into());
    }
    Ok(req)
}

/// Answers authorization requests on `client` until `shutdown`.
pub async fn serve(
    issuer: nkeys::KeyPair,
    fleet: Shared<FleetState>,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut requests = client
        .queue_subscribe(AUTH_SUBJECT, QUEUE.to_string())
        .await?;
    info!(issuer = %issuer.public_key(), "NATS auth callout answering on {AUTH_SUBJECT}");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = requests.next() => match m { Some(m) => m, None => return Ok(()) },
        };
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let req = match read_request(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "unreadable authorization request; not answered");
                continue;
            }
        };
        let decision = decide(&*fleet.state.read().await, &req);
        match &decision {
            Ok(g) => {
                debug!(instance = %g.instance_id, enrolled = g.enrolled, host = %req.client_info.host, "NATS connection authorized")
            }
            Err(reason) => warn!(%reason, host = %req.client_info.host, "NATS connection refused"),
        }
        let now = chrono::Utc::now().timestamp();
        match answer(&issuer, &req, &decision, now) {
            Ok(token) => {
                if let Err(e) = client.publish(reply, token.into()).await {
                    warn!(error = %e, "could not answer an authorization request");
                }
            }
            Err(e) => warn!(error = %e, "could not sign an authorization answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(nkey: &nkeys::KeyPair, nonce: &str, token: &str) -> AuthRequest {
        let sig = BASE64URL_NOPAD.encode(&nkey.sign(nonce.as_bytes()).unwrap());
        AuthRequest {
            server_id: ServerId {
                id: nkeys::KeyPair::new_server().public_key(),
                name: "n".into(),
            },
            user_nkey: nkeys::KeyPair::new_user().public_key(),
            client_info: ClientInfo {
                nonce: nonce.into(),
                host: "127.0.0.1".into(),
            },
            connect_opts: ConnectOpts {
                nkey: nkey.public_key(),
                sig,
                auth_token: token.into(),
            },
        }
    }

    #[test]
    fn a_client_without_a_key_or_with_a_bad_signature_is_refused() {
        let fleet = FleetState::default();
        let key = nkeys::KeyPair::new_user();
        let mut r = request(&key, "nonce-1", "");
        r.connect_opts.nkey.clear();
        assert!(decide(&fleet, &r).unwrap_err().contains("sent none"));
        let mut r = request(&key, "nonce-1", "");
        r.client_info.nonce = "another nonce".into();
        assert!(decide(&fleet, &r).unwrap_err().contains("does not verify"));
        let r = request(&key, "nonce-1", "");
        assert!(decide(&fleet, &r).unwrap_err().contains("not enrolled"));
        let r = request(&key, "nonce-1", "pnec_unknown");
        assert!(decide(&fleet, &r)
            .unwrap_err()
            .contains("no instance was provisioned"));
    }

    #[test]
    fn grants_name_only_the_instances_own_subjects() {
        let g = Grant {
            instance_id: "inst-1".into(),
            nkey: "UABC".into(),
            enrolled: true,
        };
        assert_eq!(
            g.publish(),
            vec![
                "pn.agent.enroll",
                "pn.agent.heartbeat.inst-1",
                "pn.agent.submit.inst-1"
            ]
        );
        assert_eq!(
            g.subscribe(),
            vec!["_INBOX.UABC.>", "pn.agent.nudge.inst-1"]
        );
    }

    #[test]
    fn the_answer_is_signed_for_the_server_and_the_connection() {
        let issuer = nkeys::KeyPair::new_account();
        let r = request(&nkeys::KeyPair::new_user(), "n", "");
        let grant = Ok(Grant {
            instance_id: "inst-1".into(),
            nkey: r.connect_opts.nkey.clone(),
            enrolled: true,
        });
        let token = answer(&issuer, &r, &grant, 1_700_000_000).unwrap();
        let d = jwt::decode(&token).unwrap();
        assert_eq!(d.data.audience, r.server_id.id);
        assert_eq!(d.data.subject, r.user_nkey);
        assert_eq!(d.data.issuer, issuer.public_key());
        let user = jwt::decode(d.nats["jwt"].as_str().unwrap()).unwrap();
        assert_eq!(user.data.subject, r.user_nkey);
        assert_eq!(user.data.audience, PLATFORM_ACCOUNT);
        assert_eq!(user.data.expires, 1_700_000_000 + SESSION.as_secs() as i64);
        let denied = answer(&issuer, &r, &Err("no".into()), 1).unwrap();
        assert_eq!(jwt::decode(&denied).unwrap().nats["error"], "no");
    }
}
