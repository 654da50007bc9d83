//! Who may use the platform's NATS server, and how they prove it.
//!
//! powernode runs NATS with an **auth callout** (nats-server ≥ 2.10): the
//! platform's own services connect as one NKey user named in the server's
//! config; every other connection is handed to the platform's callout
//! service ([`callout`]), which answers with a user JWT scoped to one
//! agent's subjects, or a refusal. Agents need no server config edit or
//! reload when they enroll: the key they enroll with is their NATS
//! credential. (Why not decentralized JWTs: a callout decides each
//! connection against the live fleet, so a terminated instance is cut off
//! at its next connect, and there are no per-agent JWTs to ship, store or
//! revoke; the one-time enrollment credential doubles as the first
//! connection's token.)
//!
//! * [`jwt`] — the NATS JWT format the callout speaks;
//! * [`callout`] — the decision and the service;
//! * [`init`] — `powernode nats init`: a ready server config and the
//!   platform's credentials;
//! * how platform processes connect (credentials, TLS, the refusal of
//!   servers that let anonymous clients use JetStream) is
//!   `powernode_log::nats`.

pub mod callout;
pub mod init;
pub mod jwt;

pub use powernode_log::nats::{CredsError, PlatformCreds, PLATFORM_ACCOUNT};

/// The part of a nats-server config that makes it powernode's: the
/// platform account with JetStream, the platform's user in it, and the auth
/// callout for every other client. Shared by `powernode nats init`, the
/// test harness and the rig.
pub fn server_auth_config(platform_user: &str, issuer: &str) -> String {
    format!(
        "# powernode: the platform's services connect as the NKey user below; every\n\
         # other client (the agents) is decided by the platform's auth callout.\n\
         accounts {{\n  {PLATFORM_ACCOUNT}: {{\n    jetstream: enabled\n    users: [ {{ nkey: {platform_user} }} ]\n  }}\n}}\n\
         authorization {{\n  timeout: 3\n  auth_callout {{\n    issuer: {issuer}\n    account: {PLATFORM_ACCOUNT}\n    auth_users: [ {platform_user} ]\n  }}\n}}\n"
    )
}
