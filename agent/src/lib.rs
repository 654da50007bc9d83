//! # powernode-agent — the on-node agent
//!
//! * [`identity`] — the ed25519 key it enrolls with and signs every event with;
//! * [`link`] — how it reaches the platform's intake (NATS request/reply);
//!   what it says is the `powernode-protocol` crate;
//! * [`nkey`] — the NATS NKey user an agent may authenticate with;
//! * [`agent`] — enrollment, heartbeat, module reconcile and the handshake;
//! * [`state`] — what survives a restart (a restart with the same state dir
//!   is the same instance);
//! * [`vips`] — VIP fencing: which virtual IPs to hold, at which generation;
//! * [`wireguard`] — the data plane: the node's WireGuard key, applying each
//!   network's desired config with `wg` / `ip`, VIPs on the interface;
//! * [`probe`] — the data-path check: probing the cluster's VIPs through the
//!   tunnel and reporting who answered;
//! * [`driver`] — the drivers that run k3s and put VIPs on the node (real,
//!   or simulated).
//!
//! The agent must stay lean: it never links the services or projections.

pub mod agent;
pub mod driver;
pub mod identity;
pub mod link;
pub mod nkey;
pub mod probe;
pub mod state;
pub mod vips;
pub mod wireguard;
